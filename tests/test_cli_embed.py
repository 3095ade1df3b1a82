"""`hyena-glt embed`: npz layouts (pooled, per position, genome windows), dtype, layer, bad input."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hyena_glt.io.sequences import read_sequences
from hyena_glt.model import from_pretrained
from hyena_glt.tokenizers import get_tokenizer
from hyena_glt_cli.main import app

from test_inference import DATA, make_model_dir

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(make_model_dir(tmp_path_factory.mktemp("model") / "cls"))


@pytest.fixture(scope="module")
def reads_fq(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reads") / "head.fq"
    with open(DATA / "lambda_reads_1.fq") as fh:
        path.write_text("".join(itertools.islice(fh, 40)))
    return path


def embed(*args: str):
    result = runner.invoke(app, ["-q", "-@", "1", "embed", *args])
    assert result.exit_code == 0, result.stderr
    return result


def direct_embedding(model_dir: str, seq: str, pool: str, layer=None) -> np.ndarray:
    model, meta = from_pretrained(model_dir)
    enc = get_tokenizer(meta["tokenizer"]).encode_batch([seq])
    with torch.inference_mode():
        return model.embed(enc["input_ids"], attention_mask=enc["attention_mask"], pool=pool, layer=layer)[0].numpy()


def test_pooled_embeddings_of_reads_one_row_per_read(model, reads_fq, tmp_path):
    records = list(read_sequences(reads_fq))
    out = tmp_path / "reads.npz"
    embed(str(reads_fq), "-o", str(out), "-m", model)
    z = np.load(out)
    assert sorted(z.files) == ["contig", "embeddings", "end", "lengths", "metadata", "names", "start"]
    assert z["names"].tolist() == [r.id for r in records]  # reads are whole records, in input order
    assert z["embeddings"].shape == (10, 32) and z["embeddings"].dtype == np.float32
    assert z["lengths"].tolist() == [len(r.seq) for r in records]
    assert (z["start"] == 0).all() and z["contig"].tolist() == z["names"].tolist()
    np.testing.assert_allclose(z["embeddings"][3], direct_embedding(model, records[3].seq, "mean"), atol=2e-5)
    meta = json.loads(str(z["metadata"]))
    assert meta["pool"] == "mean" and meta["window"] is None


def test_cls_pool_and_layer_float16(model, reads_fq, tmp_path):
    records = list(read_sequences(reads_fq))
    out = tmp_path / "cls.npz"
    embed(str(reads_fq), "-o", str(out), "-m", model, "--pool", "cls", "--layer", "1", "--dtype", "float16")
    z = np.load(out)
    assert z["embeddings"].dtype == np.float16 and z["embeddings"].shape == (10, 32)
    np.testing.assert_allclose(z["embeddings"][0].astype(np.float32),
                               direct_embedding(model, records[0].seq, "cls", layer=1), atol=2e-2, rtol=1e-2)


def test_per_position_embeddings_of_genome_windows(model, tmp_path):
    out = tmp_path / "ex1.npz"
    embed(str(DATA / "ex1.fa"), "-o", str(out), "-m", model, "--pool", "none", "--window", "500", "--stride", "400")
    z = np.load(out)
    assert sorted(z.files) == ["contig", "embeddings", "end", "lengths", "metadata", "names", "offsets", "start"]
    spans = {"seq1": [(0, 500), (400, 900), (800, 1300), (1075, 1575)],
             "seq2": [(0, 500), (400, 900), (800, 1300), (1084, 1584)]}
    assert [(c, s, e) for c, s, e in zip(z["contig"], z["start"], z["end"])] == [
        (c, s, e) for c in ("seq1", "seq2") for s, e in spans[c]]
    assert z["names"][0] == "seq1:1-500"
    assert z["offsets"].tolist() == list(range(0, 8 * 500 + 1, 500))
    assert z["embeddings"].shape == (4000, 32)
    seq2 = list(read_sequences(DATA / "ex1.fa"))[1].seq
    np.testing.assert_allclose(z["embeddings"][z["offsets"][5]:z["offsets"][6]],
                               direct_embedding(model, seq2[400:900], "none"), atol=2e-5)


def test_shards_together_are_the_full_run(model, tmp_path):
    args = [str(DATA / "lambda_virus.fa"), "-m", model, "--window", "40"]  # 1213 windows: 2 blocks of 1024
    embed(*args, "-o", str(tmp_path / "full.npz"))
    full = np.load(tmp_path / "full.npz")
    parts = []
    for i in (1, 2):
        embed(*args, "--shard", f"{i}/2", "-o", str(tmp_path / f"s{i}.npz"))
        parts.append(np.load(tmp_path / f"s{i}.npz"))
    assert [len(p["names"]) for p in parts] == [1024, 1213 - 1024]
    assert json.loads(str(parts[1]["metadata"]))["shard"] == "2/2"
    for key in ("names", "start", "end"):
        assert np.concatenate([p[key] for p in parts]).tolist() == full[key].tolist()
    np.testing.assert_array_equal(np.concatenate([p["embeddings"] for p in parts]), full["embeddings"])


def test_bam_region_without_reads_is_an_empty_npz(model, tmp_path):
    embed(str(DATA / "ce_reads.bam"), "-m", model, "--region", "CHROMOSOME_V:1-100", "-o", str(tmp_path / "e.npz"))
    empty = np.load(tmp_path / "e.npz")
    assert len(empty["names"]) == 0 and empty["embeddings"].shape[0] == 0
    embed(str(DATA / "ce_reads.bam"), "-m", model, "--region", "CHROMOSOME_I:1-150", "-o", str(tmp_path / "r.npz"))
    assert len(np.load(tmp_path / "r.npz")["names"]) > 10


def test_genome_is_windowed_by_default_whole_with_window_0(model, tmp_path):
    out = tmp_path / "mt.npz"
    embed(str(DATA / "MT-human.fa"), "-o", str(out), "-m", model)
    z = np.load(out)
    assert len(z["names"]) == 237 and z["end"][-1] == 16569  # 236 windows of 70 + 1 shifted to the end
    embed(str(DATA / "MT-human.fa"), "-o", str(out), "-m", model, "--window", "0")
    z = np.load(out)
    assert z["names"].tolist() == [next(read_sequences(DATA / "MT-human.fa")).id] and z["end"].tolist() == [16569]


def test_default_windows_are_decided_record_by_record(model, tmp_path):
    """By default a record is windowed when it looks like a genome (longer than the window, no qualities),
    whatever comes first: a short record then a long one give the same rows as the other order."""
    rng = np.random.default_rng(4)
    short, long = ("".join(rng.choice(list("ACGT"), n)) for n in (50, 200))
    rows = {}
    for order in ("short_first", "long_first"):
        records = [("short", short), ("long", long)][:: 1 if order == "short_first" else -1]
        fasta = tmp_path / f"{order}.fa"
        fasta.write_text("".join(f">{name}\n{seq}\n" for name, seq in records))
        embed(str(fasta), "-m", model, "-o", str(tmp_path / f"{order}.npz"))
        z = np.load(tmp_path / f"{order}.npz")
        rows[order] = {name: (start, end) for name, start, end in zip(z["names"].tolist(), z["start"], z["end"])}
    assert rows["short_first"] == rows["long_first"]
    assert rows["short_first"] == {"short": (0, 50), "long:1-70": (0, 70), "long:71-140": (70, 140),
                                   "long:131-200": (130, 200)}


@pytest.mark.parametrize("case", ["not npz", "missing model", "empty input", "bad pool", "bad dtype", "bad layer",
                                  "no such folder"])
def test_bad_input_one_line_exit_2_no_output(case, model, reads_fq, tmp_path):
    out = tmp_path / "out.npz"
    args = [str(reads_fq), "-o", str(out), "-m", model]
    expect = {"not npz": "cannot tell the output format", "missing model": "model directory does not exist",
              "empty input": "empty file", "bad pool": "unknown --pool 'max'", "bad dtype": "unknown --dtype",
              "bad layer": "--layer 9 is outside -3..2", "no such folder": "does not exist"}[case]
    if case == "not npz":
        out = tmp_path / "out.txt"
        args[2] = str(out)
    elif case == "missing model":
        args[4] = str(tmp_path / "nope")
    elif case == "empty input":
        (tmp_path / "empty.fq").write_text("")
        args[0] = str(tmp_path / "empty.fq")
    elif case == "bad pool":
        args += ["--pool", "max"]
    elif case == "bad dtype":
        args += ["--dtype", "int8"]
    elif case == "bad layer":
        args += ["--layer", "9"]
    elif case == "no such folder":
        out = tmp_path / "missing" / "out.npz"
        args[2] = str(out)
    result = runner.invoke(app, ["-q", "embed", *args])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hyena-glt: error: ") and expect in lines[0]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_duplicate_names_refused_for_windows_kept_for_whole_records(model, tmp_path):
    # Windows carry (contig, start, end) and a record's contig is its name: two records named chrA would give
    # rows with the same coordinates for different sequences. Whole records are rows of their own.
    rng = np.random.default_rng(2)
    dup = tmp_path / "dup_long.fa"
    dup.write_text("".join(f">chrA\n{''.join(rng.choice(list('ACGT'), n))}\n" for n in (150, 100)))
    out = tmp_path / "e.npz"
    result = runner.invoke(app, ["-@", "1", "embed", str(dup), "-m", model, "-o", str(out)])
    assert result.exit_code == 2
    assert result.stderr == (f"hyena-glt: error: {dup}: record 'chrA' appears twice (records 1 and 2); "
                             "names must be unique for windowed embedding output\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dup_long.fa"]
    embed(str(dup), "-m", model, "-o", str(out), "--window", "0")
    assert np.load(out)["names"].tolist() == ["chrA", "chrA"]
    nameless = tmp_path / "noname.fa"
    nameless.write_text(">\nACGTACGT\n")
    result = runner.invoke(app, ["-@", "1", "embed", str(nameless), "-m", model, "-o", str(tmp_path / "n.npz")])
    assert result.exit_code == 2
    assert result.stderr == f"hyena-glt: error: {nameless}: record 1 has no name; embedding output needs one\n"
