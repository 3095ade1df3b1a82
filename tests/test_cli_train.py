"""`hyena-glt train` on the command line: bad input is one line, exit 2 and no output folder; a good run
writes a model folder that records how it was made."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hyena_glt.model import from_pretrained
from hyena_glt_cli.main import app

TINY = ["--set", "d_model=32", "--set", "n_layers=1", "--set", "d_inner=64", "--set", "filter_dim=16"]


def invoke(*args: str):
    before = torch.get_num_threads()
    try:
        return CliRunner().invoke(app, ["-@", "1", *args])
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def rows(data_dir) -> list[dict]:
    with open(data_dir / "gue/prom_core_all/train.csv") as fh:
        return list(csv.DictReader(fh))[:200]


def write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def assert_bad(result, out, *fragments):
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hyena-glt: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert not out.exists()


def test_bad_inputs_exit_2_without_output(rows, tmp_path):
    out = tmp_path / "model"
    good = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows])

    wrong_column = write_csv(tmp_path / "cols.csv", ["seq", "target"], [(r["sequence"], r["label"]) for r in rows])
    assert_bad(invoke("train", str(wrong_column), "-o", str(out)), out,
               "cols.csv: line 1: no column 'label' in the header (seq, target)", "--label-column")

    unseen = write_csv(tmp_path / "val.csv", ["sequence", "label"], [(rows[0]["sequence"], "1"), (rows[1]["sequence"], "7")])
    assert_bad(invoke("train", str(good), "--val", str(unseen), "-o", str(out)), out,
               "val.csv: line 3: label '7' does not occur in the training data (training labels: 0, 1)")

    mixed = write_csv(tmp_path / "mixed.csv", ["sequence", "label"],
                      [(r["sequence"][: 10 if i else 70], r["label"]) for i, r in enumerate(rows)])
    assert_bad(invoke("train", str(mixed), "-o", str(out)), out, "mixed lengths (10 nt 'mixed.csv:3' to 70 nt "
               "'mixed.csv:2'), and padding each to the longest would take 7 times their length; give --window N")

    empty = tmp_path / "empty.fa"
    empty.write_text("")
    promoters = tmp_path / "promoters.fa"
    promoters.write_text("".join(f">p{i}\n{r['sequence']}\n" for i, r in enumerate(rows) if r["label"] == "1"))
    assert_bad(invoke("train", "--class-fasta", f"promoter={promoters}", "--class-fasta", f"other={empty}",
                      "-o", str(out)), out, "empty.fa")

    assert_bad(invoke("train", str(good), "--val", str(good), "--val-fraction", "0.1", "-o", str(out)), out,
               "either --val or --val-fraction")
    assert_bad(invoke("train", str(tmp_path / "missing.csv"), "-o", str(out)), out, "missing.csv: no such file")
    assert_bad(invoke("train", str(good), "--set", "wings=2", "-o", str(out)), out, "unknown model config field(s): wings")
    assert_bad(invoke("train", str(good), "--meta", "task=lm", "-o", str(out)), out, "--meta cannot set task")
    assert_bad(invoke("train", str(good), "--class-names", "3=x", "-o", str(out)), out, "--class-names: no class '3'")


@pytest.mark.parametrize("env, message", [
    ({"RANK": "1"}, "inconsistent distributed environment (RANK=1): RANK must be in 0..WORLD_SIZE-1"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 but RANK, MASTER_ADDR, MASTER_PORT not set"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "localhost", "MASTER_PORT": "29500"},
     "inconsistent distributed environment (WORLD_SIZE=2, RANK=2)"),
    ({"LOCAL_RANK": "zero"}, "environment variable LOCAL_RANK='zero' is not an integer"),
])
def test_a_partial_distributed_environment_is_a_usage_error(rows, tmp_path, monkeypatch, env, message):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    good = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows])
    out = tmp_path / "model"
    assert_bad(invoke("train", str(good), *TINY, "--max-steps", "1", "-o", str(out)), out, message, "torchrun")


def test_class_fastas_val_fraction_run(rows, tmp_path):
    files = []
    for label, name in (("1", "promoter"), ("0", "other")):
        path = tmp_path / f"{name}.fa"
        path.write_text("".join(f">{name}{i}\n{r['sequence']}\n" for i, r in enumerate(rows) if r["label"] == label))
        files += ["--class-fasta", f"{name}={path}"]
    out = tmp_path / "model"
    result = invoke("--seed", "2", "train", *files, "--val-fraction", "0.25", *TINY, "--max-steps", "3",
                    "--batch-size", "50", "--meta", 'benchmark={"reference_test_mcc": 69.37}', "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # stdout carries data only; training logs go to stderr
    model, meta = from_pretrained(out)
    assert meta["class_names"] == ["other", "promoter"]
    assert meta["benchmark"] == {"reference_test_mcc": 69.37}
    assert meta["training"]["data"]["train"]["n_sequences"] == 150 and meta["training"]["data"]["val"]["n_sequences"] == 50
    assert meta["training"]["command"].split(" ")[0] == "hyena-glt"  # (the exact argv: see test_training_resume)
    assert set(meta["metrics"]["val"]) >= {"mcc", "accuracy", "auroc", "auprc", "macro_f1", "loss"}
    assert (out / "checkpoints" / "best" / "model.safetensors").is_file()
    assert json.loads((out / "config.json").read_text())["d_model"] == 32


def test_help_shows_an_example():
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    assert "Example: hyena-glt train" in result.stdout


def test_lm_then_entropy_patched_classifier(rows, data_dir, tmp_path):
    """`--task lm` makes an entropy model; `--patcher entropy` calibrates it to the target mean patch
    length on the training sequences and ships it inside the classifier's folder."""
    lm = tmp_path / "lm"
    result = invoke("train", "--task", "lm", str(data_dir / "lambda_virus.fa"), "--window", "256", *TINY,
                    "--max-steps", "2", "--batch-size", "16", "-o", str(lm))
    assert result.exit_code == 0, result.stderr
    train = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows[:128]])
    out = tmp_path / "patched"
    result = invoke("train", str(train), *TINY, "--patcher", "entropy", "--entropy-model", str(lm),
                    "--target-patch-length", "4", "--max-steps", "1", "--batch-size", "64", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    model, meta = from_pretrained(out)
    assert meta["patcher"] == "entropy" and model.config.patcher == "entropy"
    settings = json.loads((out / "entropy_model" / "hyena_glt.json").read_text())["entropy_patcher"]
    assert settings["target_patch_length"] == 4.0 and settings["threshold"] is not None
    assert settings["calibration"]["mean_patch_length"] == pytest.approx(4.0, abs=0.5)
    ids = torch.tensor([[5, 6, 7, 8] * 10])
    assert int(model.backbone.patcher(ids, torch.ones_like(ids, dtype=torch.bool)).sum()) == 40

    # fine-tuned (--init), it keeps its patcher and threshold, or calibrates it again to a new target
    kept, recalibrated = tmp_path / "kept", tmp_path / "recalibrated"
    for folder, extra in ((kept, []), (recalibrated, ["--target-patch-length", "8"])):
        result = invoke("train", str(train), "--init", str(out), *extra, "--max-steps", "1", "-o", str(folder))
        assert result.exit_code == 0, result.stderr
        again = json.loads((folder / "entropy_model" / "hyena_glt.json").read_text())["entropy_patcher"]
        assert from_pretrained(folder)[0].config.patcher == "entropy"
        if folder == kept:
            assert again["threshold"] == settings["threshold"] and again["target_patch_length"] == 4.0
        else:
            assert again["target_patch_length"] == 8.0 and again["threshold"] > settings["threshold"]


def test_entropy_patcher_needs_a_model(rows, tmp_path):
    train = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows])
    out = tmp_path / "m"
    assert_bad(invoke("train", str(train), "--patcher", "entropy", "-o", str(out)), out, "--entropy-model")


