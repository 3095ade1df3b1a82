"""Attributions over a stream of SequenceRecords: same-length records are batched together, each record
comes back with its genome coordinates, one-hot, attributions and per-base importance."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from ..errors import InputError, UsageError, option
from ..io.sequences import as_records, drop_empty
from .attribution import attribute, auto_batch_size
from .scoring import ScoreModel, Target, as_target


@dataclass
class RecordAttribution:
    name: str
    contig: str          # the record's contig, or its id when it has no coordinates
    start: int           # 0-based genome coordinate of the first base (0 without coordinates)
    strand: str
    seq: str
    target: int
    target_name: str
    score: float
    one_hot: np.ndarray       # (4, L)
    attributions: np.ndarray  # (4, L)
    importance: np.ndarray    # (L,)
    delta: float | None = None



def parse_batch_size(text: str | int | None) -> int | None:
    """``--batch-size``: a number of sequences, or None for 'auto'."""
    if text is None or str(text).strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{option('batch_size')} must be a number or 'auto' (got '{text}')") from None
    if value < 1:
        raise UsageError(f"{option('batch_size')} must be at least 1 (got {value})")
    return value


def _same_length_batches(records: Iterable, batch_size: int | None, scorer: ScoreModel) -> Iterator[list]:
    """Runs of consecutive records of one length, at most ``batch_size`` long (no padding needed); None: as
    many as the auto budget allows at that length."""
    for length, run in itertools.groupby(records, key=lambda r: len(r.seq)):
        run, size = iter(run), batch_size or auto_batch_size(scorer, length)
        while batch := list(itertools.islice(run, size)):
            yield batch


def attribute_records(scorer: ScoreModel, records: Iterable, method: str, target: Target | str | int | None = None,
                      *, class_names: list[str] | None = None, batch_size: int | None = None,
                      ism_window: tuple[int, int] | None = None, seed: int = 0,
                      **method_options) -> Iterator[RecordAttribution]:
    """Attributions of each record (SequenceRecords or plain strings, named 1, 2, ...), in input order; runs
    of same-length records are batched. ``target`` as :func:`~hyena_glt.interpret.attribution.attribute`
    takes it; ``class_names`` (for ``target_name``) default to the model's."""
    target = as_target(target, scorer.metadata, scorer.num_outputs)
    if class_names is None:
        meta = scorer.metadata
        class_names = list(meta.get("class_names") or meta.get("target_names") or map(str, range(scorer.num_outputs)))
    rng = np.random.default_rng(seed)
    # records with no sequence are skipped, with a warning naming the first, as every subcommand does
    for batch in _same_length_batches(drop_empty(as_records(records)), batch_size, scorer):
        window = None
        if ism_window is not None:
            length = len(batch[0].seq)
            if ism_window[0] >= length:  # a window past the end is the user's; clip only one that overlaps
                first = batch[0]
                raise InputError(f"{option('ism_window')} {ism_window[0] + 1}-{ism_window[1]} starts after the end of this "
                                 f"{length}-base sequence", path=first.source, record=first.id or first.number)
            window = (ism_window[0], min(ism_window[1], length))
        result = attribute(scorer, [r.seq for r in batch], method, target,
                           batch_size=batch_size or auto_batch_size(scorer, len(batch[0].seq)),
                           ism_window=window, rng=rng, **method_options)
        for i, rec in enumerate(batch):
            has_coords = rec.contig is not None and rec.start is not None
            yield RecordAttribution(
                name=rec.id, contig=rec.contig if has_coords else rec.id, start=rec.start if has_coords else 0,
                strand=rec.strand or ".", seq=rec.seq, target=int(result.targets[i]),
                target_name=class_names[int(result.targets[i])], score=float(result.scores[i]),
                one_hot=result.one_hot[i], attributions=result.attributions[i], importance=result.importance[i],
                delta=None if result.delta is None else float(result.delta[i]))
