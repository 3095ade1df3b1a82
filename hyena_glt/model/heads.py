"""Task heads on top of HyenaGLTModel, their losses, embeddings and reverse-complement averaging.

Sequence tasks (classification, multilabel, regression) pool the final states with a masked mean over
units (over patches weighted by their length in a patched model, which is the same mean over units of
each unit's patch state). Per-unit tasks (token_classification, lm) read the decoder's unit states;
lm logits at position t predict unit t + 1.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import HyenaGLTConfig
from ..errors import InputError, UsageError, option
from .hyena_glt import HyenaGLTModel, HyenaGLTOutput

TASKS = ("classification", "multilabel", "regression", "token_classification", "lm")
SEQUENCE_TASKS = ("classification", "multilabel", "regression")
POOLS = ("mean", "cls", "none")


class HyenaGLTForTask(nn.Module):
    def __init__(self, config: HyenaGLTConfig, task: str, num_outputs: int | None = None):
        super().__init__()
        if task not in TASKS:
            raise UsageError(f"unknown task '{task}' (use {', '.join(TASKS)})")
        if task == "lm":
            if config.bidirectional:
                raise UsageError("a language model must be causal (bidirectional = false)")
            num_outputs = config.vocab_size if num_outputs is None else num_outputs
            if num_outputs != config.vocab_size:
                raise UsageError(f"an lm head predicts the vocabulary: num_outputs must be {config.vocab_size}")
        if num_outputs is None or num_outputs < 1:
            raise UsageError(f"task '{task}' needs num_outputs >= 1 (got {num_outputs})")
        if task == "classification" and num_outputs < 2:
            raise UsageError("single-label classification needs at least 2 classes")
        self.config, self.task, self.num_outputs = config, task, int(num_outputs)
        self.backbone = HyenaGLTModel(config, decoder=task not in SEQUENCE_TASKS)
        self.head = nn.Linear(config.d_model, self.num_outputs)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        if task == "regression":
            # Outputs are head · scale + mean, with the training targets' mean and standard deviation (set by
            # the trainer, saved with the weights): the head and its loss work on standardised targets, as a
            # small head with gradient clipping could not reach targets of any scale (GC % as 0-100: R² 0.13
            # after 10 epochs, against 0.99 for the same targets as fractions).
            self.register_buffer("target_mean", torch.zeros(self.num_outputs))
            self.register_buffer("target_scale", torch.ones(self.num_outputs))

    def set_target_scale(self, targets: torch.Tensor) -> None:
        """Regression: the mean and standard deviation of each output's known (non-NaN) training targets."""
        targets = targets.float().reshape(targets.shape[0], -1)
        known = ~torch.isnan(targets)
        count = known.sum(0).clamp(min=1)
        mean = torch.where(known, targets, 0.0).sum(0) / count
        var = torch.where(known, (targets - mean) ** 2, 0.0).sum(0) / count
        scale = var.sqrt()
        self.target_mean.copy_(mean)
        self.target_scale.copy_(torch.where(scale > 0, scale, torch.ones_like(scale)))

    @property
    def per_unit(self) -> bool:
        return self.task not in SEQUENCE_TASKS

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                patch_lengths: torch.Tensor | None = None) -> torch.Tensor:
        out = self.backbone(input_ids, attention_mask, patch_lengths, unit_states=self.per_unit)
        if self.per_unit:
            return self.head(out.unit_states)
        logits = self.head(pool_states(out, attention_mask, "mean", self.backbone.causal))
        if self.task == "regression":
            return torch.addcmul(self.target_mean.to(logits.dtype), logits, self.target_scale.to(logits.dtype))
        return logits

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, pool: str = "mean",
              layer: int | None = None, patch_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Sequence embeddings (B, D) for pool 'mean'/'cls', or per-unit states (B, L, D) for 'none'.

        ``layer`` picks a global block's output (0 = the global input, -1 = the last block, before the final
        norm); None means the final (normed) states the heads read. 'cls' is the first unit of a
        bidirectional model and the last real unit of a causal one (the only unit that has read everything).
        """
        if pool not in POOLS:
            raise UsageError(f"unknown pooling '{pool}' (use {', '.join(POOLS)})")
        want_units = pool == "none" and layer is None
        out = self.backbone(input_ids, attention_mask, patch_lengths, unit_states=want_units,
                            output_hidden_states=layer is not None)
        if layer is not None:
            n = len(out.hidden_states)
            if not -n <= layer < n:
                raise UsageError(f"{option('layer', layer)} is outside -{n}..{n - 1} for a model with {n - 1} blocks")
            out = HyenaGLTOutput(None, out.hidden_states[layer], out.patch_mask, out.patch_lengths)
        if pool == "none":
            if out.unit_states is not None:
                return out.unit_states
            return _patch_states_per_unit(out, input_ids.shape[1])  # each unit gets its patch's state
        return pool_states(out, attention_mask, pool, self.backbone.causal)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean loss. classification: labels (B,) class ids; multilabel: (B, C) 0/1; regression: (B, C) or (B,)
        floats (NaN = missing, ignored); token_classification: (B, L) ids, -100 or padding ignored;
        lm: labels are the input ids (B, L) themselves, shifted here."""
        logits = logits.float()
        if self.task == "classification":
            return F.cross_entropy(logits, labels.long())
        if self.task == "multilabel":
            return F.binary_cross_entropy_with_logits(logits, labels.float().view_as(logits))
        if self.task == "regression":
            target = labels.float().view_as(logits)
            known = ~torch.isnan(target)
            if not bool(known.any()):
                raise InputError("every regression target in the batch is missing (NaN)")
            # the MSE of standardised targets: every output weighs alike, whatever its units
            scale = self.target_scale.expand_as(logits)[known]
            return F.mse_loss(logits[known] / scale, target[known] / scale)
        labels = labels.long()
        if self.task == "lm":
            logits, labels = logits[:, :-1], labels[:, 1:]
            if attention_mask is not None:
                attention_mask = attention_mask[:, 1:]
        if attention_mask is not None:
            labels = labels.masked_fill(~attention_mask.bool(), -100)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def pool_states(out: HyenaGLTOutput, attention_mask: torch.Tensor | None, pool: str, causal: bool) -> torch.Tensor:
    """(B, D) from patch/unit states: length-weighted masked mean, or the 'cls' unit's patch."""
    states, lengths = out.patch_states, out.patch_lengths.to(out.patch_states.dtype)
    if pool == "mean":
        total = lengths.sum(1, keepdim=True).clamp(min=1)
        if not torch.is_grad_enabled():  # one (B, 1, P) x (B, P, D) product: no weighted copy of the states
            return torch.bmm(lengths[:, None, :], states).squeeze(1) / total  # (1 M units: 512 MB, ~0.2 s)
        return (states * lengths[..., None]).sum(1) / total
    if causal:  # last real patch
        last = (out.patch_mask.long().sum(1) - 1).clamp(min=0)
        return states[torch.arange(states.shape[0], device=states.device), last]
    return states[:, 0]


