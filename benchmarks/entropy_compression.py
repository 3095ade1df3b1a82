"""Compression ratio (units per patch) of entropy patching on example_data/ce.fa, overall and inside
repeats vs unique sequence.

"Repeat" is defined by our own detectors (ce.fa is not soft-masked):
* tandem repeats: for each period p = 1..50, a 24 bp stretch where ≥ 90 % of bases equal the base p
  earlier (the stretch and its p-base source are marked);
* low complexity (DUST-like, as sdust): a 64 bp window whose triplet score sum c(c−1)/2 / (l−1) > 20.

    .venv/bin/python benchmarks/entropy_compression.py MODEL_DIR [--target 4] [--mode global|monotonic] \
        [--min 1] [--max 32] [--fasta example_data/ce.fa]

MODEL_DIR is an entropy LM (`hyena-glt train --task lm`). θ is calibrated on the input to --target, exactly
as `hyena-glt tokenize --patcher entropy` does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def tandem_mask(codes: np.ndarray, max_period: int = 50, span: int = 24, identity: float = 0.9) -> np.ndarray:
    """Positions inside tandem repeats (period ≤ max_period)."""
    n = len(codes)
    marks = np.zeros(n + 1, dtype=np.int64)
    need = int(np.ceil(identity * span))
    for p in range(1, max_period + 1):  # loop over periods, vectorised over positions
        if n - p < span:
            break
        eq = (codes[p:] == codes[:-p]) & (codes[p:] >= 0)
        window = np.convolve(eq.astype(np.int32), np.ones(span, dtype=np.int32), mode="valid")  # [i, i+span)
        hits = np.flatnonzero(window >= need)  # stretch [i+p, i+p+span) copies [i, i+span)
        np.add.at(marks, hits, 1)
        np.add.at(marks, np.minimum(hits + p + span, n), -1)
    return np.cumsum(marks[:-1]) > 0


def dust_mask(codes: np.ndarray, window: int = 64, threshold: float = 20.0) -> np.ndarray:
    """Positions in a low-complexity window (sdust's triplet score)."""
    n = len(codes)
    if n < window:
        return np.zeros(n, dtype=bool)
    ok = (codes[:-2] >= 0) & (codes[1:-1] >= 0) & (codes[2:] >= 0)
    trip = np.where(ok, codes[:-2] * 16 + codes[1:-1] * 4 + codes[2:], -1)
    n_trip = window - 2
    score = np.zeros(n - window + 1)
    for k in range(64):  # loop over the 64 triplets, vectorised over positions
        c = np.convolve((trip == k).astype(np.int32), np.ones(n_trip, dtype=np.int32), mode="valid")
        score += c * (c - 1) / 2
    score /= n_trip - 1
    marks = np.zeros(n + 1, dtype=np.int64)
    hits = np.flatnonzero(score > threshold)
    np.add.at(marks, hits, 1)
    np.add.at(marks, hits + window, -1)
    return np.cumsum(marks[:-1]) > 0


def encode(seq: str) -> np.ndarray:
    table = np.full(256, -1, dtype=np.int64)
    for i, b in enumerate(b"ACGT"):
        table[b] = i
    return table[np.frombuffer(seq.upper().encode(), dtype=np.uint8)]


def repeat_mask(seq: str) -> np.ndarray:
    codes = encode(seq)
    return tandem_mask(codes) | dust_mask(codes)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--fasta", default=str(REPO / "example_data" / "ce.fa"))
    ap.add_argument("--target", type=float, default=4.0)
    ap.add_argument("--mode", default="global")
    ap.add_argument("--min", type=int, default=1)
    ap.add_argument("--max", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from hyena_glt.io.sequences import read_sequences
    from hyena_glt.model.entropy import make_patcher, patch_records

    torch.set_num_threads(args.threads)
    records = list(read_sequences(args.fasta))
    patcher = make_patcher("entropy", entropy_model=args.model_dir, target_patch_length=args.target,
                           mode=args.mode, min_patch_length=args.min, max_patch_length=args.max)
    t0 = time.time()
    patched = list(patch_records(records, patcher))
    seconds = time.time() - t0
    units = {"all": 0, "repeat": 0, "unique": 0}
    starts = {"all": 0, "repeat": 0, "unique": 0}
    entropy_sum = {"repeat": 0.0, "unique": 0.0}
    for p in patched:  # loop over records
        rep = repeat_mask(p.record.seq)
        is_start = np.zeros(len(rep), dtype=bool)
        is_start[p.starts] = True
        for name, where in (("all", np.ones_like(rep)), ("repeat", rep), ("unique", ~rep)):
            units[name] += int(where.sum())
            starts[name] += int((is_start & where).sum())
        entropy_sum["repeat"] += float(p.entropy[rep].sum())
        entropy_sum["unique"] += float(p.entropy[~rep].sum())
    s = patcher.settings
    print(f"# {args.fasta}: mode {s.mode}, min {s.min_patch_length}, max {s.max_patch_length}, "
          f"target {args.target}, threshold {s.threshold:.4f} bits; {sum(units.values()) // 2} units "
          f"patched in {seconds:.1f} s ({units['all'] / seconds:,.0f} units/s, 1 thread)")
    print("region\tunits\tfraction\tpatches\tcompression_ratio\tmean_entropy_bits")
    for name in ("all", "repeat", "unique"):
        mean_h = (entropy_sum["repeat"] + entropy_sum["unique"]) / units["all"] if name == "all" \
            else entropy_sum[name] / max(units[name], 1)
        print(f"{name}\t{units[name]}\t{units[name] / units['all']:.3f}\t{starts[name]}\t"
              f"{units[name] / max(starts[name], 1):.2f}\t{mean_h:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
