"""Device and precision: "auto" picks CUDA, then MPS, then the CPU; bf16 on GPUs that support it, else fp16,
and fp32 on the CPU. An explicit choice this machine cannot honour is a DeviceError, never a silent fallback."""
from hyena_glt import runtime
from hyena_glt.errors import DeviceError
from hyena_glt.inference import Predictor

device = runtime.resolve_device("auto")
print("auto:", device, runtime.resolve_precision("auto", device))

# Predictor and load_scorer take the same strings: auto, cpu, cuda, cuda:N, mps; auto, fp32,
# bf16, fp16. batch_size is a number of sequences, or "auto" (a budget from the model's size and free memory).
seq = "CTCCACCCCTGACTCCCCTCAGCCATAGAAGGCCCCACCCCAGTCTCAGCCCTACTCCACTCAAGCACTA"
for precision in ("fp32", "bf16"):
    predictor = Predictor.from_pretrained(None, device="cpu", precision=precision, batch_size=256)
    (batch,) = predictor.predict([seq])
    print(predictor.device, predictor.precision, f"p(promoter)={batch.values[0, 1]:.4f}")

for device, precision in (("cuda:7", "auto"), ("cpu", "fp16")):
    try:
        Predictor.from_pretrained(None, device=device, precision=precision)
    except DeviceError as err:
        print("DeviceError:", err)

# Threads: torch's intra-op threads (the CLI's -@); default: $SLURM_CPUS_PER_TASK, else every usable core.
print("threads:", runtime.set_threads(1))