# ---------------------------------------------------------------------------------------------------------------
# bad input found by a new-user sweep: each is one line naming the file (and the line or record), exit 2, and no
# output folder (nor any parent folder the run would have made)


def write_bytes(path, data: bytes):
    path.write_bytes(data)
    return path


def test_unreadable_training_files_are_input_errors(rows, tmp_path):
    import gzip

    out = tmp_path / "new" / "deeper" / "model"
    good = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows])
    folder = tmp_path / "adir"
    folder.mkdir()
    garbage = write_bytes(tmp_path / "garbage.bin", bytes(range(128, 256)) * 20)
    text = good.read_bytes()
    truncated = write_bytes(tmp_path / "trunc.csv.gz", gzip.compress(text)[: len(gzip.compress(text)) // 2])
    nul = write_bytes(tmp_path / "nul.csv", b"sequence,label\nACGT,1\nAC\x00GT,0\n")
    no_classes = ("adir: a folder of training data holds one folder per class (e.g. positive/ and negative/), each "
                  "with that class's sequences; this one holds no folders")
    for args, message in (
        ([str(folder)], no_classes),
        ([str(garbage)], "garbage.bin: line 1: not a text table (binary data)"),
        ([str(truncated)], "trunc.csv.gz: truncated gzip file (unexpected end of compressed data)"),
        ([str(nul)], "nul.csv: line 3: not a text table (binary data)"),
        ([str(good), "--val", str(folder)], no_classes),
        ([str(good), "--test", str(garbage)], "garbage.bin: line 1: not a text table (binary data)"),
        ([str(good), "--val", str(truncated)], "trunc.csv.gz: truncated gzip file"),
        (["--task", "lm", str(folder)], "adir: folder holds no files"),
    ):
        assert_bad(invoke("train", *args, "--max-steps", "1", "-o", str(out)), out, message)
        assert not (tmp_path / "new").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc, where nothing can be created")
def test_output_folder_that_cannot_be_created(rows, tmp_path):
    good = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows])
    out = Path("/proc/hyena-glt-test-model")
    assert_bad(invoke("train", str(good), "--max-steps", "1", "-o", str(out)), out,
               "hyena-glt: error: /proc/hyena-glt-test-model: cannot create the output folder: ")


def test_failure_inside_training_leaves_no_parent_folders(rows, tmp_path):
    good = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows])
    out = tmp_path / "new" / "model"
    assert_bad(invoke("train", str(good), "--set", "wings=2", "-o", str(out)), out, "unknown model config field(s): wings")
    assert not (tmp_path / "new").exists()


