"""BLT-style entropy patching: patch boundaries where a small causal LM is surprised.

A small unit-level language model (a ``HyenaGLTForTask(task="lm")`` with patching ``none``, trained by
``hyena-glt train --task lm``) gives, for every position t, the entropy H(t) in bits of its prediction of
unit t from units < t. A new patch starts at t where

* ``mode="global"``:    H(t) > θ
* ``mode="monotonic"``: H(t) − H(t−1) > θ

Position 0 always starts a patch, and patch lengths are clamped to ``[min_patch_length, max_patch_length]``
greedily from the left (a candidate closer than ``min`` to the previous start is dropped; a start is forced
``max`` units after the previous one). Low-entropy stretches (tandem repeats, poly-A, satellites) therefore
become long patches and surprising positions start new ones.

θ is either given or calibrated once from a target mean patch length on training data
(:meth:`EntropyPatcher.calibrate`), and stored with the patcher. Everything is vectorised over batch and
positions: candidate starts are a comparison, ``max`` clamping is a cummax of the last candidate index, and
``min`` clamping (which makes the greedy rule sequential) follows the chain start → next start by pointer
doubling in ⌈log2 L⌉ gather/scatter steps.

Long inputs are streamed: windows of ``window`` units (default: the LM's training window) overlap by
``context`` units (default: a quarter of the window) and each window only contributes the entropies of
positions that have at least ``context`` units of left context (or the true sequence start). Boundaries
are then computed on the stitched track of the whole record, so window cuts add no boundaries of their
own; entropies depend on the cuts only through context beyond ``context`` units (small: Hyena filters
keep some reach, so not bit-identical). Running the LM on inputs far longer than it was trained on is
worse than windowing: it drifts.

Saved form: ``<model_dir>/entropy_model/`` is itself a model directory (the LM), whose ``hyena_glt.json``
metadata carries the patcher settings under ``"entropy_patcher"`` (threshold, mode, min/max, target,
window/context). :func:`save_entropy_patcher` / :func:`load_entropy_patcher` write and read it.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np
import torch

from ..errors import InputError, ModelError, UsageError, option

if TYPE_CHECKING:  # reading sequences pulls in pysam; the patcher itself does not need it
    from ..io.sequences import SequenceRecord

log = logging.getLogger("hyena_glt")

MODES = ("global", "monotonic")
ENTROPY_SUBDIR = "entropy_model"
METADATA_KEY = "entropy_patcher"
# H(0) has no context to condition on: we give it the entropy of a uniform choice among A/C/G/T.
NO_CONTEXT_ENTROPY_BITS = 2.0
# Used when neither θ nor a target is given: BLT-like compression without starving the global model.
DEFAULT_TARGET_PATCH_LENGTH = 4.0
# Streaming window when the LM does not say what length it was trained on (`train --task lm` default).
DEFAULT_WINDOW = 1024
_LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------------------
# Entropies
# --------------------------------------------------------------------------------------------------
def next_unit_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Causal LM logits (B, L, V) — logits at t predict unit t+1 — to H (B, L) in bits, where H[:, t] is
    the entropy of the prediction of unit t given units < t; H[:, 0] = NO_CONTEXT_ENTROPY_BITS."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    h = -(logp.exp() * logp).sum(-1) / _LN2
    first = torch.full_like(h[:, :1], NO_CONTEXT_ENTROPY_BITS)
    return torch.cat([first, h[:, :-1]], dim=1)


def next_unit_log_loss(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Per-position code length in bits, −log2 p(unit t | units < t), for t ≥ 1; (B, L−1)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return -logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1) / _LN2


# --------------------------------------------------------------------------------------------------
# Boundaries (pure tensor ops; no model)
# --------------------------------------------------------------------------------------------------
def boundary_candidates(entropy: torch.Tensor, threshold: float, mode: str = "global") -> torch.Tensor:
    """(B, L) bool: positions whose entropy (global) or entropy rise (monotonic) exceeds ``threshold``;
    position 0 is always a candidate."""
    if mode == "global":
        cand = entropy > threshold
    elif mode == "monotonic":
        rise = entropy[:, 1:] - entropy[:, :-1]
        cand = torch.cat([torch.ones_like(entropy[:, :1], dtype=torch.bool), rise > threshold], dim=1)
    else:
        raise UsageError(f"unknown entropy patching mode '{mode}' (use {' or '.join(MODES)})")
    cand = cand.clone()
    cand[:, 0] = True
    return cand


def _check_lengths(min_patch_length: int, max_patch_length: int | None) -> None:
    if min_patch_length < 1:
        raise UsageError(f"min patch length must be at least 1 (got {min_patch_length})")
    if max_patch_length is not None and max_patch_length < min_patch_length:
        raise UsageError(
            f"max patch length {max_patch_length} is smaller than min patch length {min_patch_length}"
        )


def clamp_patch_starts(
    candidates: torch.Tensor,
    lengths: torch.Tensor,
    min_patch_length: int = 1,
    max_patch_length: int | None = None,
) -> torch.Tensor:
    """Greedy left-to-right clamping of candidate starts, vectorised.

    The rule (what a position loop would do): position 0 starts a patch; a later position t starts one
    when t − last ≥ max, or when it is a candidate and t − last ≥ min (``last`` = previous start).
    Positions at or beyond ``lengths[b]`` never start a patch. Returns (B, L) bool.
    """
    _check_lengths(min_patch_length, max_patch_length)
    batch, length = candidates.shape
    device = candidates.device
    pos = torch.arange(length, device=device)
    real = pos[None, :] < lengths[:, None]
    cand = candidates.clone()
    cand[:, 0] = True
    if min_patch_length == 1:
        if max_patch_length is None:
            return cand & real
        # With min = 1 every candidate is kept, so the starts are the candidates plus forced starts every
        # `max` units after the most recent candidate: cummax of candidate indices gives that candidate.
        last_cand = torch.where(cand, pos, torch.zeros_like(pos)).cummax(dim=1).values
        forced = (pos - last_cand) % max_patch_length == 0
        return (cand | forced) & real

    # General case: next(s) = min(first candidate ≥ s + min, s + max) is the start after s; the starts are
    # the orbit 0, next(0), next(next(0)), ...  Pointer doubling: after step k, `reached` holds every orbit
    # element within 2^(k+1) − 1 jumps, and `jump` is next composed 2^(k+1) times. Index `length` is an
    # absorbing sentinel for "past the end".
    sentinel = length
    cand_idx = torch.where(cand, pos, torch.full_like(pos, sentinel))
    cand_idx = torch.cat([cand_idx, torch.full((batch, 1), sentinel, device=device, dtype=pos.dtype)], dim=1)
    first_cand_from = cand_idx.flip(1).cummin(dim=1).values.flip(1)  # (B, L+1): first candidate ≥ i
    ext = torch.arange(length + 1, device=device)
    jump = first_cand_from.gather(1, (ext + min_patch_length).clamp(max=sentinel).expand(batch, -1))
    if max_patch_length is not None:
        jump = torch.minimum(jump, ext + max_patch_length)
    jump = torch.where(jump >= lengths[:, None], torch.full_like(jump, sentinel), jump)
    jump[:, sentinel] = sentinel
    reached = torch.zeros(batch, length + 1, dtype=torch.bool, device=device)
    reached[:, 0] = True
    for _ in range(max(1, math.ceil(math.log2(length + 1)))):  # log2(L) steps, not a loop over positions
        reached.scatter_(1, torch.where(reached, jump, torch.full_like(jump, sentinel)), True)
        jump = jump.gather(1, jump)
    return reached[:, :length] & real


def patch_starts(
    entropy: torch.Tensor,
    attention_mask: torch.Tensor | None,
    threshold: float,
    mode: str = "global",
    min_patch_length: int = 1,
    max_patch_length: int | None = None,
) -> torch.Tensor:
    """(B, L) bool patch starts from entropies; see the module docstring for the rule."""
    if attention_mask is None:
        lengths = torch.full((entropy.shape[0],), entropy.shape[1], device=entropy.device, dtype=torch.long)
    else:
        lengths = attention_mask.long().sum(1)
    cand = boundary_candidates(entropy, threshold, mode)
    return clamp_patch_starts(cand, lengths, min_patch_length, max_patch_length)


def starts_to_patch_lengths(starts: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, L) bool starts → (B, P) patch lengths, right-padded with 0; row sums = real lengths."""
    mask = torch.ones_like(starts) if attention_mask is None else attention_mask.bool()
    starts = starts & mask
    n_patches = starts.long().sum(1)
    width = max(int(n_patches.max()) if n_patches.numel() else 0, 1)
    patch_index = (starts.long().cumsum(1) - 1).clamp(min=0)
    out = torch.zeros(starts.shape[0], width, dtype=torch.long, device=starts.device)
    return out.scatter_add_(1, patch_index, mask.long())


