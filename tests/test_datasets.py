"""Labelled data readers on real files (GUE CSV, lambda genome, Arabidopsis chloroplast BED) and their errors."""

from __future__ import annotations

import csv
import gzip

import numpy as np
import pyfaidx
import pytest

from hyena_glt.errors import InputError, UsageError
from hyena_glt.io import datasets

GUE = "gue/prom_core_all"


def gue_rows(data_dir, split="train", n=None):
    with open(data_dir / GUE / f"{split}.csv") as fh:
        rows = list(csv.DictReader(fh))
    return rows if n is None else rows[:n]


def test_gue_csv(data_dir):
    data = datasets.load_labelled(data_dir / GUE / "dev.csv", "classification")
    rows = gue_rows(data_dir, "dev")
    assert len(data) == len(rows) == 5920
    assert data.class_names == ["0", "1"]
    assert data.sequences[:3] == [r["sequence"] for r in rows[:3]]
    assert data.labels.dtype == np.int64
    assert data.labels.tolist() == [int(r["label"]) for r in rows]
    assert set(data.lengths().tolist()) == {70}
    assert data.ids[0] == "dev.csv:2"  # no id column: file name and line number


def test_tsv_regression_multi_target_and_id_column(data_dir, tmp_path):
    rows = gue_rows(data_dir, n=20)
    path = tmp_path / "gc.tsv"
    with open(path, "w") as fh:
        fh.write("id\tsequence\tgc\tat\n")
        for i, r in enumerate(rows):
            gc = sum(c in "GC" for c in r["sequence"]) / 70
            fh.write(f"s{i}\t{r['sequence']}\t{gc}\t{1 - gc}\n")
    data = datasets.load_labelled(path, "regression")
    assert data.target_names == ["gc", "at"]
    assert data.labels.shape == (20, 2) and data.labels.dtype == np.float32
    assert data.ids[:2] == ["s0", "s1"]
    np.testing.assert_allclose(data.labels.sum(1), 1.0, rtol=1e-6)
    only_gc = datasets.load_labelled(path, "regression", label_columns=["gc"])
    assert only_gc.labels.shape == (20, 1)


def test_multilabel_one_column_and_flag_columns(data_dir, tmp_path):
    rows = gue_rows(data_dir, n=6)
    sets = ["tata;gc", "gc", "tata", "cpg|gc", "cpg", "tata"]
    path = tmp_path / "ml.csv"
    with open(path, "w") as fh:
        fh.write("sequence,labels\n")
        for r, s in zip(rows, sets):
            fh.write(f"{r['sequence']},{s}\n")
    data = datasets.load_labelled(path, "multilabel")
    assert data.class_names == ["cpg", "gc", "tata"]
    assert data.labels.tolist()[0] == [0, 1, 1] and data.labels.tolist()[3] == [1, 1, 0]
    flags = tmp_path / "flags.csv"
    with open(flags, "w") as fh:
        fh.write("sequence,tata,gc\n")
        for r, s in zip(rows, sets):
            fh.write(f"{r['sequence']},{int('tata' in s)},{int('gc' in s)}\n")
    data = datasets.load_labelled(flags, "multilabel")
    assert data.class_names == ["tata", "gc"]
    assert data.labels[:, 0].tolist() == [1, 0, 1, 0, 0, 1]


def test_fasta_header_labels_and_regex(data_dir, tmp_path):
    rows = gue_rows(data_dir, n=10)
    names = {"0": "background", "1": "promoter"}
    path = tmp_path / "labelled.fa"
    path.write_text("".join(f">r{i} label={names[r['label']]} src=gue\n{r['sequence']}\n" for i, r in enumerate(rows)))
    data = datasets.load_labelled(path, "classification")
    assert data.class_names == ["background", "promoter"]
    assert data.ids[0] == "r0"
    assert data.labels.tolist() == [int(r["label"]) for r in rows]
    piped = tmp_path / "piped.fa"
    piped.write_text("".join(f">r{i}|{names[r['label']]}\n{r['sequence']}\n" for i, r in enumerate(rows)))
    data = datasets.load_labelled(piped, "classification", label_regex=r"\|(\w+)$")
    assert data.labels.tolist() == [int(r["label"]) for r in rows]
    with pytest.raises(InputError, match=r"piped\.fa: record 'r0\|promoter': no label in the header"):
        datasets.load_labelled(piped, "classification")


def test_class_fastas(data_dir, tmp_path):
    rows = gue_rows(data_dir, n=30)
    files = {}
    for label in ("0", "1"):
        files[label] = tmp_path / f"class{label}.fa"
        files[label].write_text("".join(f">{label}_{i}\n{r['sequence']}\n" for i, r in enumerate(rows) if r["label"] == label))
    data = datasets.load_class_fastas([("promoter", files["1"]), ("other", files["0"])])
    assert data.class_names == ["other", "promoter"]
    n1 = sum(r["label"] == "1" for r in rows)
    assert int(data.labels.sum()) == n1 and len(data) == 30
    empty = tmp_path / "empty.fa"
    empty.write_text("")
    with pytest.raises(InputError, match=r"empty\.fa: "):
        datasets.load_class_fastas([("promoter", files["1"]), ("none", empty)])


