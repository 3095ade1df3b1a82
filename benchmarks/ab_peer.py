"""HyenaDNA vs hyena-glt, forward by forward: the two models alternate within each repeat, so both see the same
machine state (on a shared 2-core machine a whole-run comparison drifts by up to ±30 %).

    python benchmarks/ab_peer.py --config small --shapes 1x1024,8x1024,1x8192 --repeats 5
    python benchmarks/ab_peer.py --device cuda --bf16 --config tiny --shapes 1x1024,1x131072,1x1048576

On CUDA each forward is timed between synchronisations. The peer is always timed in fp32; `--bf16` adds our model
under bf16 autocast as a third column (what `hyena-glt` picks by itself on GPUs with bf16).

Uses ../shared/bench/bench_peer.py (the measuring instrument) for the peer model and for its conventions: random
token ids 0..11, eval mode, fp32, torch.inference_mode(), all available cores. One warm-up forward each, then
`--repeats` timed forwards each; prints a TSV of medians and the speed-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peer_factory import factory  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", choices=["tiny", "small"])
    parser.add_argument("--shapes", default="1x1024,8x1024,1x8192", help="BATCHxLENGTH, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--bf16", action="store_true", help="also time hyena-glt under bf16 autocast")
    parser.add_argument("--bench-dir", default=str(HERE.parent.parent / "shared" / "bench"),
                        help="folder of bench_peer.py (default ../shared/bench)")
    args = parser.parse_args()
    sys.path.insert(0, args.bench_dir)
    import bench_peer

    shapes = bench_peer.parse_shapes(args.shapes)
    device = torch.device(args.device)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    longest = max(length for _, length in shapes)
    ours = factory(args.config, longest).eval().to(device)
    models = {"hyenadna": (bench_peer.peer_factory(args.config, longest).eval().to(device), None),
              "hyena-glt": (ours, None)}
    if args.bf16:
        models["hyena-glt-bf16"] = (ours, torch.bfloat16)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    print("config\tdevice\tbatch\tlength\t" + "\t".join(f"{name}_ms" for name in models)
          + "\t" + "\t".join(f"speedup_{name}" for name in list(models)[1:]))
    for batch, length in shapes:
        ids = bench_peer.make_tokens(batch, length).to(device)
        times: dict[str, list[float]] = {name: [] for name in models}
        with torch.inference_mode():
            for repeat in range(args.repeats + 1):
                for name, (model, dtype) in models.items():
                    sync()
                    start = time.perf_counter()
                    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                        model(ids)
                    sync()
                    if repeat:  # the first round is the warm-up
                        times[name].append((time.perf_counter() - start) * 1000)
        medians = [statistics.median(times[name]) for name in models]
        print(f"{args.config}\t{device}\t{batch}\t{length}\t" + "\t".join(f"{m:.2f}" for m in medians) + "\t"
              + "\t".join(f"{medians[0] / m:.2f}" for m in medians[1:]), flush=True)


if __name__ == "__main__":
    main()
