"""Batched, windowed inference: predictions and embeddings for streams of :class:`SequenceRecord`.

:class:`Predictor` turns a stream of records into a stream of results without ever holding the whole
input: records are read lazily, cut into fixed *blocks* of work items, and each block is batched by length,
run through the model and handed back **in input order**.

Work items
    ``windowed=False``: each record is one item (the model reads it whole, whatever its length).
    ``windowed=True``: a record longer than the window is scanned with ``sliding_windows`` (default window:
    the model's training length, ``metadata["window"]``; default stride: the window, i.e. tiling windows;
    ``last="shift"`` ends the last window exactly at the record's end); a record no longer than the
    window is one item, read unpadded. Window coordinates are 0-based half-open on the record's contig
    and never pass its end.

Blocks and shards
    Items are grouped, in stream order, into blocks of at most ``BLOCK_WINDOWS`` windows or
    ``BLOCK_RECORDS`` whole records (and about ``BLOCK_BASES`` bases). A block is the unit of sharding (``shard=(i, n)`` keeps blocks ``k`` with
    ``k % n == i``) *and* the only scope within which items are batched together. A block is therefore
    batched identically in a full run and in the shard that owns it, so the union of the shards' results
    is bit-identical to a full run (matrix kernels may round differently for different batch shapes), and
    one genome's windows are spread across shards.

Batches
    Inside a block, items are sorted by length and packed greedily: at most ``batch_size`` sequences, or
    with ``batch_size="auto"`` at most a token budget estimated from the model size and the device's free
    memory. A batch that runs out of memory is split in half (and later batches are kept smaller).

Models
    Reverse-complement averaging (``rc_average``; default ``metadata["rc_average"]`` for nucleotide
    models) averages the logits of each sequence and its reverse complement, so a sequence and its
    reverse complement get the same prediction. Forward passes run under ``torch.inference_mode`` and
    the autocast of :mod:`hyena_glt.runtime`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import heapq
import json
import logging
import math
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence

import numpy as np
import torch

from . import runtime
from .errors import HyenaGLTError, ModelError, UsageError, option
from .io.sequences import (WINDOW_POLICIES, SequenceRecord, as_records, check_names, drop_empty,
                           reverse_complement, sliding_windows)
from .io.writers import check_destination

log = logging.getLogger("hyena_glt")

SEQUENCE_TASKS = ("classification", "multilabel", "regression")
POOLS = ("mean", "cls", "none")
EMBED_DTYPES = ("float32", "float16")

# Block = unit of sharding and the scope of batching (see the module docstring). Constants, so that
# every run (any device, any --batch-size) cuts the same blocks.
BLOCK_WINDOWS = 1024  # windows of a genome scan
BLOCK_RECORDS = 256  # whole records (reads): enough to sort by length into well-filled batches
BLOCK_BASES = 4_000_000
CPU_BATCH_UNITS = 16_384  # units per forward pass with --batch-size auto on CPU


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
def resolve_model_dir(directory: str | os.PathLike | None) -> Path:
    """``directory``; a bundled model's name (``promoter-tiny``) when no such folder exists here; or, when
    None, the bundled default model."""
    if directory is not None:
        from .pretrained import find_model

        return find_model(directory)
    try:
        from .pretrained import default_model_dir
    except ImportError:
        raise ModelError("no model given, and the bundled default model is not installed") from None
    return Path(default_model_dir())


def load_model(directory: str | os.PathLike | None, tasks: Sequence[str] | None = None, map_location="cpu",
               named_by: str = "model"):
    """``from_pretrained`` plus a check that the model does one of ``tasks`` → (model, metadata). ``named_by``:
    the option that named the folder, for the hint about a training run that stopped early."""
    from .model import from_pretrained

    path = resolve_model_dir(directory)
    if not path.exists():
        from .pretrained import bundled_models

        bundled = ", ".join(bundled_models())
        raise ModelError(f"model directory does not exist{f' (bundled models, by name: {bundled})' if bundled else ''}",
                         path=str(directory))
    if not path.is_dir():
        raise ModelError("not a model directory (expected a folder with config.json, model.safetensors, "
                         "hyena_glt.json)", path=str(path))
    if not (path / "config.json").exists() and (path / "checkpoints" / "last" / "config.json").exists():
        # a training run stopped before it finished: its model is only in the checkpoint
        raise ModelError(f"no finished model here (the training run stopped early?): resume it "
                         f"({option('resume', True)} with {option('output_dir', str(path))}), or use its last checkpoint, "
                         f"{option(named_by, str(path / 'checkpoints' / 'last'))}", path=str(path))
    model, metadata = from_pretrained(path, map_location=map_location)
    task = metadata.get("task", getattr(model, "task", None))
    if tasks is not None and task not in tasks:
        raise ModelError(f"this is a '{task}' model; this command needs a {' or '.join(tasks)} model",
                         path=str(path))
    metadata = dict(metadata)
    metadata.setdefault("model_dir", str(path))
    return model, metadata


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------
@dataclass
class PredictionBatch:
    """Results for consecutive work items, in input order. ``values`` (n, C): class probabilities
    (softmax for classification, sigmoid for multilabel) or regression outputs."""

    records: list[SequenceRecord]
    values: np.ndarray


@dataclass
class EmbeddingBatch:
    """Embeddings of consecutive work items, in input order. Pooled: ``values`` (n, D). ``pool="none"``:
    ``values`` (sum of lengths, D), the items' per-unit rows one after another, ``lengths`` (n,)."""

    records: list[SequenceRecord]
    values: np.ndarray
    lengths: np.ndarray