def _copy(src, dest_dir):
    dest = dest_dir / src.name  # pyfaidx indexes beside the FASTA: keep example_data untouched
    dest.write_bytes(src.read_bytes())
    return dest


def test_bed_with_reference(data_dir, tmp_path):
    # real chloroplast gene intervals; the label is the feature type (CDS, tRNA, ...) put in column 4
    bed = tmp_path / "features.bed"
    lines = (data_dir / "arabidopsis_chloroplast_genes.bed").read_text().splitlines()[:40]
    with open(bed, "w") as fh:
        for line in lines:
            f = line.split("\t")
            fh.write("\t".join([f[0], f[1], f[2], f[3].split(":")[0], f[4], f[5]]) + "\n")
    reference = _copy(data_dir / "arabidopsis_chloroplast.fa", tmp_path)
    data = datasets.load_labelled(bed, "classification", reference=reference)
    assert len(data) == 40
    genome = pyfaidx.Fasta(str(reference), as_raw=True)
    strands = [line.split("\t")[5] for line in lines]
    assert "+" in strands and "-" in strands
    for i, line in enumerate(lines):
        contig, start, end = line.split("\t")[:3]
        forward = str(genome[contig][int(start):int(end)]).upper()
        expected = forward[::-1].translate(str.maketrans("ACGT", "TGCA")) if strands[i] == "-" else forward
        assert data.sequences[i] == expected
    assert set(data.class_names) <= {"CDS", "gene", "rRNA", "tRNA"}
    bad = tmp_path / "bad.bed"
    bad.write_text("NC_000932.1\t154000\t155000\tgene\t0\t+\n")
    with pytest.raises(InputError, match=r"bad\.bed: line 1: interval NC_000932\.1:154000-155000 .*outside the contig \(length 154478\)"):
        datasets.load_labelled(bad, "classification", reference=reference)
    with pytest.raises(UsageError, match=r"BED intervals need a reference genome \(reference\)"):
        datasets.load_labelled(bed, "classification")


def test_lm_chunks_lambda_genome(data_dir):
    data = datasets.load_lm_sequences([data_dir / "lambda_virus.fa"], window=1000)
    genome = (data_dir / "lambda_virus.fa").read_text().split("\n", 1)[1].replace("\n", "").upper()
    # 48,502 bp: 48 full windows and a last chunk of 502 (kept: at least a quarter window)
    assert len(data) == 49 and data.labels is None
    assert set(map(len, data.sequences[:-1])) == {1000} and len(data.sequences[-1]) == 502
    assert data.ids[-1].endswith(":48001-48502")
    assert "".join(data.sequences) == genome


def test_split_validation_stratified_and_seeded(data_dir):
    data = datasets.load_labelled(data_dir / "gue/mouse_2/train.csv", "classification")
    train, val = datasets.split_validation(data, 0.1, seed=3)
    assert len(val) == 262 and len(train) + len(val) == len(data)
    assert abs(val.labels.mean() - data.labels.mean()) < 0.01
    again = datasets.split_validation(data, 0.1, seed=3)[1]
    assert again.ids == val.ids
    assert not set(train.ids) & set(val.ids)


def test_errors_name_file_and_line(data_dir, tmp_path):
    rows = gue_rows(data_dir, n=5)
    nolabel = tmp_path / "nolabel.csv"
    nolabel.write_text("sequence,class\n" + "".join(f"{r['sequence']},{r['label']}\n" for r in rows))
    with pytest.raises(InputError, match=r"nolabel\.csv: line 1: no column 'label' in the header \(sequence, class\); "
                                         r"name the label column with label_columns"):
        datasets.load_labelled(nolabel, "classification")
    assert datasets.load_labelled(nolabel, "classification", label_columns=["class"]).class_names == ["0", "1"]
    with pytest.raises(InputError, match=r"no column 'kind'"):
        datasets.load_labelled(nolabel, "classification", label_columns=["kind"])

    short_row = tmp_path / "short.csv"
    short_row.write_text(f"sequence,label\n{rows[0]['sequence']},1\n{rows[1]['sequence']}\n")
    with pytest.raises(InputError, match=r"short\.csv: line 3: 1 fields where the header has 2"):
        datasets.load_labelled(short_row, "classification")

    one_class = tmp_path / "one.csv"
    one_class.write_text("sequence,label\n" + "".join(f"{r['sequence']},1\n" for r in rows))
    with pytest.raises(InputError, match="only one class"):
        datasets.load_labelled(one_class, "classification")

    unseen = tmp_path / "val.csv"
    unseen.write_text(f"sequence,label\n{rows[0]['sequence']},1\n{rows[1]['sequence']},2\n")
    with pytest.raises(InputError, match=r"val\.csv: line 3: label '2' does not occur in the training data \(training labels: 0, 1\)"):
        datasets.load_labelled(unseen, "classification", class_names=["0", "1"])

    notnum = tmp_path / "reg.csv"
    notnum.write_text(f"sequence,score\n{rows[0]['sequence']},0.5\n{rows[1]['sequence']},high\n")
    with pytest.raises(InputError, match=r"reg\.csv: line 3: column 'score': 'high' is not a number"):
        datasets.load_labelled(notnum, "regression")


