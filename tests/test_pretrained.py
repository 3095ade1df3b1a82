import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from hyena_glt.config import HyenaGLTConfig
from hyena_glt.errors import ModelError
from hyena_glt.model import HyenaGLTForTask, from_pretrained, save_pretrained

CONFIG = dict(d_model=32, n_layers=2, d_inner=64, n_heads=2, filter_dim=16, ngram_buckets=64)
META = {"class_names": ["no", "yes"], "tokenizer": {"name": "nucleotide"}, "window": 300, "rc_average": False,
        "metrics": {"accuracy": 0.5}, "training": {"seed": 1}}


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(1)
    model = HyenaGLTForTask(HyenaGLTConfig(**CONFIG, patcher="static:4", attn_layers=[1]), "classification", 2)
    save_pretrained(model, tmp_path / "m", META)
    return model.eval(), tmp_path / "m"


def test_save_load_gives_identical_logits(saved):
    model, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "hyena_glt.json", "model.safetensors"]
    loaded, meta = from_pretrained(path)
    assert not loaded.training
    assert meta["task"] == "classification" and meta["num_outputs"] == 2 and meta["patcher"] == "static:4"
    assert meta["class_names"] == ["no", "yes"] and meta["window"] == 300 and "package_version" in meta
    x = torch.randint(5, 10, (3, 50))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_model_saved_before_local_windows_keeps_its_local_encoder(tmp_path):
    torch.manual_seed(2)
    # The local encoder of that time: whole-record filters, half the global width (d_model 32 -> 16).
    old = HyenaGLTForTask(HyenaGLTConfig(**CONFIG, patcher="static:4", local_window=0, d_local=16),
                          "classification", 2)
    save_pretrained(old, tmp_path / "old", META)
    stored = json.loads((tmp_path / "old" / "config.json").read_text())
    del stored["local_window"]  # as written by versions without the field,
    stored["d_local"] = 0  # when 0 meant half the global width
    (tmp_path / "old" / "config.json").write_text(json.dumps(stored))
    loaded, _ = from_pretrained(tmp_path / "old")
    assert loaded.config.local_window == 0 and loaded.config.local_width == 16
    x = torch.randint(5, 10, (2, 600))  # longer than the default window of 256: a windowed model would differ
    with torch.no_grad():
        assert torch.equal(old.eval()(x), loaded(x))


def test_pickle_is_refused_and_never_unpickled(saved, tmp_path):
    _, path = saved
    marker = tmp_path / "unpickled"

    class Bomb:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (path / "model.safetensors").unlink()
    (path / "pytorch_model.bin").write_bytes(pickle.dumps(Bomb()))
    with pytest.raises(ModelError, match=r"refusing to load pickle-based weights \(pytorch_model.bin\)"):
        from_pretrained(path)
    # A pickle renamed to model.safetensors is not a valid safetensors file either.
    (path / "model.safetensors").write_bytes(pickle.dumps(Bomb()))
    with pytest.raises(ModelError, match="model.safetensors: not a valid safetensors file"):
        from_pretrained(path)
    assert not marker.exists()


def test_missing_and_corrupt_files(saved, tmp_path):
    _, path = saved
    with pytest.raises(ModelError, match="nowhere: model directory does not exist"):
        from_pretrained(tmp_path / "nowhere")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "reads.fa").write_text(">r\nACGT\n")
    with pytest.raises(ModelError, match=r"data: not a model directory \(no config\.json, model\.safetensors or "
                                         r"hyena_glt\.json: a model directory is what training writes to "
                                         r"output_dir\)$"):
        from_pretrained(tmp_path / "data")
    (path / "hyena_glt.json").write_text("{")
    with pytest.raises(ModelError, match="hyena_glt.json: unreadable or corrupt JSON"):
        from_pretrained(path)
    (path / "hyena_glt.json").unlink()
    with pytest.raises(ModelError, match="hyena_glt.json: missing file"):
        from_pretrained(path)


def test_config_weights_mismatch(saved):
    _, path = saved
    config = json.loads((path / "config.json").read_text())
    config["d_inner"] = 96
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"weights do not match config.json: shape of backbone.layers.0.mlp.fc1.bias is \(64,\), config wants \(96,\) \(\+5 more\)"):
        from_pretrained(path)
    config["d_inner"] = 64
    config["n_layers"] = 3
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="weights do not match config.json: missing backbone.layers.2"):
        from_pretrained(path)
    config["n_layers"] = 2
    config["colour"] = "red"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="config.json: unknown model config field"):
        from_pretrained(path)


def test_truncated_weights(saved):
    _, path = saved
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="not a valid safetensors file"):
        from_pretrained(path)


def test_extra_tensor_is_a_mismatch(saved):
    model, path = saved
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(ModelError, match="unexpected extra.weight"):
        from_pretrained(path)


def test_entropy_patched_model_round_trip(tmp_path):
    from hyena_glt.model.entropy import EntropyPatcher

    torch.manual_seed(2)
    lm = HyenaGLTForTask(HyenaGLTConfig(**CONFIG), "lm").eval()
    model = HyenaGLTForTask(HyenaGLTConfig(**CONFIG, patcher="entropy", bidirectional=True), "classification", 2).eval()
    x = torch.randint(5, 9, (2, 40))
    with pytest.raises(Exception, match="no entropy patcher is attached"):
        model(x)
    model.backbone.patcher = EntropyPatcher(lm, threshold=1.9, min_patch_length=3, max_patch_length=8)
    save_pretrained(model, tmp_path / "m", META)
    assert (tmp_path / "m" / "entropy_model" / "model.safetensors").is_file()
    loaded, meta = from_pretrained(tmp_path / "m")
    assert meta["patcher"] == "entropy"
    assert loaded.backbone.patcher.threshold == 1.9 and loaded.backbone.patcher.max_patch_length == 8
    with torch.no_grad():
        lengths = model.backbone.patcher(x, torch.ones_like(x, dtype=torch.bool))
        assert lengths.shape[1] <= 14 and lengths.max() <= 8  # real patches, not units
        assert torch.equal(model(x), loaded(x))


