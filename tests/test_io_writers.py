"""hyena_glt.io.writers: atomic outputs, npz, bgzip+tabix, token TSV/npz round trips."""

from __future__ import annotations

import gzip
import io
import os
import stat
import sys

import numpy as np
import pysam
import pytest

from hyena_glt.errors import InputError
from hyena_glt.io.sequences import read_sequences, sliding_windows
from hyena_glt.io.writers import (
    atomic_output,
    bed_output,
    bgzip_tabix,
    join_ints,
    load_tokenized,
    write_npz,
    write_tokenized,
)
from hyena_glt.tokenizers import get_tokenizer


def test_atomic_output_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.tsv"
    target.write_text("good\n")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "good\n"
    assert os.listdir(tmp_path) == ["out.tsv"]
    with atomic_output(target) as fh:
        fh.write("new\n")
    assert target.read_text() == "new\n"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_symbolic_link_keeps_pointing_at_the_new_file(tmp_path):
    (tmp_path / "real.tsv").write_text("old\n")
    (tmp_path / "link.tsv").symlink_to("real.tsv")
    with atomic_output(tmp_path / "link.tsv") as fh:
        fh.write("new\n")
    assert (tmp_path / "link.tsv").is_symlink() and (tmp_path / "real.tsv").read_text() == "new\n"
    write_npz(tmp_path / "link.tsv", {"a": np.arange(3)})
    assert (tmp_path / "link.tsv").is_symlink() and np.load(tmp_path / "real.tsv")["a"].tolist() == [0, 1, 2]


def test_pipes_and_devices_are_written_into_not_replaced(tmp_path):
    """`-o /dev/null`, `-o /dev/stdout` or a named pipe: renaming a temporary file onto them would replace
    the device (as root, /dev/null itself) or leave the pipe's reader waiting forever."""
    import threading

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_npz(fifo, {"a": np.arange(4)})
    reader.join(timeout=30)
    assert received, "the pipe was never written"
    assert np.load(io.BytesIO(received[0]))["a"].tolist() == [0, 1, 2, 3]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.listdir(tmp_path) == ["out.fifo"]
    with atomic_output(os.devnull) as fh:
        fh.write("nothing\n")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_join_ints_matches_str_join():
    values = np.array([0, 5, 9, 10, 99, 100, 12345, 7], dtype=np.int64)
    assert join_ints(values) == " ".join(map(str, values.tolist()))
    assert join_ints(np.array([], dtype=np.int64)) == ""
    assert join_ints(np.array([3, 4]), sep="\t") == "3\t4"


def test_write_npz_file_and_stdout(tmp_path, monkeypatch):
    arrays = {"a": np.arange(5), "names": np.array(["x", "yy"])}
    write_npz(tmp_path / "x.npz", arrays)
    with np.load(tmp_path / "x.npz") as data:
        assert data["a"].tolist() == [0, 1, 2, 3, 4] and data["names"].tolist() == ["x", "yy"]
    sink = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(sink))
    write_npz("-", arrays)
    with np.load(io.BytesIO(sink.getvalue())) as data:
        assert data["a"].tolist() == [0, 1, 2, 3, 4]


def test_bgzip_tabix_bed(tmp_path, data_dir):
    dest = bgzip_tabix(data_dir / "arabidopsis_chloroplast_genes.bed", tmp_path / "genes.bed.gz", "bed")
    assert dest.exists() and (tmp_path / "genes.bed.gz.tbi").exists()
    assert sorted(os.listdir(tmp_path)) == ["genes.bed.gz", "genes.bed.gz.tbi"]
    with pysam.TabixFile(str(dest)) as tabix:
        rows = list(tabix.fetch("NC_000932.1", 0, 100))
    assert rows == ["NC_000932.1\t3\t76\tgene:trnH\t0\t-", "NC_000932.1\t3\t76\ttRNA:trnH\t0\t-"]


def test_bed_gz_of_unsorted_rows_is_compressed_without_index(tmp_path, caplog):
    (tmp_path / "rows.bed.gz.tbi").write_text("stale")  # from an earlier, sorted run: must not survive
    with caplog.at_level("WARNING", logger="hyena_glt"):
        with bed_output(tmp_path / "rows.bed.gz") as fh:
            fh.write("chr1\t20\t24\n" "chr1\t0\t4\n")
    assert "not sorted by contig and start, so it has no tabix index" in caplog.text
    assert gzip.decompress((tmp_path / "rows.bed.gz").read_bytes()) == b"chr1\t20\t24\nchr1\t0\t4\n"
    assert sorted(os.listdir(tmp_path)) == ["rows.bed.gz"]


def test_tokenized_tsv_exact(tmp_path, data_dir):
    records = read_sequences(data_dir / "ex1.fa", regions=["seq1:1-8", "seq2:1,581-1,584"])
    count, units = write_tokenized(records, get_tokenizer("nucleotide"), tmp_path / "t.tsv", "tsv")
    assert (count, units) == (2, 12)
    assert (tmp_path / "t.tsv").read_text() == (
        "id\tlength\tids\nseq1:1-8\t8\t6 5 6 8 5 7 8 7\nseq2:1581-1584\t4\t" + " ".join(
            str(i) for i in get_tokenizer("nucleotide").encode(str(pysam.FastaFile(str(data_dir / "ex1.fa")).fetch("seq2", 1580, 1584)))
        ) + "\n"
    )


@pytest.mark.parametrize("spec", ["nucleotide", "kmer:4", "byte"])
def test_tokenized_npz_round_trip(tmp_path, data_dir, spec):
    tok = get_tokenizer(spec)
    windows = list(sliding_windows(read_sequences(data_dir / "ce.fa", regions=["CHROMOSOME_III:101-2,100"]), 700, last="pad"))
    write_tokenized(windows, tok, tmp_path / "t.npz", "npz")
    data = load_tokenized(tmp_path / "t.npz")
    assert data["tokenizer"] == tok and data["ids"].dtype == np.int64
    assert data["names"].tolist() == ["CHROMOSOME_III:101-800", "CHROMOSOME_III:801-1500", "CHROMOSOME_III:1501-2100"]
    assert data["starts"].tolist() == [100, 800, 1500] and data["ends"].tolist() == [800, 1500, 2100]
    assert data["contigs"].tolist() == ["CHROMOSOME_III"] * 3
    offsets = data["offsets"]
    for i, window in enumerate(windows):
        ids = data["ids"][offsets[i] : offsets[i + 1]]
        assert data["tokenizer"].decode(ids) == window.seq


def test_tokenized_npz_without_coordinates(tmp_path, data_dir):
    write_tokenized(read_sequences(data_dir / "ce_reads.fastq"), get_tokenizer("nucleotide"), tmp_path / "r.npz", "npz")
    data = load_tokenized(tmp_path / "r.npz")
    assert len(data["names"]) == 1000 and data["offsets"][-1] == 100_000
    assert "starts" not in data
    with np.load(tmp_path / "r.npz") as raw:
        assert raw["ids"].dtype == np.uint8


def test_load_tokenized_rejects_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    with pytest.raises(InputError, match="not a tokenized .npz file"):
        load_tokenized(tmp_path / "other.npz")
