"""`hyena-glt tokenize` end to end: exact outputs on example_data, round trips, and every bad input
(message, exit code 2, no output file)."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pysam
import pytest
from typer.testing import CliRunner

from hyena_glt.io.sequences import read_sequences
from hyena_glt.io.writers import load_tokenized
from hyena_glt.tokenizers import get_tokenizer
from hyena_glt_cli.main import app

runner = CliRunner()


def run(*args: str, input: bytes | None = None):
    return runner.invoke(app, ["tokenize", *map(str, args)], input=input)


def test_stdout_tsv_exact(data_dir):
    result = run(data_dir / "ex1.fa", "-r", "seq1:1-8", "-r", "seq2:1,581-1,584")
    assert result.exit_code == 0, result.stderr
    seq2_tail = pysam.FastaFile(str(data_dir / "ex1.fa")).fetch("seq2", 1580, 1584)
    expected_tail = " ".join(map(str, get_tokenizer("nucleotide").encode(seq2_tail).tolist()))
    assert result.stdout == f"id\tlength\tids\nseq1:1-8\t8\t6 5 6 8 5 7 8 7\nseq2:1581-1584\t4\t{expected_tail}\n"


def test_npz_round_trip_whole_genome(tmp_path, data_dir):
    out = tmp_path / "ce.npz"
    result = run(data_dir / "ce.fa", "-o", out)
    assert result.exit_code == 0, result.stderr
    data = load_tokenized(out)
    records = list(read_sequences(data_dir / "ce.fa"))
    assert data["names"].tolist() == [r.id for r in records]
    assert data["offsets"][-1] == 1_039_800
    assert np.diff(data["offsets"]).tolist() == [len(r.seq) for r in records]
    assert data["tokenizer"].name == "nucleotide"
    for i in (1, 6):
        assert data["tokenizer"].decode(data["ids"][data["offsets"][i] : data["offsets"][i + 1]]) == records[i].seq


def test_kmer_windows_and_format_option(tmp_path, data_dir):
    out = tmp_path / "windows.txt"
    result = run(
        data_dir / "ce.fa", "-r", "CHROMOSOME_IV:1-1,000", "--window", "400", "--stride", "300", "--last", "drop",
        "--tokenizer", "kmer:4", "--format", "tsv", "-o", out,
    )
    assert result.exit_code == 0, result.stderr
    lines = out.read_text().splitlines()
    assert [line.split("\t")[:2] for line in lines[1:]] == [
        ["CHROMOSOME_IV:1-400", "100"], ["CHROMOSOME_IV:301-700", "100"], ["CHROMOSOME_IV:601-1000", "100"],
    ]
    reference = pysam.FastaFile(str(data_dir / "ce.fa")).fetch("CHROMOSOME_IV", 300, 700)
    ids = np.array(lines[2].split("\t")[2].split(), dtype=np.int64)
    assert get_tokenizer("kmer:4").decode(ids) == reference


def test_bam_and_stdin_inputs(data_dir):
    result = run(data_dir / "ce_reads.bam", "-t", "nucleotide:softmask")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1001
    from_stdin = run("-", input=(data_dir / "ex1.fa").read_bytes())
    assert from_stdin.exit_code == 0, from_stdin.stderr
    assert [line.split("\t")[:2] for line in from_stdin.stdout.splitlines()] == [
        ["id", "length"], ["seq1", "1575"], ["seq2", "1584"],
    ]


def test_static_patcher_bed_stats_and_plot(tmp_path, data_dir):
    bed, stats, plot = tmp_path / "patches.bed", tmp_path / "stats.tsv", tmp_path / "patches.png"
    result = run(
        data_dir / "ex1.fa", "-r", "seq1:11-20", "-r", "seq2:1-9", "--patcher", "static:4",
        "-o", bed, "--stats", stats, "--plot", plot,
    )
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in bed.read_text().splitlines()]
    assert [r[:4] for r in rows] == [
        ["seq1", "10", "14", "0"], ["seq1", "14", "18", "1"], ["seq1", "18", "20", "2"],
        ["seq2", "0", "4", "0"], ["seq2", "4", "8", "1"], ["seq2", "8", "9", "2"],
    ]
    assert all(float(r[4]) == 0 for r in rows)
    table = [line.split("\t") for line in stats.read_text().splitlines()]
    assert table[0][:3] == ["contig", "units", "patches"]
    assert table[1][:3] == ["seq1", "10", "3"] and table[2][:3] == ["seq2", "9", "3"]
    assert table[3][:3] == ["all", "19", "6"]
    assert "seq1: 10 units, 3 patches" in result.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gz_outputs_are_compressed_and_bed_gz_is_indexed(tmp_path, data_dir):
    import gzip

    plain = run(data_dir / "ex1.fa", "--patcher", "static:4", "-o", tmp_path / "p.bed")
    packed = run(data_dir / "ex1.fa", "--patcher", "static:4", "-o", tmp_path / "p.bed.gz")
    assert plain.exit_code == 0 and packed.exit_code == 0, packed.stderr
    assert gzip.decompress((tmp_path / "p.bed.gz").read_bytes()) == (tmp_path / "p.bed").read_bytes()
    with pysam.TabixFile(str(tmp_path / "p.bed.gz")) as tabix:  # BGZF + .tbi: region queries work
        assert [row.split("\t")[:3] for row in tabix.fetch("seq2", 0, 6)] == [["seq2", "0", "4"], ["seq2", "4", "8"]]
    assert run(data_dir / "ex1.fa", "-o", tmp_path / "t.tsv").exit_code == 0
    assert run(data_dir / "ex1.fa", "-o", tmp_path / "t.tsv.gz").exit_code == 0
    assert gzip.decompress((tmp_path / "t.tsv.gz").read_bytes()) == (tmp_path / "t.tsv").read_bytes()
    # Regions given backwards: the rows still come out sorted, and indexed.
    result = run(data_dir / "ex1.fa", "-r", "seq1:21-40", "-r", "seq1:1-20", "--patcher", "static:4",
                 "-o", tmp_path / "p.bed.gz")
    assert result.exit_code == 0 and "no tabix index" not in result.stderr
    assert gzip.decompress((tmp_path / "p.bed.gz").read_bytes()).startswith(b"seq1\t0\t4\t")
    with pysam.TabixFile(str(tmp_path / "p.bed.gz")) as tabix:
        assert [row.split("\t")[1] for row in tabix.fetch("seq1", 18, 26)] == ["16", "20", "24"]


def test_static_patcher_on_windows_uses_genome_coordinates(data_dir):
    result = run(data_dir / "ce.fa", "-r", "CHROMOSOME_II:101-112", "-w", "6", "--patcher", "static:4")
    assert result.exit_code == 0, result.stderr
    assert [line.split("\t")[:4] for line in result.stdout.splitlines()] == [
        ["CHROMOSOME_II", "100", "104", "0"], ["CHROMOSOME_II", "104", "106", "1"],
        ["CHROMOSOME_II", "106", "110", "0"], ["CHROMOSOME_II", "110", "112", "1"],
    ]


def test_patch_bed_is_sorted_like_sort_k1_k2n(tmp_path, data_dir):
    """Records in input order zeta, alpha: rows come out by contig, then start (as classify's BED). Overlapping
    regions on one contig are merged row by row; the rows themselves are those of the input order."""
    fasta = tmp_path / "two.fa"
    fasta.write_text(">zeta\nACGTACGTAC\n>alpha\nGGGGCCCCAA\n")
    result = run(fasta, "--patcher", "static:4")
    assert result.exit_code == 0, result.stderr
    assert [line.split("\t")[:3] for line in result.stdout.splitlines()] == [
        ["alpha", "0", "4"], ["alpha", "4", "8"], ["alpha", "8", "10"],
        ["zeta", "0", "4"], ["zeta", "4", "8"], ["zeta", "8", "10"]]
    result = run(data_dir / "ce.fa", "-r", "CHROMOSOME_II:11-20", "-r", "CHROMOSOME_I:5-12", "-r", "CHROMOSOME_I:1-8",
                 "--patcher", "static:4")
    assert result.exit_code == 0, result.stderr
    assert [tuple(line.split("\t")[:4]) for line in result.stdout.splitlines()] == [
        ("CHROMOSOME_I", "0", "4", "0"), ("CHROMOSOME_I", "4", "8", "0"), ("CHROMOSOME_I", "4", "8", "1"),
        ("CHROMOSOME_I", "8", "12", "1"), ("CHROMOSOME_II", "10", "14", "0"), ("CHROMOSOME_II", "14", "18", "1"),
        ("CHROMOSOME_II", "18", "20", "2")]


@pytest.mark.parametrize(
    "args,message",
    [
        (["-o", "{tmp}/out.npz", "--patcher", "static:4"], "--patcher writes patch intervals as BED, not npz"),
        (["-o", "{tmp}/out.bed"], "BED output holds patch intervals"),
        (["-o", "{tmp}/out.tsv", "--stats", "{tmp}/s.tsv"], "--stats needs --patcher"),
        (["-o", "{tmp}/out.bed", "--patcher", "entropy"], "--patcher entropy needs --entropy-model"),
        (["-o", "{tmp}/out.tsv", "--tokenizer", "words"], "unknown tokenizer 'words'"),
        (["-o", "{tmp}/out.tsv", "--window", "0"], "--window must be at least 1"),
        (["-o", "{tmp}/out.xyz"], "cannot tell the output format of"),
        (["-o", "{tmp}/out.bed", "-t", "kmer:3", "--patcher", "static:4"], "--patcher needs one unit per character"),
        (["-o", "{tmp}/out.tsv", "-t", "byte", "--iupac", "error"],
         "--iupac error does not apply to the byte tokenizer (it reads every byte as it is)"),
    ],
)
def test_usage_errors(tmp_path, data_dir, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    result = run(data_dir / "ex1.fa", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("hyena-glt: error: ") and message in result.stderr
    assert list(tmp_path.iterdir()) == []


def _truncated_gzip(tmp: Path, data: Path) -> Path:
    packed = gzip.compress((data / "ce_reads.fastq").read_bytes())
    (tmp / "in" / "reads.fq.gz").write_bytes(packed[: len(packed) // 2])
    return tmp / "in" / "reads.fq.gz"


def _written(name: str, content: str | bytes):
    """A builder of the input file ``name`` holding ``content``."""
    def make(tmp: Path, data: Path) -> Path:
        path = tmp / "in" / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path
    return make


_bad_quality = _written("bad.fq", "@r1\nACGT\n+\nIIII\n@r2\nACGTA\n+\nIIII\n")
_bad_char = _written("bad.fa", ">x\nACGTAC\nGTAC*G\n")
_empty = _written("empty.fq", b"")
_unknown_format = _written("dev.csv", "name,label\nACGT,1\n")  # a table, but no 'sequence' column


def _cram(tmp: Path, data: Path) -> Path:
    cram = tmp / "in" / "reads.cram"
    pysam.view("-C", "-T", str(data / "ce.fa"), "-o", str(cram), str(data / "ce_reads.bam"), catch_stdout=False)
    return cram


_garbage = _written("garbage.bin", bytes([0x73, 0xF3, 0xB1, 0x91, 0x31, 0xF3, 0x0E, 0x81, 0x9D]) * 40)
_bad_sam = _written("bad.sam", "@SQ\tSN:x\tLN:10\nbad\tline\n")
_nameless = _written("noname.fa", ">\nACGT\n")
_duplicate = _written("dup.fa", ">dup\nACGTACGT\n>dup\nGGGGCCCC\n")


def _bed(tmp: Path, data: Path) -> Path:
    (tmp / "in" / "regions.bed").write_text("seq1\t0\t10\n\nseq2\t5\n")
    return tmp / "in" / "regions.bed"


@pytest.mark.parametrize(
    "make,extra,message",
    [
        (_unknown_format, [], "dev.csv: unknown format (not FASTA, FASTQ, SAM, BAM, CRAM, a CSV/TSV table with a "
                              "'sequence' column, or plain sequence, one per line; starts with 'name,label')"),
        (_truncated_gzip, [], "reads.fq.gz: truncated gzip file"),
        (_bad_quality, [], "bad.fq: record 'r2': quality length 4 differs from sequence length 5"),
        (_bad_char, [], "bad.fa: record 'x': invalid character '*' at position 11 (not in the nucleotide alphabet)"),
        (_empty, [], "empty.fq: empty file"),
        (_cram, [], "reads.cram: CRAM input needs its reference FASTA (--reference)"),
        (_garbage, [], "garbage.bin: unknown format (not FASTA, FASTQ, SAM, BAM, CRAM, a CSV/TSV table with a "
                       "'sequence' column, or plain sequence, one per line; binary data: 73 f3 b1 91 31 f3 0e 81 ...)"),
        (_bad_sam, [], "bad.sam: malformed SAM record at line 2 (after record 0)"),
        (_nameless, [], "noname.fa: record 1 has no name; NPZ output needs one"),
        (_duplicate, ["--region", "dup:1-4"], "dup.fa: record 'dup' appears twice (records 1 and 2); names must be "
                                               "unique in an indexed FASTA (its .fai index keeps only the first)"),
        (_duplicate, ["--window", "4"], "dup.fa: record 'dup' appears twice (records 1 and 2); names must be "
                                        "unique for windows"),
    ],
)
def test_bad_inputs(tmp_path, data_dir, make, extra, message):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    source = make(tmp_path, data_dir)
    result = run(source, *extra, "-o", tmp_path / "out" / "tokens.npz")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("hyena-glt: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1
    assert list((tmp_path / "out").iterdir()) == []
    assert [p.name for p in (tmp_path / "in").iterdir()] == [source.name]  # no .fai left behind either


@pytest.mark.parametrize(
    "extra,message",
    [
        (["-r", "seq2:1,500-1,600"], "ex1.fa: region 'seq2:1,500-1,600' ends at 1,600, past the end of contig 'seq2' (1,584 bp)"),
        (["-r", "chrM"], "ex1.fa: region 'chrM': unknown contig 'chrM' (contigs: seq1, seq2)"),
        (["--regions", "{bed}"], "regions.bed: line 3: malformed BED line"),
    ],
)
def test_bad_regions(tmp_path, data_dir, extra, message):
    (tmp_path / "in").mkdir()
    bed = _bed(tmp_path, data_dir)
    out = tmp_path / "tokens.tsv"
    result = run(data_dir / "ex1.fa", *[a.format(bed=bed) for a in extra], "-o", out)
    assert result.exit_code == 2 and message in result.stderr
    assert not out.exists()


def test_closed_pipe_exits_quietly(data_dir):
    command = [str(Path(sys.executable).parent / "hyena-glt"), "tokenize", str(data_dir / "ce.fa")]
    producer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-1"], stdin=producer.stdout, capture_output=True)
    producer.stdout.close()
    stderr = producer.stderr.read()
    assert producer.wait(timeout=60) == 0
    assert head.stdout == b"id\tlength\tids\n"
    assert stderr == b""


def test_record_without_sequence_is_skipped_with_a_warning(tmp_path):
    # as classify, embed and interpret do: no length-0 row
    path = tmp_path / "emptyrec.fa"
    path.write_text(">a\nACGTACGTAC\n>b\n\n>c\nACGT\n")
    result = run(path)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "id\tlength\tids\na\t10\t5 6 7 8 5 6 7 8 5 6\nc\t4\t5 6 7 8\n"
    assert result.stderr == f"hyena-glt: {path}: record 'b' has no sequence; skipped\n"
    npz = run(path, "-o", tmp_path / "e.npz")
    assert npz.exit_code == 0 and load_tokenized(tmp_path / "e.npz")["names"].tolist() == ["a", "c"]


def test_duplicate_names_keyed_outputs_refused_per_record_outputs_kept(tmp_path):
    dup = tmp_path / "dup.fa"
    dup.write_text(">dup\nACGTACGT\n>dup\nGGGGCCCC\n")
    per_record = run(dup)  # one row per record, in input order: both kept
    assert per_record.exit_code == 0 and per_record.stdout.splitlines()[1:] == [
        "dup\t8\t5 6 7 8 5 6 7 8", "dup\t8\t7 7 7 7 6 6 6 6"]
    out = tmp_path / "p.bed"
    patches = run(dup, "--patcher", "static:4", "-o", out)
    assert patches.exit_code == 2 and patches.stderr == (
        f"hyena-glt: error: {dup}: record 'dup' appears twice (records 1 and 2); names must be unique for BED output\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dup.fa"]


def test_iupac_keep_is_documented_as_the_same_ids_as_n(tmp_path):
    # No tokenizer has ids for ambiguity codes: keep and N read R/Y/k/m alike (N = 9; kmer:2 codes them as N).
    path = tmp_path / "iupac.fa"
    path.write_text(">a\nACRYGTkm\n")
    assert run(path).stdout == "id\tlength\tids\na\t8\t5 6 9 9 7 8 9 9\n"
    for extra in ([], ["-t", "kmer:2"]):
        assert run(path, "--iupac", "keep", *extra).stdout == run(path, "--iupac", "N", *extra).stdout
    help_text = " ".join(run("--help").stdout.split())
    assert "keep gives the same ids as N: no tokenizer has ids of its own for them" in help_text
    bad = run(path, "--iupac", "error")
    assert bad.exit_code == 2 and "record 'a': invalid character 'R' at position 3" in bad.stderr


def test_protein_stop_codon_is_accepted(tmp_path):
    path = tmp_path / "prot.fa"
    path.write_text(">p\nMKTAY*\n>q\nMK*B\n")
    result = run(path, "-t", "protein")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "id\tlength\tids\np\t6\t15 13 21 5 24 2\nq\t4\t15 13 2 25\n"
    # the reader's check (--iupac error, windows) accepts '*' too, and still rejects the ambiguity code B
    windows = run(path, "-t", "protein", "--window", "100")
    assert windows.exit_code == 0 and windows.stdout == result.stdout.replace("p\t", "p:1-6\t").replace("q\t", "q:1-4\t")
    strict = run(path, "-t", "protein", "--iupac", "error")
    assert strict.exit_code == 2 and "record 'q': invalid character 'B' at position 4" in strict.stderr


def test_empty_regions_bed_warns(tmp_path, data_dir):
    bed = tmp_path / "empty.bed"
    bed.write_text("")
    result = run(data_dir / "ex1.fa", "--regions", bed)
    assert result.exit_code == 0
    assert result.stdout == "id\tlength\tids\n" and result.stderr == f"hyena-glt: {bed}: no regions\n"