def test_sequences_are_checked_against_the_tokenizer_alphabet(tmp_path):
    out = tmp_path / "model"
    cases = {
        "badseq.csv": ("sequence,label\nACGT,1\nACGX,0\nGGCC,0\n",
                       "badseq.csv: line 3: invalid character 'X' at position 4 (not in the nucleotide alphabet)"),
        "space.csv": ("sequence,label\nACGTAC GT,1\nACGTACGTA,0\n", "space.csv: line 2: invalid character ' ' at position 7"),
        "quoted.csv": ('"sequence","label"\n"ACGTA",1\n"GG,CC",0\n', "quoted.csv: line 3: invalid character ',' at position 3"),
        "labelled.fa": (">a label=1\nACGT\n>b label=0\nAC!T\n",
                        "labelled.fa: record 'b': invalid character '!' at position 3 (not in the nucleotide alphabet)"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        assert_bad(invoke("train", str(tmp_path / name), "--window", "8", "--max-steps", "1", "-o", str(out)), out, message)
    digits = write_csv(tmp_path / "digits.csv", ["sequence", "code", "label"], [("ACGT", "1", "0"), ("GGCC", "2", "1")])
    assert_bad(invoke("train", str(digits), "--sequence-column", "code", "--max-steps", "1", "-o", str(out)), out,
               "digits.csv: line 2: invalid character '1' at position 1 (not in the nucleotide alphabet)")
    assert_bad(invoke("train", str(digits), "--sequence-column", "label", "--max-steps", "1", "-o", str(out)), out,
               "digits.csv: line 1: column 'label' cannot be both the sequence and a label column")
    good = write_csv(tmp_path / "good.csv", ["sequence", "label"], [("ACGT", "0"), ("GGCC", "1")])
    bad_test = write_csv(tmp_path / "test.csv", ["sequence", "label"], [("ACGT", "0"), ("GGJC", "1")])
    assert_bad(invoke("train", str(good), "--test", str(bad_test), "--max-steps", "1", "-o", str(out)), out,
               "test.csv: line 3: invalid character 'J' at position 3")
    (tmp_path / "lm.fa").write_text(">x\nACGTXACGT\n")
    assert_bad(invoke("train", "--task", "lm", str(tmp_path / "lm.fa"), "--max-steps", "1", "-o", str(out)), out,
               "lm.fa: record 'x': invalid character 'X' at position 5 (not in the nucleotide alphabet)")
    (tmp_path / "a.fa").write_text(">a1\nACGT\n")
    (tmp_path / "b.fa").write_text(">b1\nAC-T\n")
    assert_bad(invoke("train", "--class-fasta", f"a={tmp_path / 'a.fa'}", "--class-fasta", f"b={tmp_path / 'b.fa'}",
                      "--max-steps", "1", "-o", str(out)), out, "b.fa: record 'b1': invalid character '-' at position 3")
    # a protein tokenizer reads protein letters: the same X is fine there
    result = invoke("train", str(tmp_path / "badseq.csv"), "--tokenizer", "protein", *TINY, "--max-steps", "1",
                    "--batch-size", "4", "-o", str(out))
    assert result.exit_code == 0, result.stderr


def test_lm_on_a_one_base_record_is_bad_input(tmp_path):
    one = tmp_path / "one.fa"
    one.write_text(">one\nA\n")
    out = tmp_path / "lm"
    assert_bad(invoke("train", "--task", "lm", str(one), "--max-steps", "1", "--batch-size", "4", "-o", str(out)), out,
               "one.fa: no training sequence is long enough for a next-unit prediction (each has fewer than 2 units")
    assert_bad(invoke("train", "--task", "lm", str(one), "--window", "1", "--max-steps", "1", "-o", str(out)), out,
               "--task lm needs --window of at least 2")
    # a single-base record beside real ones is left out with a warning, not a diverged loss
    mixed = tmp_path / "mixed.fa"
    mixed.write_text(">one\nA\n>two\nACGTACGTAC\n")
    result = invoke("train", "--task", "lm", str(mixed), *TINY, "--max-steps", "1", "--batch-size", "4", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert "mixed.fa: left out 1 training sequence(s) of a single unit" in result.stderr
    assert from_pretrained(out)[1]["training"]["data"]["train"]["n_sequences"] == 1


def test_utf8_bom_in_the_header_is_dropped(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfsequence,label\nACGTACGT,1\nGGCCGGCC,0\n")
    out = tmp_path / "model"
    result = invoke("train", str(bom), *TINY, "--max-steps", "1", "--batch-size", "4", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert from_pretrained(out)[1]["class_names"] == ["0", "1"]


def test_data_format_is_honoured_or_refused(rows, tmp_path):
    out = tmp_path / "model"
    table = write_csv(tmp_path / "tr.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows])
    fasta = tmp_path / "lab.fa"
    fasta.write_text(">a label=1\nACGTACGT\n>b label=0\nGGCCGGCC\n")
    assert_bad(invoke("train", str(table), "--data-format", "fasta", "--max-steps", "1", "-o", str(out)), out,
               "tr.csv: --data-format fasta, but the file holds no FASTA/FASTQ records")
    assert_bad(invoke("train", str(fasta), "--data-format", "table", "--max-steps", "1", "-o", str(out)), out,
               "lab.fa: --data-format table, but the file holds FASTA/FASTQ (or SAM/BAM/CRAM) records")
    assert_bad(invoke("train", str(table), "--data-format", "gff", "--max-steps", "1", "-o", str(out)), out,
               "unknown data format 'gff' (use one of: table, fasta, bed)")
    assert_bad(invoke("train", "--task", "lm", str(fasta), "--data-format", "bed", "--max-steps", "1", "-o", str(out)),
               out, "--data-format bed is for labelled intervals")
    # honoured where it fits the content: a FASTA with a .txt name (which alone would mean a table)
    renamed = tmp_path / "lab.txt"
    renamed.write_text(fasta.read_text())
    assert_bad(invoke("train", str(renamed), "--max-steps", "1", "-o", str(out)), out, "lab.txt: ")
    result = invoke("train", str(renamed), "--data-format", "fasta", *TINY, "--max-steps", "1", "--batch-size", "4",
                    "-o", str(out))
    assert result.exit_code == 0, result.stderr


def test_option_values_that_were_accepted_silently(rows, tmp_path):
    out = tmp_path / "model"
    good = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows])
    lm = tmp_path / "lm.fa"
    lm.write_text(">x\n" + "ACGT" * 50 + "\n")
    for args, message in (
        (["--eval-every", "0"], "--eval-every must be at least 1 (got 0)"),
        (["--checkpoint-every", "0"], "--checkpoint-every must be at least 1 (got 0)"),
        (["--curriculum-start", "10", "--curriculum-fraction", "2"], "--curriculum-fraction must be in (0, 1] (got 2.0)"),
        (["--curriculum-fraction", "0"], "--curriculum-fraction must be in (0, 1] (got 0.0)"),
        (["--target-patch-length", "0"], "--target-patch-length only applies to --patcher entropy (got --patcher none)"),
        (["--patcher", "entropy", "--entropy-model", str(tmp_path), "--target-patch-length", "0.5"],
         "--target-patch-length must be a number of units >= 1 (got 0.5)"),
        (["--meta", "k={bad"], "--meta k={bad: not valid JSON (Expecting property name enclosed in double quotes"),
        (["--set", "attn_layers=[1"], "--set attn_layers=[1: not valid JSON"),
        (["--stride", "5"], "--stride is for --task lm"),
    ):
        assert_bad(invoke("train", str(good), *args, "--max-steps", "1", "-o", str(out)), out, message)
    assert_bad(invoke("train", "--task", "lm", str(lm), "--stride", "0", "--max-steps", "1", "-o", str(out)), out,
               "--stride must be at least 1 (got 0)")
    # options for another layout of data than the one given: refused, not ignored
    labelled_fasta = tmp_path / "labelled.fa"
    labelled_fasta.write_text("".join(f">r{i} label={r['label']}\n{r['sequence']}\n" for i, r in enumerate(rows)))
    semicolons = tmp_path / "semi.csv"
    semicolons.write_text("sequence;label\nACGTACGT;1\nGGCCGGCC;0\n")
    for args, message in (
        ([str(semicolons)], "semi.csv: line 1: no sequence column in the header (sequence;label); expected one named "
                            "'sequence', or choose one with --sequence-column; its columns look separated by ';': "
                            "separate them by commas or tabs"),
        ([str(good), "--label-regex", "x=(\\S+)"],
         "--label-regex applies to FASTA with labels in the headers; the data given are a table"),
        ([str(good), "--reference", str(lm)], "--reference applies to BED intervals (and CRAM reads); the data given "
                                              "are a table"),
        ([str(labelled_fasta), "--label-column", "label"],
         "--label-column applies to tables and BED files; the data given are FASTA with labels in the headers"),
        (["--task", "lm", str(lm), "--sequence-column", "seq"],
         "--sequence-column applies to tables; the data given are sequences to model"),
    ):
        assert_bad(invoke("train", *args, "--max-steps", "1", "-o", str(out)), out, message)
    # an option that applies to one of the files given (here the validation table's column) is taken
    result = invoke("train", str(labelled_fasta), "--val", str(good), "--label-column", "label", *TINY,
                    "--max-steps", "1", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    shutil.rmtree(out)
    flags = write_csv(tmp_path / "ml.csv", ["sequence", "a", "b"], [("ACGTACGT", "1", "0"), ("GGCCGGCC", "0", "2")])
    assert_bad(invoke("train", str(flags), "--task", "multilabel", "--max-steps", "1", "-o", str(out)), out,
               "ml.csv: line 3: column 'b': '2' is not 0 or 1 (a multilabel flag column)")
    two = tmp_path / "lab.fa"
    two.write_text(">a label=1\nACGTACGT\n>b label=0\nGGCCGGCC\n")
    assert_bad(invoke("train", str(two), "--val-fraction", "0.5", "--max-steps", "1", "-o", str(out)), out,
               "lab.fa: --val-fraction 0.5 of 2 sequences leaves no training example of class(es) ",
               "classification needs at least two classes")
    # a bare word stays a string (as --set pooling=attention does)
    result = invoke("train", str(good), "--meta", "source=GUE", *TINY, "--max-steps", "1", "--batch-size", "50",
                    "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert from_pretrained(out)[1]["source"] == "GUE"


def test_soft_masked_dna_gets_reverse_complement_augmentation_and_averaging_by_default(rows, tmp_path):
    """nucleotide:softmask is DNA too: rc augmentation in training and rc averaging at inference are on by
    default, as for nucleotide, and the model trains on the soft-masked ids it will classify."""
    masked = [(r["sequence"][:20] + r["sequence"][20:40].lower() + r["sequence"][40:], r["label"]) for r in rows[:64]]
    data = write_csv(tmp_path / "soft.csv", ["sequence", "label"], masked)
    out = tmp_path / "soft_model"
    result = invoke("train", str(data), "--tokenizer", "nucleotide:softmask", *TINY, "--max-steps", "1",
                    "--batch-size", "16", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    meta = json.loads((out / "hyena_glt.json").read_text())
    assert meta["rc_average"] is True and meta["training"]["options"]["rc_augment"] is True


def test_labels_and_class_names_that_would_make_wrong_classes(rows, tmp_path):
    out = tmp_path / "model"
    spellings = ["0", "1", "0.0", "1.0"]
    spelled = write_csv(tmp_path / "spelled.csv", ["sequence", "label"],
                        [(r["sequence"], spellings[i % 4]) for i, r in enumerate(rows)])
    assert_bad(invoke("train", str(spelled), "--max-steps", "1", "-o", str(out)), out,
               "spelled.csv: labels '0' (line 2) and '0.0' (line 4) are the same number written two ways; "
               "write them one way")
    good = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows])
    for args, message in (
        (["--class-names", "0=a\tb"], "--class-names: class name 'a\\tb' holds a tab or line break"),
        (["--class-names", "0=promoter,1=promoter"], "--class-names: two classes are named 'promoter'"),
        (["--class-names", "0=a", "--class-names", "0=b"], "--class-names names class '0' twice"),
    ):
        assert_bad(invoke("train", str(good), *args, "--max-steps", "1", "-o", str(out)), out, message)
    # a validation or test label training never saw is bad input (exit 2), not a runtime failure
    unseen = write_csv(tmp_path / "test.csv", ["sequence", "label"], [(rows[0]["sequence"], "2")])
    assert_bad(invoke("train", str(good), "--test", str(unseen), "--max-steps", "1", "-o", str(out)), out,
               "test.csv: line 2: label '2' does not occur in the training data (training labels: 0, 1)")


def test_labelled_data_from_stdin_and_pipes(rows, tmp_path):
    """A table or labelled FASTA is read twice (format, then records), so a stream is copied to a temporary
    file first: stdin and pipes train like files, and errors name the stream, not the copy."""
    out = tmp_path / "model"
    table = "sequence,label\n" + "".join(f"{r['sequence']},{r['label']}\n" for r in rows)

    def stdin(*args, data):
        before = torch.get_num_threads()
        try:
            return CliRunner().invoke(app, ["-@", "1", *args], input=data)
        finally:
            torch.set_num_threads(before)

    result = stdin("train", "-", "--max-steps", "1", "-o", str(out), data=table)
    assert result.exit_code == 0, result.stderr
    meta = json.loads((out / "hyena_glt.json").read_text())
    assert meta["training"]["data"]["train"]["files"] == ["-"]
    assert meta["training"]["data"]["train"]["n_sequences"] == len(rows)
    assert meta["training"]["data"]["train"]["sha256"] == [hashlib.sha256(table.encode()).hexdigest()]
    bad = tmp_path / "bad"
    assert_bad(stdin("train", "-", "-o", str(bad), data=table + "ACGTXX,1\n"), bad,
               f"stdin: line {len(rows) + 2}: invalid character 'X' at position 5")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(">a label=1\nACGTACGT\n>b label=0\nGGCCGGCC\n"))
    writer.start()
    piped = tmp_path / "piped"
    result = invoke("train", str(fifo), "--max-steps", "1", "-o", str(piped))
    writer.join()
    assert result.exit_code == 0, result.stderr
    assert from_pretrained(piped)[1]["class_names"] == ["0", "1"]
    bed = "chrA\t0\t8\tx\t1\n"  # BED is told by its extension: from a pipe it needs --data-format bed
    assert_bad(stdin("train", "-", "--reference", "ref.fa", "-o", str(bad), data=bed), bad,
               "stdin: line 1: no sequence column", "if these are BED intervals, give --data-format bed")
    # a language model's stream is copied too, for its sha256
    fasta = ">phage\n" + "ACGTTGCAAGGCTTAACC" * 20 + "\n"
    lm = tmp_path / "lm"
    result = stdin("train", "--task", "lm", "-", "--window", "64", "--max-steps", "1", "-o", str(lm), data=fasta)
    assert result.exit_code == 0, result.stderr
    data = json.loads((lm / "hyena_glt.json").read_text())["training"]["data"]["train"]
    assert data["files"] == ["-"] and data["sha256"] == [hashlib.sha256(fasta.encode()).hexdigest()]


def test_init_fine_tunes_from_a_language_model(rows, data_dir, tmp_path):
    """`--init LM` copies every backbone tensor of the LM (the LM head is not a classifier's), keeps its
    architecture, tokenizer and causality, and records where it started."""
    lm = tmp_path / "lm"
    result = invoke("train", "--task", "lm", str(data_dir / "lambda_virus.fa"), "--window", "128", *TINY,
                    "--max-steps", "2", "--batch-size", "16", "-o", str(lm))
    assert result.exit_code == 0, result.stderr
    train = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows[:64]])
    out = tmp_path / "tuned"
    # lr so small that one step leaves the copied weights equal to 1e-6: they were copied, not re-drawn
    result = invoke("train", str(train), "--init", str(lm), "--dropout", "0.2", "--max-steps", "1", "--lr", "1e-12",
                    "--warmup", "0", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert "tensors copied (backbone); new: head.bias, head.weight" in result.stderr
    base, _ = from_pretrained(lm)
    tuned, meta = from_pretrained(out)
    assert tuned.config.d_model == 32 and tuned.config.bidirectional is False and tuned.config.dropout == 0.2
    assert meta["tokenizer"]["type"] == "nucleotide" and meta["training"]["options"]["tokenizer"] == "nucleotide"
    theirs = base.state_dict()
    backbone = [k for k in tuned.state_dict() if k.startswith("backbone.")]
    assert backbone and all(torch.allclose(tuned.state_dict()[k], theirs[k], atol=1e-6) for k in backbone)
    assert tuned.head.weight.shape == (2, 32)
    info = meta["training"]["init"]
    assert info["model"] == str(lm) and info["task"] == "lm" and info["new"] == ["head.bias", "head.weight"]
    assert len(info["sha256"]) == 64

    # a classifier fine-tuned on data with the same classes starts from its head too
    again = tmp_path / "again"
    result = invoke("train", str(train), "--init", str(out), "--max-steps", "1", "--lr", "1e-12", "--warmup", "0",
                    "-o", str(again))
    assert result.exit_code == 0, result.stderr
    assert "tensors copied (backbone and head); new: none" in result.stderr
    second, _ = from_pretrained(again)
    assert torch.allclose(second.head.weight, tuned.head.weight, atol=1e-6)


def test_init_takes_the_bundled_dna_lm_by_name(rows, tmp_path, monkeypatch):
    from hyena_glt.pretrained import model_dir

    monkeypatch.chdir(tmp_path)
    train = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows[:64]])
    result = invoke("train", str(train), "--init", "dna-lm-tiny", "--max-steps", "1", "--batch-size", "16", "-o", "tuned")
    assert result.exit_code == 0, result.stderr
    assert "--init dna-lm-tiny: 56 of 58 tensors copied (backbone); new: head.bias, head.weight" in result.stderr
    tuned, meta = from_pretrained(tmp_path / "tuned")
    assert meta["training"]["init"]["model"] == str(model_dir("dna-lm-tiny")) and tuned.config.bidirectional is False


def test_a_progress_line_between_evaluations(rows, tmp_path, monkeypatch):
    """Between evaluations (one an epoch by default) the log says how far the run is and how long is left."""
    import re

    monkeypatch.setattr("hyena_glt.training.trainer.PROGRESS_SECONDS", 1e-9)
    train = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows[:64]])
    result = invoke("train", str(train), *TINY, "--epochs", "1", "--batch-size", "16", "-o", str(tmp_path / "m"))
    assert result.exit_code == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if "left)" in line]
    assert [re.match(r"hyena-glt: epoch 1 step (\d)/4 train_loss [0-9.]+ \(\d+ s; about \d+ s left\)$", line).group(1)
            for line in progress] == ["1", "2", "3"]  # step 4 ends the epoch: its evaluation line instead