def looks_like_genome(first: SequenceRecord, window: int | None) -> bool:
    """Whether an input should be scanned in windows, judged from its first record: longer than the
    window and without base qualities (a genome or contig, not a read or a table row)."""
    return window is not None and first.qual is None and not first.standalone and len(first.seq) > window


def record_coordinates(record: SequenceRecord) -> tuple[str, int, int]:
    """(contig, start, end) of a record or window: its own coordinates, else (id, 0, length)."""
    contig = record.contig if record.contig is not None else record.id
    start = record.start if record.start is not None else 0
    end = record.end if record.end is not None else start + len(record.seq)
    return contig, start, end


# --------------------------------------------------------------------------------------------------
# The predictor
# --------------------------------------------------------------------------------------------------
class Predictor:
    """Runs a model over streams of records. See the module docstring for how work is cut and batched.

    ``batch_size``: a number of sequences per batch, or ``"auto"``. ``window``/``stride``/``last``:
    genome scanning (defaults from the model). ``rc_average``: None = the model's default. ``max_n``: windows
    of nucleotide models with a larger fraction of N bases (assembly gaps) are skipped; None keeps them.
    """

    def __init__(
        self,
        model,
        metadata: dict,
        device: str | torch.device = "auto",
        precision: str = "auto",
        batch_size: int | str = "auto",
        *,
        window: int | None = None,
        stride: int | None = None,
        last: str = "shift",
        rc_average: bool | None = None,
        max_n: float | None = None,
    ):
        from .tokenizers import get_tokenizer

        self.device = device if isinstance(device, torch.device) else runtime.resolve_device(str(device))
        self.precision = runtime.resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval()
        self.metadata = metadata
        self.task = metadata.get("task", getattr(model, "task", None))
        self.tokenizer = get_tokenizer(metadata.get("tokenizer", "nucleotide"))
        self.is_nucleotide = getattr(self.tokenizer, "alphabet", None) == "nucleotide"

        if window is not None and window < 1:
            raise UsageError(f"{option('window')} must be at least 1 (got {window})")
        self.window = window if window is not None else metadata.get("window")
        if stride is not None and stride < 1:
            raise UsageError(f"{option('stride')} must be at least 1 (got {stride})")
        if stride is not None and self.window is None:
            raise UsageError(f"{option('stride')} needs a window: the model has none, give {option('window')}")
        self.stride = stride if stride is not None else self.window
        if last not in WINDOW_POLICIES:
            raise UsageError(f"unknown last-window policy '{last}' (use one of: {', '.join(WINDOW_POLICIES)})")
        self.last = last
        if max_n is not None and not 0 <= max_n <= 1:
            raise UsageError(f"{option('max_n')} must be a fraction from 0 to 1 (got {max_n:g})")
        self.max_n = max_n

        default_rc = bool(metadata.get("rc_average", self.is_nucleotide)) and self.is_nucleotide
        self.rc_average = default_rc if rc_average is None else bool(rc_average)
        if self.rc_average and not self.is_nucleotide:
            raise UsageError(
                f"reverse-complement averaging needs a nucleotide tokenizer (this model uses "
                f"'{self.tokenizer.name}'); use {option('rc_average', False)}")

        self.max_batch, self.token_budget = self._batch_limits(batch_size)
        log.log(runtime.VERBOSE, "model: %s, %s parameters, window %s, tokenizer %s, patcher %s; rc-average %s; batches "
                "of up to %s sequences and %s units", self.task, f"{sum(p.numel() for p in model.parameters()):,}",
                self.window, self.tokenizer.name, getattr(model.config, "patcher", "none"),
                "on" if self.rc_average else "off", self.max_batch,
                "any number of" if self.token_budget >= 2**62 else f"{self.token_budget:,}")

    @classmethod
    def from_pretrained(cls, directory, *, tasks: Sequence[str] | None = None, **kwargs) -> "Predictor":
        model, metadata = load_model(directory, tasks=tasks)
        log.log(runtime.VERBOSE, "model folder: %s", directory if directory is not None else "the bundled default model")
        return cls(model, metadata, **kwargs)

    # ---- what the model says about itself ---------------------------------------------------------
    @property
    def output_names(self) -> list[str]:
        n = int(self.metadata.get("num_outputs", getattr(self.model, "num_outputs", 0)))
        key = "target_names" if self.task == "regression" else "class_names"
        names = self.metadata.get(key) or [f"{'target' if self.task == 'regression' else 'class'}{i}"
                                           for i in range(n)]
        return [str(name) for name in names]

    @property
    def alphabet(self) -> str | None:
        """The alphabet to check inputs against (``read_sequences(alphabet=...)``)."""
        return getattr(self.tokenizer, "alphabet", None)

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.d_model)

    # ---- batching limits --------------------------------------------------------------------------
    def _batch_limits(self, batch_size: int | str) -> tuple[int, int]:
        """(max sequences per batch, max padded units per batch)."""
        if isinstance(batch_size, str):
            if batch_size.strip().lower() != "auto":
                try:
                    batch_size = int(batch_size)
                except ValueError:
                    raise UsageError(f"{option('batch_size')} must be a number or 'auto' (got '{batch_size}')") from None
        if isinstance(batch_size, int):
            if batch_size < 1:
                raise UsageError(f"{option('batch_size')} must be at least 1 (got {batch_size})")
            return batch_size, 2**62
        return BLOCK_WINDOWS, self._auto_token_budget()

    def _auto_token_budget(self) -> int:
        """Units per batch that fit comfortably: activation bytes per unit estimated from the model width
        (in/out projections of the Hyena operator, its FFT buffers of twice the length, the MLP), against
        half the free GPU memory or a slice of the host's available memory."""
        cfg = self.model.config
        width = int(getattr(cfg, "d_model", 256))
        order = int(getattr(cfg, "hyena_order", 2))
        inner = int(getattr(cfg, "d_inner", 4 * width) or 4 * width)
        bytes_per_unit = 4 * (width * (order + 1) * 4 + inner) * 2
        if self.rc_average:
            bytes_per_unit *= 2
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = free // 2
            return max(1024, int(budget // bytes_per_unit))
        # On CPU, throughput is flat from a few thousand units per batch up and falls once activations
        # leave the caches; memory is rarely the limit.
        budget = min(_available_memory() // 8, 1 << 30)
        return max(1024, min(CPU_BATCH_UNITS // (2 if self.rc_average else 1), int(budget // bytes_per_unit)))

    # ---- work items -------------------------------------------------------------------------------
    def windows(self, records: Iterable[SequenceRecord]) -> Iterator[SequenceRecord]:
        """Each record longer than the window as its windows, every other record as itself."""
        if self.window is None:
            raise UsageError(f"this model has no training window; give {option('window')} to scan sequences in windows")
        for record in records:
            if len(record.seq) <= self.window:
                yield record
                continue
            yield from sliding_windows([record], self.window, self.stride, self.last)

    def genome_windows(self, records: Iterable[SequenceRecord]) -> Iterator[SequenceRecord]:
        """Record by record: those that look like genomes (:func:`looks_like_genome`) as their windows, reads
        and table rows whole — whatever order they come in."""
        for record in records:
            if looks_like_genome(record, self.window):
                yield from sliding_windows([record], self.window, self.stride, self.last)
            else:
                yield record

    def _items(self, records: Iterable[SequenceRecord], windowed: bool | str) -> Iterator[SequenceRecord]:
        """Work items: records with no sequence are skipped (with a warning naming the first), as every
        subcommand does; windows of the others never are empty. ``windowed``: True (every record longer than
        the window in windows), False (whole records) or "genomes" (:meth:`genome_windows`). Plain strings
        are records named by their 1-based number."""
        records = drop_empty(as_records(records))
        if windowed == "genomes":
            return self.genome_windows(records)
        return self.windows(records) if windowed else records

    # ---- predictions ------------------------------------------------------------------------------
    def predict(self, records: Iterable[SequenceRecord], *, windowed: bool = False,
                shard: tuple[int, int] = (0, 1)) -> Iterator[PredictionBatch]:
        """Class probabilities / regression values for every work item, in input order."""
        if self.task not in SEQUENCE_TASKS:
            raise ModelError(f"cannot predict with a '{self.task}' model (need {', '.join(SEQUENCE_TASKS)})")
        blocks = _shard_blocks(self._items(records, windowed), shard, _block_size(windowed))
        if windowed and self.max_n is not None and self.is_nucleotide:
            blocks = drop_gap_windows(blocks, self.max_n, shard)
        for block in blocks:
            values = self._run_block(block, self._predict_batch)
            yield PredictionBatch(block, values)

    def _predict_batch(self, seqs: list[str]) -> np.ndarray:
        from .model import rc_average_logits

        enc = self.tokenizer.encode_batch(seqs)
        ids = enc["input_ids"].to(self.device)
        mask = enc["attention_mask"].to(self.device)
        with runtime.autocast(self.device, self.precision):
            if self.rc_average and hasattr(self.tokenizer, "reverse_complement_batch"):
                logits = rc_average_logits(self.model, ids, mask, self.tokenizer)
            elif self.rc_average:  # k-mer units: reverse-complement the text, then tokenize
                rc = self.tokenizer.encode_batch([reverse_complement(s) for s in seqs])
                logits = (self.model(ids, attention_mask=mask).float()
                          + self.model(rc["input_ids"].to(self.device),
                                       attention_mask=rc["attention_mask"].to(self.device)).float()) / 2
            else:
                logits = self.model(ids, attention_mask=mask)
        logits = logits.float()
        if self.task == "classification":
            values = torch.softmax(logits, dim=-1)
        elif self.task == "multilabel":
            values = torch.sigmoid(logits)
        else:
            values = logits
        return values.cpu().numpy()

    # ---- embeddings -------------------------------------------------------------------------------
    def embed(self, records: Iterable[SequenceRecord], *, pool: str = "mean", layer: int | None = None,
              windowed: bool | None = None, shard: tuple[int, int] = (0, 1)) -> Iterator[EmbeddingBatch]:
        """Embeddings of every work item, in input order. ``windowed`` None: as the CLI decides, record by
        record (:meth:`genome_windows`: genome-like records in windows, reads and table rows whole) when the
        predictor has a window (the model's or ``window``), whole records otherwise."""
        if pool not in POOLS:
            raise UsageError(f"unknown pooling '{pool}' (use {', '.join(POOLS)})")
        if windowed is None:
            windowed = "genomes" if self.window is not None else False

        def run(seqs: list[str]):
            return self._embed_batch(seqs, pool, layer)

        for block in _shard_blocks(self._items(records, windowed), shard, _block_size(windowed)):
            if pool == "none":
                values, lengths = self._run_block_ragged(block, run)
            else:
                values = self._run_block(block, run)
                lengths = np.ones(len(block), dtype=np.int64)
            yield EmbeddingBatch(block, values, lengths)

    def _embed_batch(self, seqs: list[str], pool: str, layer: int | None):
        enc = self.tokenizer.encode_batch(seqs)
        ids = enc["input_ids"].to(self.device)
        mask = enc["attention_mask"].to(self.device)
        with runtime.autocast(self.device, self.precision):
            out = self.model.embed(ids, attention_mask=mask, pool=pool, layer=layer)
        out = out.float()
        if pool != "none":
            return out.cpu().numpy()
        # Per-unit states of real units only, rows of one sequence after another.
        return out[mask].cpu().numpy(), enc["lengths"].cpu().numpy().astype(np.int64)

    # ---- block → batches → block order ------------------------------------------------------------
    def _batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Indices of the block's items, sorted by length, packed into batches."""
        order = np.argsort(lengths, kind="stable")
        batches, start = [], 0
        while start < len(order):
            stop = start + 1
            # Sorted ascending, so the padded size of order[start:stop] is (stop-start) * lengths[order[stop-1]].
            while (stop < len(order) and stop - start < self.max_batch
                   and (stop - start + 1) * int(lengths[order[stop]]) <= self.token_budget):
                stop += 1
            batches.append(order[start:stop])
            start = stop
        return batches

    def _run_block(self, block: list[SequenceRecord], run) -> np.ndarray:
        lengths = np.fromiter((len(r.seq) for r in block), dtype=np.int64, count=len(block))
        out = None
        for idx in self._batches(lengths):
            values = self._with_oom_retry([block[i].seq for i in idx], run, _concat_rows)
            if out is None:
                out = np.empty((len(block),) + values.shape[1:], dtype=values.dtype)
            out[idx] = values
        return out

    def _run_block_ragged(self, block: list[SequenceRecord], run) -> tuple[np.ndarray, np.ndarray]:
        """Like _run_block for per-unit outputs: returns the rows of all items in block order + lengths."""
        lengths = np.fromiter((len(r.seq) for r in block), dtype=np.int64, count=len(block))
        pieces, piece_lengths, order = [], [], []
        for idx in self._batches(lengths):
            flat, lens = self._with_oom_retry([block[i].seq for i in idx], run, _concat_ragged)
            pieces.append(flat)
            piece_lengths.append(lens)
            order.append(idx)
        flat = np.concatenate(pieces)
        unit_lengths = np.empty(len(block), dtype=np.int64)
        order = np.concatenate(order)
        unit_lengths[order] = np.concatenate(piece_lengths)
        # Gather rows from batch order back into block order, without a loop over items.
        src_start = np.zeros(len(block), dtype=np.int64)
        sorted_lengths = unit_lengths[order]
        src_start[order] = np.concatenate([[0], np.cumsum(sorted_lengths)[:-1]])
        dst_start = np.concatenate([[0], np.cumsum(unit_lengths)[:-1]])
        gather = np.repeat(src_start - dst_start, unit_lengths) + np.arange(int(unit_lengths.sum()))
        return flat[gather], unit_lengths

    def _with_oom_retry(self, seqs: list[str], run, combine):
        try:
            with torch.inference_mode():
                return run(seqs)
        except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as err:
            if not _is_oom(err):
                raise
            if len(seqs) == 1:
                raise HyenaGLTError(
                    f"out of memory on a single sequence of {len(seqs[0])} units "
                    f"(use a smaller {option('window')}, or another {option('device')})") from err
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(seqs) // 2
            # Keep later batches below the size that failed.
            self.max_batch = max(1, min(self.max_batch, half))
            self.token_budget = max(1, self.token_budget // 2)
            log.info("out of memory with a batch of %d; retrying with %d", len(seqs), half)
            return combine(self._with_oom_retry(seqs[:half], run, combine),
                           self._with_oom_retry(seqs[half:], run, combine))


def drop_gap_windows(blocks: Iterable[list[SequenceRecord]], max_n: float,
                     shard: tuple[int, int] = (0, 1)) -> Iterator[list[SequenceRecord]]:
    """Blocks of windows without those whose fraction of N bases is above ``max_n`` (ambiguity codes count
    as N: the model reads them so). A model has no answer for an assembly gap, and would still give one,
    often a confident one. Applied to a shard's own blocks, so that its log line counts its own windows."""
    skipped, first = 0, None
    for block in blocks:
        keep = [len(w.seq.translate(_DROP_BASES)) <= max_n * len(w.seq) for w in block]
        kept = [w for w, k in zip(block, keep) if k]
        if len(kept) < len(block):
            skipped += len(block) - len(kept)
            first = first or block[keep.index(False)]
        if kept:
            yield kept
    if skipped:
        contig, start, end = record_coordinates(first)
        where = f" of shard {shard[0] + 1}/{shard[1]}" if shard[1] > 1 else ""
        log.info("skipped %d window(s)%s more than %g%% N (assembly gaps; the first: %s:%d-%d); %s keeps them",
                 skipped, where, 100 * max_n, contig, start + 1, end, option("max_n", 1))


_DROP_BASES = str.maketrans("", "", "ACGTUacgtu")  # what is left of a window is its N (and ambiguity codes)


def _concat_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.concatenate([a, b])


def _concat_ragged(a, b):
    return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])


def _is_oom(err: BaseException) -> bool:
    """CUDA's and Python's out-of-memory errors, and the CPU allocator's ("DefaultCPUAllocator: can't allocate
    memory"), which is a plain RuntimeError."""
    text = str(err).lower()
    return isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)) or any(s in text for s in runtime.OOM_MESSAGES)


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def _block_size(windowed: bool) -> int:
    return BLOCK_WINDOWS if windowed else BLOCK_RECORDS


def _shard_blocks(items: Iterable[SequenceRecord], shard: tuple[int, int],
                  block_items: int = BLOCK_WINDOWS) -> Iterator[list[SequenceRecord]]:
    """Blocks of consecutive items (≤ block_items items, ≤ ~BLOCK_BASES bases); block k goes to shard k % n."""
    index, n = shard
    if not (n >= 1 and 0 <= index < n):
        raise UsageError(f"bad shard {index + 1}/{n}")
    block: list[SequenceRecord] = []
    bases = 0
    k = 0
    for item in items:
        block.append(item)
        bases += len(item.seq)
        if len(block) >= block_items or bases >= BLOCK_BASES:
            if k % n == index:
                yield block
            block, bases, k = [], 0, k + 1
    if block and k % n == index:
        yield block


# --------------------------------------------------------------------------------------------------
# Tables: labels, TSV rows, BED rows
# --------------------------------------------------------------------------------------------------
def predicted_labels(values: np.ndarray, task: str, names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(label per row, BED score 0–1000 per row). Classification: the most probable class, score = its
    probability × 1000. Multilabel: the classes with probability ≥ 0.5 joined by ',' ('.' if none), score =
    the highest probability × 1000. Regression: '.' and 0."""
    if not np.isfinite(values).all():  # NaN would become an int64-min BED score and an arbitrary label
        raise HyenaGLTError(f"the model produced NaN or infinite scores (a numerical overflow: try {option('precision', 'fp32')})")
    n = len(values)
    if task == "classification":
        best = values.argmax(axis=1)
        names_arr = np.asarray(names, dtype=object)
        return list(names_arr[best]), np.rint(values[np.arange(n), best] * 1000).astype(np.int64)
    if task == "multilabel":
        on = values >= 0.5
        labels = [",".join(np.asarray(names)[row]) or "." for row in on]
        return labels, np.rint(values.max(axis=1) * 1000).astype(np.int64)
    return ["."] * n, np.zeros(n, dtype=np.int64)


def format_values(values: np.ndarray, task: str) -> list[str]:
    """Tab-joined value columns per row: probabilities with 6 decimals, regression values with 8 significant
    digits (as many as float32 holds). (With 4 decimals, 100 test rows of a small model shared 54 values, and an
    AUROC recomputed from the TSV missed the stored one by 2e-3; with 6, by 5e-5 on 200 rows. A barely trained
    regressor's 500 outputs around 13.9448 became 3 distinct values at 6 significant digits, and a Spearman
    recomputed from them 0.509 where the stored one was 0.628.)"""
    fmt = "%.8g" if task == "regression" else "%.6f"
    if values.size == 0:
        return []
    text = np.char.mod(fmt, values.astype(np.float64))
    return ["\t".join(row) for row in text]


def tsv_header(task: str, names: Sequence[str]) -> str:
    if task == "regression":
        return "\t".join(["id", "length", *names])
    return "\t".join(["id", "length", "label", *(f"p_{name}" for name in names)])


def tsv_lines(batch: PredictionBatch, task: str, names: Sequence[str]) -> list[str]:
    columns = format_values(batch.values, task)
    if task == "regression":
        return [f"{r.id}\t{len(r.seq)}\t{c}" for r, c in zip(batch.records, columns)]
    labels, _ = predicted_labels(batch.values, task, names)
    return [f"{r.id}\t{len(r.seq)}\t{lab}\t{c}" for r, lab, c in zip(batch.records, labels, columns)]


def bed_header(task: str, names: Sequence[str]) -> str:
    """A `#` comment naming the columns: IGV, bedtools and tabix (meta char '#') skip it."""
    extra = list(names) if task == "regression" else [f"p_{name}" for name in names]
    return "#" + "\t".join(["contig", "start", "end", "label", "score", "strand", *extra])


@dataclass(frozen=True)
class BedRow:
    contig: str
    start: int
    end: int
    label: str
    score: int
    strand: str
    values: tuple  # floats, one per class/target

    def key(self):
        return self.contig, self.start, self.end, self.strand, self.label, self.values


def bed_rows(batch: PredictionBatch, task: str, names: Sequence[str], rc_averaged: bool,
             min_score: int | None = None, labels: Sequence[str] | None = None) -> Iterator[BedRow]:
    """BED rows of a batch of windows, after the ``min_score`` / ``labels`` filters. Strand: '.' when the
    prediction averages both strands, else the record's strand ('+' when unknown)."""
    batch = _filter_batch(batch, task, names, min_score, labels)
    row_labels, scores = predicted_labels(batch.values, task, names)
    values = batch.values.astype(np.float64)
    for i, record in enumerate(batch.records):
        contig, start, end = record_coordinates(record)
        strand = "." if rc_averaged else (record.strand if record.strand in ("+", "-") else "+")
        yield BedRow(contig, int(start), int(end), row_labels[i], int(scores[i]), strand,
                     tuple(float(v) for v in values[i]))


def format_bed_row(row: BedRow, task: str) -> str:
    fmt = "{:.6g}" if task == "regression" else "{:.6f}"
    values = "\t".join(fmt.format(v) for v in row.values)
    return f"{row.contig}\t{row.start}\t{row.end}\t{row.label}\t{row.score}\t{row.strand}\t{values}"


def merge_bed_rows(rows: Iterable[BedRow], task: str) -> Iterator[BedRow]:
    """Merge sorted rows that overlap or touch, on the same contig and strand, with the same label — what
    ``bedtools merge`` gives run per label and strand: windows of another label in between do not split a
    run. The merged interval carries the mean of its windows' values; its score is recomputed from that mean
    (so score and columns agree as they do for single windows). The output stays sorted: an interval is
    given out once no interval still growing (one per label and strand) can start before it."""
    growing: dict[tuple[str, str], list] = {}  # (strand, label) -> [first row, end, sums, count]
    done: list[tuple] = []  # heap of finished intervals, in BedRow.key order
    contig = None

    def finish(entry) -> None:
        first, end, sums, count = entry
        mean = sums / count
        row = dataclasses.replace(first, end=end, score=_score_of(mean, task, first.label),
                                  values=tuple(float(v) for v in mean))
        heapq.heappush(done, (row.start, row.end, row.strand, row.label, len(done), row))

    for row in rows:
        if row.contig != contig:
            for entry in growing.values():
                finish(entry)
            growing.clear()
            while done:
                yield heapq.heappop(done)[-1]
            contig = row.contig
        key = (row.strand, row.label)
        entry = growing.get(key)
        if entry is not None and row.start <= entry[1]:
            entry[1] = max(entry[1], row.end)
            entry[2] += row.values
            entry[3] += 1
        else:
            if entry is not None:
                finish(entry)
            growing[key] = [row, row.end, np.asarray(row.values, dtype=np.float64), 1]
        # rows come sorted by start, so nothing still to come starts before the earliest growing interval
        first_open = min(e[0].start for e in growing.values())
        while done and done[0][0] < first_open:
            yield heapq.heappop(done)[-1]
    for entry in growing.values():
        finish(entry)
    while done:
        yield heapq.heappop(done)[-1]


def _score_of(values: np.ndarray, task: str, label: str) -> int:
    # Classification: the label is the argmax of the mean too, so max == the label's probability.
    return 0 if task == "regression" else int(np.rint(values.max() * 1000))


class SortedRows:
    """Collects BED rows and gives them back sorted by (contig, start, end, strand, ...) — the order
    `sort -k1,1 -k2,2n` gives, which bedtools, tabix and IGV accept — holding at most ``max_in_memory``
    rows: fuller buffers are sorted and spilled to temporary files, merged at the end."""

    def __init__(self, max_in_memory: int = 500_000, tmp_dir: str | None = None):
        self.max_in_memory = max_in_memory
        self.tmp_dir = tmp_dir
        self._rows: list[BedRow] = []
        self._runs: list[str] = []

    def add(self, rows: Iterable[BedRow]) -> None:
        self._rows.extend(rows)
        if len(self._rows) >= self.max_in_memory:
            self._spill()

    def _spill(self) -> None:
        self._rows.sort(key=BedRow.key)
        fd, path = tempfile.mkstemp(prefix="hyena-glt-bed.", suffix=".jsonl", dir=self.tmp_dir)
        with os.fdopen(fd, "w") as fh:
            for r in self._rows:
                fh.write(json.dumps([r.contig, r.start, r.end, r.label, r.score, r.strand, r.values]) + "\n")
        self._runs.append(path)
        self._rows = []

    @staticmethod
    def _read_run(path: str) -> Iterator[BedRow]:
        with open(path) as fh:
            for line in fh:
                c, s, e, lab, sc, st, v = json.loads(line)
                yield BedRow(c, s, e, lab, sc, st, tuple(v))

    def __iter__(self) -> Iterator[BedRow]:
        self._rows.sort(key=BedRow.key)
        if not self._runs:
            yield from self._rows
            return
        yield from heapq.merge(self._rows, *(self._read_run(p) for p in self._runs), key=BedRow.key)

    def close(self) -> None:
        for path in self._runs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._runs = []

    def __len__(self) -> int:
        return len(self._rows)


# --------------------------------------------------------------------------------------------------
# Embeddings → .npz, streamed
# --------------------------------------------------------------------------------------------------
class NpzEmbeddingWriter:
    """Writes an embeddings ``.npz`` without holding the embeddings in memory: rows are appended to a
    raw temporary file as batches arrive, then streamed into the zip member ``embeddings.npy`` behind an
    npy header written once the shape is known. Only names, coordinates and offsets (a few numbers per
    item) stay in memory.

    Layout: ``names`` (N,) str, ``contig`` (N,) str, ``start``/``end`` (N,) int64 (0-based half-open; a
    record without coordinates is (id, 0, length)), ``lengths`` (N,) int64, ``embeddings`` (N, D) for
    pooled embeddings or (sum of lengths, D) for ``pool="none"`` with ``offsets`` (N+1,) int64 (item i is
    ``embeddings[offsets[i]:offsets[i+1]]``), and ``metadata`` (a JSON string).
    """

    def __init__(self, dim: int, dtype: str = "float32", pool: str = "mean", tmp_dir: str | None = None):
        if dtype not in EMBED_DTYPES:
            raise UsageError(f"unknown {option('dtype')} '{dtype}' (use {', '.join(EMBED_DTYPES)})")
        self.dim, self.dtype, self.pool = dim, np.dtype(dtype), pool
        if tmp_dir is not None and not Path(tmp_dir).is_dir():
            raise UsageError(f"cannot write into {tmp_dir}: folder does not exist")
        self._tmp = tempfile.TemporaryDirectory(prefix=".hyena-glt-embed.", dir=tmp_dir)
        self._raw_path = Path(self._tmp.name) / "embeddings.raw"
        self._raw = open(self._raw_path, "wb")
        self.rows = 0
        self.names: list[str] = []
        self.contigs: list[str] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.lengths: list[np.ndarray] = []

    def add(self, batch: EmbeddingBatch) -> None:
        values = np.ascontiguousarray(batch.values, dtype=self.dtype)
        self._raw.write(values.tobytes())
        self.rows += len(values)
        for record in batch.records:
            contig, start, end = record_coordinates(record)
            self.names.append(record.id)
            self.contigs.append(contig)
            self.starts.append(start)
            self.ends.append(end)
        self.lengths.append(np.asarray(batch.lengths, dtype=np.int64))

    def write(self, dest: str | os.PathLike, metadata: dict) -> None:
        """Assemble the npz at ``dest`` (atomically; '-' writes it to stdout)."""
        from .io.writers import atomic_path

        self._raw.close()
        if str(dest) == "-":
            tmp = Path(self._tmp.name) / "out.npz"
            self._assemble(tmp, metadata)
            with open(tmp, "rb") as fh:
                import sys

                shutil.copyfileobj(fh, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            return
        with atomic_path(dest, suffix=".npz") as tmp:
            self._assemble(tmp, metadata)

    def _assemble(self, path: Path, metadata: dict) -> None:
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.int64)
        small = {
            "names": np.asarray(self.names, dtype=str),
            "contig": np.asarray(self.contigs, dtype=str),
            "start": np.asarray(self.starts, dtype=np.int64),
            "end": np.asarray(self.ends, dtype=np.int64),
        }
        if self.pool == "none":
            small["lengths"] = lengths
            small["offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        else:
            small["lengths"] = np.asarray([e - s for s, e in zip(self.starts, self.ends)], dtype=np.int64)
        small["metadata"] = np.asarray(json.dumps(metadata))
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, arr in small.items():
                with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)
            with zf.open("embeddings.npy", "w", force_zip64=True) as member:
                header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                          "shape": (self.rows, self.dim)}
                np.lib.format.write_array_header_2_0(member, header)
                with open(self._raw_path, "rb") as raw:
                    shutil.copyfileobj(raw, member, length=16 << 20)

    def close(self) -> None:
        if not self._raw.closed:
            self._raw.close()
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------------------------------
# Classification outputs
# --------------------------------------------------------------------------------------------------
def check_filters(task: str, names: Sequence[str], min_score: int | None, labels: Sequence[str] | None,
                  merge: bool, shard: tuple[int, int]) -> None:
    """Refuse filter/merge options that cannot mean anything for this model or run."""
    if task == "regression" and (min_score is not None or labels or merge):
        raise UsageError(f"{option('min_score')}, {option('labels')} and {option('merge')} need a classification "
                         "model (this one does regression)")
    if min_score is not None and not 0 <= min_score <= 1000:
        raise UsageError(f"{option('min_score')} must be within 0..1000 (got {min_score})")
    unknown = [lab for lab in labels or () if lab not in names]
    if unknown:
        raise UsageError(f"unknown {option('labels')} '{unknown[0]}' (this model's classes: {', '.join(names)})")
    if merge and shard[1] > 1:
        raise UsageError(f"{option('merge')} cannot be combined with {option('shard')} (windows of one region may "
                         "land in different shards): concatenate the shards, then `bedtools merge`")


def write_predictions_tsv(predictor: Predictor, records: Iterable[SequenceRecord], dest: str | os.PathLike, *,
                          shard: tuple[int, int] = (0, 1), min_score: int | None = None,
                          labels: Sequence[str] | None = None, header: bool = True,
                          values_out: list | None = None) -> int:
    """One row per record, the model reading the whole record, in input order; streamed. A ``.gz``
    destination is gzip-compressed. ``header``: the column line (``id length label p_<class>...``;
    regression: ``id length <target>...``). ``values_out``: a list that gets each batch's values (before
    ``min_score``/``labels`` filter rows), e.g. to score them. Returns the number of rows written."""
    from .io.writers import text_output

    names = predictor.output_names
    check_filters(predictor.task, names, min_score, labels, False, shard)
    written = 0
    # Rows are in input order, so records may share a name (the mates of a read pair), but need one.
    records = check_names(records, "TSV output")
    # One row per input record: a record with no sequence (a CSV row with an empty cell) gets a row of NA
    # where it stands, so that rows still pair with the input's by position. Filters and shards, which
    # leave rows out anyway, skip such records (with drop_empty's warning).
    empties: collections.deque = collections.deque()  # (records with a sequence before it, record)
    if min_score is None and not labels and shard == (0, 1):
        records = _set_aside_empty(records, empties)
    na = "\t".join(["NA"] * (len(names) + (predictor.task != "regression")))
    done = 0  # records with a sequence written so far

    def empty_rows(upto: float) -> list[str]:
        rows = []
        while empties and empties[0][0] <= upto:
            rows.append(f"{empties.popleft()[1].id}\t0\t{na}")
        return rows

    with text_output(dest) as fh:
        if header:
            fh.write(tsv_header(predictor.task, names) + "\n")
        for batch in predictor.predict(records, windowed=False, shard=shard):
            if values_out is not None:
                values_out.append(batch.values)
            batch = _filter_batch(batch, predictor.task, names, min_score, labels)
            lines = []
            for line in tsv_lines(batch, predictor.task, names):
                lines += empty_rows(done)
                lines.append(line)
                done += 1
            if lines:
                fh.write("\n".join(lines) + "\n")
                written += len(lines)
        lines = empty_rows(math.inf)
        if lines:
            fh.write("\n".join(lines) + "\n")
            written += len(lines)
    if written > done:
        log.warning("%d record(s) with no sequence: written as rows of NA", written - done)
    return written


def _set_aside_empty(records: Iterable[SequenceRecord], empties: collections.deque) -> Iterator[SequenceRecord]:
    """The records with a sequence; the others go to ``empties`` with their place among them."""
    kept = 0
    for record in records:
        if record.seq:
            kept += 1
            yield record
        else:
            empties.append((kept, record))


def write_predictions_bed(predictor: Predictor, records: Iterable[SequenceRecord], dest: str | os.PathLike, *,
                          shard: tuple[int, int] = (0, 1), min_score: int | None = None,
                          labels: Sequence[str] | None = None, merge: bool = False,
                          header: bool = True) -> int:
    """BED6+ rows (contig, start, end, label, score 0–1000, strand, one column per class probability or
    regression target) for the windows of every record, sorted like ``sort -k1,1 -k2,2n``, filtered,
    optionally merged. ``.bed.gz``: BGZF + a tabix index ``<dest>.tbi``. ``header``: a ``#`` line naming
    the columns. A record without coordinates is its own contig, so record names must be unique and not
    empty (InputError, and no file, otherwise). Returns the number of rows written."""
    from .io.writers import bed_output

    names, task = predictor.output_names, predictor.task
    check_filters(task, names, min_score, labels, merge, shard)
    check_destination(dest)  # now, not after the scan
    records = check_names(records, "BED output", unique=True)
    rows = SortedRows()
    try:
        for batch in predictor.predict(records, windowed=True, shard=shard):
            rows.add(bed_rows(batch, task, names, predictor.rc_average, min_score, labels))
        ordered: Iterable[BedRow] = merge_bed_rows(rows, task) if merge else rows
        written = 0

        def emit(fh: IO[str]) -> None:
            nonlocal written
            if header:
                fh.write(bed_header(task, names) + "\n")
            for row in ordered:
                fh.write(format_bed_row(row, task) + "\n")
                written += 1

        with bed_output(dest) as fh:  # rows are sorted: a .bed.gz gets its tabix index
            emit(fh)
    finally:
        rows.close()
    return written


def _filter_batch(batch: PredictionBatch, task: str, names: Sequence[str], min_score: int | None,
                  labels: Sequence[str] | None) -> PredictionBatch:
    if min_score is None and not labels:
        return batch
    row_labels, scores = predicted_labels(batch.values, task, names)
    keep = np.ones(len(batch.records), dtype=bool)
    if min_score is not None:
        keep &= scores >= min_score
    if labels:
        keep &= _has_label(row_labels, labels)
    index = np.flatnonzero(keep)
    return PredictionBatch([batch.records[i] for i in index], batch.values[index])


def _has_label(row_labels: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    wanted = set(labels)
    return np.fromiter((not wanted.isdisjoint(lab.split(",")) for lab in row_labels), dtype=bool,
                       count=len(row_labels))


