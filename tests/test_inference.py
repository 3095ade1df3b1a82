"""hyena_glt.inference: batching, order, windows, reverse-complement averaging, OOM splitting, BED tables,
embeddings. Models are small random ones (shapes, order and numerics do not need training)."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from hyena_glt.config import HyenaGLTConfig
from hyena_glt.errors import ModelError, UsageError
from hyena_glt.inference import (
    BedRow,
    NpzEmbeddingWriter,
    Predictor,
    SortedRows,
    _shard_blocks,
    load_model,
    merge_bed_rows,
)
from hyena_glt.io.sequences import SequenceRecord, read_sequences, reverse_complement
from hyena_glt.model import HyenaGLTForTask, save_pretrained
from hyena_glt.tokenizers import get_tokenizer

DATA = Path(__file__).resolve().parent.parent / "example_data"
CLASS_NAMES = ["background", "promoter"]


def make_model_dir(path: Path, task: str = "classification", window: int | None = 70, seed: int = 0,
                   rc_average: bool = True) -> Path:
    """A small random model directory (a narrow 'tiny' preset: fast on 2 cores)."""
    torch.manual_seed(seed)
    config = HyenaGLTConfig.preset("tiny", d_model=32, d_inner=64, filter_dim=16, ngram_buckets=64,
                                   bidirectional=task != "lm")
    outputs = {"classification": 2, "multilabel": 3, "regression": 2, "lm": None}[task]
    model = HyenaGLTForTask(config, task, outputs)
    metadata = {"tokenizer": get_tokenizer("nucleotide").to_dict(), "window": window, "rc_average": rc_average}
    if task == "classification":
        metadata["class_names"] = CLASS_NAMES
    elif task == "multilabel":
        metadata["class_names"] = ["a", "b", "c"]
    elif task == "regression":
        metadata["target_names"] = ["gc", "signal"]
    save_pretrained(model, path, metadata)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "cls")


def reads(n: int = 30) -> list[SequenceRecord]:
    return list(itertools.islice(read_sequences(DATA / "lambda_reads_1.fq"), n))


def reference_probabilities(model, tokenizer, seq: str, rc: bool) -> np.ndarray:
    """One sequence at a time, reverse complement by text: the slow, obviously right computation."""
    def logits(s):
        enc = tokenizer.encode_batch([s])
        return model(enc["input_ids"], attention_mask=enc["attention_mask"]).float()

    with torch.inference_mode():
        out = (logits(seq) + logits(reverse_complement(seq))) / 2 if rc else logits(seq)
    return torch.softmax(out, -1)[0].numpy()


def test_predictions_match_one_at_a_time_reference_in_input_order(model_dir):
    records = reads(12)
    assert len({len(r.seq) for r in records}) > 8  # mixed lengths: batches are length-sorted inside
    predictor = Predictor.from_pretrained(model_dir, batch_size=5)
    batches = list(predictor.predict(records))
    got_records = [r for b in batches for r in b.records]
    values = np.concatenate([b.values for b in batches])
    assert [r.id for r in got_records] == [r.id for r in records]
    expected = np.stack([reference_probabilities(predictor.model, predictor.tokenizer, r.seq, True) for r in records])
    np.testing.assert_allclose(values, expected, atol=2e-5)
    np.testing.assert_allclose(values.sum(1), 1.0, atol=1e-5)


def test_rc_averaging_makes_a_sequence_and_its_reverse_complement_agree(model_dir):
    mt = next(read_sequences(DATA / "MT-human.fa")).seq
    seqs = [mt[100:170], mt[5000:5043], mt[9000:9100]]
    records = [SequenceRecord(f"s{i}", s) for i, s in enumerate(seqs)]
    records += [SequenceRecord(f"rc{i}", reverse_complement(s)) for i, s in enumerate(seqs)]

    averaged = np.concatenate([b.values for b in Predictor.from_pretrained(model_dir).predict(records)])
    np.testing.assert_allclose(averaged[:3], averaged[3:], atol=1e-5)

    single = np.concatenate([b.values for b in Predictor.from_pretrained(model_dir, rc_average=False).predict(records)])
    assert np.abs(single[:3] - single[3:]).max() > 1e-4  # a random model is not strand-symmetric by itself


def test_windows_tile_each_record_within_its_bounds(model_dir):
    predictor = Predictor.from_pretrained(model_dir, window=70, stride=50)
    records = list(read_sequences(DATA / "ex1.fa"))
    windows = list(predictor.windows(records))
    for record in records:
        mine = [w for w in windows if w.contig == record.id]
        starts = [w.start for w in mine]
        assert starts[:-1] == list(range(0, len(record.seq) - 70 + 1, 50))
        assert all(w.end - w.start == 70 and 0 <= w.start and w.end <= len(record.seq) for w in mine)
        assert mine[-1].end == len(record.seq)  # last window shifted to end at the contig end
        assert all(w.seq == record.seq[w.start:w.end] for w in mine)


def test_genome_windows_short_record_stays_whole(model_dir):
    predictor = Predictor.from_pretrained(model_dir)
    short = SequenceRecord("short", "ACGTACGTAC")
    assert list(predictor.windows([short])) == [short]


def test_shard_blocks_partition_the_stream():
    items = [SequenceRecord(f"r{i}", "ACGT") for i in range(2500)]
    full = [r.id for block in _shard_blocks(items, (0, 1)) for r in block]
    shards = [[r.id for block in _shard_blocks(items, (i, 3)) for r in block] for i in range(3)]
    assert full == [r.id for r in items]
    assert sorted(itertools.chain(*shards)) == sorted(full)
    assert all(shards)  # every shard has work: 3 blocks of ≤1024
    assert [len(s) for s in shards] == [1024, 1024, 452]
    with pytest.raises(UsageError):
        list(_shard_blocks(items, (2, 2)))


def test_out_of_memory_batches_are_split_and_results_unchanged(model_dir, monkeypatch):
    records = reads(10)
    expected = np.concatenate([b.values for b in Predictor.from_pretrained(model_dir, batch_size=10).predict(records)])
    predictor = Predictor.from_pretrained(model_dir, batch_size=10)
    real = predictor._predict_batch
    sizes = []

    def flaky(seqs):
        sizes.append(len(seqs))
        if len(seqs) > 4:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(seqs)

    monkeypatch.setattr(predictor, "_predict_batch", flaky)
    got = np.concatenate([b.values for b in predictor.predict(records)])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert sizes[0] == 10 and max(sizes[1:]) <= 5 and predictor.max_batch <= 4


def test_auto_batch_size_is_a_token_budget(model_dir):
    predictor = Predictor.from_pretrained(model_dir, batch_size="auto")
    assert predictor.token_budget >= 1024
    with pytest.raises(UsageError, match="^batch_size must be a number or 'auto' \\(got 'lots'\\)"):
        Predictor.from_pretrained(model_dir, batch_size="lots")
    with pytest.raises(UsageError, match=r"^batch_size must be at least 1 \(got 0\)"):
        Predictor.from_pretrained(model_dir, batch_size=0)


def test_load_model_refuses_missing_corrupt_and_wrong_task(tmp_path, model_dir):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope")
    lm = make_model_dir(tmp_path / "lm", task="lm")
    with pytest.raises(ModelError, match="'lm' model"):
        load_model(lm, tasks=("classification", "multilabel", "regression"))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in ("config.json", "hyena_glt.json"):
        (corrupt / name).write_text((model_dir / name).read_text())
    (corrupt / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError):
        load_model(corrupt)


def test_embeddings_in_input_order_pooled_and_per_unit(model_dir):
    records = reads(8)
    predictor = Predictor.from_pretrained(model_dir, batch_size=3)
    tok, model = predictor.tokenizer, predictor.model

    def direct(seq, pool):
        enc = tok.encode_batch([seq])
        with torch.inference_mode():
            return model.embed(enc["input_ids"], attention_mask=enc["attention_mask"], pool=pool)[0].numpy()

    pooled = list(predictor.embed(records, pool="mean", windowed=False))
    values = np.concatenate([b.values for b in pooled])
    np.testing.assert_allclose(values, np.stack([direct(r.seq, "mean") for r in records]), atol=2e-5)

    ragged = list(predictor.embed(records, pool="none", windowed=False))
    flat = np.concatenate([b.values for b in ragged])
    lengths = np.concatenate([b.lengths for b in ragged])
    assert lengths.tolist() == [len(r.seq) for r in records]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for i, record in enumerate(records):
        np.testing.assert_allclose(flat[offsets[i]:offsets[i + 1]], direct(record.seq, "none"), atol=2e-5)


def test_merge_bed_rows_joins_touching_same_label_windows_only():
    rows = [
        BedRow("chr1", 0, 10, "p", 800, ".", (0.2, 0.8)),
        BedRow("chr1", 10, 20, "p", 600, ".", (0.4, 0.6)),  # touches: merged
        BedRow("chr1", 15, 30, "p", 700, ".", (0.3, 0.7)),  # overlaps: merged
        BedRow("chr1", 31, 40, "p", 900, ".", (0.1, 0.9)),  # 1 bp gap: new interval
        BedRow("chr1", 40, 50, "b", 550, ".", (0.55, 0.45)),  # other label
        BedRow("chr2", 50, 60, "b", 550, ".", (0.55, 0.45)),  # other contig
    ]
    merged = list(merge_bed_rows(rows, "classification"))
    assert [(r.contig, r.start, r.end, r.label) for r in merged] == [
        ("chr1", 0, 30, "p"), ("chr1", 31, 40, "p"), ("chr1", 40, 50, "b"), ("chr2", 50, 60, "b")]
    np.testing.assert_allclose(merged[0].values, (0.3, 0.7))
    assert merged[0].score == 700  # recomputed from the mean, like a single window's
    # Windows of another label in between do not split a run (bedtools merge per label), and the output stays
    # sorted: windows of 70 at stride 35 labelled p p b p p b b p.
    labels = "ppbppbbp"
    strided = [BedRow("chrM", 35 * i, 35 * i + 70, lab, 900, ".", (0.1, 0.9) if lab == "p" else (0.9, 0.1))
               for i, lab in enumerate(labels)]
    merged = list(merge_bed_rows(strided, "classification"))
    assert [(r.start, r.end, r.label) for r in merged] == [(0, 210, "p"), (70, 140, "b"), (175, 280, "b"),
                                                          (245, 315, "p")]
    assert [r.key() for r in merged] == sorted(r.key() for r in merged)


def test_sorted_rows_spill_to_disk_and_merge_back():
    rng = random.Random(1)
    rows = [BedRow(rng.choice(["chr2", "chr10", "chr1"]), s, s + 5, "x", 0, ".", (0.5,))
            for s in rng.sample(range(10_000), 500)]
    table = SortedRows(max_in_memory=64)
    for i in range(0, len(rows), 50):
        table.add(rows[i:i + 50])
    assert len(table._runs) >= 5
    got = [(r.contig, r.start) for r in table]
    table.close()
    assert got == sorted((r.contig, r.start) for r in rows)  # byte order of names, like LC_ALL=C sort -k1,1 -k2,2n


def test_npz_writer_streams_layout(tmp_path, model_dir):
    predictor = Predictor.from_pretrained(model_dir, batch_size=4)
    records = list(read_sequences(DATA / "ex1.fa"))
    records = [SequenceRecord(r.id, r.seq[:400]) for r in records]
    out = tmp_path / "e.npz"
    with NpzEmbeddingWriter(predictor.embedding_dim, dtype="float16", pool="none") as writer:
        for batch in predictor.embed(records, pool="none", windowed=True):
            writer.add(batch)
        writer.write(out, {"pool": "none"})
    z = np.load(out)
    assert sorted(z.files) == ["contig", "embeddings", "end", "lengths", "metadata", "names", "offsets", "start"]
    n = len(z["names"])
    assert n == 2 * 6  # 400 bp in 70 bp windows: 5 full + 1 shifted each
    assert z["embeddings"].dtype == np.float16 and z["embeddings"].shape == (z["offsets"][-1], 32)
    assert (z["end"] - z["start"] == z["lengths"]).all() and (z["lengths"] == 70).all()
    assert json.loads(str(z["metadata"])) == {"pool": "none"}
    assert not list(tmp_path.glob(".*"))  # no temporary left beside the output


def test_bed_writer_refuses_names_that_cannot_be_contigs_tsv_writer_keeps_duplicates(model_dir, tmp_path, caplog):
    from hyena_glt.errors import InputError
    from hyena_glt.inference import write_predictions_bed, write_predictions_tsv

    predictor = Predictor.from_pretrained(model_dir, device="cpu")
    fasta = tmp_path / "dup.fa"
    fasta.write_text(">chrA\n" + "ACGT" * 40 + "\n>chrA\n" + "GGCA" * 30 + "\n")
    out = tmp_path / "x.bed"
    with pytest.raises(InputError) as err:
        write_predictions_bed(predictor, read_sequences(fasta), out)
    assert str(err.value) == f"{fasta}: record 'chrA' appears twice (records 1 and 2); names must be unique for BED output"
    # records made in code have no file or number; the message still names the record
    with pytest.raises(InputError, match=r"^record 'x' appears twice \(in one input\)"):
        write_predictions_bed(predictor, [SequenceRecord("x", "ACGT" * 30), SequenceRecord("x", "ACGT" * 30)], out)
    with pytest.raises(InputError, match=r"^a record has no name; BED output needs one$"):
        write_predictions_bed(predictor, [SequenceRecord("", "ACGT" * 30)], out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dup.fa"]
    # TSV: one row per record, duplicates kept; an empty record is a row of NA in its place
    fasta.write_text(">chrA\nACGTACGT\n>gap\n>chrA\nGGCA\n")
    with caplog.at_level("WARNING", logger="hyena_glt"):
        assert write_predictions_tsv(predictor, read_sequences(fasta), tmp_path / "x.tsv") == 3
    assert caplog.messages == ["1 record(s) with no sequence: written as rows of NA"]
    rows = [line.split("\t") for line in (tmp_path / "x.tsv").read_text().splitlines()]
    assert [r[:3] for r in rows] == [["id", "length", "label"], ["chrA", "8", rows[1][2]], ["gap", "0", "NA"], ["chrA", "4", rows[3][2]]]


def test_nan_scores_are_a_runtime_error_not_a_bed_score():
    from hyena_glt.errors import HyenaGLTError
    from hyena_glt.inference import predicted_labels

    labels, scores = predicted_labels(np.array([[0.2, 0.8], [0.9, 0.1]]), "classification", ["a", "b"])
    assert labels == ["b", "a"] and scores.tolist() == [800, 900]
    for task in ("classification", "multilabel", "regression"):
        with pytest.raises(HyenaGLTError, match=r"NaN or infinite scores .* try precision='fp32'") as err:
            predicted_labels(np.array([[0.2, 0.8], [np.nan, np.nan]]), task, ["a", "b"])
        assert err.value.exit_code == 1  # a runtime failure, not the user's input


def test_library_predict_takes_strings_and_embed_keeps_reads_whole_as_the_cli_does(data_dir):
    predictor = Predictor.from_pretrained(None)
    batches = list(predictor.predict(["ACGTACGTACGGCGCGCGAT", "TTTTAAAACCCC"]))
    assert [r.id for b in batches for r in b.records] == ["1", "2"]
    with pytest.raises(UsageError, match=r"^item 1 is a int: give SequenceRecords \(read_sequences\) or sequence strings$"):
        list(predictor.predict([1, 2]))
    # 100 nt reads against the 70 nt window: one embedding a read (the CLI's rule), not two windows
    reads = list(read_sequences(data_dir / "ce_reads.fastq"))[:5]
    assert [r.id for b in predictor.embed(reads) for r in b.records] == [r.id for r in reads]