def test_init_refuses_what_would_not_fit(rows, data_dir, tmp_path):
    train = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows[:64]])
    model = tmp_path / "m"
    assert invoke("train", str(train), *TINY, "--max-steps", "1", "-o", str(model)).exit_code == 0
    out = tmp_path / "out"
    assert_bad(invoke("train", str(train), "--init", str(tmp_path / "nope"), "-o", str(out)), out,
               "nope: model directory does not exist")
    assert_bad(invoke("train", str(train), "--init", str(model), "--tokenizer", "kmer:3", "-o", str(out)), out,
               "--tokenizer kmer:3: the model of --init", "reads 'nucleotide'")
    assert_bad(invoke("train", str(train), "--init", str(model), "--patcher", "static:4", "-o", str(out)), out,
               "--patcher static:4", "was built for 'none'")
    assert_bad(invoke("train", str(train), "--init", str(model), "--preset", "small", "-o", str(out)), out,
               "--preset does not apply with --init")
    assert_bad(invoke("train", str(train), "--init", str(model), "--d-model", "64", "-o", str(out)), out,
               "only dropout may change (got d_model)")
    assert_bad(invoke("train", "--task", "lm", str(data_dir / "lambda_virus.fa"), "--init", str(model), "-o", str(out)),
               out, "--task lm", "is bidirectional")
    (model / "model.safetensors").rename(model / "model.bin")
    assert_bad(invoke("train", str(train), "--init", str(model), "-o", str(out)), out, "refusing to load pickle")


