"""hyena_glt.io.sequences on the real files of example_data/ (facts from ../shared/data/README.md)."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pysam
import pytest
from pyfaidx import Fasta

from hyena_glt.errors import InputError, UsageError
from hyena_glt.io.sequences import (
    SequenceRecord,
    check_names,
    drop_empty,
    quiet_htslib,
    read_many,
    read_sequences,
    reverse_complement,
    sliding_windows,
)

CE_LENGTHS = {
    "CHROMOSOME_I": 1_009_800,
    "CHROMOSOME_II": 5_000,
    "CHROMOSOME_III": 5_000,
    "CHROMOSOME_IV": 5_000,
    "CHROMOSOME_V": 5_000,
    "CHROMOSOME_X": 5_000,
    "CHROMOSOME_MtDNA": 5_000,
}


@pytest.fixture
def tmp_copy(tmp_path, data_dir):
    """Copy an example file into tmp_path (tests that build indexes must not write to example_data)."""

    def copy(name: str, new_name: str | None = None):
        dest = tmp_path / (new_name or name)
        shutil.copy(data_dir / name, dest)
        return dest

    return copy


def _bgzip(src, dest):
    pysam.tabix_compress(str(src), str(dest), force=True)
    return dest


def _gzip(src, dest):
    with open(src, "rb") as fin, gzip.open(dest, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dest


# ------------------------------------------------------------------------------------------ FASTA / FASTQ


def test_fasta_names_lengths_and_ends_match_pyfaidx(data_dir):
    records = list(read_sequences(data_dir / "ce.fa"))
    assert {r.id: len(r.seq) for r in records} == CE_LENGTHS
    assert [r.id for r in records] == list(CE_LENGTHS)
    reference = Fasta(str(data_dir / "ce.fa"))
    for record in records:
        assert record.seq[:10] == str(reference[record.id][:10])
        assert record.seq[-10:] == str(reference[record.id][-10:])
        assert record.qual is None and record.contig is None and record.start is None
    assert records[0].seq[:10] == "GCCTAAGCCT"
    assert records[-1].seq[-10:] == "GAGGTTTTGG"


def test_fasta_header_comment_is_the_description(data_dir):
    (orang,) = read_sequences(data_dir / "MT-orang.fa")
    assert orang.id == "MT_orang" and orang.description == "co:Z:comment"
    assert len(orang.seq) == 16_499


def test_soft_masked_base_is_kept(data_dir):
    (human,) = read_sequences(data_dir / "MT-human.fa", alphabet="dna")
    assert len(human.seq) == 16_569
    assert human.seq[3106] == "a"
    assert sum(c.islower() for c in human.seq) == 1


@pytest.mark.parametrize("compress", [_gzip, _bgzip])
def test_gzip_and_bgzf_detected_by_content_not_extension(tmp_path, data_dir, compress):
    packed = compress(data_dir / "lambda_virus.fa", tmp_path / "lambda.txt")
    (record,) = read_sequences(packed)
    (plain,) = read_sequences(data_dir / "lambda_virus.fa")
    assert record == plain
    assert record.id == "gi|9626243|ref|NC_001416.1|" and len(record.seq) == 48_502


def test_fastq_counts_lengths_and_qualities(data_dir):
    records = list(read_sequences(data_dir / "lambda_reads_1.fq"))
    assert len(records) == 10_000
    assert records[0].id == "r1" and records[-1].id == "r10000"
    lengths = [len(r.seq) for r in records]
    assert sum(lengths) == 1_088_399 and min(lengths) == 40 and max(lengths) == 354
    assert all(len(r.qual) == len(r.seq) for r in records)


def test_fastq_final_record_without_newline_is_kept(tmp_path, data_dir):
    text = (data_dir / "ce_reads.fastq").read_bytes().rstrip(b"\n")
    path = tmp_path / "no_final_newline.fq"
    path.write_bytes(text)
    records = list(read_sequences(path))
    expected = list(read_sequences(data_dir / "ce_reads.fastq"))
    assert len(records) == 1000 and records == expected


def test_stdin_gzip_fastq(monkeypatch, data_dir):
    packed = gzip.compress((data_dir / "ce_reads.fastq").read_bytes())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(packed)))
    records = list(read_sequences("-"))
    assert records == list(read_sequences(data_dir / "ce_reads.fastq"))


def test_stdin_bam(monkeypatch, data_dir):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((data_dir / "ex1.bam").read_bytes())))
    assert len(list(read_sequences("-"))) == 3307


def test_read_many_chains_inputs(data_dir):
    ids = [r.id for r in read_many([data_dir / "ex1.fa", data_dir / "MT-human.fa"])]
    assert ids == ["seq1", "seq2", "MT_human"]


# ------------------------------------------------------------------------------------------ SAM / BAM / CRAM


def test_bam_reads_come_back_as_sequenced(data_dir):
    fastq = {r.id: r for r in read_sequences(data_dir / "ce_reads.fastq")}
    reads = list(read_sequences(data_dir / "ce_reads.bam"))
    assert len(reads) == 1000
    assert sum(r.strand == "-" for r in reads) == 439 and sum(r.strand == "+" for r in reads) == 561
    for read in reads:
        assert (read.seq, read.qual) == (fastq[read.id].seq, fastq[read.id].qual)
    assert reads[0].description.startswith("CHROMOSOME_I:")


def test_bam_stored_orientation(data_dir):
    as_sequenced = list(read_sequences(data_dir / "ce_reads.bam"))
    stored = list(read_sequences(data_dir / "ce_reads.bam", stored_orientation=True))
    with pysam.AlignmentFile(str(data_dir / "ce_reads.bam")) as bam:
        assert [a.query_sequence for a in bam] == [r.seq for r in stored]
    flipped = sum(a.seq != b.seq for a, b in zip(as_sequenced, stored))
    assert flipped == 439
    for a, b in zip(as_sequenced, stored):
        if b.strand == "-":
            assert a.seq == reverse_complement(b.seq) and a.qual == b.qual[::-1]


def test_bam_includes_unmapped_reads(data_dir):
    reads = list(read_sequences(data_dir / "ex1.bam"))
    assert len(reads) == 3307
    unmapped = [r for r in reads if r.description.startswith("unmapped")]
    assert len(unmapped) == 36 and all(r.strand == "." for r in unmapped)
    assert sorted({len(r.seq) for r in reads}) == [33, 34, 35, 36, 40]


def test_sam_and_cram_match_bam(tmp_path, data_dir):
    sam = tmp_path / "reads.sam"
    pysam.view("-h", "-o", str(sam), str(data_dir / "ce_reads.bam"), catch_stdout=False)
    cram = tmp_path / "reads.cram"
    pysam.view("-C", "-T", str(data_dir / "ce.fa"), "-o", str(cram), str(data_dir / "ce_reads.bam"), catch_stdout=False)
    expected = list(read_sequences(data_dir / "ce_reads.bam"))
    assert list(read_sequences(sam)) == expected
    assert list(read_sequences(cram, reference=data_dir / "ce.fa")) == expected
    with pytest.raises(InputError, match=r"reads\.cram: CRAM input needs its reference FASTA \(reference\)"):
        list(read_sequences(cram))


# ------------------------------------------------------------------------------------------ regions


def test_region_strings_match_pyfaidx(data_dir):
    reference = Fasta(str(data_dir / "ce.fa"))
    (record,) = read_sequences(data_dir / "ce.fa", regions=["CHROMOSOME_I:1,001-2,000"])
    assert record.id == "CHROMOSOME_I:1001-2000"
    assert (record.contig, record.start, record.end) == ("CHROMOSOME_I", 1000, 2000)
    assert record.seq == str(reference["CHROMOSOME_I"][1000:2000]) and len(record.seq) == 1000
    whole, tail = read_sequences(data_dir / "ce.fa", regions=["CHROMOSOME_X", "CHROMOSOME_V:4,991"])
    assert (whole.id, whole.start, whole.end) == ("CHROMOSOME_X:1-5000", 0, 5000)
    assert whole.seq == str(reference["CHROMOSOME_X"][:])
    assert tail.id == "CHROMOSOME_V:4991-5000" and tail.seq == str(reference["CHROMOSOME_V"][4990:])


def test_region_builds_missing_fai_and_keeps_soft_mask(tmp_copy):
    fasta = tmp_copy("MT-human.fa")
    (record,) = read_sequences(fasta, regions=["MT_human:3,100-3,110"])
    assert fasta.with_suffix(".fa.fai").exists()
    assert record.seq == "TATCTACaTTC" and record.seq == str(Fasta(str(fasta))["MT_human"][3099:3110])


def test_region_of_bgzipped_fasta(tmp_path, data_dir):
    packed = _bgzip(data_dir / "ex1.fa", tmp_path / "ex1.fa.gz")
    (record,) = read_sequences(packed, regions=["seq2:101-150"])
    assert (tmp_path / "ex1.fa.gz.gzi").exists()
    assert record.seq == str(Fasta(str(data_dir / "ex1.fa"))["seq2"][100:150])


def test_bed_regions_match_pyfaidx(tmp_copy, data_dir):
    fasta = tmp_copy("arabidopsis_chloroplast.fa")
    records = list(read_sequences(fasta, regions_bed=data_dir / "arabidopsis_chloroplast_genes.bed"))
    assert len(records) == 262
    assert sum(r.strand == "+" for r in records) == 107 and sum(r.strand == "-" for r in records) == 155
    first = records[0]  # trnH is on the minus strand
    assert (first.id, first.contig, first.start, first.end) == ("NC_000932.1:4-76(-)", "NC_000932.1", 3, 76)
    assert first.description == "gene:trnH" and first.strand == "-"
    chloroplast = Fasta(str(fasta))["NC_000932.1"]
    for record in records:  # a minus-strand line reads the minus strand, as `bedtools getfasta -s` does
        forward = str(chloroplast[record.start : record.end])
        assert record.seq == (reverse_complement(forward) if record.strand == "-" else forward)


def test_windows_of_a_minus_strand_record_are_mirrored_onto_the_genome(tmp_copy):
    fasta = tmp_copy("arabidopsis_chloroplast.fa")
    genome = str(Fasta(str(fasta))["NC_000932.1"])
    bed = Path(fasta).parent / "one.bed"
    bed.write_text("NC_000932.1\t100\t250\tx\t0\t-\n")
    windows = list(sliding_windows(read_sequences(fasta, regions_bed=bed), 70, last="shift"))
    assert [(w.id, w.start, w.end, w.strand) for w in windows] == [
        ("NC_000932.1:181-250(-)", 180, 250, "-"), ("NC_000932.1:111-180(-)", 110, 180, "-"),
        ("NC_000932.1:101-170(-)", 100, 170, "-")]
    for w in windows:  # each window is the minus strand of exactly the span it names
        assert w.seq == reverse_complement(genome[w.start:w.end])


# ------------------------------------------------------------------------------------------ bad input


def test_empty_file(tmp_path):
    (tmp_path / "empty.fa").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.fa: empty file$"):
        list(read_sequences(tmp_path / "empty.fa"))


def test_unknown_format(data_dir):
    with pytest.raises(InputError, match=r"genes\.bed: unknown format \(not FASTA, FASTQ, SAM, BAM, CRAM, a "
                                         r"CSV/TSV table with a 'sequence' column"):
        list(read_sequences(data_dir / "arabidopsis_chloroplast_genes.bed"))


def test_tables_with_a_sequence_column(tmp_path, data_dir):
    # GUE's CSV (sequence,label): records row1.. in file order, the other columns in the description.
    csv_path = data_dir / "gue" / "mouse_2" / "dev.csv"
    rows = [line.split(",") for line in csv_path.read_text().splitlines()[1:]]
    records = list(read_sequences(csv_path, alphabet="dna"))
    assert [(r.id, r.seq, r.description) for r in records] == [
        (f"dev.csv:{line}", seq, f"label={label}") for line, (seq, label) in enumerate(rows, 2)]
    # TSV with an id column, gzipped, and from stdin
    table = "ID\tlabel\tsequence\nfirst\t1\tACGTN\nsecond\t0\tTTGCA\n"
    packed = tmp_path / "t.tsv.gz"
    packed.write_bytes(gzip.compress(table.encode()))
    assert [(r.id, r.seq) for r in read_sequences(packed)] == [("first", "ACGTN"), ("second", "TTGCA")]
    with pytest.raises(InputError, match=r"t\.csv: record 't\.csv:3': invalid character 'X' at position 3"):
        (tmp_path / "t.csv").write_text("sequence\nACGT\nACXT\n")
        list(read_sequences(tmp_path / "t.csv", alphabet="dna"))


def test_truncated_gzip(tmp_path, data_dir):
    packed = gzip.compress((data_dir / "ce_reads.fastq").read_bytes())
    path = tmp_path / "reads.fq.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(InputError, match=r"reads\.fq\.gz: truncated gzip file"):
        list(read_sequences(path))


def test_truncated_gzip_on_stdin(monkeypatch, data_dir):
    packed = gzip.compress((data_dir / "MT-human.fa").read_bytes())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(packed[:500])))
    with pytest.raises(InputError, match=r"^stdin: truncated gzip stream or malformed FASTA after record 0"):
        list(read_sequences("-"))


def test_fastq_quality_length_mismatch(tmp_path, data_dir):
    lines = (data_dir / "ce_reads.fastq").read_text().splitlines()
    lines[4 * 2 + 3] = lines[4 * 2 + 3][:-1]  # third read loses one quality value
    path = tmp_path / "bad.fq"
    path.write_text("\n".join(lines) + "\n")
    name = lines[8][1:].split()[0]
    with pytest.raises(InputError, match=rf"bad\.fq: record '{name}': quality length 99 differs from sequence length 100"):
        list(read_sequences(path))


def test_fastq_missing_quality_is_not_accepted(tmp_path):
    path = tmp_path / "cut.fq"
    path.write_text("@r1\nACGT\n+\nIIII\n@r2\nACGT\n")
    with pytest.raises(InputError, match=r"record 'r2': FASTQ record without '\+' line or quality"):
        list(read_sequences(path))


def test_bad_alphabet_character_names_first_position(tmp_path):
    path = tmp_path / "bad.fa"
    path.write_text(">ok\nACGT\n>broken desc\nACGTNNAC\nGT-ACX\n")
    with pytest.raises(InputError, match=r"bad\.fa: record 'broken': invalid character '-' at position 11 \(not in the dna alphabet\)"):
        list(read_sequences(path, alphabet="dna"))
    assert [r.seq for r in read_sequences(path)][1] == "ACGTNNACGT-ACX"  # no alphabet: no check


def test_iupac_policies(tmp_path):
    path = tmp_path / "iupac.fa"
    path.write_text(">a\nACRYGTkm\n")
    assert next(read_sequences(path, alphabet="dna")).seq == "ACNNGTnn"
    assert next(read_sequences(path, alphabet="dna", iupac="keep")).seq == "ACRYGTkm"
    with pytest.raises(InputError, match="invalid character 'R' at position 3"):
        list(read_sequences(path, alphabet="dna", iupac="error"))
    rna = tmp_path / "rna.fa"
    rna.write_text(">r\nACGUUN\n")
    assert next(read_sequences(rna, alphabet="rna")).seq == "ACGUUN"
    with pytest.raises(InputError, match="invalid character 'U' at position 4"):
        list(read_sequences(rna, alphabet="dna"))
    protein = tmp_path / "p.fa"
    protein.write_text(">p\nMKVBZLX\n")
    assert next(read_sequences(protein, alphabet="protein")).seq == "MKVXXLX"


def test_region_outside_contig(data_dir):
    with pytest.raises(InputError, match=r"ex1\.fa: region 'seq1:1,500-1,600' ends at 1,600, past the end of contig 'seq1' \(1,575 bp\)"):
        list(read_sequences(data_dir / "ex1.fa", regions=["seq1:1,500-1,600"]))


def test_unknown_contig(data_dir):
    with pytest.raises(InputError, match=r"ex1\.fa: region 'chr1:1-10': unknown contig 'chr1' \(contigs: seq1, seq2\)"):
        list(read_sequences(data_dir / "ex1.fa", regions=["chr1:1-10"]))


def test_malformed_bed_line_number(tmp_path, data_dir):
    bed = tmp_path / "r.bed"
    bed.write_text("# comment\nseq1\t0\t10\nseq2\tten\t20\n")
    with pytest.raises(InputError, match=r"r\.bed: line 3: malformed BED line"):
        list(read_sequences(data_dir / "ex1.fa", regions_bed=bed))
    bed.write_text("seq1\t0\t10\nseq2\t0\t9999\n")
    with pytest.raises(InputError, match=r"r\.bed: line 2: region seq2:1-9999 is outside contig 'seq2'"):
        list(read_sequences(data_dir / "ex1.fa", regions_bed=bed))


def test_regions_need_an_indexable_fasta(tmp_path, data_dir):
    packed = _gzip(data_dir / "ex1.fa", tmp_path / "ex1.fa.gz")
    with pytest.raises(InputError, match="plain-gzip FASTA"):
        list(read_sequences(packed, regions=["seq1"]))
    with pytest.raises(UsageError):
        list(read_sequences("-", regions=["seq1"]))


def test_bam_regions_are_the_reads_overlapping_them(tmp_path, data_dir):
    # ex1.bam: 3,307 paired reads on seq1/seq2; pysam's fetch is the reference (as `samtools view FILE REGION`).
    bam = data_dir / "ex1.bam"
    with pysam.AlignmentFile(str(bam)) as handle:
        want = [a.query_name for a in handle.fetch("seq2", 99, 400) if not (a.is_secondary or a.is_supplementary)]
        want += [a.query_name for a in handle.fetch("seq1", 0, 50) if not (a.is_secondary or a.is_supplementary)]
    bed = tmp_path / "r.bed"
    bed.write_text("seq1\t0\t50\n")
    got = [r.id for r in read_sequences(bam, regions=["seq2:100-400"], regions_bed=bed)]
    assert got == want and len(got) > 100
    full = {r.id + r.description: r.seq for r in read_sequences(bam)}
    for record in read_sequences(bam, regions=["seq2:100-400"]):  # same reads, same orientation
        assert full[record.id + record.description] == record.seq
    with pytest.raises(InputError, match=r"ex1\.bam: region 'seq3:1-10': unknown contig 'seq3'"):
        list(read_sequences(bam, regions=["seq3:1-10"]))
    with pytest.raises(InputError, match=r"region 'seq1:x-y': bad coordinates 'x-y'"):
        list(read_sequences(bam, regions=["seq1:x-y"]))
    unindexed = tmp_path / "ex1.bam"
    shutil.copy(bam, unindexed)
    with pytest.raises(InputError, match=r"ex1\.bam: regions of reads need an indexed BAM/CRAM \(no index found"):
        list(read_sequences(unindexed, regions=["seq1"]))


def test_missing_file():
    with pytest.raises(InputError, match=r"nope\.fa: no such file"):
        list(read_sequences("nope.fa"))


# ------------------------------------------------------------------------------------------ windows


def _windows(length, window, stride, last, start=None):
    record = SequenceRecord("r", "ACGTACGTAC"[:length] if length <= 10 else "A" * length, contig=None, start=start)
    return [(w.start, w.end) for w in sliding_windows([record], window, stride, last)]


def test_window_policies():
    assert _windows(10, 4, 3, "shift") == [(0, 4), (3, 7), (6, 10)]
    assert _windows(10, 4, 4, "shift") == [(0, 4), (4, 8), (6, 10)]
    assert _windows(10, 4, 4, "pad") == [(0, 4), (4, 8), (8, 10)]
    assert _windows(10, 4, 4, "drop") == [(0, 4), (4, 8)]
    assert _windows(10, 3, 5, "pad") == [(0, 3), (5, 8)]  # gap reaches the end: no tail
    assert _windows(3, 4, 2, "drop") == [(0, 3)]  # a short record is one window whatever the policy
    assert _windows(8, 4, 2, "shift") == [(0, 4), (2, 6), (4, 8)]


def test_windows_carry_genome_coordinates(data_dir):
    reference = Fasta(str(data_dir / "ce.fa"))
    regions = list(read_sequences(data_dir / "ce.fa", regions=["CHROMOSOME_II:1,001-2,000"]))
    windows = list(sliding_windows(regions, 300, 250, "shift"))
    assert [w.id for w in windows] == [
        "CHROMOSOME_II:1001-1300",
        "CHROMOSOME_II:1251-1550",
        "CHROMOSOME_II:1501-1800",
        "CHROMOSOME_II:1701-2000",
    ]
    for w in windows:
        assert w.contig == "CHROMOSOME_II" and w.seq == str(reference["CHROMOSOME_II"][w.start : w.end])
    fastq = next(read_sequences(data_dir / "ce_reads.fastq"))
    pieces = list(sliding_windows([fastq], 40, last="pad"))
    assert [(p.contig, p.start, p.end) for p in pieces] == [(fastq.id, 0, 40), (fastq.id, 40, 80), (fastq.id, 80, 100)]
    assert "".join(p.qual for p in pieces) == fastq.qual


def test_window_option_errors():
    with pytest.raises(UsageError, match="^window must be at least 1"):
        list(sliding_windows([SequenceRecord("r", "ACGT")], 0))
    with pytest.raises(UsageError, match="unknown last-window policy 'fill'"):
        list(sliding_windows([SequenceRecord("r", "ACGT")], 2, last="fill"))


def test_reverse_complement(data_dir):
    assert reverse_complement("AACGTNRYacgtn") == "nacgtRYNACGTT"
    sequence = next(read_sequences(data_dir / "lambda_virus.fa")).seq
    assert reverse_complement(reverse_complement(sequence)) == sequence


# ------------------------------------------------------------------------------------------ record names


def test_records_know_their_file_and_number(tmp_path, data_dir):
    records = list(read_many([data_dir / "ex1.fa", data_dir / "MT-human.fa"]))
    assert [(r.id, r.source, r.number) for r in records] == [
        ("seq1", str(data_dir / "ex1.fa"), 1), ("seq2", str(data_dir / "ex1.fa"), 2),
        ("MT_human", str(data_dir / "MT-human.fa"), 1)]
    assert records[0] == SequenceRecord("seq1", records[0].seq, description=records[0].description)  # not compared
    windows = list(sliding_windows(records[1:2], 1000))
    assert {(w.source, w.number) for w in windows} == {(str(data_dir / "ex1.fa"), 2)}
    # a table row with an empty id cell is named FILE:LINE, as rows of a table without an id column are
    (tmp_path / "t.csv").write_text("id,sequence\nfirst,ACGT\n,GGCC\n")
    assert [(r.id, r.number) for r in read_sequences(tmp_path / "t.csv")] == [("first", 1), ("t.csv:3", 2)]


def test_duplicate_names_are_refused_where_names_key_the_output(tmp_path, data_dir):
    dup = tmp_path / "dup.fa"
    dup.write_text(">chrA\nACGTACGT\n>chrB\nGGGG\n>chrA desc\nTTTT\n")
    with pytest.raises(InputError) as err:
        list(check_names(read_sequences(dup), "BED output", unique=True))
    assert str(err.value) == f"{dup}: record 'chrA' appears twice (records 1 and 3); names must be unique for BED output"
    # streamed: the records before the second 'chrA' pass, nothing is read twice
    stream = check_names(read_sequences(dup), "BED output", unique=True)
    assert [next(stream).id, next(stream).id] == ["chrA", "chrB"]
    # per-record outputs keep both (the mates of a read pair share a name)
    assert [r.id for r in check_names(read_sequences(dup), "TSV output")] == ["chrA", "chrB", "chrA"]
    # across inputs, both files are named
    other = tmp_path / "other.fa"
    other.write_text(">chrC\nAC\n>chrB\nAC\n")
    with pytest.raises(InputError) as err:
        list(check_names(read_many([other, dup]), "windows", unique=True))
    assert str(err.value) == (f"{dup}: record 'chrB' appears twice (record 2 of {other} and record 2 of {dup}); "
                              "names must be unique for windows")
    # records with coordinates (regions) are keyed by those: the same region twice is allowed
    twice = list(check_names(read_sequences(data_dir / "ex1.fa", regions=["seq1:1-10", "seq1:1-10"]), "BED output",
                             unique=True))
    assert [r.id for r in twice] == ["seq1:1-10", "seq1:1-10"]
    # a record with no sequence produces no rows: skipped by every command, so not checked either
    empty_dup = tmp_path / "empty_dup.fa"
    empty_dup.write_text(">a\nACGT\n>a\n")
    assert len(list(check_names(read_sequences(empty_dup), "BED output", unique=True))) == 2


def test_a_record_without_a_name_is_refused(tmp_path):
    nameless = tmp_path / "noname.fa"
    nameless.write_text(">a\nACGT\n>\nACGTACGT\n")
    assert [r.id for r in read_sequences(nameless)] == ["a", ""]  # the reader itself reports what is there
    for output, unique in (("BED output", True), ("TSV output", False)):
        with pytest.raises(InputError) as err:
            list(check_names(read_sequences(nameless), output, unique=unique))
        assert str(err.value) == f"{nameless}: record 2 has no name; {output} needs one"


def test_records_without_sequence_are_skipped_with_a_warning_naming_them(tmp_path, caplog):
    path = tmp_path / "emptyrec.fa"
    path.write_text(">a\nACGT\n>b\n>c\nAC\n")
    with caplog.at_level("WARNING", logger="hyena_glt"):
        assert [r.id for r in drop_empty(read_sequences(path))] == ["a", "c"]
    assert caplog.messages == [f"{path}: record 'b' has no sequence; skipped"]
    caplog.clear()
    path.write_text(">a\n>b\nAC\n>c\n")
    with caplog.at_level("WARNING", logger="hyena_glt"):
        assert [r.id for r in drop_empty(read_sequences(path))] == ["b"]
    assert caplog.messages == [f"skipped 2 records with no sequence (the first: {path}: record 'a')"]


@pytest.mark.parametrize("compress", [False, True])
def test_region_of_a_fasta_with_duplicate_names_is_refused_and_no_index_left(tmp_path, compress):
    # htslib's faidx keeps the first 'a' and drops the second with only a warning; so does `samtools faidx`.
    # Records with no sequence ('b') are left out of the index too, and still counted.
    plain = tmp_path / "dup.fa"
    plain.write_text(">a\nACGTAC\nACGTAC\nAC\n>b\n\n>c\nGG\n>a second\nTTTTTT\nTT\n")
    path = _bgzip(plain, tmp_path / "dup.fa.gz") if compress else plain
    message = (f"{path}: record 'a' appears twice (records 1 and 4); names must be unique in an indexed FASTA "
               "(its .fai index keeps only the first)")
    with pytest.raises(InputError) as err:
        list(read_sequences(path, regions=["c:1-2"]))
    assert str(err.value) == message
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["dup.fa"] + (["dup.fa.gz"] if compress else []))
    # an index made earlier (samtools faidx) is checked too, and left where it was
    with quiet_htslib():
        pysam.faidx(str(path))
    with pytest.raises(InputError) as err:
        list(read_sequences(path, regions=["c:1-2"]))
    assert str(err.value) == message and Path(f"{path}.fai").exists()
    # unique names: regions read as before, records with no sequence and CRLF lines included
    good = tmp_path / "good.fa"
    good.write_bytes(b">a desc\r\nACGT\r\nAC\r\n>e\r\n>b\r\nGGCC\r\n")
    assert [r.seq for r in read_sequences(good, regions=["a:5-6", "b"])] == ["AC", "GGCC"]


def test_bgzipped_fasta_with_an_earlier_index_is_checked_across_blocks(tmp_path, data_dir):
    # ce.fa (1 MB: 16 BGZF blocks) with its CHROMOSOME_V again at the end, indexed by samtools faidx first
    # (which keeps the first CHROMOSOME_V): the names are read between records through the .gzi block index.
    records = list(read_sequences(data_dir / "ce.fa"))
    plain = tmp_path / "ce_dup.fa"
    plain.write_text("".join(f">{r.id}\n{r.seq}\n" for r in [*records, records[4]]))
    path = _bgzip(plain, tmp_path / "ce_dup.fa.gz")
    with quiet_htslib():
        pysam.faidx(str(path))
    assert np.fromfile(f"{path}.gzi", dtype="<u8")[0] >= 15  # blocks after the first
    with pytest.raises(InputError) as err:
        list(read_sequences(path, regions=["CHROMOSOME_II:1-10"]))
    assert str(err.value) == (f"{path}: record 'CHROMOSOME_V' appears twice (records 5 and 8); names must be unique "
                              "in an indexed FASTA (its .fai index keeps only the first)")
    # without the duplicate the same check passes, and regions read the bgzipped file as the plain one
    good = _bgzip(data_dir / "ce.fa", tmp_path / "ce.fa.gz")
    with quiet_htslib():
        pysam.faidx(str(good))
    got = [r.seq for r in read_sequences(good, regions=["CHROMOSOME_X:101-160", "CHROMOSOME_I:1,000,001-1,000,050"])]
    assert got == [records[5].seq[100:160], records[0].seq[1_000_000:1_000_050]]


def test_region_in_a_damaged_bgzf_block_is_one_clear_error(tmp_path, data_dir):
    path = _bgzip(data_dir / "ce.fa", tmp_path / "ce.fa.gz")
    with quiet_htslib():
        pysam.faidx(str(path))
    data = bytearray(path.read_bytes())
    data[300_000:300_064] = b"x" * 64  # inside the block of CHROMOSOME_I's bases near 1,000,000
    path.write_bytes(bytes(data))
    for index in (".fai", ".gzi"):  # damage (a disk error) leaves the index no older than the file
        os.utime(f"{path}{index}", (path.stat().st_mtime + 1,) * 2)
    assert [r.seq for r in read_sequences(path, regions=["CHROMOSOME_I:1-8"])] == ["GCCTAAGC"]  # an intact block
    with pytest.raises(InputError) as err:
        list(read_sequences(path, regions=["CHROMOSOME_I:101-110", "CHROMOSOME_I:1,000,001-1,000,050"]))
    assert str(err.value) == (f"{path}: region CHROMOSOME_I:1000001-1000050: cannot read its sequence (damaged data, "
                              "or a file changed after indexing? check it with `gzip -t`, rebuild the index with "
                              "samtools faidx)")
    # read whole, the damage is named as such (it was "malformed FASTA after record 0")
    with pytest.raises(InputError, match=r"ce\.fa\.gz: corrupt gzip data \((CRC check failed|Error -3).*\)$"):
        list(read_sequences(path))


def test_malformed_sam_is_named_by_line_not_called_truncated(tmp_path, data_dir):
    bad = tmp_path / "bad.sam"
    bad.write_text("@SQ\tSN:x\tLN:10\nbad\tline\n")
    with pytest.raises(InputError) as err:
        list(read_sequences(bad))
    assert str(err.value) == f"{bad}: malformed SAM record at line 2 (after record 0)"
    bad.write_text("@HD\tVN:1.6\n@SQ\tSN:x\tLN:10\nr1\t4\t*\t0\t0\t*\t*\t0\t0\tACGT\tIIII\nr2\t4\t*\t0\tx\n")
    with pytest.raises(InputError) as err:
        list(read_sequences(bad))
    assert str(err.value) == f"{bad}: malformed SAM record at line 4 (after record 1)"
    # a gzip-compressed SAM that really ends early is called truncated
    sam = tmp_path / "reads.sam"
    pysam.view("-h", "-o", str(sam), str(data_dir / "ex1.bam"), catch_stdout=False)
    packed = gzip.compress(sam.read_bytes())
    cut = tmp_path / "cut.sam.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(InputError) as err:
        list(read_sequences(cut))
    assert str(err.value) == f"{cut}: truncated gzip file (unexpected end of compressed data)"
    # a truncated BAM is still reported as truncated
    bam = tmp_path / "cut.bam"
    bam.write_bytes((data_dir / "ex1.bam").read_bytes()[:20000])
    with pytest.raises(InputError, match=r"cut\.bam: cannot read BAM after record 0 \(.*truncated"):
        list(read_sequences(bam))


def test_unknown_binary_format_is_shown_as_hex_not_raw_bytes(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes([0x73, 0xF3, 0xB1, 0x91, 0x31, 0xF3, 0x0E, 0x81, 0x9D, 0xFF]) * 5)
    with pytest.raises(InputError) as err:
        list(read_sequences(garbage))
    assert str(err.value) == (f"{garbage}: unknown format (not FASTA, FASTQ, SAM, BAM, CRAM, a CSV/TSV table with a "
                              "'sequence' column, or plain sequence, one per line; binary data: 73 f3 b1 91 31 f3 0e 81 ...)")
    text = tmp_path / "notes.txt"
    text.write_text("héllo wörld\tx\nmore\n")
    with pytest.raises(InputError, match=r"notes\.txt: unknown format \(.*; starts with 'héllo wörld\\tx'\)$"):
        list(read_sequences(text))
    import bz2

    packed = tmp_path / "x.fa.bz2"
    packed.write_bytes(bz2.compress(b">a\nACGT\n"))
    with pytest.raises(InputError) as err:
        list(read_sequences(packed))
    assert str(err.value) == f"{packed}: unknown format: bzip2-compressed (decompress it, or recompress it with gzip or bgzip)"


def test_empty_bed_of_regions_warns(tmp_path, data_dir, caplog):
    bed = tmp_path / "empty.bed"
    bed.write_text("# nothing here\ntrack name=x\n")
    with caplog.at_level("WARNING", logger="hyena_glt"):
        assert list(read_sequences(data_dir / "ex1.fa", regions_bed=bed)) == []
    assert caplog.messages == [f"{bed}: no regions"]


def test_zero_length_bed_intervals_are_skipped_with_one_warning(tmp_path, data_dir, caplog):
    """start = end is valid BED (an insertion point) but holds no bases: skipped and counted, not an error;
    start > end is an error."""
    bed = tmp_path / "points.bed"
    bed.write_text("seq1\t5\t5\tins1\nseq1\t0\t4\ta\nseq2\t7\t7\tins2\nseq2\t2\t6\tb\t0\t-\n")
    with caplog.at_level("WARNING", logger="hyena_glt"):
        got = [(r.id, r.seq, r.description) for r in read_sequences(data_dir / "ex1.fa", regions_bed=bed)]
    assert got == [("seq1:1-4", "CACT", "a"), ("seq2:3-6(-)", "TTTG", "b")]
    assert caplog.messages == [f"{bed}: skipped 2 zero-length interval(s) (start = end: no bases to read; the "
                               "first on line 1)"]
    bed.write_text("seq1\t5\t5\n")
    caplog.clear()
    with caplog.at_level("WARNING", logger="hyena_glt"):
        assert list(read_sequences(data_dir / "ex1.fa", regions_bed=bed)) == []
    assert caplog.messages[-1] == f"{bed}: no regions"
    bed.write_text("seq1\t5\t4\n")
    with pytest.raises(InputError, match=r"points\.bed: line 1: BED start must be >= 0 and <= end \(got 5, 4\)"):
        list(read_sequences(data_dir / "ex1.fa", regions_bed=bed))


# ------------------------------------------------------------------------------------------ streams read once


def _fifo_fed(tmp_path, data: bytes, name: str = "fifo"):
    """A named pipe and a thread writing ``data`` into it (the writer blocks until a reader opens it)."""
    fifo = tmp_path / name
    os.mkfifo(fifo)

    def write():
        with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as sink:
            sink.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return fifo, thread


def test_fifo_is_read_once_and_every_record_arrives(tmp_path, data_dir):
    fifo, writer = _fifo_fed(tmp_path, (data_dir / "ce.fa").read_bytes())
    records = list(read_sequences(fifo))  # was: CHROMOSOME_I (the first 64 KiB, sniffed) lost, or a hang
    writer.join(5)
    assert {r.id: len(r.seq) for r in records} == CE_LENGTHS
    assert records[0].seq[:10] == "GCCTAAGCCT" and records[0].source == str(fifo)


def test_gzip_fastq_and_bam_from_a_fifo(tmp_path, data_dir):
    fastq = (data_dir / "ce_reads.fastq").read_bytes()
    expected = list(read_sequences(data_dir / "ce_reads.fastq"))
    fifo, writer = _fifo_fed(tmp_path, gzip.compress(fastq), "fq")
    assert [(r.id, r.seq, r.qual) for r in read_sequences(fifo)] == [(r.id, r.seq, r.qual) for r in expected]
    writer.join(5)
    fifo, writer = _fifo_fed(tmp_path, (data_dir / "ex1.bam").read_bytes(), "bam")
    assert len(list(read_sequences(fifo))) == len(list(read_sequences(data_dir / "ex1.bam")))
    writer.join(5)


def test_dev_stdin_on_a_pipe_gives_every_record(tmp_path):
    data = b"".join(b">r%d\n%s\n" % (i, b"ACGT" * 75) for i in range(3000))  # 900 kB: many pipe buffers
    script = ("from hyena_glt.io.sequences import read_sequences\n"
              "records = list(read_sequences('/dev/stdin'))\n"
              "print(len(records), records[0].id, records[-1].id, {len(r.seq) for r in records})")
    done = subprocess.run([sys.executable, "-c", script], input=data, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["3000", "r0", "r2999", "{300}"]


def test_bed_regions_from_a_fifo(tmp_path, data_dir):
    fifo, writer = _fifo_fed(tmp_path, b"seq1\t0\t10\nseq2\t5\t9\t\t0\t-\n", "regions.bed")
    records = list(read_sequences(data_dir / "ex1.fa", regions_bed=fifo))  # was: "no such file (BED regions)"
    writer.join(5)
    genome = Fasta(str(data_dir / "ex1.fa"))
    assert [(r.id, r.seq) for r in records] == [
        ("seq1:1-10", str(genome["seq1"][0:10])),
        ("seq2:6-9(-)", reverse_complement(str(genome["seq2"][5:9]))),
    ]


def test_regions_of_a_fifo_are_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "nobody_writes"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"nobody_writes: regions/regions_bed need an indexed FASTA, BAM or CRAM "
                                         r"file, not a pipe or other stream"):
        list(read_sequences(fifo, regions=["seq1:1-10"]))


# ------------------------------------------------------------------------------------------ bytes pysam misreads


@pytest.mark.parametrize("through_fifo", [False, True])
@pytest.mark.parametrize("content, problem", [
    (b">a\rACGT\rGGCC\r>b\rTTTT\r",
     "record 'a': line breaks are carriage returns only (old Mac format): convert with `tr '\\r' '\\n'`"),
    (b">a\nACGT\n>b\rGGGG\n>c\nTT\n", "record 'b': invalid character carriage return (\\r) in a header line"),
    (b">a\nAC\rGT\n", "record 'a': invalid character carriage return (\\r) at position 3"),
    (b">a\nACGT\n>b\nAC\x00GT\n", "record 'b': invalid character NUL (\\x00) at position 3"),
    (b">a\nACGT\nAC\nG\x00T\n", "record 'a': invalid character NUL (\\x00) at position 8"),
    (b"@a\nAC\x00GT\n+\nIIIII\n", "record 'a': invalid character NUL (\\x00) at position 3"),
])
def test_nul_and_lone_carriage_returns_are_named_not_dropped(tmp_path, content, problem, through_fifo):
    path = tmp_path / "bad.fa"
    if through_fifo:
        path, _ = _fifo_fed(tmp_path, content)
    else:
        path.write_bytes(content)
    with pytest.raises(InputError) as err:
        list(read_sequences(path))
    assert str(err.value) == f"{path}: {problem}"


def test_a_byte_order_mark_before_fasta_or_fastq_is_skipped_where_it_can_be(tmp_path):
    fasta, fastq = b"\xef\xbb\xbf>a x\nACGT\n>b\nGG\n", b"\xef\xbb\xbf@r1\nACGT\n+\nIIII\n"
    (tmp_path / "bom.fa").write_bytes(fasta)
    (tmp_path / "bom.fq").write_bytes(fastq)
    expected = [("a", "ACGT", "x"), ("b", "GG", "")]
    assert [(r.id, r.seq, r.description) for r in read_sequences(tmp_path / "bom.fa")] == expected
    fifo, _ = _fifo_fed(tmp_path, fasta)
    assert [(r.id, r.seq, r.description) for r in read_sequences(fifo)] == expected
    assert [(r.id, r.qual) for r in read_sequences(tmp_path / "bom.fq")] == [("r1", "IIII")]
    # compressed text and indexed regions go to htslib as they are: a clear error with the fix instead
    (tmp_path / "bom.fa.gz").write_bytes(gzip.compress(fasta))
    with pytest.raises(InputError, match=r"bom\.fa\.gz: starts with a UTF-8 byte-order mark \(BOM\); remove it: zcat"):
        list(read_sequences(tmp_path / "bom.fa.gz"))
    with pytest.raises(InputError, match=r"bom\.fa: starts with a UTF-8 byte-order mark \(BOM\); remove it: sed -i"):
        list(read_sequences(tmp_path / "bom.fa", regions=["a:1-2"]))
    assert not (tmp_path / "bom.fa.fai").exists()


def test_crlf_line_breaks_still_read(tmp_path):
    path = tmp_path / "crlf.fa"
    path.write_bytes(b">a x\r\nACGT\r\nGG\r\n>c\r\nTT\r\n")
    assert [(r.id, r.seq, r.description) for r in read_sequences(path)] == [("a", "ACGTGG", "x"), ("c", "TT", "")]


def test_trailing_blanks_on_sequence_lines_are_stripped_blanks_inside_are_not(tmp_path):
    path = tmp_path / "blanks.fa"
    path.write_bytes(b">a first\nACGT\n>b\nACGT  \nGG\t\n>c\nTT \r\n")
    expected = [("a", "ACGT"), ("b", "ACGTGG"), ("c", "TT")]
    assert [(r.id, r.seq) for r in read_sequences(path, alphabet="dna")] == expected
    assert [r.number for r in read_sequences(path)] == [1, 2, 3]
    fifo, _ = _fifo_fed(tmp_path, path.read_bytes())
    assert [(r.id, r.seq) for r in read_sequences(fifo, alphabet="dna")] == expected
    path.write_bytes(b">a\nACGT\n>b\nAC GT\n")
    with pytest.raises(InputError, match=r"blanks\.fa: record 'b': invalid character ' ' at position 3"):
        list(read_sequences(path, alphabet="dna"))


# ------------------------------------------------------------------------------------------ index problems


def _two_contigs(path, first: str, second: str) -> None:
    path.write_text("".join(f">{name}\n" + "".join(seq[i:i + 60] + "\n" for i in range(0, len(seq), 60))
                            for name, seq in (("c1", first), ("c2", second))))


def test_an_index_older_than_the_fasta_is_rebuilt(tmp_path, caplog):
    rng = np.random.default_rng(5)
    c1, extra, c2 = ("".join(rng.choice(list("ACGT"), n)) for n in (600, 120, 600))
    path = tmp_path / "st.fa"
    _two_contigs(path, c1, c2)
    pysam.faidx(str(path))
    _two_contigs(path, c1 + extra, c2)  # two more lines in c1: the old index points c2 into c1
    old = path.stat().st_mtime - 3600
    os.utime(f"{path}.fai", (old, old))
    assert [r.seq for r in read_sequences(path, regions=["c2:1-20"])] == [c2[:20]]
    assert "st.fa: its .fai index was older than the file (changed after indexing?); rebuilt" in caplog.text
    assert Path(f"{path}.fai").read_text().split("\n")[1].split("\t")[:3] == ["c2", "600", str(4 + 12 * 61 + 4)]


def test_an_older_index_in_a_read_only_folder_is_used_only_if_it_lines_up(tmp_path, caplog, monkeypatch):
    # a shared reference copied index first: older, but right; the same index after the file changed: refused
    import hyena_glt.io.sequences as seqs

    monkeypatch.setattr(seqs.os, "access", lambda p, mode: mode != os.W_OK)
    rng = np.random.default_rng(6)
    c1, extra, c2 = ("".join(rng.choice(list("ACGT"), n)) for n in (600, 120, 600))
    path = tmp_path / "ro.fa"
    _two_contigs(path, c1, c2)
    pysam.faidx(str(path))
    old = path.stat().st_mtime - 3600
    os.utime(f"{path}.fai", (old, old))
    assert [r.seq for r in read_sequences(path, regions=["c2:1-20"])] == [c2[:20]]
    assert "ro.fa: its .fai index is older than the file; checking that it still matches" in caplog.text
    _two_contigs(path, c1 + extra, c2)
    os.utime(f"{path}.fai", (old, old))
    with pytest.raises(InputError, match=r"ro\.fa: the \.fai index does not match the FASTA"):
        list(read_sequences(path, regions=["c2:1-20"]))


def test_an_index_of_another_fasta_is_refused(tmp_path, data_dir):
    path = tmp_path / "other.fa"
    path.write_text(">x\nACGT\n")
    shutil.copy(data_dir / "ex1.fa.fai", f"{path}.fai")
    with pytest.raises(InputError, match=r"other\.fa: the \.fai index does not match the FASTA \(was the file "
                                         r"changed after indexing, or is it another file's\? rebuild it"):
        list(read_sequences(path, regions=["x:1-2"]))


def test_a_failed_region_of_a_fastq_leaves_no_index(tmp_copy):
    reads = tmp_copy("ce_reads.fastq")
    with pytest.raises(InputError, match=r"region 'x:1-10': unknown contig 'x'"):
        list(read_sequences(reads, regions=["x:1-10"]))
    assert not Path(f"{reads}.fai").exists()


def test_cram_with_another_reference_says_so(tmp_path, data_dir):
    cram = tmp_path / "ex1.cram"
    pysam.view("-C", "-T", str(data_dir / "ex1.fa"), "-o", str(cram), str(data_dir / "ex1.bam"), catch_stdout=False)
    wrong = tmp_path / "wrong.fa"
    wrong.write_text((data_dir / "ex1.fa").read_text().replace("ACGT", "TTTT"))
    with pytest.raises(InputError, match=r"ex1\.cram: cannot read CRAM after record 0: the reference FASTA "
                                         r"\(.*wrong\.fa\) may not be the one it was written with"):
        list(read_sequences(cram, reference=wrong))


def test_contig_names_with_colons_and_samtools_braces():
    from hyena_glt.io.sequences import parse_region

    lengths = {"chr1": 100, "chr1:1-5": 50, "HLA:01": 30}
    assert parse_region("HLA:01", lengths, "f.fa") == ("HLA:01", 0, 30)
    assert parse_region("HLA:01:2-5", lengths, "f.fa") == ("HLA:01", 1, 5)
    assert parse_region("{chr1:1-5}", lengths, "f.fa") == ("chr1:1-5", 0, 50)
    assert parse_region("{chr1:1-5}:1-3", lengths, "f.fa") == ("chr1:1-5", 0, 3)
    assert parse_region("{chr1}:1-5", lengths, "f.fa") == ("chr1", 0, 5)
    assert parse_region("{HLA:01}:2-", lengths, "f.fa") == ("HLA:01", 1, 30)
    with pytest.raises(InputError) as ambiguous:  # samtools: "range is ambiguous"
        parse_region("chr1:1-5", lengths, "f.fa")
    assert str(ambiguous.value) == ("f.fa: region 'chr1:1-5' is ambiguous: a contig has that name, and it is also a "
                                    "range of contig 'chr1' (write {chr1:1-5} for the one, {chr1}:1-5 for the other)")
    with pytest.raises(InputError, match=r"region '\{nope\}': unknown contig 'nope'"):
        parse_region("{nope}", lengths, "f.fa")
    with pytest.raises(InputError, match=r"region '\{chr1\}:x': bad coordinates 'x'"):
        parse_region("{chr1}:x", lengths, "f.fa")


def test_bed_strand_other_than_plus_minus_dot_is_refused(tmp_path):
    from hyena_glt.io.sequences import read_bed_regions

    bed = tmp_path / "r.bed"
    bed.write_text("seq1\t0\t10\ta\t0\t+\nseq1\t5\t20\tb\t0\t.\nseq1\t5\t20\tc\t0\tx\n")
    rows = read_bed_regions(bed)
    assert [next(rows)[4], next(rows)[4]] == ["+", "."]
    with pytest.raises(InputError, match=r"r\.bed: line 3: BED strand must be \+, - or \. \(got 'x'\)"):
        next(rows)


def test_table_ids_with_a_tab_or_line_break_are_refused(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text('id,sequence\nok,ACGT\n"a\tb",ACGTACGT\n')
    records = read_sequences(table)
    assert next(records).id == "ok"
    with pytest.raises(InputError, match=r"t\.csv: line 3: id 'a\\tb' holds a tab or line break"):
        next(records)


def test_stride_past_the_window_is_warned_once_a_run(caplog):
    import hyena_glt.io.sequences as seqs

    seqs._WARNED_STRIDES.discard((100, 70))
    records = [SequenceRecord("a", "A" * 300), SequenceRecord("b", "C" * 300)]
    with caplog.at_level("WARNING", logger="hyena_glt"):
        for record in records:  # one call per record, as genome scans make them
            list(sliding_windows([record], 70, 100))
    assert [r.getMessage() for r in caplog.records] == [
        "stride=100 is larger than the window (70): 30 base(s) between windows are not scanned"]


def test_compressed_text_with_old_mac_line_breaks_or_nul_at_its_start_is_named(tmp_path):
    cases = {
        "cr.fa.gz": (b">a\rACGT\rGGCC\r>b\rTTTT\r", "line breaks are carriage returns only (old Mac format): "
                                                   "convert with `zcat FILE | tr '\\r' '\\n'`"),
        "nul.fa.gz": (b">a\nAC\x00GT\n", "invalid character NUL (\\x00) at byte 6 of the decompressed text"),
    }
    for name, (text, problem) in cases.items():
        path = tmp_path / name
        path.write_bytes(gzip.compress(text))
        with pytest.raises(InputError) as err:
            list(read_sequences(path))
        assert str(err.value) == f"{path}: {problem}"
    crlf = tmp_path / "crlf.fa.gz"
    crlf.write_bytes(gzip.compress(b">a\r\nACGT\r\nGG\r\n"))
    assert [(r.id, r.seq) for r in read_sequences(crlf)] == [("a", "ACGTGG")]


def test_tables_as_python_r_and_excel_write_them_are_read_as_train_reads_them(tmp_path):
    rows = [("r1", "ACGTAC", "1"), ("r2", "GGCCAA", "0")]
    layouts = {
        "quoted.csv": '"sequence","label"\n' + "".join(f'"{s}","{y}"\n' for _, s, y in rows),  # csv.QUOTE_ALL
        "rstyle.csv": '"","sequence","label"\n' + "".join(f'"{i}","{s}","{y}"\n' for i, s, y in rows),  # write.csv
        "bom.csv": "\ufeffsequence,label\n" + "".join(f"{s},{y}\n" for _, s, y in rows),  # Excel "CSV UTF-8"
    }
    for name, text in layouts.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        assert [r.seq for r in read_sequences(path)] == ["ACGTAC", "GGCCAA"], name
        gz = tmp_path / (name + ".gz")
        gz.write_bytes(gzip.compress(text.encode()))
        assert [r.seq for r in read_sequences(gz)] == ["ACGTAC", "GGCCAA"], name


def test_plain_sequence_text_one_per_line(tmp_path, data_dir):
    """Letters only, one sequence per line (Genomic Benchmarks keeps one per .txt file): a one-line file is a
    record named by the file; each line of a longer one is FILE:LINE, blank lines skipped; gzip too.
    Records are checked against the alphabet like any other, and are sequences of their own (not genomes)."""
    mt = str(next(read_sequences(data_dir / "MT-human.fa")).seq)
    one = tmp_path / "0.txt"
    one.write_text(mt[:300])  # no line break at the end, as Genomic Benchmarks writes them
    (record,) = read_sequences(one)
    assert (record.id, record.seq, record.standalone) == ("0.txt", mt[:300], True)
    lines = tmp_path / "seqs.txt.gz"
    lines.write_bytes(gzip.compress(f"\ufeff{mt[:50]}\r\n\n{mt[50:60].lower()}\n".encode()))  # a BOM, CRLF
    assert [(r.id, r.seq, r.number) for r in read_sequences(lines)] == [
        ("seqs.txt.gz:1", mt[:50], 1), ("seqs.txt.gz:3", mt[50:60].lower(), 2)]
    bad = tmp_path / "bad.txt"
    bad.write_text("ACGT\nACJT\n")
    with pytest.raises(InputError, match=r"bad\.txt: record 'bad\.txt:2': invalid character 'J' at position 3 \(not "
                                         r"in the nucleotide alphabet\)"):
        list(read_sequences(bad, alphabet="nucleotide"))
    folder = tmp_path / "set"
    (folder / "b").mkdir(parents=True)
    for name in ("10.txt", "9.txt", ".hidden"):
        (folder / "b" / name).write_text("ACGT")
    (folder / "a.txt").write_text("GG")
    shutil.copy(data_dir / "ce_reads.bam", folder / "reads.bam")
    shutil.copy(data_dir / "ce_reads.bam.bai", folder / "reads.bam.bai")  # an index: skipped
    reads = [r.id for r in read_sequences(data_dir / "ce_reads.bam")]
    assert [r.id for r in read_sequences(folder)] == ["a.txt", *reads, "b/9.txt", "b/10.txt"]  # subfolders last
    (folder / "b" / "up").symlink_to("..")
    with pytest.raises(InputError, match=rf"set/b/up: a link in the folder leads to a folder read already \({folder}\)"):
        list(read_sequences(folder))
    with pytest.raises(UsageError, match=r"set: regions/regions_bed need an indexed FASTA, BAM or CRAM file, not a "
                                         r"folder$"):
        list(read_sequences(folder, regions=["b:1-2"]))


def test_parquet_records_are_named_as_the_csv_rows(tmp_path, data_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_records = list(read_sequences(data_dir / "gue/mouse_2/dev.csv"))[:30]
    table = tmp_path / "dev.parquet"
    pq.write_table(pa.table({"sequence": [r.seq for r in csv_records],
                             "label": [int(r.description.split("=")[1]) for r in csv_records]}), table)
    records = list(read_sequences(table, alphabet="nucleotide"))
    assert [(r.id.replace(".parquet", ".csv"), r.seq, r.description, r.standalone) for r in records] == [
        (r.id, r.seq, r.description, True) for r in csv_records]
    named = tmp_path / "named.parquet"
    pq.write_table(pa.table({"id": ["a", None], "seq": [b"ACGT", b"GGNN"]}), named)
    assert [(r.id, r.seq) for r in read_sequences(named)] == [("a", "ACGT"), ("named.parquet:3", "GGNN")]
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1" + b"\x00" * 40)
    with pytest.raises(InputError, match=r"broken\.parquet: not a readable Parquet file \("):
        list(read_sequences(broken))
    with open(table, "rb") as fh, pytest.raises(InputError, match=r"^stdin: a Parquet table cannot be read from a "
                                                                 r"pipe or stdin \(its index is at its end\): give it "
                                                                 r"as a file$"):
        import sys
        saved = sys.stdin
        sys.stdin = io.TextIOWrapper(fh)
        try:
            list(read_sequences("-"))
        finally:
            sys.stdin = saved


def test_secondary_and_supplementary_alignments_are_skipped_and_counted(tmp_path, caplog):
    sam = tmp_path / "sec.sam"
    sam.write_text("@SQ\tSN:chr1\tLN:1000\n"
                   "r1\t0\tchr1\t1\t60\t10M\t*\t0\t0\tACGTACGTAC\tIIIIIIIIII\n"
                   "r1\t256\tchr1\t50\t0\t10M\t*\t0\t0\t*\t*\n"
                   "r3\t2048\tchr1\t200\t60\t5H5M\t*\t0\t0\tACGTA\tIIIII\n")
    with caplog.at_level("INFO", logger="hyena_glt"):
        records = list(read_sequences(str(sam)))
    assert [(r.id, r.seq) for r in records] == [("r1", "ACGTACGTAC")]
    assert caplog.messages == [f"{sam}: skipped 2 secondary/supplementary alignment(s)"]


def test_sequence_before_the_first_fasta_header_is_named(tmp_path):
    path = tmp_path / "m.fa"
    path.write_text("ACGTACGT\n\n>b\nACGTACGT\n")
    with pytest.raises(InputError, match=r"m\.fa: line 1: sequence before the first '>' header \(line 3: starts with '>b'\)"):
        list(read_sequences(str(path)))
