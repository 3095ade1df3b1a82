"""GPU paths: CUDA results equal the CPU's, mixed precision stays close to fp32, chunked megabase inference
equals one-pass inference, training and the CLI run end to end on CUDA. Skipped where no CUDA GPU exists
(CI has none); run on a GPU machine with `pytest tests/test_cuda.py`."""

from __future__ import annotations

import copy
import csv

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hyena_glt.benchmark import Case, measure
from hyena_glt.config import HyenaGLTConfig
from hyena_glt.model import HyenaGLTModel, hyena
from hyena_glt_cli.main import app

from test_inference import DATA, make_model_dir

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double().cpu(), want.double().cpu()
    return float((got - want).norm() / want.norm())


def tiny(**overrides) -> HyenaGLTModel:
    torch.manual_seed(0)
    config = HyenaGLTConfig.preset("tiny", vocab_size=12, **overrides)
    return HyenaGLTModel(config).eval()


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 12, (len(lengths), max(lengths)), generator=generator)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    return ids * mask, mask


MODELS = {
    "none": dict(),
    "none-bidirectional": dict(bidirectional=True),
    "static4": dict(patcher="static:4"),
    "static4-bidirectional": dict(patcher="static:4", bidirectional=True),
    "attention": dict(n_layers=3, attn_layers=[1]),
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("lengths", [[100, 37, 64] * 40, [3000, 1200]], ids=["toeplitz", "fft"])
def test_cuda_fp32_equals_cpu(name, lengths):
    model = tiny(**MODELS[name])
    ids, mask = padded_batch(lengths)
    with torch.inference_mode():
        want = model(ids, mask).unit_states
        got = copy.deepcopy(model).to(CUDA)(ids.to(CUDA), mask.to(CUDA)).unit_states
    assert got.device.type == "cuda" and got.dtype == torch.float32
    assert rel_err(got[mask.to(CUDA)], want[mask]) < 1e-4


@pytest.mark.parametrize("precision", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["none", "static4"])
def test_cuda_autocast_is_close_to_fp32(name, precision):
    model = tiny(**MODELS[name]).to(CUDA)
    ids, mask = padded_batch([4096, 2500])
    ids, mask = ids.to(CUDA), mask.to(CUDA)
    with torch.inference_mode():
        want = model(ids, mask).unit_states
        with torch.autocast("cuda", dtype=precision):
            got = model(ids, mask).unit_states
    assert torch.isfinite(got[mask]).all()
    assert rel_err(got[mask], want[mask]) < 3e-2


def test_cuda_chunked_megabase_path_equals_one_pass(monkeypatch):
    """Channel groups and per-group filter spectra (the megabase path) give the one-pass result."""
    model = tiny().to(CUDA)
    ids = torch.randint(0, 12, (1, 20000), device=CUDA)
    with torch.inference_mode():
        want = model(ids).unit_states
        monkeypatch.setattr(hyena, "_GROUP_ELEMENTS_GPU", 20000 * 3 * 16)  # 8 groups of 16 channels
        monkeypatch.setattr(hyena, "_FILTER_CACHE_BYTES", 1 << 20)  # spectra transformed per group
        for module in model.modules():
            if isinstance(module, hyena.ImplicitFilter):
                module._cache.clear()
        got = model(ids).unit_states
    assert rel_err(got, want) < 1e-5


def test_cuda_gradients_reach_every_parameter_under_bf16():
    model = tiny(patcher="static:4").train().to(CUDA)
    ids, mask = padded_batch([512, 300])
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(ids.to(CUDA), mask.to(CUDA)).unit_states
    out.float().pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def cli(*args: str):
    result = CliRunner().invoke(app, ["-q", *args])
    assert result.exit_code == 0, result.stderr
    return result


def probabilities(path) -> np.ndarray:
    with open(path) as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert rows[0][:3] == ["id", "length", "label"]
    return np.array([[float(x) for x in r[3:]] for r in rows[1:]])


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_training_then_classify_matches_cpu(precision, tmp_path):
    """Train a few steps on CUDA (fp16 uses the grad scaler), then classify on CUDA and on the CPU."""
    out = tmp_path / "model"
    cli("train", str(DATA / "gue" / "mouse_2" / "train.csv"), "--device", "cuda", "--precision", precision,
        "--set", "d_model=32", "--set", "d_inner=64", "--max-steps", "6", "--batch-size", "32", "-o", str(out))
    test = str(DATA / "gue" / "mouse_2" / "test.csv")
    cli("classify", test, "-m", str(out), "--device", "cuda", "--precision", "fp32", "-o", str(tmp_path / "gpu.tsv"))
    cli("classify", test, "-m", str(out), "--device", "cpu", "-o", str(tmp_path / "cpu.tsv"))
    cli("classify", test, "-m", str(out), "--device", "cuda", "-o", str(tmp_path / "auto.tsv"))  # bf16
    cpu, gpu, auto = (probabilities(tmp_path / f"{n}.tsv") for n in ("cpu", "gpu", "auto"))
    assert cpu.shape == gpu.shape and len(cpu) > 100
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
    np.testing.assert_allclose(auto, cpu, atol=5e-2)


def test_cuda_entropy_patched_training_and_classify(tmp_path):
    """An LM trained on CUDA becomes the entropy patcher of a classifier trained on CUDA (calibration runs
    there too); the classifier gives the CPU's probabilities."""
    tiny_set = ["--set", "d_model=32", "--set", "n_layers=1", "--set", "d_inner=64", "--set", "filter_dim=16"]
    lm, out = tmp_path / "lm", tmp_path / "patched"
    cli("train", "--task", "lm", str(DATA / "lambda_virus.fa"), "--window", "256", *tiny_set, "--device", "cuda",
        "--max-steps", "4", "--batch-size", "16", "-o", str(lm))
    train = str(DATA / "gue" / "mouse_2" / "train.csv")
    cli("train", train, *tiny_set, "--patcher", "entropy", "--entropy-model", str(lm), "--target-patch-length", "4",
        "--device", "cuda", "--max-steps", "3", "--batch-size", "64", "-o", str(out))
    test = str(DATA / "gue" / "mouse_2" / "test.csv")
    cli("classify", test, "-m", str(out), "--device", "cuda", "--precision", "fp32", "-o", str(tmp_path / "gpu.tsv"))
    cli("classify", test, "-m", str(out), "--device", "cpu", "-o", str(tmp_path / "cpu.tsv"))
    np.testing.assert_allclose(probabilities(tmp_path / "gpu.tsv"), probabilities(tmp_path / "cpu.tsv"), atol=1e-4)


def test_cuda_embed_and_bed_classify_on_a_genome(tmp_path):
    model = str(make_model_dir(tmp_path / "m"))
    genome = str(DATA / "lambda_virus.fa")
    cli("classify", genome, "-m", model, "--device", "cuda", "--precision", "fp32", "-o", str(tmp_path / "g.bed"))
    cli("classify", genome, "-m", model, "--device", "cpu", "-o", str(tmp_path / "c.bed"))
    gpu, cpu = ((tmp_path / n).read_text().splitlines() for n in ("g.bed", "c.bed"))
    assert len(gpu) == len(cpu) > 100
    assert [r.split("\t")[:3] for r in gpu] == [r.split("\t")[:3] for r in cpu]
    cli("embed", genome, "-m", model, "--device", "cuda", "-o", str(tmp_path / "g.npz"))
    cli("embed", genome, "-m", model, "--device", "cpu", "-o", str(tmp_path / "c.npz"))
    with np.load(tmp_path / "g.npz") as g, np.load(tmp_path / "c.npz") as c:
        assert set(g.files) == set(c.files)
        for key in g.files:
            if g[key].dtype.kind == "f":
                np.testing.assert_allclose(g[key], c[key], atol=3e-2, rtol=3e-2)  # auto precision: bf16
            else:
                assert (g[key] == c[key]).all()


def test_cuda_benchmark_reports_allocated_memory():
    row = measure(Case("hyena-glt", "tiny", "none", 1, 32768), CUDA, "bf16", repeats=2)
    assert row.status == "ok" and row.device.startswith("cuda")
    assert 0 < row.peak_mem_mb < 4096 and row.median_ms > 0