# ---------------------------------------------------------------------------------------------------------------
# found by a sweep of --init and of data from pipes


def test_init_run_resumes_from_another_folder_by_its_weights(rows, tmp_path, monkeypatch):
    """--resume knows the --init model by the sha256 of its weights, not by how its path is spelled: a run
    started with a relative --init resumes from another folder; another model under that path is refused."""
    train = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows[:64]])
    assert invoke("train", str(train), *TINY, "--max-steps", "1", "-o", str(tmp_path / "base")).exit_code == 0
    monkeypatch.chdir(tmp_path)
    run = ["train", str(train), "--max-steps", "2", "--batch-size", "32", "--checkpoint-every", "1"]
    result = invoke(*run, "--init", "base", "-o", "tuned")
    assert result.exit_code == 0, result.stderr
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = invoke(*run, "--init", "../base", "-o", "../tuned", "--resume")
    assert result.exit_code == 0, result.stderr
    assert "resuming from ../tuned/checkpoints/last" in result.stderr
    # the same path holding other weights is another starting point
    assert invoke("train", str(train), *TINY, "--max-steps", "2", "-o", str(tmp_path / "other")).exit_code == 0
    before = sorted(p.name for p in (tmp_path / "tuned").iterdir())
    result = invoke(*run, "--init", "../other", "-o", "../tuned", "--resume")
    assert result.exit_code == 2 and "--resume: the --init model ../other is not the one the run in ../tuned " \
        "started from (sha256 of model.safetensors differs)" in result.stderr, result.stderr
    assert sorted(p.name for p in (tmp_path / "tuned").iterdir()) == before
    # an init model that is gone (scratch space cleaned): the run's checkpoint stands in for it
    recorded = json.loads((tmp_path / "tuned" / "hyena_glt.json").read_text())["training"]["init"]
    weights = (tmp_path / "tuned" / "model.safetensors").read_bytes()
    (tmp_path / "base").rename(tmp_path / "gone")
    result = invoke(*run, "--init", "../base", "-o", "../tuned", "--resume")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("--init ../base is no longer there: the run's last checkpoint gives the "
                               "architecture") == 1, result.stderr
    assert "tensors copied" not in result.stderr
    meta = json.loads((tmp_path / "tuned" / "hyena_glt.json").read_text())
    assert meta["training"]["init"]["sha256"] == recorded["sha256"] and meta["training"]["steps"] == 2
    assert "resuming from ../tuned/checkpoints/last" in result.stderr
    assert (tmp_path / "tuned" / "model.safetensors").read_bytes() == weights  # the checkpoint's, not fresh ones
    result = invoke(*run, "--init", "../base", "-o", "../fresh")  # a new run still needs it
    assert_bad(result, tmp_path / "fresh", "../base: model directory does not exist")