def test_class_names_must_match_the_outputs(tmp_path):
    """A hand-edited hyena_glt.json with 3 class names for a 2-output model would give TSV rows shorter than
    their header: refused at load, naming the file."""
    config = HyenaGLTConfig.preset("tiny", d_model=16, d_inner=32, filter_dim=8, ngram_buckets=0)
    save_pretrained(HyenaGLTForTask(config, "classification", 2), tmp_path, {"class_names": ["a", "b"]})
    meta = json.loads((tmp_path / "hyena_glt.json").read_text())
    meta["class_names"] = ["a", "b", "c"]
    (tmp_path / "hyena_glt.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"hyena_glt\.json: class_names must list 2 name\(s\), one per model output"):
        from_pretrained(tmp_path)


@pytest.mark.parametrize("key, value, problem", [
    ("class_names", ["a", "a"], r"class_names must be distinct: each names an output column \(got \['a', 'a'\]\)"),
    ("rc_average", "yes", r"rc_average must be true, false or null \(got 'yes'\)"),
])
def test_hand_edited_metadata_is_refused_naming_the_file(tmp_path, key, value, problem):
    config = HyenaGLTConfig.preset("tiny", d_model=16, d_inner=32, filter_dim=8, ngram_buckets=0)
    save_pretrained(HyenaGLTForTask(config, "classification", 2), tmp_path, {"class_names": ["a", "b"]})
    meta = json.loads((tmp_path / "hyena_glt.json").read_text())
    meta[key] = value
    (tmp_path / "hyena_glt.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"hyena_glt\.json: " + problem):
        from_pretrained(tmp_path)


def test_undefined_metrics_are_saved_as_json_null(tmp_path):
    """An AUROC on a one-class validation set is nan; bare NaN is not JSON, so strict readers would refuse the
    whole file."""
    config = HyenaGLTConfig.preset("tiny", d_model=16, d_inner=32, filter_dim=8, ngram_buckets=0)
    metrics = {"val": {"accuracy": 1.0, "auroc": float("nan")}, "history": [float("inf"), 0.5]}
    save_pretrained(HyenaGLTForTask(config, "classification", 2), tmp_path, {"metrics": metrics})
    text = (tmp_path / "hyena_glt.json").read_text()
    meta = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))
    assert meta["metrics"] == {"val": {"accuracy": 1.0, "auroc": None}, "history": [None, 0.5]}


def test_nan_weights_and_a_bad_window_are_refused_naming_the_file(saved):
    """Weights from a diverged run would score every window NaN (an int64-min BED score): refused at load, as is
    a hand-edited window that classify would otherwise blame on --window."""
    model, path = saved
    meta = json.loads((path / "hyena_glt.json").read_text())
    for window in (-4, 0, "70", 2.5):
        (path / "hyena_glt.json").write_text(json.dumps({**meta, "window": window}))
        with pytest.raises(ModelError, match=rf"hyena_glt\.json: window must be a positive integer or null \(got {window!r}\)"):
            from_pretrained(path)
    (path / "hyena_glt.json").write_text(json.dumps({**meta, "window": None}))
    assert from_pretrained(path)[1]["window"] is None
    state = {k: v.contiguous().clone() for k, v in model.state_dict().items()}
    state["head.weight" if "head.weight" in state else sorted(state)[-1]][0, 0] = float("nan")
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(ModelError, match=r"model\.safetensors: weights hold NaN or infinite values \("):
        from_pretrained(path)


def test_regression_outputs_are_the_head_rescaled_and_older_models_load_unscaled(tmp_path):
    torch.manual_seed(2)
    model = HyenaGLTForTask(HyenaGLTConfig(**CONFIG), "regression", 2).eval()
    targets = torch.tensor([[1.0, 100.0], [3.0, float("nan")], [5.0, 300.0]])
    model.set_target_scale(targets)  # NaN = missing: the second output's mean/SD are of 100 and 300
    assert torch.allclose(model.target_mean, torch.tensor([3.0, 200.0]))
    assert torch.allclose(model.target_scale, torch.tensor([(8 / 3) ** 0.5, 100.0]))
    x = torch.randint(5, 10, (2, 40))
    with torch.no_grad():
        raw = model.head(model.backbone(x, unit_states=False).patch_states.mean(1))
        assert torch.allclose(model(x), raw * model.target_scale + model.target_mean)
        # the loss is the MSE of standardised targets: an error of one SD costs 1 in every output
        assert torch.isclose(model.loss(model.target_mean + model.target_scale, model.target_mean.expand(1, 2)),
                             torch.tensor(1.0))
    save_pretrained(model, tmp_path / "new", {"target_names": ["a", "b"]})
    with torch.no_grad():
        assert torch.equal(from_pretrained(tmp_path / "new")[0](x), model(x))
    # a model saved before outputs were rescaled has no target_mean/target_scale: it loads with 0 and 1
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "new" / "model.safetensors"))
    del weights["target_mean"], weights["target_scale"]
    save_file(weights, str(tmp_path / "new" / "model.safetensors"))
    old, _ = from_pretrained(tmp_path / "new")
    with torch.no_grad():
        assert torch.allclose(old(x), raw, atol=1e-6)
