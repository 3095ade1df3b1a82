"""A differentiable view of a Hyena-GLT model: one-hot DNA (N, 4, L) in, one score per sequence out.

The model reads token ids, so gradient methods need a continuous input. :class:`ScoreModel` runs the model on
the ids of the sequence but swaps the output of the *unit embedding* for ``one_hot @ E[A,C,G,T]`` at A/C/G/T
positions (a forward hook on the embedding module). The embedding of an exact one-hot equals the looked-up
embedding, so scores are unchanged; in between (integrated-gradients paths, uniform baselines) the input is a
mixture of the four base embeddings. Everything the model derives from the ids *discretely* stays fixed at the
values of the real sequence while we differentiate: hashed n-gram embeddings, patch boundaries (static or
entropy patching), N and padding positions. Integrated gradients and DeepLIFT therefore cover the
unit-embedding path only. Saliency takes each substitution's first-order effect at the embedding layer, so it
sees the n-gram embeddings too (:func:`hyena_glt.interpret.attribution.embedding_substitution_effects`);
in-silico mutagenesis changes the ids and sees every path, patch boundaries included.

The score of a sequence is, for classification, the log-odds of the target class
``log p_c - log(1 - p_c)`` (for two classes this is ``logit_c - logit_other``); for multi-label models the
target's logit (its log-odds under the sigmoid); for regression the target output. With reverse-complement
averaging the logits of the sequence and of its reverse complement are averaged first, as
``hyena_glt.model.rc_average_logits`` does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ModelError, UsageError, option

BASES = "ACGT"
SEQUENCE_TASKS = ("classification", "multilabel", "regression")
_BASE_INDEX = np.full(256, -1, dtype=np.int64)
for _i, _b in enumerate(BASES):
    _BASE_INDEX[ord(_b)] = _i
    _BASE_INDEX[ord(_b.lower())] = _i
_BASE_INDEX[[ord("U"), ord("u")]] = 3  # RNA: U is T, as the nucleotide tokenizer reads it


def base_indices(seq: str) -> np.ndarray:
    """0..3 for A/C/G/T (either case; U as T), -1 for anything else (N, IUPAC codes)."""
    return _BASE_INDEX[np.frombuffer(seq.encode("ascii", "replace"), dtype=np.uint8)]


def one_hot(seqs: Sequence[str]) -> np.ndarray:
    """(N, 4, L) float32 one-hot in A, C, G, T order; all-zero columns at non-ACGT positions.
    Sequences must have the same length."""
    idx = np.stack([base_indices(s) for s in seqs])  # (N, L)
    out = np.zeros((idx.shape[0], 4, idx.shape[1]), dtype=np.float32)
    n, pos = np.nonzero(idx >= 0)
    out[n, idx[n, pos], pos] = 1.0
    return out


def reverse_complement_one_hot(x: torch.Tensor) -> torch.Tensor:
    """With channels in A, C, G, T order the complement is a channel flip, the reverse a position flip."""
    return x.flip(-2).flip(-1)


def _find_unit_embedding(model: nn.Module) -> nn.Embedding:
    """The embedding that turns unit ids into vectors (not the hashed n-gram tables, not an entropy LM's)."""
    backbone = getattr(model, "backbone", model)
    units = getattr(getattr(backbone, "embed", None), "units", None)  # HyenaGLTModel.embed (UnitEmbedding).units
    if isinstance(units, nn.Embedding):
        return units
    for attr in ("unit_embedding", "embed_units", "embedding", "embed_tokens", "token_embedding", "embeddings"):
        module = getattr(backbone, attr, None)
        if isinstance(module, nn.Embedding):
            return module
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    for name, module in backbone.named_modules():
        if isinstance(module, nn.Embedding) and module.num_embeddings == vocab and "entropy" not in name and "patcher" not in name:
            return module
    raise ModelError("cannot find the model's unit embedding; gradient attributions are not available for it")


@dataclass
class Target:
    """Which output the score is about: ``index`` of a class/output, or None for each record's predicted class."""

    index: int | None
    name: str


def resolve_target(metadata: dict, num_outputs: int, spec: str | None) -> Target:
    """``spec`` is a class/output name, an index, ``predicted``, or None (the task's natural default:
    the second class of a two-class model, the predicted class of a larger one, output 0 of a one-output model)."""
    task = metadata.get("task", "classification")
    names = list(metadata.get("class_names") or metadata.get("target_names") or [str(i) for i in range(num_outputs)])
    if spec is None:
        if num_outputs == 1:
            return Target(0, names[0])
        if task == "classification" and num_outputs == 2:
            return Target(1, names[1])
        spec = "predicted"
    if spec == "predicted":
        if task == "regression":
            raise UsageError(f"{option('target', 'predicted')} makes no sense for a regression model; name an output")
        return Target(None, "predicted")
    if spec in names:
        return Target(names.index(spec), spec)
    if spec.lstrip("-").isdigit() and 0 <= int(spec) < num_outputs:
        return Target(int(spec), names[int(spec)])
    raise UsageError(f"unknown {option('target')} '{spec}' (the model's {'outputs' if task == 'regression' else 'classes'}: "
                     f"{', '.join(names)}; or an index 0..{num_outputs - 1}, or 'predicted')")


def as_target(target, metadata: dict, num_outputs: int) -> Target:
    """What library callers may pass as a target: a :class:`Target` (its index checked), or what
    :func:`resolve_target` reads: a class/output name, an index, ``"predicted"``, or None (the default)."""
    if isinstance(target, Target):
        if target.index is not None and not 0 <= target.index < num_outputs:
            raise UsageError(f"target index {target.index} is outside 0..{num_outputs - 1}")
        return target
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        target = str(int(target))
    if target is None or isinstance(target, str):
        return resolve_target(metadata, num_outputs, target)
    raise UsageError(f"a target is a class/output name, an index, 'predicted', None or a Target, not a "
                     f"{type(target).__name__}")


class ScoreModel(nn.Module):
    """``forward(one_hot, input_ids, target_index)`` -> (N,) scores, differentiable in ``one_hot``.

    ``input_ids`` are the token ids of the real sequences (unit level, no padding: batches hold sequences of
    one length); ``target_index`` (N,) is the class/output each row is scored on.
    """

    def __init__(self, model: nn.Module, metadata: dict, tokenizer, *, rc_average: bool | None = None,
                 device: torch.device | str = "cpu", precision: str = "fp32"):
        super().__init__()
        task = getattr(model, "task", metadata.get("task"))
        if task not in SEQUENCE_TASKS:
            raise UsageError(f"interpret works on sequence-level models ({', '.join(SEQUENCE_TASKS)}); this model's task is '{task}'")
        acgt = np.asarray(tokenizer.encode("ACGT"))
        if len(acgt) != 4 or len(set(acgt.tolist())) != 4:
            raise UsageError(f"interpret needs a nucleotide (one unit per base) tokenizer; this model uses '{tokenizer.name}'")
        self.model = model.eval()
        self.metadata = metadata
        self.tokenizer = tokenizer
        self.task = task
        self.num_outputs = int(getattr(model, "num_outputs", metadata.get("num_outputs", 1)))
        self.rc_average = bool(metadata.get("rc_average", False)) if rc_average is None else bool(rc_average)
        self.device = torch.device(device)
        self.precision = precision
        self.register_buffer("acgt_ids", torch.as_tensor(acgt, dtype=torch.long), persistent=False)
        # Soft-masked (lower-case) bases have ids of their own with nucleotide:softmask; else the same ids.
        lower = np.asarray(tokenizer.encode("acgt"))
        self.soft_masked = len(lower) == 4 and not np.array_equal(lower, acgt)
        self.register_buffer("acgt_lower_ids", torch.as_tensor(lower if self.soft_masked else acgt, dtype=torch.long),
                             persistent=False)
        # The complement of each id, for reverse-complementing token ids (A<->T, C<->G in either case; others
        # unchanged), as the tokenizer's reverse_complement_batch does for classify.
        top = int(max(acgt.max(), self.acgt_lower_ids.max()))
        vocab = int(getattr(getattr(model, "config", None), "vocab_size", 0) or (top + 1))
        complement = torch.arange(max(vocab, top + 1))
        complement[self.acgt_ids] = self.acgt_ids.flip(0)
        complement[self.acgt_lower_ids] = self.acgt_lower_ids.flip(0)
        self.register_buffer("complement_ids", complement, persistent=False)
        self.embedding = _find_unit_embedding(model)
        # Hashed n-gram embeddings (BLT) are summed onto the unit embedding; gradients cannot reach them.
        self.has_ngrams = bool(getattr(getattr(model, "config", None), "ngram_buckets", 0))
        # The whole input embedding (units + n-grams): saliency takes substitution effects at its output.
        embed = getattr(getattr(model, "backbone", model), "embed", None)
        self.full_embedding = embed if isinstance(embed, nn.Module) and embed is not self.embedding else None
        self._one_hot: torch.Tensor | None = None  # what the embedding hook splices in during a forward
        self.embedding.register_forward_hook(self._splice_one_hot)
        self.to(self.device)

    # -- the embedding hook ------------------------------------------------------------------------------
    def _splice_one_hot(self, module, args, output):
        x = self._one_hot
        if x is None:
            return output
        ids = args[0]
        if ids.shape != (x.shape[0], x.shape[2]):
            return output  # another call (e.g. an entropy LM sharing the module) — leave it alone
        out = output
        # Upper-case bases read the A/C/G/T rows of the embedding; soft-masked ones (nucleotide:softmask) their own.
        for base_ids in (self.acgt_ids, self.acgt_lower_ids) if self.soft_masked else (self.acgt_ids,):
            base_vectors = module.weight[base_ids]  # (4, D)
            spliced = torch.einsum("ncl,cd->nld", x.to(base_vectors.dtype), base_vectors)
            out = torch.where(torch.isin(ids, base_ids).unsqueeze(-1), spliced.to(output.dtype), out)
        return out

    @contextlib.contextmanager
    def _spliced(self, x: torch.Tensor | None) -> Iterator[None]:
        self._one_hot = x
        try:
            yield
        finally:
            self._one_hot = None

    # -- scores --------------------------------------------------------------------------------------------
    def logits(self, input_ids: torch.Tensor, one_hot: torch.Tensor | None = None) -> torch.Tensor:
        """(N, num_outputs) fp32 logits, RC-averaged when asked; ``one_hot`` (optional) is spliced in."""
        from ..runtime import autocast

        mask = torch.ones_like(input_ids, dtype=torch.bool)
        with autocast(self.device, self.precision):
            with self._spliced(one_hot):
                out = self.model(input_ids, attention_mask=mask).float()
            if self.rc_average:
                rc_ids = self.complement_ids[input_ids].flip(-1)
                rc_x = None if one_hot is None else reverse_complement_one_hot(one_hot)
                with self._spliced(rc_x):
                    out = 0.5 * (out + self.model(rc_ids, attention_mask=mask).float())
        return out

    def score_logits(self, logits: torch.Tensor, target_index: torch.Tensor) -> torch.Tensor:
        picked = logits.gather(1, target_index.view(-1, 1)).squeeze(1)
        if self.task == "classification":
            others = logits.scatter(1, target_index.view(-1, 1), float("-inf"))
            return picked - torch.logsumexp(others, dim=1)
        return picked  # multilabel: the logit is the log-odds; regression: the output itself

    def forward(self, one_hot: torch.Tensor, input_ids: torch.Tensor, target_index: torch.Tensor) -> torch.Tensor:
        return self.score_logits(self.logits(input_ids, one_hot), target_index)

    @torch.no_grad()
    def score_ids(self, input_ids: torch.Tensor, target_index: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Scores of many same-length id rows, ``batch_size`` rows per forward."""
        chunks = []
        for start in range(0, input_ids.shape[0], batch_size):
            ids = input_ids[start:start + batch_size]
            chunks.append(self.score_logits(self.logits(ids), target_index[start:start + batch_size]))
        return torch.cat(chunks)

    def encode(self, seqs: Sequence[str]) -> torch.Tensor:
        """Token ids (N, L) of same-length sequences, with no padding or special tokens."""
        batch = self.tokenizer.encode_batch(list(seqs))
        ids = batch["input_ids"]
        if ids.shape[1] != len(seqs[0]):
            raise UsageError(f"interpret needs one token per base; tokenizer '{self.tokenizer.name}' gave "
                             f"{ids.shape[1]} tokens for {len(seqs[0])} bases")
        return ids.to(self.device)

    def predicted_targets(self, input_ids: torch.Tensor, target: Target) -> torch.Tensor:
        """(N,) target index per row: the fixed one, or each row's predicted class."""
        if target.index is not None:
            return torch.full((input_ids.shape[0],), target.index, dtype=torch.long, device=self.device)
        with torch.no_grad():
            return self.logits(input_ids).argmax(dim=1)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return logits.softmax(dim=1)
        if self.task == "multilabel":
            return logits.sigmoid()
        return logits