def test_mixed_lengths_train_whole_and_classify_reproduces_the_test_metrics(rows, tmp_path):
    """Sequences of 40-70 nt with no --window: read whole (padded to 70, masked), as the log says; the model's
    window is the longest, and classify's scores give the test metrics training reported."""
    mixed = [(r["sequence"][: 40 + i % 31], r["label"]) for i, r in enumerate(rows)]
    train = write_csv(tmp_path / "train.csv", ["sequence", "label"], mixed[:160])
    test = write_csv(tmp_path / "test.csv", ["sequence", "label"], mixed[160:])
    out = tmp_path / "model"
    result = invoke("train", str(train), "--test", str(test), *TINY, "--max-steps", "3", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert (f"{train}: training sequences have mixed lengths (40 nt 'train.csv:2' to 70 nt 'train.csv:32'): each is "
            "read whole, padded to 70 units (--window N centre-crops longer ones to N)") in result.stderr
    meta = json.loads((out / "hyena_glt.json").read_text())
    assert meta["window"] == 70
    scored = invoke("classify", str(test), "-m", str(out), "-o", str(tmp_path / "test.tsv"))
    assert scored.exit_code == 0, scored.stderr
    with open(tmp_path / "test.tsv") as fh:
        p = [float(r["p_1"]) for r in csv.DictReader(fh, delimiter="\t")]
    accuracy = sum((q >= 0.5) == (label == "1") for q, (_, label) in zip(p, mixed[160:])) / len(p)
    assert len(p) == 40 and abs(accuracy - meta["metrics"]["test"]["accuracy"]) < 1e-9


def test_init_from_a_run_that_stopped_early_points_at_init(rows, tmp_path):
    train = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows[:64]])
    stopped = tmp_path / "stopped"
    assert invoke("train", str(train), *TINY, "--max-steps", "1", "-o", str(stopped)).exit_code == 0
    for name in ("config.json", "model.safetensors", "hyena_glt.json"):  # what a run killed before its end lacks
        (stopped / name).unlink()
    out = tmp_path / "out"
    result = invoke("train", str(train), "--init", str(stopped), "-o", str(out))
    assert_bad(result, out, "no finished model here", f"--init {stopped / 'checkpoints' / 'last'}")
    assert "--model" not in result.stderr
    result = invoke("train", str(train), "--init", str(stopped / "checkpoints" / "last"), "--max-steps", "1",
                    "-o", str(out))
    assert result.exit_code == 0, result.stderr


