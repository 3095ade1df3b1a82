"""A model from a config: a forward pass, then a save_pretrained / from_pretrained round trip."""
import tempfile
from pathlib import Path

import torch

from hyena_glt.config import HyenaGLTConfig
from hyena_glt.inference import Predictor
from hyena_glt.model import HyenaGLTForTask, count_parameters, from_pretrained, save_pretrained
from hyena_glt.tokenizers import get_tokenizer

# Presets: tiny, small, base; keywords override any field. patcher "static:4" gives the BLT path (local
# encoder -> patches -> global Hyena blocks); "none" is a plain stack over units. No field caps the length.
config = HyenaGLTConfig.preset("tiny", patcher="static:4", bidirectional=True)
torch.manual_seed(0)  # the weights are random: this model is untrained
model = HyenaGLTForTask(config, "classification", num_outputs=3).eval()
print(f"{count_parameters(model):,} parameters; d_model {config.d_model}, local width {config.local_width}")

tokenizer = get_tokenizer("nucleotide")
batch = tokenizer.encode_batch(["ACGTACGTACGTAC", "GGGCCCAT"])
with torch.no_grad():
    logits = model(batch["input_ids"], batch["attention_mask"])  # (batch, classes)
    states = model.backbone(batch["input_ids"], batch["attention_mask"])  # HyenaGLTOutput
    vectors = model.embed(batch["input_ids"], batch["attention_mask"], pool="mean")
print("logits", tuple(logits.shape), "| patch states", tuple(states.patch_states.shape),
      "| patch lengths", states.patch_lengths.tolist(), "| embeddings", tuple(vectors.shape))

with tempfile.TemporaryDirectory() as folder:
    # The metadata is free-form JSON; tokenizer, class_names and window are what Predictor reads.
    save_pretrained(model, folder, {"tokenizer": tokenizer.to_dict(), "class_names": ["a", "b", "c"]})
    loaded, metadata = from_pretrained(folder)
    with torch.no_grad():
        same = torch.equal(loaded(batch["input_ids"], batch["attention_mask"]), logits)
    print("files:", sorted(p.name for p in Path(folder).iterdir()), "| same logits:", same)
    print("metadata:", {k: metadata[k] for k in ("task", "num_outputs", "patcher", "class_names")})
    predictor = Predictor.from_pretrained(folder, device="cpu")
    probs = next(predictor.predict(["ACGTACGTACGTAC"])).values[0]
    print({name: f"{p:.3f}" for name, p in zip(predictor.output_names, probs)})
