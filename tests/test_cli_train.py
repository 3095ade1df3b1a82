"""`hyena-glt train` on the command line: bad input is one line, exit 2 and no output folder; a good run
writes a model folder that records how it was made."""

from __future__ import annotations

import csv
import json

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
                      [(r["sequence"][: 50 + i % 20], r["label"]) for i, r in enumerate(rows)])
    assert_bad(invoke("train", str(mixed), "-o", str(out)), out, "mixed lengths", "give --window N")

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


def test_entropy_patcher_needs_a_model(rows, tmp_path):
    train = write_csv(tmp_path / "train.csv", ["sequence", "label"], [(r["sequence"], r["label"]) for r in rows])
    out = tmp_path / "m"
    assert_bad(invoke("train", str(train), "--patcher", "entropy", "-o", str(out)), out, "--entropy-model")
