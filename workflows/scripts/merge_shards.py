#!/usr/bin/env python3
"""Merge the BED shards of `hyena-glt classify --shard I/N` into one sorted, bgzipped, tabix-indexed BED.

    python workflows/scripts/merge_shards.py -o scan.bed.gz shards/*.bed [--fai genome.fa.fai]

Header lines (``#...``) are taken once, from the first shard that has them; data lines from all shards are
sorted by contig, start, end (contigs in the order of ``--fai`` when given, else by name, as
``sort -k1,1 -k2,2n`` does). Gzipped shards are read too. The output and its ``.tbi`` index appear atomically:
a failed merge leaves neither. Needs only pysam (a hyena-glt dependency), no bgzip/tabix binaries.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
from pathlib import Path

import pysam

HEADER_PREFIXES = ("#", "track", "browser")


def read_lines(path: Path) -> list[str]:
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    with opener(path, "rt") as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


def merge(shards: list[Path], output: Path, fai: Path | None = None) -> int:
    """Writes ``output`` (.bed.gz) and ``output.tbi``; returns the number of intervals."""
    header: list[str] = []
    rows: list[list[str]] = []
    for shard in shards:
        lines = read_lines(shard)
        shard_header = [line for line in lines if line.startswith(HEADER_PREFIXES)]
        if shard_header and not header:
            # tabix's bed preset skips '#' lines only; track/browser lines would break the index.
            header = [line for line in shard_header if line.startswith("#")]
        for line in lines:
            if line.startswith(HEADER_PREFIXES):
                continue
            fields = line.split("\t")
            if len(fields) < 3:
                raise SystemExit(f"merge_shards: {shard}: not a BED line: {line[:80]!r}")
            rows.append(fields)

    if fai is not None:
        order = {name.split("\t")[0]: i for i, name in enumerate(read_lines(fai))}
        unknown = sorted({row[0] for row in rows} - order.keys())
        if unknown:
            raise SystemExit(f"merge_shards: contig(s) not in {fai}: {', '.join(unknown[:5])}")
        contig_key = order.__getitem__
    else:
        contig_key = str
    rows.sort(key=lambda f: (contig_key(f[0]), int(f[1]), int(f[2]), f[3:]))

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".merge_") as tmp:
        plain = Path(tmp) / "merged.bed"
        with open(plain, "w") as out:
            for line in header:
                out.write(line + "\n")
            for fields in rows:
                out.write("\t".join(fields) + "\n")
        bgzipped = Path(pysam.tabix_index(str(plain), preset="bed", force=True))
        os.replace(str(bgzipped) + ".tbi", str(output) + ".tbi")
        os.replace(bgzipped, output)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shards", nargs="+", type=Path, help="BED files from classify --shard I/N")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output .bed.gz (+ .tbi)")
    parser.add_argument("--fai", type=Path, help="genome .fai: sort contigs in reference order")
    args = parser.parse_args(argv)
    if not str(args.output).endswith(".gz"):
        parser.error("--output must end in .gz (it is bgzipped)")
    n = merge(args.shards, args.output, args.fai)
    print(f"merge_shards: {n} intervals from {len(args.shards)} shards -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
