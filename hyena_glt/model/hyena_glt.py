"""HyenaGLTModel: units → (local encoder → patches →) global Hyena blocks (→ local decoder → units).

With ``config.patcher == "none"`` this is a plain HyenaDNA-style stack: embeddings, ``n_layers`` pre-norm
blocks over the units, a final norm; no pooling at all. Otherwise (BLT):

    ids ─ unit + hashed n-gram embeddings ─ local Hyena block(s) ─► h (B, L, d_local)
        ─ pool per patch ─ to d_model + patch start/length features ─ global blocks ─► patch states (B, P, D)
        ─ (causal: shift by one patch) ─ unpool + h + position in patch ─ local block ─► unit states (B, L, D)

In a causal model a unit's decoder sees the global state of the *previous* patch (the state of its own
patch has already read units after it), so no future unit leaks into any output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import HyenaGLTConfig
from ..errors import InputError, UsageError
from .hyena import attention_block, hyena_block
from .patching import AttentionPooling, build_patcher, pool_mean, unpool
from .positions import PatchPositions, Segments, UnitInPatchPositions

# Large primes for the rolling n-gram hash (BLT hashes the n-gram ending at each position).
_HASH_BASE = 1_000_003
_HASH_MOD = 2_147_483_647
# inference looks up hashed n-gram embeddings, and applies the final norm, this many (batch x position) rows at
# a time
_CHUNK_ROWS = 1 << 14


@dataclass
class HyenaGLTOutput:
    unit_states: torch.Tensor | None  # (B, L, D); None when not asked for
    patch_states: torch.Tensor  # (B, P, D)
    patch_mask: torch.Tensor  # (B, P) bool
    patch_lengths: torch.Tensor  # (B, P) long
    hidden_states: list[torch.Tensor] | None = None  # input of global block 0, then each block's output


class UnitEmbedding(nn.Module):
    """Unit embedding plus the sum of hashed n-gram embeddings (n-gram ending at each position)."""

    def __init__(self, vocab_size: int, d: int, ngram_sizes: list[int], buckets: int):
        super().__init__()
        self.units = nn.Embedding(vocab_size, d)
        self.ngram_sizes = sorted(ngram_sizes) if buckets else []
        self.ngrams = nn.EmbeddingBag(buckets, d, mode="sum") if self.ngram_sizes else None
        # Per-size hash seeds (h·(2k+1) + k), as buffers so they live on the model's device; not saved.
        sizes = torch.tensor(self.ngram_sizes, dtype=torch.long)
        self.register_buffer("seed_mult", 2 * sizes + 1, persistent=False)
        self.register_buffer("seed_add", sizes, persistent=False)

    def ngram_buckets(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L, n_sizes) bucket of the k-gram ending at each position, for each k (ids before the start
        count as 0). A different seed per k keeps the k-grams of different sizes apart."""
        if input_ids.device.type == "mps":  # no float64 there (see below); the hash is cheap next to a forward
            return self.ngram_buckets(input_ids.cpu()).to(input_ids.device)
        buckets, longest = self.ngrams.num_embeddings, self.ngram_sizes[-1]
        length = input_ids.shape[1]
        # Rolling hash over k = 1..longest, in place: h_k = (h_{k-1}·BASE + id[t-k+1] + 1) mod MOD, with ids
        # before the start counting as 0. One padded copy of ids + 1 serves every shift as a view; the loop
        # runs over n-gram sizes (at most a handful), never over positions. The integers are held in float64,
        # exactly (all stay below 2^53), where int64 remainders ran ~5x slower than float64's divide, floor and
        # subtract (tiny static:4, 1 x 32k units: 3.7-4.3 -> 2.2 ms).
        ids1 = F.pad(input_ids + 1, (longest - 1, 0), value=1).double()
        h = torch.zeros(input_ids.shape, dtype=torch.float64, device=input_ids.device)
        quotient = torch.empty_like(h)
        hashed = h.new_empty(len(self.ngram_sizes), *input_ids.shape)  # size-major: each k writes one contiguous row
        for k in range(1, longest + 1):
            _remainder_(h.mul_(_HASH_BASE).add_(ids1[:, longest - k:longest - k + length]), _HASH_MOD, quotient)
            if k in self.ngram_sizes:
                hashed[self.ngram_sizes.index(k)] = h
        quotient = torch.empty_like(hashed)
        seeded = hashed.mul_(self.seed_mult.double()[:, None, None]).add_(self.seed_add.double()[:, None, None])
        seeded = _remainder_(_remainder_(seeded, _HASH_MOD, quotient), buckets, quotient)
        out = input_ids.new_empty(*input_ids.shape, len(self.ngram_sizes))
        return out.copy_(seeded.permute(1, 2, 0))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.units(input_ids)
        if self.ngrams is not None:
            batch, length = input_ids.shape
            grams = self.ngram_buckets(input_ids).view(batch * length, -1)
            if torch.is_grad_enabled():
                return x + self.ngrams(grams).view(batch, length, -1)
            # Inference adds in place, a chunk of rows at a time: at megabase lengths a second (B, L, D) tensor
            # costs ~0.2 s of page faults, and was the peak of a forward's memory (tiny, 1 M units: +512 MB).
            rows = x.view(batch * length, -1)
            for s in range(0, batch * length, _CHUNK_ROWS):
                rows[s:s + _CHUNK_ROWS] += self.ngrams(grams[s:s + _CHUNK_ROWS])
        return x


