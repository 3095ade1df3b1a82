"""Tokenize throughput (Mb/s) against a bare pysam parse of the same FASTA.

    .venv/bin/python benchmarks/bench_tokenize.py                     # example_data/ce.fa, 15 repeats
    .venv/bin/python benchmarks/bench_tokenize.py --input genome.fa --repeats 5 --cli

Stages, each timed as the best (and median) of ``--repeats`` runs over the whole file (page cache
warm; stages interleaved so that a shared machine's load falls on all alike):

- ``bare pysam parse``: ``pysam.FastxFile`` iterating records and touching each sequence (the target
  is tokenize at >= 50% of this);
- ``read_sequences`` without and with the alphabet check;
- ``tokenize (in memory)``: what ``hyena-glt tokenize`` does before writing: read, check the
  alphabet and encode to compact (uint8) ids in one pass (``tokenizers.encode_records``);
- ``tokenize -> npz/tsv file``: the same plus writing the output atomically (``io.writers.write_encoded``);
- with ``--cli``: the command itself in a subprocess (includes interpreter, torch and library start-up).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pysam

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hyena_glt.io.sequences import read_sequences  # noqa: E402
from hyena_glt.io.writers import write_encoded  # noqa: E402
from hyena_glt.tokenizers import encode_records, get_tokenizer  # noqa: E402


def timed(stages: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Best and median seconds of each stage. Stages are interleaved round by round, so that the
    load of a shared machine falls on all of them alike."""
    for fn in stages.values():
        fn()  # warm-up: page cache, lazy imports
    times: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(repeats):
        for name, fn in stages.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", type=Path, default=REPO / "example_data" / "ce.fa")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--tokenizer", default="nucleotide")
    parser.add_argument("--cli", action="store_true", help="also time the hyena-glt command end to end")
    args = parser.parse_args()

    path = str(args.input)
    tok = get_tokenizer(args.tokenizer)
    bases = sum(len(r.sequence) for r in pysam.FastxFile(path))
    tmp = Path(tempfile.mkdtemp(prefix="bench_tokenize."))

    checks = tok.checks_alphabet  # the command's path: the encoder checks the alphabet itself

    def records():
        return read_sequences(path, alphabet=None if checks else tok.alphabet)

    def bare() -> int:
        return sum(len(r.sequence) for r in pysam.FastxFile(path))

    def reader() -> int:
        return sum(len(r.seq) for r in read_sequences(path))

    def reader_checked() -> int:
        return sum(len(r.seq) for r in read_sequences(path, alphabet=tok.alphabet))

    def tokenize() -> int:
        return sum(len(ids) for _, ids in encode_records(records(), tok, check=checks))

    def to_npz() -> None:
        write_encoded(encode_records(records(), tok, check=checks), tok, tmp / "out.npz", "npz")

    def to_tsv() -> None:
        write_encoded(encode_records(records(), tok, check=checks), tok, tmp / "out.tsv", "tsv")

    stages = {
        "bare pysam parse": bare,
        "read_sequences": reader,
        "read_sequences + alphabet check": reader_checked,
        f"tokenize ({tok.name}, checked, in memory)": tokenize,
        "tokenize -> npz file": to_npz,
        "tokenize -> tsv file": to_tsv,
    }
    results = timed(stages, args.repeats)
    if args.cli:
        exe = str(Path(sys.executable).parent / "hyena-glt")
        command = [exe, "-@", "1", "tokenize", path, "-t", tok.name, "-o", str(tmp / "cli.npz")]
        cli_runs = max(3, args.repeats // 5)
        results.update(timed({"hyena-glt tokenize -o .npz (subprocess)": lambda: subprocess.run(command, check=True)},
                             cli_runs))

    bare_best = results["bare pysam parse"][0]
    print(f"input: {path} ({bases:,} bp), best/median of {args.repeats} interleaved runs, Python {sys.version.split()[0]}, "
          f"pysam {pysam.__version__}")
    print(f"{'stage':44s} {'best ms':>9s} {'median ms':>10s} {'Mb/s':>8s} {'vs bare':>8s}")
    for name, (best, median) in results.items():
        print(f"{name:44s} {best * 1e3:9.2f} {median * 1e3:10.2f} {bases / best / 1e6:8.1f} "
              f"{bare_best / best:8.0%}")


if __name__ == "__main__":
    main()
