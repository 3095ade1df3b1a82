"""EntropyPatcher with a real (tiny, trained-at-test-time) entropy LM: repeats make long patches,
calibration, streaming, saving/loading, and BED/stats/plot output."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from hyena_glt.config import HyenaGLTConfig
from hyena_glt.errors import InputError, ModelError, UsageError
from hyena_glt.io.sequences import SequenceRecord
from hyena_glt.model import HyenaGLTForTask, from_pretrained, save_pretrained
from hyena_glt.model.entropy import (
    EntropyPatcher,
    PatchStats,
    load_entropy_patcher,
    make_patcher,
    patch_records,
    save_entropy_patcher,
    starts_to_patch_lengths,
    write_patches,
)
from hyena_glt.tokenizers import get_tokenizer

# Repeat units the LM sees in training (like the common microsatellites of real genomes).
REPEAT_UNITS = ["A", "CA", "CAG", "AATG"]
TOKENIZER = get_tokenizer("nucleotide")


def random_dna(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(n))


def training_sequence(rng: random.Random, length: int = 256) -> str:
    seq = list(random_dna(rng, length))
    run = rng.randint(40, 100)
    start = rng.randint(0, length - run)
    seq[start:start + run] = list((rng.choice(REPEAT_UNITS) * 100)[:run])
    return "".join(seq)


def tiny_lm_config() -> HyenaGLTConfig:
    return HyenaGLTConfig(vocab_size=TOKENIZER.vocab_size, d_model=32, n_layers=2, d_inner=64, filter_dim=16,
                          ngram_buckets=256, bidirectional=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one thread is fastest, and the CI machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lm(one_thread) -> HyenaGLTForTask:
    """A causal LM trained for a few seconds on random DNA with embedded tandem repeats."""
    torch.manual_seed(0)
    rng = random.Random(0)
    model = HyenaGLTForTask(tiny_lm_config(), "lm")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(80):
        batch = TOKENIZER.encode_batch([training_sequence(rng) for _ in range(16)])
        loss = model.loss(model(batch["input_ids"]), batch["input_ids"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def patcher(lm) -> EntropyPatcher:
    rng = random.Random(1)
    p = EntropyPatcher(lm, target_patch_length=3.0, tokenizer=TOKENIZER, window=256)
    p.calibrate([training_sequence(rng, 512) for _ in range(40)])
    return p


def repeat_in_random(seed: int = 5):
    rng = random.Random(seed)
    left, right = random_dna(rng, 300), random_dna(rng, 300)
    repeat = "CAG" * 60
    return left + repeat + right, (300, 300 + len(repeat))


def mean_patch_length_in(starts: np.ndarray, lo: int, hi: int) -> float:
    return (hi - lo) / max(int(starts[lo:hi].sum()), 1)


def test_tandem_repeat_gets_longer_patches_than_random_flanks(patcher):
    seq, (lo, hi) = repeat_in_random()
    ids = torch.as_tensor(TOKENIZER.encode(seq))[None]
    lengths = patcher(ids)
    assert int(lengths.sum()) == len(seq)
    starts = np.zeros(len(seq), dtype=bool)
    starts[np.concatenate([[0], np.cumsum(lengths[0].numpy())[:-1]])] = True
    # Skip the first repeat periods: the LM needs a few units to recognise the repeat.
    inside = mean_patch_length_in(starts, lo + 12, hi)
    outside = (len(seq) - (hi - lo)) / (starts[:lo].sum() + starts[hi:].sum())
    assert inside > 3 * outside, (inside, outside)
    entropy = patcher.entropies(ids)[0]
    assert float(entropy[lo + 12:hi].mean()) < 0.5 * float(torch.cat([entropy[:lo], entropy[hi:]]).mean())


def test_calibration_on_strings_hits_target_within_ten_percent(lm):
    rng = random.Random(2)
    seqs = [training_sequence(rng, 400) for _ in range(30)]
    for target, mode in ((2.5, "global"), (4.0, "global"), (3.0, "monotonic")):
        p = EntropyPatcher(lm, target_patch_length=target, mode=mode, tokenizer=TOKENIZER)
        theta = p.calibrate(seqs)
        assert p.threshold == theta
        batch = TOKENIZER.encode_batch(seqs)
        lengths = p(batch["input_ids"], batch["attention_mask"])
        achieved = int(batch["attention_mask"].sum()) / int((lengths > 0).sum())
        assert abs(achieved - target) / target < 0.10, (mode, target, achieved)


def test_batched_call_matches_rows_one_by_one_and_respects_clamps(lm):
    rng = random.Random(3)
    seqs = [training_sequence(rng, n) for n in (300, 120, 257)]
    p = EntropyPatcher(lm, threshold=1.0, min_patch_length=2, max_patch_length=8, tokenizer=TOKENIZER)
    batch = TOKENIZER.encode_batch(seqs)
    lengths = p(batch["input_ids"], batch["attention_mask"])
    assert lengths.sum(1).tolist() == [300, 120, 257]
    for i, seq in enumerate(seqs):
        alone = p(torch.as_tensor(TOKENIZER.encode(seq))[None])[0]
        row = lengths[i][lengths[i] > 0]
        assert torch.equal(row, alone[alone > 0])
        assert int(row.max()) <= 8 and int(row[:-1].min()) >= 2


def test_streamed_windows_do_not_decide_boundaries(lm):
    """Long inputs are cut into overlapping windows (of the LM's training length). Every kept entropy has
    ≥ `context` units of left context, so different cut placements give nearly the same track, and
    boundaries come from the whole stitched track: window cuts add no boundaries of their own."""
    rng = random.Random(4)
    seq = "".join(training_sequence(rng, 250) for _ in range(8))  # 2,000 units
    ids = torch.as_tensor(TOKENIZER.encode(seq))[None]
    a = EntropyPatcher(lm, threshold=1.2, window=256, context=128)
    b = EntropyPatcher(lm, threshold=1.2, window=200, context=100, batch_size=3)
    c = EntropyPatcher(lm, threshold=1.2, window=256)  # context defaults to window // 4
    assert c.settings.context == 64
    h_a, h_b, h_c = a.entropies(ids), b.entropies(ids), c.entropies(ids)
    assert h_a.shape == h_b.shape == ids.shape
    # The first window is a plain forward (causal model): exact.
    with torch.no_grad():
        h_first = a.entropies(ids[:, :256])
    assert torch.allclose(h_a[:, :256], h_first, atol=1e-5)
    starts_a = a.starts_from_entropy(h_a)
    assert int(starts_a.sum()) > 100
    for other, h in ((b, h_b), (c, h_c)):
        assert float((h_a - h).abs().mean()) < 0.03
        assert float((starts_a == other.starts_from_entropy(h)).float().mean()) > 0.99
    # A long repeat: low entropy throughout, so only the max clamp starts patches, never a window cut.
    repeat = torch.as_tensor(TOKENIZER.encode(random_dna(rng, 20) + "CA" * 900))[None]
    clamped = EntropyPatcher(lm, threshold=1.2, max_patch_length=50, window=256)
    lengths = clamped(repeat)[0]
    lengths = lengths[lengths > 0].tolist()
    assert sum(lengths) == 1820
    # The LM needs a few units to lock on to the repeat; from then on only the clamp cuts.
    locked = lengths.index(50)
    assert locked < 40 and all(v == 50 for v in lengths[locked:-1]), lengths


def test_save_and_load_round_trip_inside_a_classifier(tmp_path, lm, patcher):
    config = HyenaGLTConfig(vocab_size=TOKENIZER.vocab_size, d_model=32, n_layers=1, d_inner=64, filter_dim=16,
                            ngram_buckets=0, patcher="entropy")
    clf = HyenaGLTForTask(config, "classification", 2)
    clf.backbone.patcher = patcher
    save_pretrained(clf.eval(), tmp_path / "clf", {"tokenizer": TOKENIZER.to_dict()})
    assert (tmp_path / "clf" / "entropy_model" / "model.safetensors").is_file()
    loaded, _ = from_pretrained(tmp_path / "clf")
    restored = loaded.backbone.patcher
    assert isinstance(restored, EntropyPatcher)
    assert restored.threshold == patcher.threshold
    assert restored.settings.to_dict() == patcher.settings.to_dict()
    seq, _ = repeat_in_random(6)
    ids = torch.as_tensor(TOKENIZER.encode(seq))[None]
    assert torch.equal(restored(ids), patcher(ids))
    with torch.no_grad():
        assert torch.allclose(loaded(ids), clf(ids), atol=1e-5)
    # The LM directory alone (what `train --task lm` writes) loads too, with overrides.
    again = load_entropy_patcher(tmp_path / "clf" / "entropy_model", mode="monotonic", threshold=0.5)
    assert (again.mode, again.threshold) == ("monotonic", 0.5)


def test_new_target_clears_the_stored_threshold(tmp_path, patcher):
    save_entropy_patcher(patcher, tmp_path / "lm", subdir=False)
    assert load_entropy_patcher(tmp_path / "lm").threshold == patcher.threshold
    fresh = load_entropy_patcher(tmp_path / "lm", target_patch_length=6.0)
    assert fresh.threshold is None
    with pytest.raises(UsageError, match="no threshold"):
        fresh(torch.full((1, 10), 5))


def test_errors(tmp_path, lm):
    clf = HyenaGLTForTask(tiny_lm_config(), "classification", 2)
    save_pretrained(clf, tmp_path / "clf", {})
    with pytest.raises(ModelError, match="not an entropy model"):
        load_entropy_patcher(tmp_path / "clf")
    with pytest.raises(ModelError, match="does not exist"):
        load_entropy_patcher(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="^patcher='entropy' needs entropy_model"):
        make_patcher("entropy")
    with pytest.raises(UsageError, match="mode"):
        EntropyPatcher(lm, threshold=1.0, mode="sideways")
    with pytest.raises(UsageError, match="context"):
        EntropyPatcher(lm, threshold=1.0, window=100, context=100)
    for target in (0, 0.5, float("nan")):  # 0 used to mean "unset" (calibrating to 4) on the command line
        with pytest.raises(UsageError, match=r"target patch length must be a number >= 1"):
            EntropyPatcher(lm, target_patch_length=target, tokenizer=TOKENIZER)
    # A threshold is compared from each record's second unit on: one unit gives it nothing to calibrate on.
    with pytest.raises(InputError, match=r"too little sequence to calibrate .* \(no record has 2 or more units\)"):
        EntropyPatcher(lm, target_patch_length=4.0, tokenizer=TOKENIZER).calibrate(["A", "C"])
    with pytest.raises(InputError, match=r"every record is empty"):
        EntropyPatcher(lm, target_patch_length=4.0, tokenizer=TOKENIZER).calibrate(["", ""])


def test_write_patches_bed_stats_and_plot(tmp_path, patcher):
    seq, (lo, hi) = repeat_in_random(7)
    records = [
        SequenceRecord("chrA:1001-1960", seq, contig="chrA", start=1000, end=1000 + len(seq)),
        SequenceRecord("read1", "ACGTTGCAAC"),
    ]
    bed, stats_path, png = tmp_path / "p.bed", tmp_path / "p.tsv", tmp_path / "p.png"
    stats = write_patches(records, str(bed), patcher, stats_path=stats_path, plot_path=png)
    rows = [line.split("\t") for line in bed.read_text().splitlines()]
    chra = [r for r in rows if r[0] == "chrA"]
    read = [r for r in rows if r[0] == "read1"]
    # Patches tile each record exactly, in genome coordinates, indexed from 0.
    assert int(chra[0][1]) == 1000 and int(chra[-1][2]) == 1000 + len(seq)
    assert all(a[2] == b[1] for a, b in zip(chra, chra[1:]))
    assert [int(r[3]) for r in chra] == list(range(len(chra)))
    assert int(read[0][1]) == 0 and int(read[-1][2]) == 10
    # Score = entropy (bits) at the patch start, which is what the patcher compared to θ.
    ids = torch.as_tensor(TOKENIZER.encode(seq))[None]
    entropy = patcher.entropies(ids)[0]
    for r in chra[1:]:
        h = float(r[4])
        assert h == pytest.approx(float(entropy[int(r[1]) - 1000]), abs=1e-3)
    lengths = patcher(ids)[0]
    assert len(chra) == int((lengths > 0).sum())
    table = [line.split("\t") for line in stats_path.read_text().splitlines()]
    assert table[0] == list(PatchStats.COLUMNS)
    by_contig = {r[0]: r for r in table[1:]}
    assert by_contig["chrA"][1:3] == [str(len(seq)), str(len(chra))]
    assert by_contig["all"][1:3] == [str(len(seq) + 10), str(len(rows))]
    assert float(by_contig["chrA"][6]) == pytest.approx(len(seq) / len(chra), abs=1e-3)
    assert stats.rows()[-1]["patches"] == len(rows)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_static_patcher_bed_and_median_stats(tmp_path):
    records = [SequenceRecord("s1", "ACGTACGTAC"), SequenceRecord("s2", "ACG")]
    out = tmp_path / "static.bed"
    stats = write_patches(records, str(out), make_patcher("static:4"), TOKENIZER)
    assert out.read_text() == (
        "s1\t0\t4\t0\t0.0000\t.\ns1\t4\t8\t1\t0.0000\t.\ns1\t8\t10\t2\t0.0000\t.\ns2\t0\t3\t0\t0.0000\t.\n")
    total = stats.rows()[-1]
    assert (total["units"], total["patches"], total["max_patch_length"]) == (13, 4, 4)
    assert total["median_patch_length"] == 3.5  # lengths 2, 3, 4, 4
    assert total["compression_ratio"] == pytest.approx(13 / 4)


def test_patch_records_calibrates_on_the_input_when_no_threshold(lm):
    rng = random.Random(8)
    records = [SequenceRecord(f"r{i}", training_sequence(rng, 300)) for i in range(12)]
    p = EntropyPatcher(lm, target_patch_length=5.0, tokenizer=TOKENIZER)
    patched = list(patch_records(records, p, calibrate_units=1000))
    assert p.threshold is not None
    assert [x.record.id for x in patched] == [r.id for r in records]
    units = sum(len(r.seq) for r in records)
    n_patches = sum(len(x.patch_lengths) for x in patched)
    # Calibrated on the first ~1,000 units only, so the whole input is only roughly on target.
    assert 3.5 < units / n_patches < 7.0
    assert all(int(x.patch_lengths.sum()) == len(x.record.seq) for x in patched)


def test_starts_to_patch_lengths_empty_row():
    starts = torch.tensor([[True, False, True], [False, False, False]])
    mask = torch.tensor([[True, True, True], [False, False, False]])
    assert starts_to_patch_lengths(starts, mask).tolist() == [[2, 1], [0, 0]]


def test_cli_tokenize_entropy_patches(tmp_path, patcher):
    from typer.testing import CliRunner

    from hyena_glt_cli.main import app

    save_entropy_patcher(patcher, tmp_path / "lm", subdir=False)
    seq, (lo, hi) = repeat_in_random(9)
    fasta = tmp_path / "in.fa"
    fasta.write_text(f">chrR\n{seq}\n>chrS\n{seq[:100]}\n")
    bed, stats, png = tmp_path / "out.bed", tmp_path / "stats.tsv", tmp_path / "track.png"
    result = CliRunner().invoke(app, ["-@", "1", "tokenize", "--patcher", "entropy", "--entropy-model",
                                      str(tmp_path / "lm"), str(fasta), "-o", str(bed), "--stats", str(stats),
                                      "--plot", str(png)])
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in bed.read_text().splitlines()]
    # Same patches as the library call on the same sequence, with the stored (calibrated) threshold.
    expected = patcher(torch.as_tensor(TOKENIZER.encode(seq))[None])[0]
    expected = expected[expected > 0].tolist()
    assert [int(r[2]) - int(r[1]) for r in rows if r[0] == "chrR"] == expected
    assert "all: " in result.stderr and "compression" in result.stderr
    assert stats.read_text().splitlines()[-1].split("\t")[:3] == ["all", str(len(seq) + 100), str(len(rows))]
    assert png.stat().st_size > 1000

    # --threshold overrides the stored one: a threshold above every entropy leaves only max-length cuts.
    capped = tmp_path / "capped.bed"
    result = CliRunner().invoke(app, ["-@", "1", "tokenize", "--patcher", "entropy", "--entropy-model",
                                      str(tmp_path / "lm"), str(fasta), "-o", str(capped), "--threshold", "99",
                                      "--max-patch-length", "16"])
    assert result.exit_code == 0, result.stderr
    lengths = [int(r[2]) - int(r[1]) for r in (line.split("\t") for line in capped.read_text().splitlines())
               if r[0] == "chrR"]
    assert lengths == [16] * (len(seq) // 16) + ([len(seq) % 16] if len(seq) % 16 else [])

    missing = tmp_path / "never.bed"
    result = CliRunner().invoke(app, ["tokenize", "--patcher", "static:4", "--threshold", "1", str(fasta),
                                      "-o", str(missing)])
    assert result.exit_code == 2 and "need --patcher entropy" in result.stderr
    result = CliRunner().invoke(app, ["tokenize", "--patcher", "entropy", str(fasta), "-o", str(missing)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("hyena-glt: error: --patcher entropy needs --entropy-model")
    assert not missing.exists()


def test_code_lengths_are_the_lm_loss_in_bits(lm):
    rng = random.Random(10)
    ids = torch.as_tensor(TOKENIZER.encode(training_sequence(rng, 300)))[None]
    p = EntropyPatcher(lm, threshold=1.0, window=512)
    bits = p.code_lengths(ids)
    with torch.no_grad():
        nats = lm.loss(lm(ids), ids)
    assert float(bits[0, 1:].mean()) == pytest.approx(float(nats) / np.log(2), rel=1e-4)
    # Streamed in short windows the code lengths stay close (the LM was trained on 256-unit sequences).
    streamed = EntropyPatcher(lm, threshold=1.0, window=160, context=64).code_lengths(ids)
    assert float((streamed - bits).abs().mean()) < 0.05