def test_mixed_lengths_are_read_whole_unless_padding_would_swamp_them(data_dir, tmp_path, hyena_log, caplog):
    """Sequences of 40-70 nt train whole, padded to 70 (said in the log); one 70 nt sequence among 3 nt ones
    would be padding 10 times over: a window is asked for."""
    rows = gue_rows(data_dir, n=4)
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("sequence,label\n" + "".join(f"{r['sequence'][: 40 + 10 * i]},{i % 2}\n" for i, r in enumerate(rows)))
    data = datasets.load_labelled(mixed, "classification")
    with caplog.at_level("INFO", logger="hyena_glt"):
        datasets.check_lengths(data, None, "training")
    assert [r.getMessage() for r in hyena_log] == [
        f"{mixed}: training sequences have mixed lengths (40 nt 'mixed.csv:2' to 70 nt 'mixed.csv:5'): each is read "
        "whole, padded to 70 units (window N centre-crops longer ones to N)"]
    skewed = tmp_path / "skewed.csv"
    skewed.write_text("sequence,label\n" + "".join(f"{r['sequence'][: 70 if i == 3 else 3]},{i % 2}\n"
                                                   for i, r in enumerate(rows * 4)))
    data = datasets.load_labelled(skewed, "classification")
    with pytest.raises(InputError, match=r"skewed\.csv: training sequences have mixed lengths \(3 nt 'skewed.csv:2' "
                                         r"to 70 nt 'skewed.csv:5'\), and padding each to the longest would take 10 "
                                         r"times their length; give window='N' to centre-crop"):
        datasets.check_lengths(data, None, "training")
    datasets.check_lengths(data, 64, "training")  # a window settles it


# ---------------------------------------------------------------------------------------------------------------
# unreadable files, the alphabet, BOMs and --data-format


def test_unreadable_files_are_input_errors(tmp_path):
    import gzip

    folder = tmp_path / "adir"
    folder.mkdir()
    with pytest.raises(InputError, match=r"adir: a folder of training data holds one folder per class \(e\.g\. "
                                         r"positive/ and negative/\), each with that class's sequences; this one holds "
                                         r"no folders$"):
        datasets.load_labelled(folder, "classification")
    with pytest.raises(InputError, match=r"adir: folder holds no files$"):
        datasets.load_labelled(folder, "lm")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(128, 256)) * 20)
    with pytest.raises(InputError, match=r"garbage\.bin: line 1: not a text table \(binary data\)"):
        datasets.load_labelled(garbage, "classification")
    late = tmp_path / "late.tsv"
    late.write_bytes(b"sequence\tlabel\nACGT\t1\nAC\xff\xfeGT\t0\n")
    with pytest.raises(InputError, match=r"late\.tsv: line 3: not a text table \(binary data\)"):
        datasets.load_labelled(late, "classification")
    # truncated after the first 64 KiB, where a look at the head of the file cannot tell
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)[np.random.default_rng(0).integers(0, 4, (8000, 80))]
    rows = "".join(f"{row.tobytes().decode()},{i % 2}\n" for i, row in enumerate(bases))
    packed = gzip.compress(("sequence,label\n" + rows).encode(), compresslevel=1)
    assert len(packed) > 2 * 65536
    truncated = tmp_path / "trunc.csv.gz"
    truncated.write_bytes(packed[: len(packed) - 1000])
    with pytest.raises(InputError, match=r"trunc\.csv\.gz: truncated gzip file"):
        datasets.load_labelled(truncated, "classification")
    reference = tmp_path / "ref.fa"
    reference.write_text(">chr1\nACGTACGTACGTACGTACGT\n")
    bed = tmp_path / "x.bed"
    bed.write_bytes(b"\x00\x01\x02chr1\t0\t10\tgene\n")
    with pytest.raises(InputError, match=r"x\.bed: line 1: not a text BED file \(binary data\)"):
        datasets.load_labelled(bed, "classification", reference=reference)


def test_alphabet_checked_like_classify_with_iupac_as_n(tmp_path):
    path = tmp_path / "iupac.csv"
    path.write_text("sequence,label\nACGTRYNN,1\nacgtacgt,0\nACGUACGU,0\n")
    data = datasets.load_labelled(path, "classification", alphabet="nucleotide")
    # Ambiguity codes read as N, as classify reads them; case is kept, as classify keeps it (the tokenizer decides:
    # nucleotide folds it, nucleotide:softmask gives soft-masked bases their own ids, in training as in inference).
    assert data.sequences == ["ACGTNNNN", "acgtacgt", "ACGUACGU"]
    assert datasets.load_labelled(path, "classification").sequences[0] == "ACGTRYNN"  # no alphabet: no check
    bad = tmp_path / "bad.csv"
    bad.write_text("sequence,label\nACGT,1\nACGX,0\nGGCC,0\n")
    with pytest.raises(InputError, match=r"^.*bad\.csv: line 3: invalid character 'X' at position 4 "
                                         r"\(not in the nucleotide alphabet\)$"):
        datasets.load_labelled(bad, "classification", alphabet="nucleotide")
    assert datasets.load_labelled(bad, "classification", alphabet="protein").sequences[1] == "ACGX"
    fasta = tmp_path / "bad.fa"
    fasta.write_text(">r1 label=a\nACGT\n>r2 label=b\nAC*T\n")
    with pytest.raises(InputError, match=r"bad\.fa: record 'r2': invalid character '\*' at position 3"):
        datasets.load_labelled(fasta, "classification", alphabet="nucleotide")
    lm = tmp_path / "lm.fa"
    lm.write_text(">chunked\nACGTACGTACGTACGTAC1T\n")
    with pytest.raises(InputError, match=r"lm\.fa: record 'chunked': invalid character '1' at position 19"):
        datasets.load_lm_sequences([lm], window=8, alphabet="nucleotide")


