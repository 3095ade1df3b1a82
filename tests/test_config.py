import json

import pytest

from hyena_glt.config import PRESETS, HyenaGLTConfig
from hyena_glt.errors import UsageError
from hyena_glt.model import HyenaGLTForTask, count_parameters


def test_json_round_trip(tmp_path):
    config = HyenaGLTConfig.preset("small", patcher="static:3", attn_layers=[2, 5], bidirectional=True,
                                   pooling="attention", ngram_sizes=[3, 5])
    assert HyenaGLTConfig.from_json(config.to_json()) == config
    path = tmp_path / "config.json"
    config.save(path)
    assert HyenaGLTConfig.load(path) == config
    assert json.loads(path.read_text())["attn_layers"] == [2, 5]


def test_preset_sizes():
    sizes = {name: count_parameters(HyenaGLTForTask(HyenaGLTConfig.preset(name), "classification", 2))
             for name in PRESETS}
    assert sizes["tiny"] < 1_000_000
    assert sizes["tiny"] < sizes["small"] < sizes["base"]
    assert 10_000_000 <= sizes["base"] <= 14_000_000
    patched = HyenaGLTForTask(HyenaGLTConfig.preset("tiny", patcher="static:4"), "classification", 2)
    assert count_parameters(patched) < 1_000_000


def test_unknown_field_is_named():
    with pytest.raises(UsageError, match="unknown model config field.*d_modle"):
        HyenaGLTConfig.from_dict({**HyenaGLTConfig().to_dict(), "d_modle": 3})


@pytest.mark.parametrize("overrides, message", [
    (dict(d_model=0), "d_model must be a positive integer"),
    (dict(d_model=130, n_heads=4), "not divisible by n_heads"),
    (dict(attn_layers=[2], n_layers=2), r"attention layer index 2 is outside 0\.\.1"),
    (dict(hyena_order=1), "hyena_order must be at least 2"),
    (dict(patcher="static:0"), "unknown patcher 'static:0'"),
    (dict(patcher="blocks"), "unknown patcher 'blocks'"),
    (dict(pad_id=16, vocab_size=16), "pad_id 16 is outside"),
    (dict(dropout=1.5), "dropout must be in"),
    (dict(ngram_sizes=[1]), "n-gram size 1"),
])
def test_impossible_sizes(overrides, message):
    with pytest.raises(UsageError, match=message):
        HyenaGLTConfig(**overrides)


def test_unknown_preset_and_bad_json(tmp_path):
    with pytest.raises(UsageError, match="unknown preset 'huge'"):
        HyenaGLTConfig.preset("huge")
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="c.json: model config is not valid JSON"):
        HyenaGLTConfig.load(bad)


def test_local_window_defaults_and_old_files():
    assert HyenaGLTConfig.preset("tiny", patcher="static:4").local_window == 256
    old = json.loads(HyenaGLTConfig(patcher="static:4").to_json())
    del old["local_window"]  # a config written before local windows existed
    assert HyenaGLTConfig.from_json(json.dumps(old)).local_window == 0
    assert HyenaGLTConfig.from_json(json.dumps(old)).local_width == 64  # d_local 0 then meant d_model // 2
    assert HyenaGLTConfig(d_model=128).local_width == 32 and HyenaGLTConfig(d_model=16).local_width == 8
    with pytest.raises(UsageError, match="local_window"):
        HyenaGLTConfig(local_window=-1)