def _remainder_(x: torch.Tensor, m: int, quotient: torch.Tensor) -> torch.Tensor:
    """x mod m in place, for float64 x holding integers in [0, 2^53) and an integer m ≥ 1: x - floor(x / m)·m,
    exact, since x / m is correctly rounded and its fraction (a multiple of 1/m) lies further than half an ulp
    from the next integer."""
    return x.sub_(torch.div(x, float(m), out=quotient).floor_(), alpha=float(m))


class HyenaGLTModel(nn.Module):
    def __init__(self, config: HyenaGLTConfig, decoder: bool = True):
        """``decoder=False`` leaves out the local decoder of a patched model (sequence-level heads only read
        patch states; per-unit states are then the states of each unit's patch)."""
        super().__init__()
        self.config = c = config
        self.causal = not c.bidirectional
        width = c.local_width if c.patched else c.d_model
        self.embed = UnitEmbedding(c.vocab_size, width, c.ngram_sizes, c.ngram_buckets)
        if c.patched:
            self.encoder = nn.ModuleList(hyena_block(c, width, c.local_d_inner, c.local_window)
                                         for _ in range(c.local_layers))
            self.pool = AttentionPooling(width, c.n_heads) if c.pooling == "attention" else None
            self.to_global = nn.Linear(width, c.d_model)
            self.patch_positions = PatchPositions(c.d_model, c.max_patch_embed)
        self.layers = nn.ModuleList(
            (attention_block if i in c.attn_layers else hyena_block)(c, c.d_model, c.d_inner) for i in range(c.n_layers)
        )
        self.norm = nn.LayerNorm(c.d_model)
        self.has_decoder = c.patched and decoder
        if self.has_decoder:
            self.from_global = nn.Linear(c.d_model, width)
            self.first_patch_context = nn.Parameter(torch.zeros(width)) if self.causal else None
            self.unit_positions = UnitInPatchPositions(width, c.max_patch_embed)
            self.decoder = hyena_block(c, width, c.local_d_inner, c.local_window)
            self.decoder_norm = nn.LayerNorm(width)
            self.to_units = nn.Linear(width, c.d_model)
        # The patcher is not a submodule: it has no trainable weights here (an entropy patcher's LM is saved
        # in its own directory). Entropy patchers are attached by from_pretrained / training.
        self.patcher = None if c.patcher.startswith("entropy") else build_patcher(c.patcher)
        self.apply(_init_weights)

    @property
    def d_model(self) -> int:
        return self.config.d_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                patch_lengths: torch.Tensor | None = None, *, unit_states: bool = True,
                output_hidden_states: bool = False) -> HyenaGLTOutput:
        if input_ids.dim() != 2:
            raise UsageError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        batch, length = input_ids.shape
        mask = None
        if attention_mask is not None:
            attention_mask = attention_mask.bool()
            if not bool(attention_mask.all()):
                mask = attention_mask  # only carried through when there is padding
        if not self.config.patched:
            return self._plain(input_ids, attention_mask, mask, output_hidden_states)

        if patch_lengths is None:
            if self.patcher is None:
                raise UsageError("this model uses entropy patching but no entropy patcher is attached "
                                 "(load it with from_pretrained, or pass patch_lengths)")
            patch_lengths = self.patcher(input_ids, attention_mask)
        patch_lengths = patch_lengths.to(input_ids.device).long()
        real = attention_mask.long().sum(1) if attention_mask is not None else torch.full_like(input_ids[:, 0], length)
        if patch_lengths.shape[0] != batch or not torch.equal(patch_lengths.sum(1), real):
            raise InputError("patch lengths do not add up to the records' lengths")
        seg = Segments.from_lengths(patch_lengths, length)
        patch_mask = None if bool(seg.patch_mask.all()) else seg.patch_mask

        h = self.embed(input_ids)
        for block in self.encoder:
            h = block(h, mask)
        pooled = self.pool(h, seg) if self.pool is not None else pool_mean(h, seg)
        g = self.to_global(pooled) + self.patch_positions(seg)
        hidden = [g] if output_hidden_states else None
        for layer in self.layers:
            g = layer(g, patch_mask, consume_input=hidden is None)  # g is this forward's own
            if hidden is not None:
                hidden.append(g)
        g = self.norm(g)
        units = None
        if unit_states and not self.has_decoder:
            units = unpool(g, seg)
        elif unit_states:
            context = self.from_global(g)
            if self.causal:  # the previous patch's state: it has read no unit of this patch
                first = self.first_patch_context.expand(batch, 1, -1)
                context = torch.cat([first, context[:, :-1]], dim=1)
            u = unpool(context, seg) + h + self.unit_positions(seg)
            units = self.to_units(self.decoder_norm(self.decoder(u, mask)))
        return HyenaGLTOutput(units, g, seg.patch_mask, patch_lengths, hidden)

    def _plain(self, input_ids, attention_mask, mask, output_hidden_states) -> HyenaGLTOutput:
        x = self.embed(input_ids)
        hidden = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x, mask, consume_input=hidden is None)  # x is this forward's own
            if hidden is not None:
                hidden.append(x)
        x = self.norm(x) if hidden is not None or torch.is_grad_enabled() else _norm_in_place(self.norm, x)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        return HyenaGLTOutput(x, x, attention_mask, attention_mask.long(), hidden)


def _norm_in_place(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """Inference: norm(x) written over x, _CHUNK_ROWS (batch x position) rows at a time, so megabase inputs need
    no second (B, L, D) tensor (tiny, 1 M units: the last 512 MB of a forward's peak)."""
    step = max(1, _CHUNK_ROWS // x.shape[0])
    if x.shape[1] <= step or not x.is_contiguous():
        return norm(x)
    for s in range(0, x.shape[1], step):
        x[:, s:s + step] = norm(x[:, s:s + step])
    return x


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        nn.init.normal_(module.weight, std=0.02)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