def test_empty_fasta_records_are_refused_not_trained_on_as_padding(tmp_path):
    labelled = tmp_path / "labelled.fa"
    labelled.write_text(">a label=1\nACGT\n>b label=0\n>c label=0\nAC\n")
    with pytest.raises(InputError, match=r"^.*labelled\.fa: record 'b': empty sequence$"):
        datasets.load_labelled(labelled, "classification")
    one_class = tmp_path / "one_class.fa"
    one_class.write_text(">x\nACGT\n>y\n\n")
    with pytest.raises(InputError, match=r"^.*one_class\.fa: record 'y': empty sequence$"):
        datasets.load_class_fastas([("p", one_class), ("q", labelled)])


def test_bom_gzip_and_long_cells(tmp_path):
    import gzip

    bom = tmp_path / "bom.tsv.gz"
    bom.write_bytes(gzip.compress("\ufeffsequence\tlabel\nACGTACGT\t1\nGGCCGGCC\t0\n".encode()))
    assert datasets.load_labelled(bom, "classification").class_names == ["0", "1"]
    long = tmp_path / "long.csv"
    sequence = "ACGT" * 50_000  # 200 kb: past the csv module's default 128 KiB cell limit
    long.write_text(f"sequence,label\n{sequence},1\n{sequence[:100]},0\n")
    assert datasets.load_labelled(long, "classification").lengths().tolist() == [200_000, 100]


def test_data_format_must_fit_the_content(tmp_path):
    table = tmp_path / "tr.csv"
    table.write_text("sequence,label\nACGT,1\nGGCC,0\n")
    fasta = tmp_path / "lab.txt"  # .txt alone would mean a table
    fasta.write_text(">a label=1\nACGT\n>b label=0\nGGCC\n")
    with pytest.raises(UsageError, match=r"tr\.csv: data_format='fasta', but the file holds no FASTA/FASTQ records"):
        datasets.load_labelled(table, "classification", fmt="fasta")
    with pytest.raises(UsageError, match=r"lab\.txt: data_format='bed', but the file holds FASTA/FASTQ"):
        datasets.load_labelled(fasta, "classification", fmt="bed")
    with pytest.raises(UsageError, match=r"unknown data format 'gff' \(use one of: table, fasta, bed\)"):
        datasets.load_labelled(table, "classification", fmt="gff")
    assert datasets.load_labelled(fasta, "classification", fmt="fasta").ids == ["a", "b"]
    with pytest.raises(UsageError, match=r"lab\.txt: data_format='table', but the file holds FASTA"):
        datasets.load_lm_sequences([fasta], window=8, fmt="table")
    with pytest.raises(UsageError, match=r"^stride must be at least 1 \(got 0\)"):
        datasets.load_lm_sequences([fasta], window=8, stride=0)


def test_multilabel_flag_columns_hold_0_or_1(tmp_path):
    flags = tmp_path / "ml.csv"
    flags.write_text("sequence,a,b\nACGTACGT,1,0\nGGCCGGCC,0.0,1.0\n")
    assert datasets.load_labelled(flags, "multilabel").labels.tolist() == [[1, 0], [0, 1]]
    flags.write_text("sequence,a,b\nACGTACGT,1,0\nGGCCGGCC,0,2\n")
    with pytest.raises(InputError, match=r"ml\.csv: line 3: column 'b': '2' is not 0 or 1"):
        datasets.load_labelled(flags, "multilabel")


@pytest.fixture
def hyena_log():
    """The messages logged to the 'hyena_glt' logger (which the CLI stops from propagating to the root)."""
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("hyena_glt")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_label_column_that_is_no_label_column(tmp_path, hyena_log):
    table = tmp_path / "tr.csv"
    table.write_text("sequence,label\n" + "".join(f"{'ACGT'[i % 4] * 8},{i}\n" for i in range(30)))
    with pytest.raises(InputError, match=r"tr\.csv: line 1: column 'sequence' cannot be both the sequence and a label "
                                         r"column"):
        datasets.load_labelled(table, "classification", label_columns=["sequence"])
    data = datasets.load_labelled(table, "classification")
    assert len(data.class_names) == 30
    assert [r.getMessage() for r in hyena_log] == [
        f"{table}: 30 classes in 30 sequences: is that the label column? (numbers to predict need task='regression')"]