def test_a_run_on_a_stream_resumes_when_the_stream_brings_the_same_data(rows, tmp_path, monkeypatch):
    """--resume checks the data by their sha256: a stream's is taken as it is read. A run on stdin stopped by
    a signal says to resume with the same data on stdin; different data are refused, the same continue."""
    import signal

    from hyena_glt.training.trainer import Trainer

    table = "sequence,label\n" + "".join(f"{r['sequence']},{r['label']}\n" for r in rows[:64])
    step = Trainer._train_step

    def step_then_sigterm(self, *args):  # as if SIGTERM arrived during the first step
        step(self, *args)
        self._signal = signal.SIGTERM

    monkeypatch.setattr(Trainer, "_train_step", step_then_sigterm)
    out = tmp_path / "model"
    before = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, ["-@", "1", "train", "-", *TINY, "--max-steps", "3", "-o", str(out)],
                                    input=table)
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 128 + signal.SIGTERM
    message = result.stderr.strip().splitlines()[-1]
    assert message.endswith("; run the same command with --resume to continue (with the same data on stdin)"), message
    monkeypatch.setattr(Trainer, "_train_step", step)
    other = "sequence,label\n" + "".join(f"{r['sequence']},{r['label']}\n" for r in rows[1:65])
    args = ["-@", "1", "train", "-", *TINY, "--max-steps", "3", "-o", str(out), "--resume"]
    try:
        result = CliRunner().invoke(app, args, input=other)
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines()[-1] == (
            f"hyena-glt: error: --resume: the train data differ from those the run in {out} was started with "
            "(sha256 mismatch)")
        result = CliRunner().invoke(app, args, input=table)
        assert result.exit_code == 0, result.stderr
        assert "checkpoints/last: step 1," in result.stderr and "wrote" in result.stderr.splitlines()[-1]
        # the data as a file: the same bytes, the same run
        data = tmp_path / "train.csv"
        data.write_text(table)
        again = CliRunner().invoke(app, [*args[:3], str(data), *args[4:]])
        assert again.exit_code == 0 and "checkpoints/last: step 3," in again.stderr, again.stderr
    finally:
        torch.set_num_threads(before)


