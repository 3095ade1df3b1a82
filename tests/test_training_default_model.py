"""The bundled default model: present, loadable, small, and carrying its GUE test metrics and provenance."""

from __future__ import annotations

import csv

import pytest
import torch

from hyena_glt.errors import ModelError
from hyena_glt.model import from_pretrained, rc_average_logits
from hyena_glt.pretrained import bundled_models, default_model_dir, model_dir
from hyena_glt.tokenizers import get_tokenizer
from hyena_glt.training.metrics import classification_metrics


def test_default_model_is_bundled_and_documented():
    folder = default_model_dir()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 5_000_000  # a few MB at most
    assert not (folder / "checkpoints").exists()  # optimiser state is not shipped
    model, meta = from_pretrained(folder)
    assert meta["task"] == "classification" and meta["class_names"] == ["non_promoter", "promoter"]
    assert meta["window"] == 70 and meta["rc_average"] is True
    test = meta["metrics"]["test"]
    assert {"mcc", "accuracy", "auroc"} <= set(test)
    assert meta["benchmark"]["reference_model"] == "DNABERT-2" and meta["benchmark"]["reference_test_mcc"] == 69.37
    training = meta["training"]
    assert training["command"].startswith("hyena-glt ") and "prom_core_all/train.csv" in training["command"]
    assert training["seed"] == 1 and training["data"]["test"]["n_sequences"] == 5920
    assert len(training["data"]["train"]["sha256"][0]) == 64


def test_default_model_reproduces_its_recorded_metrics_on_gue_test_sample(data_dir):
    """Score every 20th GUE test sequence with the shipped weights: the sample's accuracy must be a
    plausible draw around the recorded full-split accuracy (the file is not shuffled: its first rows are
    harder than average, so the sample is strided across the whole split)."""
    model, meta = from_pretrained(default_model_dir())
    with open(data_dir / "gue/prom_core_all/test.csv") as fh:
        rows = list(csv.DictReader(fh))[::20]
    tok = get_tokenizer(meta["tokenizer"])
    batch = tok.encode_batch([r["sequence"] for r in rows])
    with torch.no_grad():
        logits = rc_average_logits(model, batch["input_ids"], batch["attention_mask"], tok)
    sample = classification_metrics(logits.numpy(), [int(r["label"]) for r in rows])
    # 296 sequences: a binomial standard deviation of about 0.023 around the recorded accuracy
    assert len(rows) == 296
    assert abs(sample["accuracy"] - meta["metrics"]["test"]["accuracy"]) < 0.07
    assert sample["auroc"] > 0.8


def test_unknown_bundled_model_is_a_model_error():
    with pytest.raises(ModelError, match="no bundled model 'nope'"):
        model_dir("nope")


def test_a_bundled_model_is_found_by_name_where_no_such_folder_exists(tmp_path, monkeypatch):
    from hyena_glt.inference import load_model, resolve_model_dir

    monkeypatch.chdir(tmp_path)
    assert "promoter-tiny" in bundled_models()
    assert resolve_model_dir("promoter-tiny") == default_model_dir()
    assert load_model("promoter-tiny")[1]["model_dir"] == str(default_model_dir())
    # a path is a path: "./promoter-tiny" is not the name, and a folder of that name here wins over the bundled one
    with pytest.raises(ModelError, match=r"^\./promoter-tiny: model directory does not exist \(bundled models, by "
                                         r"name: .*promoter-tiny"):
        load_model("./promoter-tiny")
    (tmp_path / "promoter-tiny").mkdir()
    assert resolve_model_dir("promoter-tiny").resolve() == tmp_path / "promoter-tiny"


def test_bundled_dna_lm_is_a_causal_lm_that_predicts_held_out_dna_better_than_chance(data_dir):
    """dna-lm-tiny, the bundled starting point for --init: a causal next-base model whose corpus (make dna-lm)
    is recorded, and which predicts GUE prom_core_all test sequences (not in its corpus) below 2 bits a base,
    where the same architecture untrained does not."""
    import math

    import torch.nn.functional as F

    from hyena_glt.inference import load_model
    from hyena_glt.model import HyenaGLTForTask

    model, meta = load_model("dna-lm-tiny", tasks=["lm"])
    assert meta["task"] == "lm" and not model.config.bidirectional
    assert meta["corpus"]["sha256"] == "604cc9b960dce2bc502b4d0a1faf76d958c1e4009c002f877c3fe20158d93694"
    assert meta["training"]["data"]["train"]["sha256"] == [meta["corpus"]["sha256"]]
    with open(data_dir / "gue/prom_core_all/test.csv") as fh:
        sequences = [row["sequence"] for _, row in zip(range(200), csv.DictReader(fh))]
    batch = get_tokenizer(meta["tokenizer"]).encode_batch(sequences)

    def bits_per_base(lm) -> float:
        with torch.inference_mode():
            logits = lm.eval()(batch["input_ids"], attention_mask=batch["attention_mask"])
        logits = logits if torch.is_tensor(logits) else logits.logits
        nll = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["input_ids"][:, 1:].flatten(), reduction="none")
        return float(nll[batch["attention_mask"][:, 1:].flatten()].mean()) / math.log(2)

    torch.manual_seed(0)
    assert bits_per_base(model) < 1.95 < 1.99 < bits_per_base(HyenaGLTForTask(model.config, "lm", model.num_outputs))