def test_split_that_leaves_a_class_untrained(tmp_path, hyena_log):
    two = tmp_path / "two.fa"
    two.write_text(">a label=1\nACGTACGT\n>b label=0\nGGCCGGCC\n")
    data = datasets.load_labelled(two, "classification")
    with pytest.raises(InputError, match=r"two\.fa: val_fraction=0\.5 of 2 sequences leaves no training example of "
                                         r"class\(es\) '[01]'; classification needs at least two classes"):
        datasets.split_validation(data, 0.5, seed=0)
    # three classes, the lone 'c' held out: training is still possible, with a warning
    labels = np.array([0] * 5 + [1] * 4 + [2])
    data = datasets.LabelledData([f"s{i}" for i in range(10)], ["ACGTACGT"] * 10, labels, "classification",
                                 class_names=["a", "b", "c"], sources=["three.csv"])
    for seed in range(100):
        hyena_log.clear()
        train, val = datasets.split_validation(data, 0.2, seed)
        if "s9" in val.ids:
            break
    else:
        pytest.fail("no seed held out the lone example")
    assert [r.getMessage() for r in hyena_log] == [
        "three.csv: val_fraction=0.2 of 10 sequences leaves no training example of class(es) 'c'; "
        "the model will not learn to predict them"]


def test_one_number_spelled_two_ways_is_one_mistake_not_two_classes(tmp_path):
    table = tmp_path / "tr.csv"
    table.write_text("sequence,label\nACGTACGT,0\nGGCCGGCC,1\nACGTACGA,0.0\nGGCCGGCA, 1.0\n")
    with pytest.raises(InputError) as err:
        datasets.load_labelled(table, "classification")
    assert str(err.value) == (f"{table}: labels '0' (line 2) and '0.0' (line 4) are the same number written two "
                              f"ways; write them one way")
    fasta = tmp_path / "lab.fa"
    fasta.write_text(">a label=1\nACGT\n>b label=0\nGGCC\n>c label=01\nACGA\n")
    with pytest.raises(InputError, match=r"lab\.fa: labels '1' \(record 'a'\) and '01' \(record 'c'\) are the same "
                                         r"number written two ways"):
        datasets.load_labelled(fasta, "classification")
    multi = tmp_path / "ml.csv"
    multi.write_text("sequence,label\nACGTACGT,1;2\nGGCCGGCC,2.0\n")
    with pytest.raises(InputError, match=r"ml\.csv: labels '2' \(line 2\) and '2\.0' \(line 3\)"):
        datasets.load_labelled(multi, "multilabel")
    # blanks around a label are dropped (also around each label of a multilabel cell)
    table.write_text("sequence,label\nACGTACGT, 0\nGGCCGGCC,1 \nACGTACGA,0\n")
    data = datasets.load_labelled(table, "classification")
    assert data.class_names == ["0", "1"] and data.labels.tolist() == [0, 1, 0]
    multi.write_text("sequence,label\nACGTACGT,a; b\nGGCCGGCC,b\n")
    assert datasets.load_labelled(multi, "multilabel").class_names == ["a", "b"]
    # validation data that write a training label's number another way: said so
    val = tmp_path / "val.csv"
    val.write_text("sequence,label\nACGTACGT,1.0\n")
    with pytest.raises(InputError) as err:
        datasets.load_labelled(val, "classification", class_names=["0", "1"])
    assert str(err.value) == (f"{val}: line 2: label '1.0' does not occur in the training data (training labels: 0, "
                              f"1); the training data write the number as '1': write it one way")


def test_class_names_hold_no_tab_or_line_break_and_are_distinct(tmp_path):
    table = tmp_path / "tr.csv"
    table.write_text('sequence,label\nACGTACGT,a\nGGCCGGCC,"b\tc"\n')
    with pytest.raises(InputError, match=r"tr\.csv: line 3: label 'b\\tc' holds a tab or line break"):
        datasets.load_labelled(table, "classification")
    table.write_text('sequence,label\nACGTACGT,a\nGGCCGGCC,"b\nc"\n')
    with pytest.raises(InputError, match=r"tr\.csv: line 3: label 'b\\nc' holds a tab or line break"):
        datasets.load_labelled(table, "classification")
    table.write_text("sequence,label\nACGTACGT,0\nGGCCGGCC,1\n")
    for mapping, message in (
        ({"0": "a\tb"}, "class_names: class name 'a\\tb' holds a tab or line break"),
        ({"0": "promoter", "1": "promoter"}, "class_names: two classes are named 'promoter'"),
        ({"0": "1"}, "class_names: two classes are named '1'"),
    ):
        data = datasets.load_labelled(table, "classification")
        with pytest.raises(UsageError) as err:
            datasets.apply_class_display_names(data, mapping)
        assert message in str(err.value)
        assert data.class_names == ["0", "1"]
    fasta = tmp_path / "a.fa"
    fasta.write_text(">x\nACGT\n")
    with pytest.raises(UsageError, match=r"class_fasta: class name 'a\\tb' holds a tab or line break"):
        datasets.load_class_fastas([("a\tb", fasta), ("c", fasta)])


