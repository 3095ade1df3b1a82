"""HyenaDNA vs hyena-glt, forward by forward: the two models alternate within each repeat, so both see the same
machine state (on a shared 2-core machine a whole-run comparison drifts by up to ±30 %).

    python benchmarks/ab_peer.py --config small --shapes 1x1024,8x1024,1x8192 --repeats 5

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
sys.path[:0] = [str(HERE.parent.parent / "shared" / "bench"), str(HERE)]

import bench_peer  # noqa: E402
from peer_factory import factory  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", choices=["tiny", "small"])
    parser.add_argument("--shapes", default="1x1024,8x1024,1x8192", help="BATCHxLENGTH, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    shapes = bench_peer.parse_shapes(args.shapes)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    longest = max(length for _, length in shapes)
    models = {"hyenadna": bench_peer.peer_factory(args.config, longest).eval(),
              "hyena-glt": factory(args.config, longest).eval()}
    print("config\tbatch\tlength\thyenadna_ms\thyena_glt_ms\tspeedup")
    for batch, length in shapes:
        ids = bench_peer.make_tokens(batch, length)
        times: dict[str, list[float]] = {name: [] for name in models}
        with torch.inference_mode():
            for repeat in range(args.repeats + 1):
                for name, model in models.items():
                    start = time.perf_counter()
                    model(ids)
                    if repeat:  # the first round is the warm-up
                        times[name].append((time.perf_counter() - start) * 1000)
        peer, ours = (statistics.median(times[name]) for name in models)
        print(f"{args.config}\t{batch}\t{length}\t{peer:.1f}\t{ours:.1f}\t{peer / ours:.2f}", flush=True)


if __name__ == "__main__":
    main()
