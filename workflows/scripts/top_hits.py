#!/usr/bin/env python3
"""The best-scoring windows of a `hyena-glt classify` BED, as a position-sorted BED of regions.

    python workflows/scripts/top_hits.py scan.bed.gz --label 1 --count 10 -o top.bed

Ranks windows by the probability of ``--label`` (its ``p_<label>`` column, named by the ``#`` header line
that classify writes) whatever label they were predicted as, so an input with no window predicted as that
label still has top hits; without such a column, keeps the rows predicted as ``--label`` (column 4) and ranks
them by score (column 5). Writes the best ``--count`` as BED6 (contig, start, end, name, score, strand),
sorted by position; ties keep genome order, so the choice is deterministic. Writes atomically.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
from pathlib import Path


def read_bed(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    header: list[str] = []
    rows: list[list[str]] = []
    with opener(path, "rt") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if not line.strip() or line.startswith(("track", "browser")):
                continue
            if line.startswith("#"):
                header = line.lstrip("#").split("\t")
                continue
            rows.append(line.split("\t"))
    return header, rows


def top_hits(rows: list[list[str]], header: list[str], label: str | None, count: int) -> list[list[str]]:
    names = {name: i for i, name in enumerate(header)}
    column = names.get(f"p_{label}") if label is not None else None
    if column is None or column < 6:
        if label is not None:
            rows = [row for row in rows if len(row) > 3 and row[3] == label]
        column = 4  # the BED score: the predicted label's probability x 1000
    ranked = sorted(enumerate(rows), key=lambda item: (-float(item[1][column]), item[0]))[:count]
    best = [row for _, row in sorted(ranked, key=lambda item: item[0])]
    return [(row + [".", "0", "."])[:6] if len(row) < 6 else row[:6] for row in best]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bed", type=Path, help="classify output (.bed or .bed.gz)")
    parser.add_argument("-o", "--output", required=True, type=Path)
    parser.add_argument("--label", help="keep windows predicted as this label")
    parser.add_argument("--count", type=int, default=10, help="how many windows (default 10)")
    args = parser.parse_args(argv)
    header, rows = read_bed(args.bed)
    best = top_hits(rows, header, args.label, args.count)
    # Sorted input stays sorted after the rank-then-position selection above; sort anyway for unsorted input.
    best.sort(key=lambda f: (f[0], int(f[1]), int(f[2])))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_name(f".{args.output.name}.partial")
    with open(partial, "w") as out:
        for fields in best:
            out.write("\t".join(fields) + "\n")
    os.replace(partial, args.output)
    print(f"top_hits: {len(best)} of {len(rows)} windows -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
