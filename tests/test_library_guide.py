"""Library calls a newcomer makes (found while writing docs/templates/library.md): a lone string where a list of
sequences belongs, one record's ids where a batch belongs, a target given by name or index. Each was either
silently wrong (a string read letter by letter: one prediction per base) or failed with an untyped error deep
inside torch; now each works or raises a typed error saying what to pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyena_glt.errors import UsageError
from hyena_glt.inference import Predictor
from hyena_glt.interpret import Target, attribute, attribute_records, load_scorer
from hyena_glt.io.sequences import SequenceRecord
from hyena_glt.model import NoPatcher, StaticPatcher
from hyena_glt.tokenizers import get_tokenizer

SEQ = "TATAAAAGGCGCGCCTATATAAGGCTGCAGCCCGGGCGGCGACTTTATAAAGC"


@pytest.fixture(scope="module")
def predictor():
    return Predictor.from_pretrained(None, device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def scorer():
    return load_scorer(None, device="cpu")[2]


def test_predict_and_embed_refuse_one_string_instead_of_reading_it_base_by_base(predictor):
    with pytest.raises(UsageError, match=r"not a single str: e\.g\. \[seq\]"):
        list(predictor.predict(SEQ))
    with pytest.raises(UsageError, match="not a single str"):
        list(predictor.embed(SEQ))
    with pytest.raises(UsageError, match="not a single SequenceRecord"):
        list(predictor.predict(SequenceRecord("one", SEQ)))
    # the list form gives one row for the one sequence
    (batch,) = predictor.predict([SEQ])
    assert [r.id for r in batch.records] == ["1"] and batch.values.shape == (1, 2)


def test_as_records_names_strings_by_number_and_refuses_other_items():
    from hyena_glt.io.sequences import as_records

    records = list(as_records(["ACGT", SequenceRecord("r", "GG")]))
    assert [(r.id, r.seq) for r in records] == [("1", "ACGT"), ("r", "GG")]
    with pytest.raises(UsageError, match=r"^item 2 is a bytes"):
        list(as_records(["ACGT", b"ACGT"]))
    with pytest.raises(UsageError, match="not a single bytes"):
        list(as_records(b"ACGT"))


def test_sliding_windows_refuses_one_record_or_string():
    from hyena_glt.io.sequences import sliding_windows

    record = SequenceRecord("r", "ACGTACGTAC")
    for lone in (record, "ACGTACGTAC"):
        with pytest.raises(UsageError, match=r"not a single (SequenceRecord|str): e\.g\. \[record\]"):
            list(sliding_windows(lone, 4))
    assert [w.id for w in sliding_windows([record], 4, last="drop")] == ["r:1-4", "r:5-8"]


def test_encode_batch_refuses_one_string():
    tokenizer = get_tokenizer("nucleotide")
    with pytest.raises(UsageError, match=r"use encode\(seq\), or encode_batch\(\[seq\]\)"):
        tokenizer.encode_batch("ACGT")
    assert tuple(tokenizer.encode_batch(["ACGT"])["input_ids"].shape) == (1, 4)


def test_patchers_refuse_one_records_ids_instead_of_a_batch():
    ids = torch.as_tensor(get_tokenizer("nucleotide").encode("ACGTACGTAC"))
    for patcher in (StaticPatcher(4), NoPatcher()):
        with pytest.raises(UsageError, match=r"shape \(batch, length\), got \(10,\)"):
            patcher(ids)
    assert StaticPatcher(4)(ids[None]).tolist() == [[4, 4, 2]]


def test_attribute_takes_a_target_by_name_index_or_default(scorer):
    seqs = [SEQ, SEQ[::-1]]
    reference = attribute(scorer, seqs, "saliency", Target(1, "promoter"))
    for target in ("promoter", 1, np.int64(1), None):  # None: the second class of a two-class model
        result = attribute(scorer, seqs, "saliency", target)
        np.testing.assert_array_equal(result.importance, reference.importance)
        assert result.targets.tolist() == [1, 1]
    predicted = attribute(scorer, seqs, "saliency", "predicted")
    assert set(predicted.targets.tolist()) <= {0, 1}
    with pytest.raises(UsageError, match="^unknown target 'enhancer'"):
        attribute(scorer, seqs, "ism", "enhancer")
    with pytest.raises(UsageError, match=r"target index 5 is outside 0\.\.1"):
        attribute(scorer, seqs, "ism", Target(5, "x"))
    with pytest.raises(UsageError, match="not a float"):
        attribute(scorer, seqs, "ism", 1.0)
    with pytest.raises(UsageError, match="not a single str"):
        attribute(scorer, SEQ, "ism", "promoter")


def test_attribute_records_takes_strings_and_defaults_to_the_models_class_names(scorer):
    rows = list(attribute_records(scorer, [SEQ, SEQ[:30]], "ism", "promoter", batch_size=256))
    assert [(r.name, r.target_name, len(r.importance)) for r in rows] == [("1", "promoter", len(SEQ)),
                                                                           ("2", "promoter", 30)]


def test_attribute_picks_its_batch_size_as_the_cli_does(scorer, monkeypatch):
    """attribute() with no batch_size takes the auto budget (4,096 units a pass on CPU: 58 ISM mutants of a
    70 nt sequence per pass), not a fixed 64; the attributions do not depend on it."""
    import hyena_glt.interpret.attribution as attribution

    seqs = ["CTCCACCCCTGACTCCCCTCAGCCATAGAAGGCCCCACCCCAGTCTCAGCCCTACTCCACTCAAGCACTA"] * 2
    assert attribution.auto_batch_size(scorer, 70) == 58
    passes = []
    real = scorer.logits
    monkeypatch.setattr(scorer, "logits", lambda ids, *a, **k: passes.append(ids.shape[0]) or real(ids, *a, **k))
    auto = attribute(scorer, seqs, "ism", None)
    assert max(passes) == 58
    small = attribute(scorer, seqs, "ism", None, batch_size=5)
    np.testing.assert_allclose(auto.attributions, small.attributions, atol=1e-6)
