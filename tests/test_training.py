"""Trainer: learning something checkable, metrics against hand-computed values, augmentation and
curriculum, gradient accumulation, and the output model folder."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hyena_glt.errors import InputError, UsageError
from hyena_glt.io.datasets import LabelledData, load_labelled, load_lm_sequences
from hyena_glt.model import from_pretrained
from hyena_glt.training import Trainer, TrainOptions, metrics

# small enough to train in seconds on one shared core
SMALL = {"d_model": 32, "n_layers": 1, "d_inner": 64, "filter_dim": 16, "ngram_buckets": 0}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gue(data_dir, split="train", n=None) -> list[dict]:
    with open(data_dir / "gue/prom_core_all" / f"{split}.csv") as fh:
        rows = list(csv.DictReader(fh))
    return rows[:n] if n else rows


def gc_data(rows) -> LabelledData:
    """Real promoter-region sequences with their GC fraction as a regression target."""
    seqs = [r["sequence"] for r in rows]
    gc = np.array([[sum(c in "GC" for c in s) / len(s)] for s in seqs], dtype=np.float32)
    return LabelledData([f"s{i}" for i in range(len(seqs))], seqs, gc, "regression", target_names=["gc"])


# ---------------------------------------------------------------------------------------------------- metrics


def test_classification_metrics_by_hand():
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    p1 = np.array([0.9, 0.8, 0.3, 0.2, 0.6, 0.1, 0.7, 0.4])
    logits = np.log(np.stack([1 - p1, p1], axis=1))
    m = metrics.classification_metrics(logits, labels)
    # predictions 1,1,0,0,1,0,1,0: TP 3, TN 3, FP 1, FN 1
    tp, tn, fp, fn = 3, 3, 1, 1
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["mcc"] == pytest.approx(mcc)
    assert m["macro_f1"] == pytest.approx(0.75)  # both classes: precision = recall = 3/4
    # AUROC = fraction of (positive, negative) pairs ordered correctly: 14 of 16
    pos, neg = p1[labels == 1], p1[labels == 0]
    assert m["auroc"] == pytest.approx(np.mean(pos[:, None] > neg[None, :]))
    assert m["auroc"] == pytest.approx(14 / 16)
    # average precision: by score the positives rank 1, 2, 3, 6 -> precision 1, 1, 1, 4/6 at each
    assert m["auprc"] == pytest.approx((1 + 1 + 1 + 4 / 6) / 4)
    assert m["loss"] == pytest.approx(-np.mean(np.log(np.where(labels == 1, p1, 1 - p1))))


def test_regression_lm_and_multilabel_metrics_by_hand():
    pred = np.array([[1.0], [2.0], [3.0], [5.0]])
    true = np.array([[1.0], [3.0], [2.0], [4.0]])
    m = metrics.regression_metrics(pred, true)
    assert m["mse"] == pytest.approx((0 + 1 + 1 + 1) / 4)
    assert m["pearson"] == pytest.approx(np.corrcoef(pred[:, 0], true[:, 0])[0, 1])
    assert m["spearman"] == pytest.approx(1 - 6 * (0 + 1 + 1 + 0) / (4 * 15))
    lm = metrics.lm_metrics(total_nll=100 * math.log(4), n_predicted=100, n_correct=25)
    assert lm["bits_per_base"] == pytest.approx(2.0) and lm["perplexity"] == pytest.approx(4.0)
    assert lm["accuracy"] == 0.25
    ml = metrics.multilabel_metrics(np.array([[3.0, -3.0], [3.0, 3.0], [-3.0, 3.0]]), np.array([[1, 0], [1, 0], [0, 1]]))
    assert ml["accuracy"] == pytest.approx(2 / 3)  # exact set match
    assert ml["auroc"] == pytest.approx((1.0 + 0.75) / 2)  # label 2: one tie between positive and negative


# ---------------------------------------------------------------------------------------------------- training


def test_learns_gc_content_and_writes_loadable_model(data_dir, tmp_path):
    rows = gue(data_dir, n=600)
    train, val = gc_data(rows[:480]), gc_data(rows[480:])
    options = TrainOptions(task="regression", config_overrides=SMALL, epochs=6, batch_size=32, lr=3e-3,
                           device="cpu", seed=1, rc_augment=True)
    result = Trainer(options, train, val, tmp_path / "gc", command="test").fit()
    # GC fraction is a simple function of composition: a trained model must track it closely
    assert result.metrics["val"]["pearson"] > 0.8, result.metrics
    model, meta = from_pretrained(tmp_path / "gc")
    assert meta["task"] == "regression" and meta["target_names"] == ["gc"]
    assert meta["window"] == 70 and meta["rc_average"] is True
    assert meta["training"]["command"] == "test" and meta["training"]["seed"] == 1
    log = (tmp_path / "gc" / "train_log.tsv").read_text().splitlines()
    assert len(log) == 1 + 6 and log[0].split("\t")[:4] == ["epoch", "step", "lr", "train_loss"]
    assert "val_pearson" in log[0].split("\t")


def test_lm_on_lambda_genome(data_dir, tmp_path):
    data = load_lm_sequences([data_dir / "lambda_virus.fa"], window=256)
    train, val = data.subset(range(0, 150)), data.subset(range(150, len(data)))
    options = TrainOptions(task="lm", config_overrides=SMALL, max_steps=12, batch_size=16, lr=3e-3, device="cpu")
    result = Trainer(options, train, val, tmp_path / "lm").fit()
    val_metrics = result.metrics["val"]
    assert val_metrics["perplexity"] == pytest.approx(2 ** val_metrics["bits_per_base"], rel=1e-9)
    assert val_metrics["bits_per_base"] < math.log2(10)  # better than uniform over the vocabulary
    model, meta = from_pretrained(tmp_path / "lm")
    assert model.task == "lm" and meta["rc_average"] is False  # usable as an entropy model


def _trainer(data_dir, tmp_path, **kw) -> Trainer:
    rows = gue(data_dir, n=64)
    data = gc_data(rows)
    kw["config_overrides"] = {**SMALL, **kw.get("config_overrides", {})}
    options = TrainOptions(task="regression", device="cpu", seed=3, **kw)
    return Trainer(options, data, None, tmp_path / "t")


def test_resuming_needs_the_sha256_of_every_data_file(data_dir, tmp_path):
    """A file's sha256 is read from it; a stream's only from hyena_glt's readers, which copy it: data a caller
    read from a pipe itself cannot be checked, so resuming on them is refused, naming the stream."""
    rows = gue(data_dir, n=64)
    options = TrainOptions(task="regression", device="cpu", seed=3, config_overrides=dict(SMALL), max_steps=1)
    table = tmp_path / "t.csv"
    table.write_text("x")
    pipe = str(tmp_path / "pipe")  # (a process substitution's /dev/fd/N is gone once it has been read)
    with pytest.raises(UsageError, match=r".*/pipe: resume=True checks that the data are those the run started "
                                         r"with \(by their sha256\), and these were not read by hyena_glt's readers"):
        Trainer(options, gc_data(rows), None, tmp_path / "t", data_files={"train": [pipe]}, resume=True)
    trainer = Trainer(options, gc_data(rows), None, tmp_path / "u", data_files={"train": [str(table)]}, resume=True)
    assert trainer.data_info["train"]["sha256"] == [hashlib.sha256(b"x").hexdigest()]


def test_rc_augmentation_and_curriculum_crops(data_dir, tmp_path):
    trainer = _trainer(data_dir, tmp_path, rc_augment=True, curriculum_start=20, epochs=4, batch_size=16)
    ids = trainer.train_t.input_ids[:16]
    lengths = trainer.train_t.lengths[:16]
    mask = torch.ones_like(ids, dtype=torch.bool)
    trainer.global_step = 0  # curriculum at its start: 20-unit random crops
    out_ids, out_mask, out_lengths = trainer._augment(ids, mask, lengths)
    assert out_ids.shape == (16, 20) and bool(out_mask.all()) and out_lengths.tolist() == [20] * 16
    tok = trainer.tokenizer
    flipped = 0
    for row, original in zip(out_ids, ids):
        text, source = tok.decode(row), tok.decode(original)
        rc = source[::-1].translate(str.maketrans("ACGT", "TGCA"))
        assert text in source or text in rc  # a contiguous crop of the read or of its reverse complement
        flipped += text not in source
    assert 0 < flipped < 16
    trainer.global_step = trainer.total_steps  # curriculum over: full length
    assert trainer._curriculum_length() == 70
    assert trainer._augment(ids, mask, lengths)[0].shape == (16, 70)


def test_gradient_accumulation_equals_big_batch(data_dir, tmp_path):
    one = _trainer(data_dir, tmp_path / "a", rc_augment=False, batch_size=16, max_steps=1)
    two = _trainer(data_dir, tmp_path / "b", rc_augment=False, batch_size=8, grad_accum=2, max_steps=1)
    two.model.load_state_dict(one.model.state_dict())
    order = one._epoch_order(0)
    one._train_step(one.model, [order[:16]])
    two._train_step(two.model, [order[:8], order[8:16]])
    for (name, a), b in zip(one.model.state_dict().items(), two.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_mixed_length_data_is_batched_by_length_and_same_length_data_is_not(data_dir, tmp_path, monkeypatch):
    """A genome's 256 nt chunks among short records: each batch holds sequences of similar length (a batch is as
    wide as its longest), every sequence still comes once an epoch, the order is fixed by seed and epoch (resume),
    and the last, partial batch stays last. Same-length data keeps the plain shuffled order."""
    monkeypatch.setattr("hyena_glt.training.trainer._LENGTH_POOL", 4)
    genome = load_lm_sequences([data_dir / "lambda_virus.fa"], window=256).subset(range(40))
    short = load_lm_sequences([data_dir / "ex1.fa"], window=None)
    records = [r["sequence"] for r in gue(data_dir, n=100)]
    data = LabelledData(genome.ids + short.ids + [f"r{i}" for i in range(100)],
                        genome.sequences + short.sequences + records, None, "lm")
    options = TrainOptions(task="lm", config_overrides=SMALL, max_steps=1, batch_size=8, device="cpu", seed=5)
    trainer = Trainer(options, data, None, tmp_path / "lm")
    assert trainer.group_by_length
    order = trainer._epoch_order(0)
    assert sorted(order.tolist()) == list(range(len(data)))
    assert torch.equal(order, trainer._epoch_order(0)) and not torch.equal(order, trainer._epoch_order(1))
    batches = order.split(8)
    assert len(batches[-1]) == len(data) % 8
    widths = [int(trainer.train_t.lengths[b].max()) for b in batches]
    wide = [b for b, w in zip(batches, widths) if w == 256]
    assert 5 <= len(wide) <= 6  # the 40 chunks fill 5 batches (6 where a pool boundary splits them), not most
    plain = Trainer(TrainOptions(task="regression", config_overrides=SMALL, max_steps=1, batch_size=8, device="cpu",
                                 seed=5), gc_data(gue(data_dir, n=64)), None, tmp_path / "gc")
    assert not plain.group_by_length


def test_bad_options(data_dir, tmp_path):
    with pytest.raises(UsageError, match="^batch_size must be at least 1"):
        _trainer(data_dir, tmp_path, batch_size=0)
    with pytest.raises(UsageError, match="early stopping .* needs validation data"):
        _trainer(data_dir, tmp_path, patience=2)
    with pytest.raises(UsageError, match=r"^select_metric chooses the best checkpoint on validation data: give val "
                                         r"or val_fraction \(without them the model is the last step's\)$"):
        _trainer(data_dir, tmp_path, select_metric="auroc")
    with pytest.raises(UsageError, match="unknown model config field"):
        _trainer(data_dir, tmp_path, config_overrides={"wings": 2})
    assert not (tmp_path / "t").exists()


def test_classification_gue_metadata(data_dir, tmp_path):
    train = load_labelled(data_dir / "gue/prom_core_all/train.csv", "classification").subset(range(256))
    dev = load_labelled(data_dir / "gue/prom_core_all/dev.csv", "classification",
                        class_names=train.class_names).subset(range(64))
    options = TrainOptions(task="classification", config_overrides=SMALL, max_steps=4, batch_size=64, device="cpu",
                           patience=5)
    result = Trainer(options, train, dev, tmp_path / "cls", test_data=dev,
                     data_files={"train": [str(data_dir / "gue/prom_core_all/train.csv")]}).fit()
    meta = json.loads((tmp_path / "cls" / "hyena_glt.json").read_text())
    assert meta["class_names"] == ["0", "1"] and meta["num_outputs"] == 2
    assert set(meta["metrics"]["test"]) == {"loss", "accuracy", "mcc", "macro_f1", "auroc", "auprc"}
    assert meta["metrics"]["test"] == result.metrics["test"]
    assert len(meta["training"]["data"]["train"]["sha256"][0]) == 64
    assert meta["training"]["data"]["val"]["n_sequences"] == 64


def test_bf16_autocast_training_step(data_dir, tmp_path):
    trainer = _trainer(data_dir, tmp_path, precision="bf16", max_steps=2, batch_size=32, rc_augment=True)
    assert trainer.precision == "bf16" and not trainer.scaler.is_enabled()  # a grad scaler is for fp16 only
    before = [p.detach().clone() for p in trainer.model.parameters()]
    result = trainer.fit()
    assert result.steps == 2 and math.isfinite(result.metrics["train_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_eval_every_with_early_stopping(data_dir, tmp_path):
    rows = gue(data_dir, n=160)
    train, val = gc_data(rows[:128]), gc_data(rows[128:])
    options = TrainOptions(task="regression", config_overrides=SMALL, epochs=5, batch_size=32,
                           eval_every=2, patience=2, device="cpu", select_metric="loss")
    trainer = Trainer(options, train, val, tmp_path / "es")
    # frozen weights: nothing improves after the first evaluation, so patience 2 stops after the third
    trainer.optimizer.step = lambda *args, **kwargs: None
    result = trainer.fit()
    log = (tmp_path / "es" / "train_log.tsv").read_text().splitlines()
    steps = [int(line.split("\t")[1]) for line in log[1:]]
    assert steps == [2, 4, 6] and result.stopped_early and result.steps == 6
    assert json.loads((tmp_path / "es" / "hyena_glt.json").read_text())["training"]["stopped_early"] is True


def test_eval_every_evaluates_on_its_steps_and_at_the_end_only(data_dir, tmp_path):
    rows = gue(data_dir, n=160)
    options = TrainOptions(task="regression", config_overrides=SMALL, epochs=3, batch_size=32, eval_every=3,
                           device="cpu", select_metric="loss")
    Trainer(options, gc_data(rows[:128]), gc_data(rows[128:]), tmp_path / "ev").fit()  # 4 steps an epoch
    log = (tmp_path / "ev" / "train_log.tsv").read_text().splitlines()
    assert [int(line.split("\t")[1]) for line in log[1:]] == [3, 6, 9, 12]  # not also at steps 4 and 8


def test_multilabel_run(data_dir, tmp_path):
    rows = gue(data_dir, n=160)
    seqs = [r["sequence"] for r in rows]
    # two properties of real promoter-region sequences: GC-rich, and carrying a TATA box-like motif
    flags = np.array([[sum(c in "GC" for c in s) / 70 > 0.55, "TATA" in s] for s in seqs], dtype=np.float32)
    data = LabelledData([f"s{i}" for i in range(160)], seqs, flags, "multilabel", class_names=["gc_rich", "tata"])
    options = TrainOptions(task="multilabel", config_overrides=SMALL, max_steps=3, batch_size=32, device="cpu")
    result = Trainer(options, data.subset(range(128)), data.subset(range(128, 160)), tmp_path / "ml").fit()
    assert set(result.metrics["val"]) == {"loss", "accuracy", "mcc", "macro_f1", "auroc", "auprc"}
    model, meta = from_pretrained(tmp_path / "ml")
    assert meta["class_names"] == ["gc_rich", "tata"] and model.num_outputs == 2
    assert meta["training"]["select_metric"] == "macro_f1"


def test_option_checks(data_dir, tmp_path):
    for kw, message in (
        ({"eval_every": 0}, r"^eval_every must be at least 1 \(got 0\)"),
        ({"checkpoint_every": -2}, r"^checkpoint_every must be at least 1 \(got -2\)"),
        ({"patience": 0}, r"^patience must be at least 1 \(got 0\)"),
        ({"curriculum_fraction": 1.5}, r"^curriculum_fraction must be in \(0, 1\] \(got 1\.5\)"),
        ({"curriculum_fraction": float("nan")}, r"^curriculum_fraction must be in \(0, 1\] \(got nan\)"),
        ({"target_patch_length": 4.0}, r"^target_patch_length only applies to patcher='entropy'"),
        ({"patcher": "entropy", "entropy_model": "lm", "target_patch_length": 0.0},
         r"^target_patch_length must be a number of units >= 1 \(got 0\.0\)"),
        ({"entropy_model": "lm"}, r"^entropy_model only applies to patcher='entropy' \(got patcher='none'\)"),
        ({"task": "lm", "window": 1}, r"^task='lm' needs window of at least 2"),
    ):
        with pytest.raises(UsageError, match=message):
            TrainOptions(**kw).check()
    TrainOptions(curriculum_fraction=1.0, eval_every=1, patcher="entropy", entropy_model="lm",
                 target_patch_length=1.0).check()  # the bounds themselves are fine


def test_output_dir_is_checked_before_any_work(tmp_path):
    from hyena_glt.training import check_output_dir

    nested = tmp_path / "a" / "b" / "model"
    check_output_dir(nested)  # can be made: tried for real, then undone
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="exists and is not a folder"):
        check_output_dir(tmp_path / "file")
    used = tmp_path / "used"
    used.mkdir()
    (used / "config.json").write_text("{}")
    with pytest.raises(UsageError, match="is not empty; continue its run with resume=True"):
        check_output_dir(used)
    check_output_dir(used, resume=True)
    assert sorted(p.name for p in used.iterdir()) == ["config.json"]
    if Path("/proc/self").is_dir():
        with pytest.raises(UsageError, match=r"^/proc/hyena-glt-x/model: cannot create the output folder: "):
            check_output_dir("/proc/hyena-glt-x/model")


def test_lm_sequences_without_a_next_unit(tmp_path):
    options = TrainOptions(task="lm", config_overrides=SMALL, max_steps=1, batch_size=4, device="cpu")
    ones = LabelledData(["a", "b"], ["A", "C"], None, "lm", sources=["one.fa"])
    with pytest.raises(InputError, match=r"^one\.fa: no training sequence is long enough for a next-unit prediction"):
        Trainer(options, ones, None, tmp_path / "lm")
    assert not (tmp_path / "lm").exists()
    good = LabelledData(["c"], ["ACGTACGT"], None, "lm", sources=["good.fa"])
    with pytest.raises(InputError, match=r"^one\.fa: no validation sequence is long enough"):
        Trainer(options, good, ones, tmp_path / "lm")
    # mixed with longer ones, single units are left out rather than making a batch with no loss (NaN)
    mixed = LabelledData(["a", "b", "c"], ["A", "C", "ACGTACGT"], None, "lm", sources=["mixed.fa"])
    trainer = Trainer(TrainOptions(task="lm", config_overrides=SMALL, max_steps=1, batch_size=2, device="cpu"),
                      mixed, None, tmp_path / "lm")
    assert trainer.train_t.lengths.tolist() == [8]
    assert math.isfinite(trainer.fit().metrics["train_loss"])


def test_regression_targets_of_any_scale_are_learnt_standardised(data_dir, tmp_path):
    # GC as a percentage (mean ~50, SD ~12): unstandardised, the head with gradient clipping crept towards
    # the targets (R² 0.13 after 10 epochs); standardised, it starts at their mean and fits their spread
    rows = gue(data_dir, n=600)
    train, val = gc_data(rows[:480]), gc_data(rows[480:])
    train.labels, val.labels = train.labels * 100, val.labels * 100
    options = TrainOptions(task="regression", config_overrides=SMALL, epochs=3, batch_size=32, lr=3e-3,
                           device="cpu", seed=1)
    result = Trainer(options, train, val, tmp_path / "gc100", command="test").fit()
    model, _ = from_pretrained(tmp_path / "gc100")
    assert torch.allclose(model.target_mean, torch.tensor(train.labels.mean(0)), atol=1e-3)
    assert torch.allclose(model.target_scale, torch.tensor(train.labels.std(0)), rtol=1e-3)
    assert result.metrics["val"]["mse"] < 0.5 * float(val.labels.var()), result.metrics