def _patch_states_per_unit(out: HyenaGLTOutput, length: int) -> torch.Tensor:
    from .patching import unpool
    from .positions import Segments

    return unpool(out.patch_states, Segments.from_lengths(out.patch_lengths, length))


def rc_average_logits(model: HyenaGLTForTask, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                      tokenizer, patch_lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Logits averaged over each record and its reverse complement. Per-unit logits of the reverse strand are
    flipped back onto forward coordinates (unit t of a record of length n ↔ unit n-1-t)."""
    if model.task == "lm":
        raise UsageError("reverse-complement averaging does not apply to a language model")
    if not hasattr(tokenizer, "reverse_complement_batch"):
        raise UsageError(f"tokenizer '{getattr(tokenizer, 'name', tokenizer)}' has no reverse complement (DNA only)")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
    lengths = attention_mask.long().sum(1)
    rc_ids = tokenizer.reverse_complement_batch(input_ids, lengths)
    forward = model(input_ids, attention_mask, patch_lengths)
    # Patches of the reverse strand come from the model's own patcher (the forward ones do not apply).
    backward = model(rc_ids, attention_mask)
    if model.per_unit:
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        source = (lengths[:, None] - 1 - pos[None, :]).clamp(min=0)
        source = torch.where(attention_mask, source, pos[None, :].expand_as(source))
        backward = backward.gather(1, source[..., None].expand_as(backward))
    return (forward + backward) / 2
