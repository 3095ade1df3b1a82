#!/usr/bin/env python3
"""Copy a genome FASTA (plain or gzip) to DEST as plain FASTA and write DEST.fai, with pysam only.

    python workflows/scripts/index_genome.py genome.fa.gz results/genome/genome.fa

The workflow indexes its own copy so that it never writes next to its inputs (which may be read-only).
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
from pathlib import Path

import pysam


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    source, dest = Path(args[0]), Path(args[1])
    with open(source, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    with (gzip.open if gzipped else open)(source, "rb") as src, open(partial, "wb") as out:
        shutil.copyfileobj(src, out)
    pysam.faidx(str(partial))
    os.replace(f"{partial}.fai", f"{dest}.fai")
    os.replace(partial, dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
