import pytest
import torch
from typer.testing import CliRunner

from hyena_glt import benchmark as bench
from hyena_glt.config import HyenaGLTConfig
from hyena_glt.errors import UsageError
from hyena_glt.model import HyenaGLTForTask, count_parameters
from hyena_glt_cli.main import app


def read_tsv(path):
    header, *rows = path.read_text().splitlines()
    assert header.split("\t") == list(bench.COLUMNS)
    return [dict(zip(bench.COLUMNS, r.split("\t"))) for r in rows]


def test_parse_lengths():
    assert bench.parse_lengths("1k,32k,1M,5000") == [1024, 32768, 1048576, 5000]
    with pytest.raises(UsageError, match="bad length '3x'"):
        bench.parse_lengths("1k,3x")
    with pytest.raises(UsageError, match="unknown preset 'giant'"):
        bench.plan([64], [1], ["giant"], ["none"])
    with pytest.raises(UsageError, match="unknown patcher 'static:0'"):
        bench.plan([64], [1], ["tiny"], ["static:0"])


def test_in_process_sweep_tsv_and_plot(tmp_path):
    out, png = tmp_path / "bench.tsv", tmp_path / "bench.png"
    result = CliRunner().invoke(app, ["-@", "1", "benchmark", "--lengths", "64,128", "--patchers", "none,static:4",
                                      "--no-isolate", "--repeats", "1", "-o", str(out), "--plot", str(png)])
    assert result.exit_code == 0, result.stderr
    rows = read_tsv(out)
    assert [(r["model"], r["patcher"], int(r["length"])) for r in rows] == [
        ("hyena-glt", "none", 64), ("hyena-glt", "none", 128), ("hyena-glt", "static:4", 64),
        ("hyena-glt", "static:4", 128), ("transformer", "none", 64), ("transformer", "none", 128)]
    assert all(r["status"] == "ok" and r["device"] == "cpu" and r["precision"] == "fp32" for r in rows)
    for r in rows:
        assert float(r["nt_per_s"]) == pytest.approx(int(r["length"]) / (float(r["median_ms"]) / 1000), rel=0.01)
        assert float(r["peak_mem_mb"]) > 50  # the process's peak RSS: interpreter + torch + model
    expected = count_parameters(HyenaGLTForTask(HyenaGLTConfig.preset("tiny", vocab_size=12, patcher="static:4"),
                                                "classification", 2))
    assert int(rows[2]["params"]) == expected
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_isolated_rows_and_timeout(tmp_path):
    case = bench.Case("hyena-glt", "tiny", "static:4", 2, 96)
    row = bench.measure_isolated(case, torch.device("cpu"), "fp32", repeats=1, threads=1, timeout_s=120)
    assert row.status == "ok" and row.batch == 2 and row.peak_mem_mb > 50 and len(row.times_ms) == 1
    late = bench.measure_isolated(case, torch.device("cpu"), "fp32", repeats=1, threads=1, timeout_s=0.01)
    assert late.status == "timeout" and late.median_ms is None
    assert late.tsv().split("\t")[-6:] == ["NA", "NA", "NA", "cpu", "fp32", "timeout"]
    # In-process (--no-isolate) a forward cannot be stopped, but the row stops after the one past the limit
    # and reports no time either, rather than a median beside a "timeout" status.
    slow = bench.measure(case, torch.device("cpu"), "fp32", repeats=5, timeout_s=0.0)
    assert slow.status == "timeout" and slow.median_ms is None and slow.times_ms == []
    assert slow.tsv().split("\t")[-6:-4] == ["NA", "NA"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_exits_2_without_output(tmp_path):
    out = tmp_path / "b.tsv"
    result = CliRunner().invoke(app, ["benchmark", "--device", "cuda", "--lengths", "64", "-o", str(out)])
    assert result.exit_code == 2
    assert result.stderr.strip() == "hyena-glt: error: device 'cuda' requested but CUDA is not available on this machine"
    assert not out.exists()


def test_bad_lengths_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["benchmark", "--lengths", "12q", "-o", str(tmp_path / "b.tsv")])
    assert result.exit_code == 2 and "bad length '12q'" in result.stderr
    assert not (tmp_path / "b.tsv").exists()


def test_entropy_rows_include_the_lm_and_see_patches_of_about_four(tmp_path):
    from hyena_glt.model.entropy import EntropyPatcher, save_entropy_patcher
    from hyena_glt.tokenizers import get_tokenizer

    tok = get_tokenizer("nucleotide")
    torch.manual_seed(0)
    lm = HyenaGLTForTask(HyenaGLTConfig(vocab_size=tok.vocab_size, d_model=16, n_layers=1, d_inner=32, filter_dim=8,
                                        ngram_buckets=0), "lm")
    save_entropy_patcher(EntropyPatcher(lm, tokenizer=tok, window=128), tmp_path / "lm", subdir=False)
    out = tmp_path / "b.tsv"
    result = CliRunner().invoke(app, ["-@", "1", "benchmark", "--lengths", "512", "--patchers", "static:4,entropy",
                                      "--entropy-model", str(tmp_path / "lm"), "--no-attention", "--repeats", "1",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert [(r["patcher"], r["status"]) for r in read_tsv(out)] == [("static:4", "ok"), ("entropy", "ok")]
    # What the timed model reads: random DNA in the LM's tokens, cut at a threshold calibrated to 4 units a patch.
    case, = bench.plan([512], [1], ["tiny"], ["entropy"], attention=False, entropy_model=str(tmp_path / "lm"))
    model = bench.build_model(case)
    ids = bench._input_ids(case, model, torch.device("cpu"))
    assert set(ids.unique().tolist()) == set(tok.encode("ACGT").tolist())
    patches = int((model.backbone.patcher(ids) > 0).sum())
    assert 3.5 <= 512 / patches <= 4.5
    with pytest.raises(UsageError, match=r"patchers='entropy' needs entropy_model \(a model trained with task='lm'\)"):
        bench.plan([64], [1], ["tiny"], ["entropy"])
    with pytest.raises(UsageError, match="entropy_model only applies with patchers="):
        bench.plan([64], [1], ["tiny"], ["none"], entropy_model=str(tmp_path / "lm"))
    missing = CliRunner().invoke(app, ["benchmark", "--lengths", "64", "--patchers", "entropy", "--entropy-model",
                                       str(tmp_path / "nope"), "-o", str(tmp_path / "x.tsv")])
    assert missing.exit_code == 2 and "nope" in missing.stderr and not (tmp_path / "x.tsv").exists()
