"""Patchers of one preset, forward by forward: `none`, `static:K` (and config variants) alternate within each
repeat, so every model sees the same machine state (on a shared 2-core machine separate runs drift by ±30 %).

    python benchmarks/ab_patchers.py --length 32k --repeats 15
    python benchmarks/ab_patchers.py --variant static:4,d_local=32 --variant static:4,local_window=0

Same conditions as `hyena-glt benchmark`: the classification head, random token ids, eval mode, fp32,
torch.inference_mode(), glibc malloc tuned as the CLI does. One warm-up forward each, then `--repeats` timed
forwards each; prints a TSV of medians and each model's speed-up over the first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from hyena_glt.benchmark import VOCAB, parse_lengths
from hyena_glt.config import HyenaGLTConfig
from hyena_glt.model import HyenaGLTForTask
from hyena_glt.runtime import tune_allocator


def build(preset: str, variant: str) -> HyenaGLTForTask:
    """'static:4,d_local=32' → the preset with patcher static:4 and d_local 32 (values are JSON)."""
    patcher, *fields = variant.split(",")
    overrides = {key: json.loads(value) for key, value in (field.split("=", 1) for field in fields)}
    config = HyenaGLTConfig.preset(preset, vocab_size=VOCAB, patcher=patcher, **overrides)
    return HyenaGLTForTask(config, "classification", 2).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--length", default="32k")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--variant", action="append", help="PATCHER[,FIELD=VALUE...] (repeatable; default: "
                        "none and static:4)")
    args = parser.parse_args()
    tune_allocator()
    variants = args.variant or ["none", "static:4"]
    length, = parse_lengths(args.length)
    models = {v: build(args.preset, v) for v in variants}
    ids = torch.randint(0, VOCAB, (args.batch, length), generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {v: [] for v in variants}
    with torch.inference_mode():
        for model in models.values():
            model(ids)
        for _ in range(args.repeats):
            for variant, model in models.items():
                start = time.perf_counter()
                model(ids)
                times[variant].append((time.perf_counter() - start) * 1000)
    first = statistics.median(times[variants[0]])
    print("preset\tvariant\tbatch\tlength\tmedian_ms\tspeedup")
    for variant in variants:
        median = statistics.median(times[variant])
        print(f"{args.preset}\t{variant}\t{args.batch}\t{length}\t{median:.1f}\t{first / median:.2f}")


if __name__ == "__main__":
    main()
