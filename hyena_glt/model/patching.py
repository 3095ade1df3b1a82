"""Patchers (where patches start) and the segment operations that move states between units and patches.

A patcher is any callable ``(input_ids (B, L), attention_mask (B, L) bool) -> patch_lengths (B, P)``: long,
right-padded with 0, each row summing to that record's real length. Pooling/unpooling work on a padded
batch through :class:`~hyena_glt.model.positions.Segments` with ``index_add_`` / ``scatter_reduce`` /
``index_select``: no Python loop over patches or batch items.
"""

from __future__ import annotations

import math
import re
from typing import Protocol

import torch
import torch.nn as nn

from ..errors import UsageError, option
from .positions import Segments


class Patcher(Protocol):
    spec: str

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor: ...


def _check_batch(input_ids: torch.Tensor) -> None:
    # One record's ids (L,) would otherwise fail deep in tensor indexing (static) or pass as L records (none).
    if getattr(input_ids, "ndim", None) != 2:
        shape = tuple(getattr(input_ids, "shape", ()))
        raise UsageError(f"a patcher takes input_ids of shape (batch, length), got {shape}: use "
                         "tokenizer.encode_batch([seq])['input_ids'], or ids[None] for one record")


def _real_lengths(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    _check_batch(input_ids)
    if attention_mask is None:
        return torch.full((input_ids.shape[0],), input_ids.shape[1], dtype=torch.long, device=input_ids.device)
    return attention_mask.long().sum(1)


class NoPatcher:
    """Every unit is its own patch."""

    spec = "none"

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        _check_batch(input_ids)
        if attention_mask is None:
            return torch.ones_like(input_ids, dtype=torch.long)
        return attention_mask.long()

    def __repr__(self) -> str:
        return "NoPatcher()"


class StaticPatcher:
    """Patches of ``size`` units (the last one of a record may be shorter): 4, or 3 for codons."""

    def __init__(self, size: int):
        if size < 1:
            raise UsageError(f"static patch size must be at least 1 (got {size})")
        self.size = int(size)
        self.spec = f"static:{self.size}"

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        lengths = _real_lengths(input_ids, attention_mask)
        n_patches = max(1, math.ceil(input_ids.shape[1] / self.size))
        starts = torch.arange(n_patches, device=input_ids.device) * self.size
        return (lengths[:, None] - starts[None, :]).clamp(0, self.size)

    def __repr__(self) -> str:
        return f"StaticPatcher({self.size})"


def build_patcher(spec: str, **kwargs) -> Patcher:
    """``"none"``, ``"static:K"`` or ``"entropy"`` (keyword arguments go to the entropy patcher: either
    ``model_dir=`` a directory holding an entropy LM, or ``entropy_model=`` an LM plus its settings)."""
    spec = (spec or "none").strip()
    if spec == "none":
        return NoPatcher()
    m = re.fullmatch(r"static:(\d+)", spec)
    if m:
        return StaticPatcher(int(m.group(1)))
    if spec == "entropy" or spec.startswith("entropy:"):
        from . import entropy  # engineer E's module; imported only when asked for

        if "model_dir" in kwargs:
            return entropy.load_entropy_patcher(kwargs.pop("model_dir"), **kwargs)
        if "entropy_model" in kwargs:
            return entropy.EntropyPatcher(kwargs.pop("entropy_model"), **kwargs)
        raise UsageError(f"the entropy patcher needs an entropy model (a model trained with {option('task', 'lm')})")
    raise UsageError(f"unknown patcher '{spec}' (use none, static:K or entropy)")


# ---------------------------------------------------------------------------------------------- segment ops
def _flat_index(seg: Segments) -> torch.Tensor:
    """(B·L,) row of each unit in a (B·(P+1), ·) patch table (slot P of each record is padding)."""
    batch = seg.unit_patch.shape[0]
    offsets = torch.arange(batch, device=seg.unit_patch.device)[:, None] * (seg.n_patches + 1)
    return (seg.unit_patch + offsets).reshape(-1)


def segment_sum(x: torch.Tensor, seg: Segments) -> torch.Tensor:
    """(B, L, ...) → (B, P, ...): sum of each patch's units."""
    batch, length = x.shape[:2]
    rest = x.shape[2:]
    if seg.uniform:  # patches of K units tile every record: a reshape (tiny static:4, 32k units: 1.0 -> 0.1 ms)
        return x.reshape(batch, seg.n_patches, seg.uniform, *rest).sum(2)
    table = x.new_zeros(batch * (seg.n_patches + 1), *rest)
    table.index_add_(0, _flat_index(seg), x.reshape(batch * length, *rest))
    return table.view(batch, seg.n_patches + 1, *rest)[:, : seg.n_patches]


def pool_mean(x: torch.Tensor, seg: Segments) -> torch.Tensor:
    """(B, L, D) → (B, P, D): mean of each patch's units (0 for padding patches)."""
    return segment_sum(x, seg) / seg.patch_lengths.clamp(min=1)[..., None].to(x.dtype)


def unpool(patches: torch.Tensor, seg: Segments) -> torch.Tensor:
    """(B, P, ...) → (B, L, ...): each unit gets its patch's row; padding units get zeros."""
    batch, n_patches = patches.shape[:2]
    rest = patches.shape[2:]
    if seg.uniform:
        return patches[:, :, None].expand(batch, n_patches, seg.uniform, *rest).reshape(batch, -1, *rest)
    table = torch.cat([patches, patches.new_zeros(batch, 1, *rest)], dim=1).reshape(batch * (n_patches + 1), *rest)
    return table.index_select(0, _flat_index(seg)).view(batch, -1, *rest)


def segment_softmax(scores: torch.Tensor, seg: Segments) -> torch.Tensor:
    """Softmax of (B, L, H) scores over the units of each patch."""
    batch, length, heads = scores.shape
    index = _flat_index(seg)
    flat = scores.reshape(batch * length, heads)
    top = flat.new_full((batch * (seg.n_patches + 1), heads), -torch.inf)
    top.scatter_reduce_(0, index[:, None].expand(-1, heads), flat, reduce="amax", include_self=True)
    e = torch.exp(flat - top.index_select(0, index))
    total = torch.zeros_like(top).index_add_(0, index, e)
    return (e / total.index_select(0, index)).view(batch, length, heads)


class AttentionPooling(nn.Module):
    """BLT-style pooling: each patch's query (from its mean) attends to its own units (multi-head)."""

    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.query = nn.Linear(d, d)
        self.key_value = nn.Linear(d, 2 * d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, seg: Segments) -> torch.Tensor:
        batch, length, d = x.shape
        dh = d // self.n_heads
        mean = pool_mean(x, seg)
        q = unpool(self.query(mean), seg).view(batch, length, self.n_heads, dh)
        k, v = self.key_value(x).view(batch, length, 2, self.n_heads, dh).unbind(2)
        weights = segment_softmax((q * k).sum(-1) / math.sqrt(dh), seg)  # (B, L, H)
        pooled = segment_sum(weights[..., None] * v, seg).reshape(batch, seg.n_patches, d)
        return mean + self.out_proj(pooled)
