"""Shell pipelines: every record-producing subcommand reads stdin ('-'), writes stdout ('-o -'), gives the same
records as with files, and stops quietly (exit 0, no traceback) when the reader goes away (`| head -1`).

Runs the installed `hyena-glt` in bash with `set -o pipefail`, so a failure anywhere in a pipe fails the test.
Models: the bundled default model (what a user gets without --model).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pysam
import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "example_data"
BIN = Path(sys.executable).parent
NUCLEOTIDE_IDS = {"A": 5, "C": 6, "G": 7, "T": 8, "N": 9}


def sh(command: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Runs a pipeline in bash (pipefail) with the venv first on PATH; stdout as bytes, stderr as text."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, input=stdin,
                          capture_output=True, timeout=300)
    proc.stderr = proc.stderr.decode()
    return proc


def ok(proc: subprocess.CompletedProcess) -> bytes:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    return proc.stdout


def fastq_records(path: Path, n: int) -> list[tuple[str, str]]:
    with pysam.FastxFile(str(path)) as fq:
        return [(r.name, r.sequence) for _, r in zip(range(n), fq)]


@pytest.fixture()
def work(tmp_path) -> Path:
    (tmp_path / "example_data").symlink_to(DATA)
    return tmp_path


# -- tokenize --------------------------------------------------------------------------------------------
def test_tokenize_stdin_to_stdout_gives_each_reads_ids(work):
    reads = fastq_records(DATA / "ce_reads.fastq", 25)
    out = ok(sh("head -100 example_data/ce_reads.fastq | hyena-glt tokenize - -o -", work)).decode()
    header, *rows = out.splitlines()
    assert header.split("\t") == ["id", "length", "ids"]
    assert len(rows) == len(reads)
    for row, (name, seq) in zip(rows, reads):
        rid, length, ids = row.split("\t")
        assert (rid, int(length)) == (name, len(seq))
        assert [int(i) for i in ids.split()] == [NUCLEOTIDE_IDS[b] for b in seq.upper()]


def test_tokenize_patches_from_stdin_tile_each_record(work):
    out = ok(sh("cat example_data/ex1.fa | hyena-glt -q tokenize - --patcher static:4 -o -", work)).decode()
    lengths = {line.split("\t")[0]: int(line.split("\t")[1]) for line in (DATA / "ex1.fa.fai").read_text().splitlines()}
    rows = [line.split("\t") for line in out.splitlines() if not line.startswith("#")]
    for contig, length in lengths.items():
        spans = [(int(r[1]), int(r[2])) for r in rows if r[0] == contig]
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, no gaps or overlaps
        assert {e - s for s, e in spans[:-1]} == {4}


def test_tokenize_into_head_stops_quietly(work):
    # 10,000 reads: megabytes of ids, far more than a pipe holds, so the writer meets the closed pipe.
    proc = sh("hyena-glt tokenize example_data/lambda_reads_1.fq | head -1", work)
    assert ok(proc) == b"id\tlength\tids\n"
    assert proc.stderr == ""


# -- classify --------------------------------------------------------------------------------------------
def test_classify_reads_on_stdin_match_the_file_run_row_for_row(work):
    from_stdin = ok(sh("cat example_data/ce_reads.fastq | hyena-glt -q classify - -o -", work)).decode()
    from_file = ok(sh("hyena-glt -q classify example_data/ce_reads.fastq -o reads.tsv && cat reads.tsv", work))
    assert from_stdin == from_file.decode()
    header, *rows = from_stdin.splitlines()
    assert header.split("\t")[:3] == ["id", "length", "label"]
    assert [r.split("\t")[0] for r in rows] == [name for name, _ in fastq_records(DATA / "ce_reads.fastq", 10**6)]
    probabilities = np.array([[float(x) for x in r.split("\t")[3:]] for r in rows])
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)


def test_bam_to_fasta_with_pysam_piped_into_classify_then_sort_and_head(work):
    """samtools-free `samtools fasta reads.bam | hyena-glt classify - | sort -k..gr | head`."""
    pipeline = ("python -c \"import pysam, sys; sys.stdout.write(pysam.fasta('example_data/ce_reads.bam'))\" "
                "| hyena-glt -q classify - --format tsv | tail -n +2 | sort -t$'\\t' -k5,5gr -k1,1 | head -5")
    # `sort | head` may end sort with SIGPIPE (141), as in any shell: check each stage's own status instead.
    proc = sh(f'set +o pipefail; {pipeline}; echo "stages: ${{PIPESTATUS[*]}}" >&2', work)
    python_status, classify_status, tail_status, sort_status, head_status = proc.stderr.split("stages: ")[1].split()
    assert (python_status, classify_status, head_status) == ("0", "0", "0") and sort_status in ("0", "141")
    assert "Traceback" not in proc.stderr
    top = proc.stdout.decode().splitlines()
    direct = ok(sh("hyena-glt -q classify example_data/ce_reads.bam", work)).decode().splitlines()[1:]
    expected = sorted(direct, key=lambda r: (-float(r.split("\t")[4]), r.split("\t")[0]))[:5]
    # samtools fasta (and so pysam.fasta) writes reverse-strand reads as sequenced, as hyena-glt reads BAM.
    assert top == expected


def test_classify_genome_on_stdin_scans_windows_to_bed_on_stdout(work):
    from_stdin = ok(sh("cat example_data/MT-human.fa | hyena-glt -q classify - --format bed", work)).decode()
    from_file = ok(sh("hyena-glt -q classify example_data/MT-human.fa -o mt.bed && cat mt.bed", work)).decode()
    assert from_stdin == from_file
    header, *rows = from_stdin.splitlines()
    assert header.startswith("#contig\tstart\tend\tlabel\tscore\tstrand\tp_")
    assert int(rows[-1].split("\t")[2]) == 16569  # the last window ends at the genome's end


def test_classify_into_head_stops_quietly(work):
    proc = sh("hyena-glt classify example_data/lambda_reads_1.fq | head -1", work)
    assert ok(proc).decode().startswith("id\tlength\tlabel\t")
    assert "error" not in proc.stderr


# -- embed -----------------------------------------------------------------------------------------------
def test_embed_reads_stdin_and_writes_npz_to_stdout(work):
    raw = ok(sh("head -40 example_data/ce_reads.fastq | hyena-glt -q embed - -o -", work))
    arrays = np.load(io.BytesIO(raw))
    names = [name for name, _ in fastq_records(DATA / "ce_reads.fastq", 10)]
    assert list(arrays["names"]) == names
    assert arrays["embeddings"].shape[0] == 10 and np.isfinite(arrays["embeddings"]).all()
    ok(sh("head -40 example_data/ce_reads.fastq > ten.fq && hyena-glt -q embed ten.fq -o ten.npz", work))
    from_file = np.load(work / "ten.npz")
    assert np.array_equal(from_file["embeddings"], arrays["embeddings"])


# -- interpret -------------------------------------------------------------------------------------------
def test_interpret_stdin_to_stdout_tsv_one_row_per_base(work):
    reads = fastq_records(DATA / "ce_reads.fastq", 2)
    out = ok(sh("head -8 example_data/ce_reads.fastq | hyena-glt -q interpret - -o - --format tsv", work)).decode()
    header, *rows = out.splitlines()
    assert header.split("\t")[:7] == ["record", "contig", "position", "strand", "base", "target", "importance"]
    assert len(rows) == sum(len(seq) for _, seq in reads)
    first = [r.split("\t") for r in rows[: len(reads[0][1])]]
    assert {f[0] for f in first} == {reads[0][0]}
    assert "".join(f[4] for f in first) == reads[0][1]
    assert [int(f[2]) for f in first] == list(range(1, len(reads[0][1]) + 1))


def test_interpret_bedgraph_into_head_stops_quietly(work):
    # 4,200 bases: ~100 kB of bedGraph, more than a pipe holds, written after head has gone.
    proc = sh("hyena-glt interpret example_data/MT-human.fa --region MT_human:1-4200 --window 70 -o - "
              "--format bedgraph | head -1", work)
    assert ok(proc).decode().startswith("track type=bedGraph")