def test_a_stream_named_twice_is_refused_before_it_is_read(rows, tmp_path):
    """A stream can be read once: a named pipe given as TRAIN_FILE and --val waited forever for a second
    writer, and stdin for two --class-fasta classes was empty the second time."""
    out = tmp_path / "model"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = {}
    run = threading.Thread(target=lambda: result.update(
        r=invoke("train", str(fifo), "--val", str(fifo), "--max-steps", "1", "-o", str(out))), daemon=True)
    run.start()
    run.join(30)
    hung = run.is_alive()
    while run.is_alive():  # (old behaviour: waiting for a writer; give it an empty one so the thread ends)
        with open(fifo, "w"):
            pass
        run.join(5)
    assert not hung, "waited for a second writer to the named pipe"
    assert_bad(result["r"], out, f"{fifo}: given twice, but a stream can be read only once; give the data as a file")

    fasta = "".join(f">p{i}\n{r['sequence']}\n" for i, r in enumerate(rows[:20]))
    before = torch.get_num_threads()
    try:
        twice = CliRunner().invoke(app, ["-@", "1", "train", "--class-fasta", "a=-", "--class-fasta", "b=-",
                                         "--max-steps", "1", "-o", str(out)], input=fasta)
    finally:
        torch.set_num_threads(before)
    assert_bad(twice, out, "stdin ('-'): given twice, but a stream can be read only once")


def write_class_folders(root: Path, rows_by_class: dict[str, list[str]]) -> Path:
    """Genomic Benchmarks' layout: ROOT/CLASS/N.txt, one sequence per file (no line break, as theirs)."""
    for name, seqs in rows_by_class.items():
        (root / name).mkdir(parents=True)
        for i, seq in enumerate(seqs):
            (root / name / f"{i}.txt").write_text(seq)
    return root


def test_genomic_benchmarks_folders_train_resume_and_classify_reproduces_the_test_metrics(rows, tmp_path):
    """train DATASET/train --test DATASET/test on class folders; the dataset's root is refused with the command
    that reads it; classify DATASET/test names each record by its file and reproduces the test accuracy."""
    by_class = {"negative": [r["sequence"] for r in rows if r["label"] == "0"],
                "positive": [r["sequence"] for r in rows if r["label"] == "1"]}
    dataset = tmp_path / "demo_promoters"
    train = write_class_folders(dataset / "train", {c: s[:-12] for c, s in by_class.items()})
    test = write_class_folders(dataset / "test", {c: s[-12:] for c, s in by_class.items()})
    out = tmp_path / "model"
    assert_bad(invoke("train", str(dataset), *TINY, "-o", str(out)), out,
               f"{dataset}: holds the splits test, train, not classes: give {train} as the training data (and --test "
               f"{test}, if there is one)")
    args = ["train", str(train), "--test", str(test), *TINY, "--max-steps", "2", "-o", str(out)]
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    meta = json.loads((out / "hyena_glt.json").read_text())
    assert meta["class_names"] == ["negative", "positive"]
    # the folder's sha256 is recorded (of its files' names and contents): the run resumes on the same files only
    resumed = invoke(*args, "--resume")
    assert resumed.exit_code == 0 and "checkpoints/last: step 2," in resumed.stderr, resumed.stderr
    (train / "positive" / "0.txt").write_text(by_class["positive"][1])
    changed = invoke(*args, "--resume")
    assert changed.exit_code == 2 and changed.stderr.strip().splitlines()[-1] == (
        f"hyena-glt: error: --resume: the train data differ from those the run in {out} was started with "
        "(sha256 mismatch)"), changed.stderr
    scored = invoke("classify", str(test), "-m", str(out), "-o", str(tmp_path / "test.tsv"),
                    "--metrics", str(tmp_path / "metrics.tsv"))
    assert scored.exit_code == 0, scored.stderr
    with open(tmp_path / "test.tsv") as fh:
        table = list(csv.DictReader(fh, delimiter="\t"))
    assert [r["id"] for r in table] == [f"{c}/{i}.txt" for c in ("negative", "positive") for i in range(12)]
    accuracy = sum((float(r["p_positive"]) >= 0.5) == r["id"].startswith("positive") for r in table) / len(table)
    meta = json.loads((out / "hyena_glt.json").read_text())
    assert abs(accuracy - meta["metrics"]["test"]["accuracy"]) < 1e-9
    with open(tmp_path / "metrics.tsv") as fh:
        (metrics,) = list(csv.DictReader(fh, delimiter="\t"))
    assert (metrics.pop("input"), metrics.pop("n")) == (str(test), "24")
    assert {k: float(v) for k, v in metrics.items()} == pytest.approx(meta["metrics"]["test"], rel=1e-5, abs=1e-6)


def test_a_warmup_as_long_as_the_run_is_said(rows, tmp_path):
    train = write_csv(tmp_path / "t.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows[:40]])
    result = invoke("train", str(train), *TINY, "--max-steps", "2", "--warmup", "5", "--batch-size", "20",
                    "-o", str(tmp_path / "m"))
    assert result.exit_code == 0, result.stderr
    assert ("hyena-glt: --warmup 5 steps is the whole run (2 step(s)): the learning rate never reaches --lr 0.001\n"
            in result.stderr), result.stderr