def mean_patch_length(starts: torch.Tensor, attention_mask: torch.Tensor | None = None) -> float:
    mask = torch.ones_like(starts) if attention_mask is None else attention_mask.bool()
    n_units = int(mask.sum())
    n_patches = int((starts & mask).sum())
    return n_units / max(n_patches, 1)


def calibrate_threshold(
    entropy: torch.Tensor,
    attention_mask: torch.Tensor | None,
    target_patch_length: float,
    mode: str = "global",
    min_patch_length: int = 1,
    max_patch_length: int | None = None,
    iterations: int = 40,
) -> float:
    """θ whose mean patch length (units / patches over all rows) on these entropies is closest to the
    target. Mean patch length grows with θ, so we bisect over quantiles of the scores that θ is compared to."""
    if target_patch_length < 1:
        raise UsageError(f"target patch length must be at least 1 (got {target_patch_length})")
    if max_patch_length is not None and target_patch_length > max_patch_length:
        raise UsageError(f"target patch length {target_patch_length} exceeds max patch length {max_patch_length}")
    mask = torch.ones_like(entropy, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    if mode == "global":
        scores = entropy[:, 1:][mask[:, 1:]]
    else:
        scores = (entropy[:, 1:] - entropy[:, :-1])[mask[:, 1:]]
    if scores.numel() == 0:  # a threshold is compared from the second unit of a record on
        raise InputError("too little sequence to calibrate the entropy threshold on (no record has 2 or more units); "
                         f"give a threshold ({option('threshold')}) or a longer input")
    scores = scores.float().sort().values

    def measure(theta: float) -> float:
        starts = patch_starts(entropy, mask, theta, mode, min_patch_length, max_patch_length)
        return mean_patch_length(starts, mask)

    def theta_at(q: float) -> float:
        i = min(int(q * (scores.numel() - 1)), scores.numel() - 1)
        return float(scores[i])

    lo, hi = 0.0, 1.0
    best_theta, best_err = theta_at(0.5), math.inf
    for _ in range(iterations):
        mid = (lo + hi) / 2
        theta = theta_at(mid)
        got = measure(theta)
        err = abs(got - target_patch_length)
        if err < best_err:
            best_theta, best_err = theta, err
        if got < target_patch_length:
            lo = mid
        else:
            hi = mid
    # Ties: many positions may share the quantile value (e.g. a saturated LM); nudging θ just below a
    # tied value admits all of them, so try the neighbours of the best value too.
    for theta in (math.nextafter(best_theta, -math.inf), math.nextafter(best_theta, math.inf)):
        err = abs(measure(theta) - target_patch_length)
        if err < best_err:
            best_theta, best_err = theta, err
    return float(best_theta)


# --------------------------------------------------------------------------------------------------
# The patcher
# --------------------------------------------------------------------------------------------------
@dataclass
class EntropyPatcherSettings:
    threshold: float | None = None
    target_patch_length: float | None = None
    mode: str = "global"
    min_patch_length: int = 1
    max_patch_length: int | None = None
    window: int = 1024
    context: int = 256
    batch_size: int = 32
    calibration: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "target_patch_length": self.target_patch_length,
            "mode": self.mode,
            "min_patch_length": self.min_patch_length,
            "max_patch_length": self.max_patch_length,
            "window": self.window,
            "context": self.context,
            "batch_size": self.batch_size,
            "calibration": dict(self.calibration),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "EntropyPatcherSettings":
        known = set(cls().to_dict())
        unknown = set(data) - known
        if unknown:
            raise ModelError(f"unknown entropy patcher setting(s): {', '.join(sorted(unknown))}")
        return cls(**data)


class EntropyPatcher:
    """Patcher (``__call__(input_ids, attention_mask) -> patch_lengths``) driven by an entropy LM.

    ``entropy_model`` is a causal ``HyenaGLTForTask`` with task "lm". It is kept frozen and in eval mode and
    is not a submodule of the model that uses the patches (its weights live in ``entropy_model/``), so a
    classifier's optimizer never touches it. It follows the device of the ``input_ids`` it is given.
    """

    def __init__(
        self,
        entropy_model,
        threshold: float | None = None,
        target_patch_length: float | None = None,
        mode: str = "global",
        min_patch_length: int = 1,
        max_patch_length: int | None = None,
        *,
        window: int | None = None,
        context: int | None = None,
        batch_size: int = 32,
        tokenizer=None,
        metadata: dict | None = None,
    ):
        if mode not in MODES:
            raise UsageError(f"unknown entropy patching mode '{mode}' (use {' or '.join(MODES)})")
        _check_lengths(min_patch_length, max_patch_length)
        # The LM is only trusted on windows like those it was trained on (Hyena filters reach the whole
        # input and a causal conv can count positions, so far longer inputs drift): default to its
        # training window, with a quarter of it as left context for every kept position.
        if window is None:
            window = int((metadata or {}).get("window") or DEFAULT_WINDOW)
        if context is None:
            context = window // 4
        if not 0 <= context < window:
            raise UsageError(f"entropy context ({context}) must be smaller than the window ({window})")
        if getattr(entropy_model, "task", "lm") != "lm":
            raise ModelError(f"the entropy model must be a language model (task lm), not '{entropy_model.task}'")
        if target_patch_length is not None and not (math.isfinite(target_patch_length) and target_patch_length >= 1):
            raise UsageError(f"target patch length must be a number >= 1 (got {target_patch_length})")
        if target_patch_length is not None and max_patch_length is not None and target_patch_length > max_patch_length:
            raise UsageError(f"target patch length {target_patch_length} exceeds max patch length {max_patch_length}")
        if threshold is not None and not math.isfinite(threshold):
            raise UsageError(f"the entropy threshold must be a number of bits (got {threshold})")
        self.model = entropy_model
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()
        self.tokenizer = tokenizer
        self.metadata = dict(metadata or {})
        self.settings = EntropyPatcherSettings(
            threshold=None if threshold is None else float(threshold),
            target_patch_length=None if target_patch_length is None else float(target_patch_length),
            mode=mode,
            min_patch_length=int(min_patch_length),
            max_patch_length=None if max_patch_length is None else int(max_patch_length),
            window=int(window),
            context=int(context),
            batch_size=int(batch_size),
        )

    # Convenience views of the settings.
    @property
    def threshold(self) -> float | None:
        return self.settings.threshold

    @property
    def mode(self) -> str:
        return self.settings.mode

    @property
    def min_patch_length(self) -> int:
        return self.settings.min_patch_length

    @property
    def max_patch_length(self) -> int | None:
        return self.settings.max_patch_length

    @property
    def spec(self) -> str:
        return "entropy"

    def to(self, device) -> "EntropyPatcher":
        self.model.to(device)
        return self

    def __repr__(self) -> str:
        s = self.settings
        return (f"EntropyPatcher(mode={s.mode!r}, threshold={s.threshold}, target_patch_length="
                f"{s.target_patch_length}, min={s.min_patch_length}, max={s.max_patch_length})")

    # -- entropies -------------------------------------------------------------------------------
    def _model_device(self) -> torch.device:
        try:
            return next(self.model.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    @torch.no_grad()
    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, per_position) -> torch.Tensor:
        """One batched forward (in chunks of ``batch_size`` rows to bound memory); ``per_position(logits,
        input_ids)`` turns LM logits into a (b, W) quantity."""
        self.model.eval()
        rows = max(1, self.settings.batch_size)
        parts = [
            per_position(self.model(input_ids[i:i + rows], attention_mask=attention_mask[i:i + rows]),
                         input_ids[i:i + rows])
            for i in range(0, input_ids.shape[0], rows)
        ]
        return torch.cat(parts, dim=0)

    @torch.no_grad()
    def _streamed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, per_position) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        attention_mask = attention_mask.bool()
        device = input_ids.device
        if self._model_device() != device:
            self.model.to(device)
        batch, length = input_ids.shape
        window, context = self.settings.window, self.settings.context
        if length <= window:
            return self._forward(input_ids, attention_mask, per_position).masked_fill(~attention_mask, 0.0)
        # Output blocks of `step` positions; block j's window starts `context` units before the block (or
        # at 0), so every kept value saw at least `context` units of left context or the true start.
        step = window - context
        n_blocks = math.ceil(length / step)
        block_start = torch.arange(n_blocks, device=device) * step
        window_start = (block_start - context).clamp(min=0)
        offset = block_start - window_start
        index = window_start[:, None] + torch.arange(window, device=device)[None, :]  # (nb, W)
        inside = index < length
        index = index.clamp(max=length - 1)
        ids_w = input_ids[:, index].reshape(batch * n_blocks, window)
        mask_w = (attention_mask[:, index] & inside[None]).reshape(batch * n_blocks, window)
        alive = mask_w[:, 0]  # windows that start in padding carry nothing real
        values = torch.zeros(batch * n_blocks, window, device=device)
        if bool(alive.any()):
            values[alive] = self._forward(ids_w[alive], mask_w[alive], per_position)
        values = values.reshape(batch, n_blocks, window)
        keep = (offset[:, None] + torch.arange(step, device=device)[None, :]).clamp(max=window - 1)
        out = values.gather(2, keep[None].expand(batch, -1, -1)).reshape(batch, n_blocks * step)[:, :length]
        return out.masked_fill(~attention_mask, 0.0)

    def entropies(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) next-unit entropies in bits (0 at padding); streamed in overlapping windows when L
        exceeds ``window``."""
        return self._streamed(input_ids, attention_mask, lambda logits, ids: next_unit_entropy(logits))

    def code_lengths(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) −log2 p(unit t | units < t) in bits (position 0: NO_CONTEXT_ENTROPY_BITS; 0 at padding);
        their mean over real units is the LM's bits per unit."""
        def per_position(logits, ids):
            first = torch.full_like(ids[:, :1], 0, dtype=torch.float32) + NO_CONTEXT_ENTROPY_BITS
            return torch.cat([first, next_unit_log_loss(logits, ids)], dim=1)

        return self._streamed(input_ids, attention_mask, per_position)

    # -- boundaries ------------------------------------------------------------------------------
    def starts_from_entropy(self, entropy: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.settings.threshold is None:
            raise UsageError(
                "the entropy patcher has no threshold: give one, or a target patch length and calibrate it"
            )
        s = self.settings
        return patch_starts(entropy, attention_mask, s.threshold, s.mode, s.min_patch_length, s.max_patch_length)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        entropy = self.entropies(input_ids, attention_mask)
        return starts_to_patch_lengths(self.starts_from_entropy(entropy, attention_mask), attention_mask)

    # -- calibration -----------------------------------------------------------------------------
    def calibrate(self, data, target_patch_length: float | None = None, max_units: int = 2_000_000) -> float:
        """Set and return θ so that the mean patch length on ``data`` matches ``target_patch_length``
        (default: the one given at construction, else DEFAULT_TARGET_PATCH_LENGTH). ``data``: an ``(input_ids, attention_mask)`` pair, or
        an iterable of sequence strings (tokenized with the entropy model's tokenizer); at most
        ``max_units`` units are used."""
        target = target_patch_length if target_patch_length is not None else self.settings.target_patch_length
        if target is None:
            target = DEFAULT_TARGET_PATCH_LENGTH
            log.info("entropy patcher: no threshold or target patch length given; calibrating to %.1f", target)
        if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
            input_ids, attention_mask = data
            entropy = self.entropies(input_ids, attention_mask)
        else:
            entropy, attention_mask = self._entropies_of_strings(data, max_units)
        return self.calibrate_on_entropies(entropy, attention_mask, target)

    def calibrate_on_entropies(self, entropy: torch.Tensor, attention_mask: torch.Tensor | None,
                               target_patch_length: float) -> float:
        """Set θ from already computed entropies (B, L); returns it."""
        s = self.settings
        theta = calibrate_threshold(entropy, attention_mask, target_patch_length, s.mode, s.min_patch_length,
                                    s.max_patch_length)
        achieved = mean_patch_length(
            patch_starts(entropy, attention_mask, theta, s.mode, s.min_patch_length, s.max_patch_length),
            attention_mask)
        s.threshold = theta
        s.target_patch_length = float(target_patch_length)
        units = int(attention_mask.sum()) if attention_mask is not None else entropy.numel()
        s.calibration = {"units": units, "mean_patch_length": round(achieved, 4)}
        log.info("entropy patcher: threshold %.4f bits gives mean patch length %.2f (target %.2f) on %d units",
                 theta, achieved, target_patch_length, units)
        return theta

    def _entropies_of_strings(self, sequences: Iterable[str], max_units: int):
        if self.tokenizer is None:
            raise UsageError("this entropy patcher has no tokenizer; calibrate it on (input_ids, attention_mask)")
        chunks, total = [], 0
        for seq in sequences:
            if total >= max_units:
                break
            seq = seq[: max_units - total]
            total += len(seq)
            if seq:
                chunks.append(seq)
        if not chunks:
            raise InputError("no sequence to calibrate the entropy threshold on (every record is empty)")
        device = self._model_device()
        tracks = []
        for group, rows in _batches([_Seq(c) for c in chunks], self.tokenizer, max(65536, self.settings.window), 256):
            ids, mask = _pad_rows(rows, self.tokenizer.pad_id)
            entropy = self.entropies(ids.to(device), mask.to(device))
            tracks.extend(entropy[i, : len(r)] for i, r in enumerate(rows))
        return _chunk_rows(tracks)


@dataclass
class _Seq:
    seq: str


# --------------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------------
def save_entropy_patcher(patcher: EntropyPatcher, model_dir: str | Path, *, subdir: bool = True) -> Path:
    """Write the patcher's LM and settings to ``<model_dir>/entropy_model/`` (or to ``model_dir`` itself
    with ``subdir=False``); returns that directory."""
    from .pretrained import save_pretrained

    target = Path(model_dir) / ENTROPY_SUBDIR if subdir else Path(model_dir)
    metadata = dict(patcher.metadata)
    metadata[METADATA_KEY] = patcher.settings.to_dict()
    metadata["task"] = "lm"
    if patcher.tokenizer is not None:
        metadata["tokenizer"] = patcher.tokenizer.to_dict()
    metadata.setdefault("patcher", "none")
    save_pretrained(patcher.model, target, metadata)
    return target


def load_entropy_model(directory: str | Path, map_location="cpu"):
    """(lm_model, metadata, tokenizer) from an LM model directory, or from a model directory that holds
    one in ``entropy_model/``. ModelError when it is not a causal LM."""
    from ..pretrained import find_model
    from .pretrained import from_pretrained

    given, directory = directory, find_model(directory)  # (a bundled LM by its name: dna-lm-tiny)
    if not directory.is_dir():
        raise ModelError("entropy model directory does not exist", path=str(given))
    if (directory / ENTROPY_SUBDIR).is_dir():
        directory = directory / ENTROPY_SUBDIR
    model, metadata = from_pretrained(directory, map_location=map_location)
    if getattr(model, "task", None) != "lm":
        raise ModelError(
            f"not an entropy model: task is '{getattr(model, 'task', None)}', need 'lm' "
            f"(a model trained with {option('task', 'lm')})", path=str(directory))
    tokenizer = None
    if metadata.get("tokenizer") is not None:
        from ..tokenizers import get_tokenizer

        tokenizer = get_tokenizer(metadata["tokenizer"])
    return model, metadata, tokenizer


def load_entropy_patcher(directory: str | Path, map_location="cpu", **overrides) -> EntropyPatcher:
    """An EntropyPatcher from an LM directory (``train --task lm`` output) or from a model directory
    holding ``entropy_model/``. Stored settings are used unless overridden (None values are ignored)."""
    model, metadata, tokenizer = load_entropy_model(directory, map_location)
    stored = EntropyPatcherSettings.from_dict(metadata.get(METADATA_KEY, {})).to_dict()
    if METADATA_KEY not in metadata:  # a fresh LM directory: window and context follow its training window
        stored["window"] = stored["context"] = None
    calibration = stored.pop("calibration")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "target_patch_length" in overrides and "threshold" in overrides:
        raise UsageError(f"give either {option('threshold')} or {option('target_patch_length')} (which calibrates a "
                         "threshold), not both")
    if "target_patch_length" in overrides:
        # A new target invalidates the stored θ: the caller must calibrate again.
        if overrides["target_patch_length"] != stored.get("target_patch_length"):
            stored["threshold"] = None
    unknown = set(overrides) - set(stored)
    if unknown:
        raise UsageError(f"unknown entropy patcher option(s): {', '.join(sorted(unknown))}")
    stored.update(overrides)
    meta = {k: v for k, v in metadata.items() if k != METADATA_KEY}
    patcher = EntropyPatcher(model, tokenizer=tokenizer, metadata=meta, **stored)
    if patcher.settings.threshold is not None and not overrides.keys() & {"threshold", "mode", "min_patch_length",
                                                                         "max_patch_length"}:
        patcher.settings.calibration = calibration
    return patcher


def has_entropy_model(model_dir: str | Path) -> bool:
    return (Path(model_dir) / ENTROPY_SUBDIR).is_dir()


# --------------------------------------------------------------------------------------------------
# Patching sequence records: `hyena-glt tokenize --patcher ... -o patches.bed`
# --------------------------------------------------------------------------------------------------
@dataclass
class PatchedRecord:
    """One record cut into patches. ``entropy`` (bits per unit) is set for entropy patchers only."""

    record: SequenceRecord
    patch_lengths: np.ndarray  # (P,) int64, sums to len(record.seq)
    entropy: np.ndarray | None = None  # (L,) float32

    @property
    def contig(self) -> str:
        return self.record.contig if self.record.contig is not None else self.record.id

    @property
    def offset(self) -> int:
        return self.record.start or 0

    @property
    def starts(self) -> np.ndarray:
        """0-based patch starts within the record."""
        return np.concatenate([[0], np.cumsum(self.patch_lengths)[:-1]]).astype(np.int64)


def make_patcher(
    spec: str,
    *,
    entropy_model: str | Path | None = None,
    threshold: float | None = None,
    target_patch_length: float | None = None,
    mode: str | None = None,
    min_patch_length: int | None = None,
    max_patch_length: int | None = None,
    window: int | None = None,
    context: int | None = None,
    batch_size: int | None = None,
    map_location="cpu",
):
    """The patcher for ``spec``: "entropy" loads ``entropy_model`` (an LM directory, or a model directory
    holding ``entropy_model/``) with its stored settings unless overridden; anything else is built by
    ``hyena_glt.model.patching.build_patcher``."""
    spec = (spec or "none").strip()
    if spec == "entropy":
        if entropy_model is None:
            raise UsageError(f"{option('patcher', 'entropy')} needs {option('entropy_model')} (a model trained with "
                             f"{option('task', 'lm')})")
        return load_entropy_patcher(
            entropy_model, map_location, threshold=threshold, target_patch_length=target_patch_length, mode=mode,
            min_patch_length=min_patch_length, max_patch_length=max_patch_length, window=window, context=context,
            batch_size=batch_size)
    if entropy_model is not None:
        raise UsageError(f"{option('entropy_model')} only applies to {option('patcher', 'entropy')} "
                         f"(got {option('patcher', spec)})")
    from .patching import build_patcher

    return build_patcher(spec)


def _encode_checked(tokenizer, record) -> np.ndarray:
    ids = np.asarray(tokenizer.encode(record.seq), dtype=np.int64)
    if len(ids) != len(record.seq):
        raise UsageError(
            f"patching needs one unit per character, but tokenizer '{getattr(tokenizer, 'name', tokenizer)}' "
            f"gives {len(ids)} units for {len(record.seq)} characters (use a nucleotide or byte tokenizer)")
    return ids


def _pad_rows(rows: list[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows])
    mask = torch.arange(width)[None, :] < lengths[:, None]
    ids[mask] = torch.from_numpy(np.concatenate(rows))
    return ids, mask


def _batches(records, tokenizer, max_units: int, max_rows: int):
    """Groups of (records, id arrays) of at most ``max_units`` padded units (a longer record goes alone)."""
    group, rows, width = [], [], 0
    for record in records:
        ids = _encode_checked(tokenizer, record)
        new_width = max(width, len(ids))
        if group and (new_width * (len(group) + 1) > max_units or len(group) >= max_rows):
            yield group, rows
            group, rows, new_width = [], [], len(ids)
        group.append(record)
        rows.append(ids)
        width = new_width
    if group:
        yield group, rows


def _chunk_rows(entropy_rows: list[torch.Tensor], chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut 1-D entropy tracks into padded (N, chunk) rows for calibration (cut points add a negligible
    number of forced starts: one per ``chunk`` units)."""
    pieces = [r[i:i + chunk] for r in entropy_rows for i in range(0, len(r), chunk)]  # loop over chunks
    width = max(len(p) for p in pieces)
    entropy = torch.stack([torch.nn.functional.pad(p, (0, width - len(p))) for p in pieces])
    lengths = torch.tensor([len(p) for p in pieces], device=entropy.device)
    return entropy, torch.arange(width, device=entropy.device)[None, :] < lengths[:, None]


def patch_records(
    records: Iterable,
    patcher,
    tokenizer=None,
    *,
    calibrate_units: int = 2_000_000,
    default_target_patch_length: float = DEFAULT_TARGET_PATCH_LENGTH,
    batch_units: int = 65536,
    device: str | torch.device = "cpu",
) -> Iterator[PatchedRecord]:
    """Stream records through ``patcher``; yields a PatchedRecord per record, in input order.

    An EntropyPatcher with no threshold is calibrated on the first ``calibrate_units`` units of the input
    itself (to its target patch length, else ``default_target_patch_length``) before anything is yielded.
    ``tokenizer`` defaults to the entropy model's; it must give one unit per character so patches map to
    sequence coordinates.
    """
    device = torch.device(device)
    is_entropy = isinstance(patcher, EntropyPatcher)
    if tokenizer is None:
        tokenizer = getattr(patcher, "tokenizer", None)
    if tokenizer is None:
        from ..tokenizers import get_tokenizer

        tokenizer = get_tokenizer("nucleotide")
    if is_entropy:
        patcher.to(device)
        batch_units = max(batch_units, patcher.settings.window)
    pending: list[tuple[object, torch.Tensor]] = []  # (record, entropy) awaiting calibration
    pending_units = 0
    needs_threshold = is_entropy and patcher.threshold is None

    def calibrate_pending() -> None:
        target = patcher.settings.target_patch_length
        target = default_target_patch_length if target is None else target
        if patcher.settings.target_patch_length is None:
            log.info("entropy patcher: no threshold stored or given; calibrating to mean patch length %.1f "
                     "on the input", target)
        entropy, mask = _chunk_rows([h for _, h in pending])
        patcher.calibrate_on_entropies(entropy, mask, target)

    def finish(record, entropy: torch.Tensor) -> PatchedRecord:
        starts = patcher.starts_from_entropy(entropy[None], None)
        lengths = starts_to_patch_lengths(starts)[0].cpu().numpy()
        return PatchedRecord(record, lengths[lengths > 0], entropy.cpu().numpy().astype(np.float32))

    for group, rows in _batches(records, tokenizer, batch_units, 256):
        ids, mask = _pad_rows(rows, tokenizer.pad_id)
        ids, mask = ids.to(device), mask.to(device)
        if not is_entropy:
            lengths = patcher(ids, mask).cpu().numpy()
            for record, row in zip(group, lengths):  # loop over records: output assembly
                yield PatchedRecord(record, row[row > 0].astype(np.int64))
            continue
        entropy = patcher.entropies(ids, mask)
        tracks = [entropy[i, : len(r)] for i, r in enumerate(rows)]
        if needs_threshold:
            pending.extend(zip(group, tracks))
            pending_units += sum(len(r) for r in rows)
            if pending_units < calibrate_units:
                continue
            calibrate_pending()
            needs_threshold = False
            for record, h in pending:
                yield finish(record, h)
            pending = []
            continue
        for record, h in zip(group, tracks):
            yield finish(record, h)
    if needs_threshold and pending:
        calibrate_pending()
        for record, h in pending:
            yield finish(record, h)


class PatchStats:
    """Patch length histograms per contig; the summary of `tokenize --patcher`."""

    COLUMNS = ("contig", "units", "patches", "mean_patch_length", "median_patch_length", "max_patch_length",
               "compression_ratio")

    def __init__(self) -> None:
        self.histograms: dict[str, np.ndarray] = {}

    def add(self, contig: str, patch_lengths: np.ndarray) -> None:
        counts = np.bincount(np.asarray(patch_lengths, dtype=np.int64))
        old = self.histograms.get(contig)
        if old is None:
            self.histograms[contig] = counts
        else:
            width = max(len(old), len(counts))
            self.histograms[contig] = np.pad(old, (0, width - len(old))) + np.pad(counts, (0, width - len(counts)))

    @staticmethod
    def _row(name: str, hist: np.ndarray) -> dict:
        sizes = np.arange(len(hist))
        patches = int(hist.sum())
        units = int((hist * sizes).sum())
        if patches == 0:
            return dict(contig=name, units=units, patches=0, mean_patch_length=0.0, median_patch_length=0.0,
                        max_patch_length=0, compression_ratio=0.0)
        cum = np.cumsum(hist)
        # Median of the multiset of patch lengths (mean of the two middle values for an even count).
        lo = int(np.searchsorted(cum, (patches - 1) // 2 + 1))
        hi = int(np.searchsorted(cum, patches // 2 + 1))
        return dict(contig=name, units=units, patches=patches, mean_patch_length=units / patches,
                    median_patch_length=(lo + hi) / 2, max_patch_length=int(sizes[hist > 0].max()),
                    compression_ratio=units / patches)

    def rows(self) -> list[dict]:
        rows = [self._row(name, hist) for name, hist in self.histograms.items()]
        if self.histograms:
            width = max(len(h) for h in self.histograms.values())
            total = sum(np.pad(h, (0, width - len(h))) for h in self.histograms.values())
        else:
            total = np.zeros(1, dtype=np.int64)
        rows.append(self._row("all", total))
        return rows

    def to_tsv(self) -> str:
        lines = ["\t".join(self.COLUMNS)]
        for row in self.rows():
            lines.append("\t".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in self.COLUMNS))
        return "\n".join(lines) + "\n"

    def summary_lines(self, max_contigs: int = 20) -> list[str]:
        rows = self.rows()
        shown = rows[:-1][:max_contigs]
        fmt = ("{contig}: {units} units, {patches} patches, mean {mean_patch_length:.2f}, median "
               "{median_patch_length:g}, max {max_patch_length}, compression {compression_ratio:.2f}x")
        lines = [fmt.format(**row) for row in shown]
        if len(rows) - 1 > max_contigs:
            lines.append(f"... {len(rows) - 1 - max_contigs} more contigs (see {option('stats_path')})")
        lines.append(fmt.format(**rows[-1]))
        return lines


def bed_lines(patched: PatchedRecord) -> Iterable[str]:
    """BED6-like lines: contig, start, end, name = patch index within the record, score = entropy (bits) of
    the patch's first unit (0 for patchers without entropies), strand."""
    starts = patched.starts
    ends = starts + patched.patch_lengths
    scores = patched.entropy[starts] if patched.entropy is not None else np.zeros(len(starts), dtype=np.float32)
    offset, contig, strand = patched.offset, patched.contig, patched.record.strand or "."
    return (f"{contig}\t{s + offset}\t{e + offset}\t{i}\t{h:.4f}\t{strand}\n"
            for i, (s, e, h) in enumerate(zip(starts.tolist(), ends.tolist(), scores.tolist())))


def _sorted_segments(spool, segments: list[tuple[str, int, int, int, int]], chunk: int = 1 << 24) -> Iterator[str]:
    """The BED text of spooled records in (contig, start, end) order. Each record's rows are in order already;
    a run of records that overlap on one contig is merged row by row."""
    order = sorted(segments)
    i = 0
    while i < len(order):
        j, reach = i + 1, order[i][2]
        while j < len(order) and order[j][0] == order[i][0] and order[j][1] < reach:
            reach = max(reach, order[j][2])
            j += 1
        if j == i + 1:  # one record: its bytes as they are, in chunks cut after a newline (whole characters)
            _, _, _, offset, size = order[i]
            spool.seek(offset)
            carry = b""
            while size > 0:
                data = carry + spool.read(min(chunk, size))
                size -= len(data) - len(carry)
                cut = data.rfind(b"\n") + 1 if size > 0 else len(data)
                carry = data[cut:]
                yield data[:cut].decode()
        else:
            rows = []
            for _, _, _, offset, size in order[i:j]:
                spool.seek(offset)
                rows += spool.read(size).decode().splitlines(keepends=True)
            rows.sort(key=_row_order)
            yield "".join(rows)
        i = j


def _row_order(line: str) -> tuple[int, int, str]:
    """`sort -k2,2n` within a contig, ties broken on the whole line as sort does last."""
    fields = line.split("\t", 3)
    return int(fields[1]), int(fields[2]), line


def plot_entropy_track(patched: PatchedRecord, path: str | Path, *, start: int = 0, end: int | None = None,
                       threshold: float | None = None, mode: str = "global") -> None:
    """PNG: per-unit entropy over [start, end) of a record with patch starts as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io.writers import atomic_path

    length = len(patched.record.seq)
    end = length if end is None else min(end, length)
    if not 0 <= start < end:
        raise UsageError(f"plot region {start}-{end} is empty for record '{patched.record.id}' ({length} units)")
    x = np.arange(start, end) + patched.offset
    starts = patched.starts
    starts = starts[(starts >= start) & (starts < end)] + patched.offset
    fig, ax = plt.subplots(figsize=(min(24, 6 + (end - start) / 150), 3.2))
    if patched.entropy is not None:
        ax.plot(x, patched.entropy[start:end], lw=0.7, color="tab:blue", label="next-unit entropy (bits)")
        if threshold is not None and mode == "global":
            ax.axhline(threshold, color="tab:red", lw=0.8, ls="--", label=f"θ = {threshold:.3f}")
    ax.vlines(starts, 0, 1, transform=ax.get_xaxis_transform(), color="0.5", lw=0.4, alpha=0.7,
              label=f"patch starts ({len(starts)})")
    ax.set_xlim(x[0], x[-1] + 1)
    ax.set_xlabel(f"{patched.contig} position (0-based)")
    ax.set_ylabel("bits")
    ax.set_title(f"{patched.record.id}: {end - start} units in {len(starts)} patches "
                 f"(mean {(end - start) / max(len(starts), 1):.2f})", fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_patches(
    records: Iterable,
    output: str,
    patcher,
    tokenizer=None,
    *,
    stats_path: str | Path | None = None,
    plot_path: str | Path | None = None,
    plot_units: int = 3000,
    device: str | torch.device = "cpu",
    progress=None,
) -> PatchStats:
    """`tokenize --patcher ...`: write patches as BED to ``output`` ('-': stdout), per-contig stats as TSV to
    ``stats_path`` and an entropy track of the first ``plot_units`` units of the first record to
    ``plot_path``. All outputs atomic. ``progress`` optionally wraps the record stream (CLI progress bar).
    Returns the stats (the CLI logs ``summary_lines()``)."""
    from ..io.writers import bed_output, text_output

    stats = PatchStats()
    first: PatchedRecord | None = None
    stream = patch_records(records, patcher, tokenizer, device=device)
    if progress is not None:
        stream = progress(stream)
    # Rows are spooled in input order, one segment per record, then written sorted like `sort -k1,1 -k2,2n`
    # (as classify's BED): records move as whole segments; only records that overlap (overlapping --regions)
    # have their rows sorted line by line.
    with tempfile.TemporaryFile("w+b") as spool:
        segments = []  # (contig, start, end, offset in spool, bytes)
        for patched in stream:
            if first is None:
                first = patched
            stats.add(patched.contig, patched.patch_lengths)
            offset = spool.tell()
            spool.write("".join(bed_lines(patched)).encode())
            end = patched.offset + int(patched.patch_lengths.sum())
            segments.append((patched.contig, patched.offset, end, offset, spool.tell() - offset))
        with bed_output(output) as fh:
            for text in _sorted_segments(spool, segments):
                fh.write(text)
    if stats_path is not None:
        with text_output(stats_path) as fh:
            fh.write(stats.to_tsv())
    if plot_path is not None:
        if first is None:
            raise InputError("no sequence to plot")
        is_entropy = isinstance(patcher, EntropyPatcher)
        plot_entropy_track(first, plot_path, end=plot_units,
                           threshold=patcher.threshold if is_entropy else None,
                           mode=patcher.mode if is_entropy else "global")
    return stats