@pytest.fixture
def spool_dir(tmp_path, monkeypatch):
    """TMPDIR, where the temporary copies of streams go, as a fresh folder the test can look into."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    return spool


def from_pipe(folder, name: str, text: str, load):
    """``load(pipe)`` on a named pipe that a thread fills with ``text``."""
    import os
    import threading

    pipe = folder / name
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_text(text))
    writer.start()
    try:
        return load(pipe)
    finally:
        writer.join()


def test_a_language_model_stream_is_named_as_itself_and_fingerprinted(tmp_path, spool_dir):
    """LM data from a pipe are copied as they are read: records (a table's rows are named NAME:LINE) and
    chunks are named after the pipe, its sha256 is that of the bytes read, and no copy is left."""
    import hashlib

    table = "sequence\n" + "ACGTACGTAC\n" + "GGGCCCAAATTT\n"
    data = from_pipe(tmp_path, "lm.csv", table, lambda p: datasets.load_lm_sequences([p], window=8))
    assert data.ids == ["lm.csv:2:1-8", "lm.csv:2:9-10", "lm.csv:3:1-8", "lm.csv:3:9-12"]  # as from a file
    assert datasets.fingerprint(tmp_path / "lm.csv") == hashlib.sha256(table.encode()).hexdigest()
    assert list(spool_dir.iterdir()) == []
    assert datasets.fingerprint(tmp_path / "never_read") is None


def test_pipes_are_read_like_files_and_errors_name_the_pipe(tmp_path, spool_dir):
    """Labelled tables/FASTA are read twice (format, then records): a stream is copied to a temporary file
    first, and removed after. LM and class FASTAs are read once. Every loader takes a pipe, and errors name
    it, not the copy."""
    spool = spool_dir
    assert datasets.is_stream("-") and not datasets.is_stream(tmp_path)

    table = "sequence,label\nACGTACGT,yes\nGGCCGGCC,no\n"
    data = from_pipe(tmp_path, "table", table, lambda p: datasets.load_labelled(p, "classification"))
    assert data.sequences == ["ACGTACGT", "GGCCGGCC"] and data.class_names == ["no", "yes"]
    assert data.sources == [str(tmp_path / "table")]
    with pytest.raises(InputError, match=r"/bad: line 3: invalid character 'X' at position 2"):
        from_pipe(tmp_path, "bad", table.replace("GGCC", "GXCC", 1),
                  lambda p: datasets.load_labelled(p, "classification", alphabet="nucleotide"))
    assert list(spool.iterdir()) == []  # the copies are gone, after an error too

    lm = from_pipe(tmp_path, "lm", ">a\n" + "ACGT" * 8 + "\n", lambda p: datasets.load_lm_sequences([p], window=8, fmt="fasta"))
    assert len(lm.sequences) == 4
    # --data-format is checked on a stream as it is read (a file is checked before)
    with pytest.raises(InputError, match=r"/lm_fasta: holds FASTA, not a table$"):
        from_pipe(tmp_path, "lm_fasta", ">a\nACGT\n", lambda p: datasets.load_lm_sequences([p], window=8, fmt="table"))
    with pytest.raises(InputError, match=r"/lm_table: holds a table, not FASTA/FASTQ/SAM/BAM/CRAM$"):
        from_pipe(tmp_path, "lm_table", "sequence\nACGT\n",
                  lambda p: datasets.load_lm_sequences([p], window=8, fmt="fasta"))
    (tmp_path / "b.fa").write_text(">y\nGGGG\n")
    classes = from_pipe(tmp_path, "one", ">x\nACGTACGT\n",
                        lambda p: datasets.load_class_fastas([("a", p), ("b", tmp_path / "b.fa")]))
    assert classes.sequences == ["ACGTACGT", "GGGG"] and classes.class_names == ["a", "b"]


def test_a_stream_copy_is_never_named_and_never_left_behind(data_dir, tmp_path, monkeypatch, caplog, spool_dir):
    """The temporary copy of a stream is an implementation detail: row ids, warnings and errors name the
    stream (as they name a file), a full temporary folder says which folder and TMPDIR, and a signal that
    ends the process while the copy exists removes it first."""
    import errno
    import logging
    import os
    import signal
    import subprocess
    import sys
    import threading

    from hyena_glt.errors import HyenaGLTError

    spool = spool_dir

    table = "sequence,label\nACGTACGT,yes\nGGCCGGCC,no\n"
    data = from_pipe(tmp_path, "table", table, lambda p: datasets.load_labelled(p, "classification"))
    assert data.ids == ["table:2", "table:3"]  # as a file's: NAME:LINE

    bed = (data_dir / "arabidopsis_chloroplast_genes.bed").read_text()
    with caplog.at_level(logging.WARNING, logger="hyena_glt"):
        from_pipe(tmp_path, "genes", bed, lambda p: datasets.load_labelled(
            p, "classification", fmt="bed", reference=data_dir / "arabidopsis_chloroplast.fa"))
    assert f"{tmp_path / 'genes'}: 216 classes in 262 sequences" in caplog.text and ".spool" not in caplog.text
    with pytest.raises(UsageError, match=r"^.*/nogenome: BED intervals need a reference genome \(reference\)"):
        from_pipe(tmp_path, "nogenome", bed, lambda p: datasets.load_labelled(p, "classification", fmt="bed"))

    def full(source, sink):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(datasets, "_copy_and_hash", full)
        with pytest.raises(HyenaGLTError, match=rf"/full: cannot copy the data into a temporary file in {spool} "
                                                r"\(no space left on device\): set TMPDIR to a folder with room"):
            from_pipe(tmp_path, "full", "", lambda p: datasets.load_labelled(p, "classification"))
    assert list(spool.iterdir()) == []

    # SIGTERM (kill, a scheduler), SIGHUP and SIGUSR1 end a process without running `finally`
    read = "from hyena_glt.io import datasets; datasets.load_labelled('-', 'classification')"
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
        proc = subprocess.Popen([sys.executable, "-c", read], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "TMPDIR": str(spool)})
        proc.stdin.write(table.encode())
        proc.stdin.flush()  # (stdin stays open: the copy is waiting for the rest)
        deadline = 600
        while not list(spool.iterdir()) and deadline:
            threading.Event().wait(0.1)
            deadline -= 1
        assert list(spool.iterdir()), proc.stderr.read() if proc.poll() is not None else "no copy made"
        threading.Event().wait(0.5)  # (the handlers are set right after the copy is made)
        proc.send_signal(sig)
        proc.wait(30)
        proc.stdin.close()
        assert proc.returncode == -sig
        assert list(spool.iterdir()) == [], sig


# ---------------------------------------------------------------------------------------------------------------
# Genomic Benchmarks' layout: a folder per class


def test_class_folders_read_as_the_table_they_were_made_from(data_dir, tmp_path):
    """Real GUE rows written one sequence per file (DATASET/train/CLASS/N.txt, no line break): the classes are
    the folder names, each class's sequences in natural file order (9.txt before 10.txt); hidden files are
    skipped; a FASTA file in a class folder gives its records; validation data use the training classes."""
    rows = gue_rows(data_dir, n=60)
    root = tmp_path / "train"
    for name, label in (("non_promoter", "0"), ("promoter", "1")):
        (root / name).mkdir(parents=True)
        for i, seq in enumerate(r["sequence"] for r in rows if r["label"] == label):
            (root / name / f"{i}.txt").write_text(seq)
    (root / "promoter" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    data = datasets.load_labelled(root, "classification", alphabet="nucleotide")
    expected = [r["sequence"] for r in rows if r["label"] == "0"] + [r["sequence"] for r in rows if r["label"] == "1"]
    assert data.sequences == expected and len(data) == 60
    assert data.class_names == ["non_promoter", "promoter"]
    assert data.labels.tolist() == sorted(int(r["label"]) for r in rows)
    n_neg = sum(r["label"] == "0" for r in rows)
    assert data.ids[:12] == [f"non_promoter/{i}.txt" for i in range(12)] and data.ids[n_neg] == "promoter/0.txt"
    assert data.sources == [str(root)]

    val = tmp_path / "val"
    (val / "promoter").mkdir(parents=True)
    (val / "promoter" / "p.fa").write_text(f">chr1:5-74 a\n{rows[0]['sequence']}\n>chr2:1-70\n{rows[1]['sequence']}\n")
    (val / "non_promoter").mkdir()
    (val / "non_promoter" / "x.txt.gz").write_bytes(gzip.compress(f"{rows[2]['sequence']}\n".encode()))
    held_out = datasets.load_labelled(val, "classification", class_names=data.class_names)
    assert held_out.ids == ["non_promoter/x.txt.gz", "chr1:5-74", "chr2:1-70"]
    assert held_out.labels.tolist() == [0, 1, 1]
    (val / "enhancer").mkdir()
    (val / "enhancer" / "0.txt").write_text(rows[3]["sequence"])
    with pytest.raises(InputError, match=r"enhancer/0\.txt: record 'enhancer/0\.txt': label 'enhancer' does not "
                                         r"occur in the training data \(training labels: non_promoter, promoter\)"):
        datasets.load_labelled(val, "classification", class_names=data.class_names)


def test_class_folders_that_are_not_are_refused(data_dir, tmp_path):
    seq = gue_rows(data_dir, n=1)[0]["sequence"]
    dataset = tmp_path / "dataset"
    for split in ("test", "train"):
        for name in ("negative", "positive"):
            (dataset / split / name).mkdir(parents=True)
            (dataset / split / name / "0.txt").write_text(seq)
    (dataset / "metadata.yaml").write_text("version: 0\n")  # beside the splits, as a downloaded dataset may have
    with pytest.raises(UsageError, match=rf"dataset: holds the splits test, train, not classes: give {dataset}/train "
                                         rf"as the training data \(and test='{dataset}/test', if there is one\)$"):
        datasets.load_labelled(dataset, "classification")
    train = dataset / "train"
    with pytest.raises(UsageError, match=r"train: a folder of class folders holds classes, for "
                                         r"task='classification' \(not regression\)$"):
        datasets.load_labelled(train, "regression")
    with pytest.raises(UsageError, match=r"train: data_format='table', but this is a folder \(of class folders: "
                                         r"leave data_format out\)$"):
        datasets.load_labelled(train, "classification", fmt="table")
    (train / "labels.csv").write_text("sequence,label\n")
    with pytest.raises(InputError, match=r"train: holds the file 'labels\.csv' beside its class folders \(negative, "
                                         r"positive\): a folder of training data holds class folders only$"):
        datasets.load_labelled(train, "classification")
    (train / "labels.csv").unlink()
    (train / "positive" / "1.txt").write_text(seq[:10] + "\n" + seq[10:] + "\n")  # two sequences, named FILE:LINE
    assert datasets.load_labelled(train, "classification").ids == ["negative/0.txt", "positive/0.txt",
                                                                     "positive/1.txt:1", "positive/1.txt:2"]
    (train / "positive" / "1.txt").write_text(seq + "\n\n" + seq[:10] + "-" + seq[10:])
    with pytest.raises(InputError, match=r"train/positive/1\.txt: line 3: not a sequence \(plain sequence text holds "
                                         rf"letters only, one sequence per line; starts with '{seq[:10]}-"):
        datasets.load_labelled(train, "classification")
    (train / "positive" / "1.txt").unlink()
    (train / "positive" / "0.txt").unlink()
    with pytest.raises(InputError, match=r"train: class folder 'positive' holds no sequences$"):
        datasets.load_labelled(train, "classification")


def test_a_folders_fingerprint_is_of_its_files_names_and_contents(data_dir, tmp_path):
    seqs = [r["sequence"] for r in gue_rows(data_dir, n=3)]
    for root in (tmp_path / "a", tmp_path / "b"):
        (root / "x").mkdir(parents=True)
        for i, seq in enumerate(seqs):
            (root / "x" / f"{i}.txt").write_text(seq)
    first = datasets.fingerprint(tmp_path / "a")
    assert first == datasets.fingerprint(tmp_path / "b")  # where the folder is does not matter
    (tmp_path / "b" / "x" / "2.txt").rename(tmp_path / "b" / "x" / "3.txt")
    assert datasets.fingerprint(tmp_path / "b") != first
    (tmp_path / "a" / "x" / "1.txt").write_text(seqs[0])
    assert datasets.fingerprint(tmp_path / "a") not in (first, datasets.fingerprint(tmp_path / "b"))


def test_lm_sequences_from_cram_read_with_their_reference(data_dir, tmp_path):
    import pysam

    cram = tmp_path / "reads.cram"
    pysam.view("-C", "-T", str(data_dir / "ce.fa"), "-o", str(cram), str(data_dir / "ce_reads.bam"), catch_stdout=False)
    with pytest.raises(InputError, match=r"reads\.cram: CRAM input needs its reference FASTA \(reference\)"):
        datasets.load_labelled(cram, "lm", window=64)
    data = datasets.load_labelled(cram, "lm", window=64, reference=data_dir / "ce.fa")
    bam = datasets.load_labelled(data_dir / "ce_reads.bam", "lm", window=64)
    assert data.sequences == bam.sequences and len(data) == 2000 and data.layout == "lm"


def test_parquet_tables_read_as_the_csv_they_were_made_from(data_dir, tmp_path, monkeypatch):
    """A Parquet table (as Hugging Face datasets export them) gives the labelled data of the same table as CSV:
    the same sequences, classes and labels, rows numbered as the CSV's lines; integer-valued float labels read
    as integers, list cells as multilabel values. Without pyarrow: a UsageError saying what to install."""
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = gue_rows(data_dir, "dev", n=40)
    table = tmp_path / "dev.parquet"
    pq.write_table(pa.table({"sequence": [r["sequence"] for r in rows],
                             "label": [float(r["label"]) for r in rows]}), table)
    data = datasets.load_labelled(table, "classification", alphabet="nucleotide")
    csv_data = datasets.load_labelled(data_dir / GUE / "dev.csv", "classification", alphabet="nucleotide")
    assert data.sequences == csv_data.sequences[:40] and data.labels.tolist() == csv_data.labels[:40].tolist()
    assert data.class_names == ["0", "1"] and data.ids[:2] == ["dev.parquet:2", "dev.parquet:3"]
    assert data.layout == "table"

    multi = tmp_path / "multi.pq"
    pq.write_table(pa.table({"seq": ["ACGTACGT", "GGCCGGCC", "ACACACAC"], "label": [["a", "b"], ["b"], []]}), multi)
    with pytest.raises(InputError, match=r"multi\.pq: line 4: empty label in column\(s\) label"):
        datasets.load_labelled(multi, "multilabel")
    pq.write_table(pa.table({"seq": ["ACGTACGT", "GGCCGGCC"], "label": [["a", "b"], ["b"]]}), multi)
    labelled = datasets.load_labelled(multi, "multilabel")
    assert labelled.class_names == ["a", "b"] and labelled.labels.tolist() == [[1, 1], [0, 1]]

    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if pyarrow were not installed
    with pytest.raises(UsageError, match=r"dev\.parquet: reading Parquet needs pyarrow: pip install "
                                         r"'hyena-glt\[parquet\]' \(or pip install pyarrow\)$"):
        datasets.load_labelled(table, "classification")
