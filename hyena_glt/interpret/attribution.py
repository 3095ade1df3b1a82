"""Per-base attributions: saliency (gradient x input), integrated gradients, DeepLIFT/DeepSHAP (captum) and
in-silico mutagenesis, for batches of same-length sequences.

Every method returns ``(N, 4, L)`` attributions in A, C, G, T order and an ``(N, L)`` per-base importance:

* gradient methods: the sum over the four channels (for gradient x input that is the value at the observed base;
  for integrated gradients the position's share of ``f(x) - f(baseline)``);
* ISM: the change of the score for every substitution, mean-centred over the four bases at each position (the
  "hypothetical contributions" tfmodisco-lite reads); the importance is the centred value of the observed base,
  ``-(sum of the three substitution effects) / 4``: positive where mutating the base lowers the score.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError, option
from .scoring import ScoreModel, as_target, one_hot

log = logging.getLogger("hyena_glt")

METHODS = ("saliency", "integrated-gradients", "deeplift", "deepshap", "ism")
BASELINES = ("uniform", "shuffle", "zeros")


@dataclass
class Attributions:
    one_hot: np.ndarray        # (N, 4, L)
    attributions: np.ndarray   # (N, 4, L)
    importance: np.ndarray     # (N, L)
    scores: np.ndarray         # (N,) score of each sequence for its target
    targets: np.ndarray        # (N,) target index used for each sequence
    delta: np.ndarray | None = None  # (N,) completeness gap of IG/DeepLIFT: sum(attr) - (f(x) - f(baseline))


def dinucleotide_shuffle(seq: str, rng: np.random.Generator) -> str:
    """A random sequence with exactly the dinucleotide counts of ``seq`` (Altschul & Erikson 1985).

    Build a random last-edge spanning tree of the dinucleotide graph rooted at the last letter, shuffle every
    letter's other out-edges, put its tree edge last, then walk from the first letter. The walk is inherently
    sequential (one step per base) but runs once per baseline, outside the model's hot path.
    """
    if len(seq) < 3:
        return seq
    letters, codes = np.unique(np.frombuffer(seq.encode(), dtype=np.uint8), return_inverse=True)
    k = len(letters)
    if k == 1:
        return seq
    nxt = [codes[1:][codes[:-1] == c].tolist() for c in range(k)]  # successors of each letter, in order
    last = codes[-1]
    while True:  # a random spanning arborescence into `last`, from the last-edge of a random order
        tree_edge = {c: nxt[c][rng.integers(len(nxt[c]))] for c in range(k) if c != last and nxt[c]}
        if _reaches(tree_edge, last, k, codes):
            break
    edges = []
    for c in range(k):
        succ = list(nxt[c])
        if c in tree_edge:
            succ.remove(tree_edge[c])
            rng.shuffle(succ)
            succ.append(tree_edge[c])
        else:
            rng.shuffle(succ)
        edges.append(succ)
    pos = [0] * k
    out = np.empty(len(seq), dtype=np.int64)
    out[0] = prev = codes[0]
    for i in range(1, len(seq)):
        letter = edges[prev][pos[prev]]
        pos[prev] += 1
        out[i] = prev = letter
    return bytes(letters[out]).decode()


def _reaches(tree_edge: dict, last: int, k: int, codes: np.ndarray) -> bool:
    """Whether following tree edges from every used letter ends at ``last`` (no cycles)."""
    for start in set(codes.tolist()):
        cur, seen = start, 0
        while cur != last:
            if cur not in tree_edge or seen > k:
                return False
            cur, seen = tree_edge[cur], seen + 1
    return True


def make_baselines(seqs: list[str], kind: str, n: int, rng: np.random.Generator) -> torch.Tensor:
    """(n, N, 4, L) baselines: ``uniform`` 0.25 everywhere, ``zeros``, or ``shuffle`` (dinucleotide shuffles).
    Non-ACGT positions of the input get zeros (those positions are held constant anyway)."""
    x = one_hot(seqs)
    if kind == "uniform":
        base = np.broadcast_to(np.full_like(x, 0.25) * (x.sum(1, keepdims=True) > 0), (n,) + x.shape)
    elif kind == "zeros":
        base = np.zeros((n,) + x.shape, dtype=np.float32)
    elif kind == "shuffle":
        base = np.stack([one_hot([dinucleotide_shuffle(s, rng) for s in seqs]) for _ in range(n)])
        base = base * (x.sum(1, keepdims=True) > 0)
    else:
        raise UsageError(f"unknown {option('baseline')} '{kind}' (use one of: {', '.join(BASELINES)})")
    return torch.from_numpy(np.array(base, dtype=np.float32))


# --batch-size auto: units per forward pass. Attributions keep activations for the backward pass, so the CPU
# budget is a quarter of classify's; GPUs take more.
AUTO_UNITS = {"cpu": 4096, "cuda": 1 << 16}


def auto_batch_size(scorer: ScoreModel, length: int) -> int:
    """Sequences of ``length`` units per forward pass for an 'auto' batch size (1 to 256)."""
    units = AUTO_UNITS.get(scorer.device.type, AUTO_UNITS["cpu"])
    return max(1, min(256, units // max(1, length)))


def attribute(scorer: ScoreModel, seqs: list[str], method: str, target, *, baseline: str = "uniform",
              steps: int = 50, n_baselines: int = 1, batch_size: int | None = None, ism_window: tuple[int, int] | None = None,
              rng: np.random.Generator | None = None) -> Attributions:
    """Attributions of same-length ``seqs`` for ``target``: a :class:`~hyena_glt.interpret.scoring.Target`, a
    class/output name, an index, ``"predicted"`` or None (the model's default, see ``resolve_target``)."""
    if method not in METHODS:
        raise UsageError(f"unknown {option('method')} '{method}' (use one of: {', '.join(METHODS)})")
    if isinstance(seqs, (str, bytes)):  # iterated, one string would be many one-base sequences
        raise UsageError(f"attribute() takes a list of sequences, not a single {type(seqs).__name__}: e.g. [seq]")
    target = as_target(target, scorer.metadata, scorer.num_outputs)
    lengths = sorted({len(s) for s in seqs})
    if batch_size is None:  # auto, as attribute_records and the CLI pick it
        batch_size = auto_batch_size(scorer, lengths[-1] if lengths else 1)
    if len(lengths) != 1:
        got = "no sequences" if not lengths else f"lengths from {lengths[0]:,} to {lengths[-1]:,}"
        raise UsageError(f"attribute() takes sequences of one length (got {got}); group them by length, as "
                         "attribute_records does")
    rng = rng or np.random.default_rng(0)
    ids = scorer.encode(seqs)
    targets = scorer.predicted_targets(ids, target)
    x = torch.from_numpy(one_hot(seqs)).to(scorer.device)
    with torch.no_grad():
        scores = scorer.score_ids(ids, targets, batch_size)
    delta = None
    if method in ("integrated-gradients", "deeplift", "deepshap"):
        _warn_if_unit_path_is_weak(scorer, x, ids, targets, scores)
    if method == "saliency":
        attr = _saliency(scorer, x, ids, targets)
    elif method == "integrated-gradients":
        attr, delta = _integrated_gradients(scorer, x, ids, targets, seqs, baseline, steps, n_baselines, batch_size, rng)
    elif method in ("deeplift", "deepshap"):
        attr, delta = _deeplift(scorer, x, ids, targets, seqs, method, baseline, n_baselines, rng)
    else:
        attr = ism(scorer, ids, targets, x, batch_size=batch_size, window=ism_window, ref_scores=scores)
    attr_np = attr.detach().float().cpu().numpy()
    x_np = x.cpu().numpy()
    # saliency and ISM give hypothetical contributions for all four bases: the observed base's is the importance.
    importance = attr_np.sum(1) if method in ("integrated-gradients", "deeplift", "deepshap") else (attr_np * x_np).sum(1)
    return Attributions(x_np, attr_np, importance, scores.cpu().numpy(), targets.cpu().numpy(),
                        None if delta is None else delta.detach().cpu().numpy())


def unit_path_share(scorer: ScoreModel, x: torch.Tensor, ids: torch.Tensor, targets: torch.Tensor,
                    scores: torch.Tensor) -> float:
    """How far the differentiable path alone moves the score: mean |f(x) - f(uniform one-hot)| over the batch,
    with everything the path holds constant (n-gram embeddings, patches) left at the real sequence's values."""
    uniform = torch.full_like(x, 0.25) * (x.sum(1, keepdim=True) > 0)
    with torch.no_grad():
        return float((scores - scorer(uniform, ids, targets)).abs().mean())


def _warn_if_unit_path_is_weak(scorer, x, ids, targets, scores) -> None:
    """Models with hashed n-gram embeddings can carry most of their signal there, out of reach of gradients.
    Say so once per scorer when the unit-embedding path moves the score by under 5 % of the scores' size."""
    if getattr(scorer, "_warned_unit_path", False) or not scorer.has_ngrams:
        return
    share = unit_path_share(scorer, x, ids, targets, scores)
    size = float(scores.abs().mean()) + 1e-3
    if share < 0.05 * max(size, 1.0):
        scorer._warned_unit_path = True
        log.warning("integrated gradients/DeepLIFT see only the base-embedding path of this model, which moves "
                    "the score by %.3g on average (the n-gram embeddings held constant carry the rest); saliency "
                    "and ism see the n-grams too", share)


def _saliency(scorer: ScoreModel, x, ids, targets) -> torch.Tensor:
    """Gradient x input, as hypothetical contributions of all four bases, centred over the bases at each position
    (Majdandzic et al. 2023: a one-hot input lives on the simplex; the gradient along (1,1,1,1) points off it).

    Without n-gram embeddings this is ``grad - mean(grad)`` over the one-hot channels. With them, each
    substitution's first-order effect is taken at the embedding layer, n-grams included:
    ``sum_i <df/de_i, e_i(mutant) - e_i(sequence)>`` over the positions whose unit or n-gram embedding the
    substitution changes (see :func:`embedding_substitution_effects`). Integrated gradients from the uniform
    baseline gets the centring for free but sees the base-embedding path only."""
    embed = scorer.full_embedding
    if not scorer.has_ngrams or embed is None:
        from captum.attr import Saliency

        grad = Saliency(scorer).attribute(x.clone().requires_grad_(True), additional_forward_args=(ids, targets), abs=False)
        return grad - grad.mean(1, keepdim=True)
    outputs: list[torch.Tensor] = []

    def keep(module, args, out):
        out.retain_grad()
        outputs.append(out)

    handle = embed.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            scorer(x.clone().requires_grad_(True), ids, targets).sum().backward()
    finally:
        handle.remove()
    effects = embedding_substitution_effects(embed, ids, outputs[0].grad.float(), scorer.acgt_ids)
    if scorer.rc_average:  # the reverse strand's effects, moved back onto forward bases and positions
        rc_ids = scorer.complement_ids[ids].flip(-1)
        effects = effects + embedding_substitution_effects(embed, rc_ids, outputs[1].grad.float(), scorer.acgt_ids).flip(1).flip(2)
    is_base = (x.sum(1, keepdim=True) > 0).to(effects.dtype)
    return (effects - effects.mean(1, keepdim=True)) * is_base


@torch.no_grad()
def embedding_substitution_effects(embed, ids: torch.Tensor, grad: torch.Tensor, acgt_ids: torch.Tensor,
                                   chunk: int = 4096) -> torch.Tensor:
    """(N, 4, L) first-order score change of substituting base b at position p, through the embedding layer:
    ``sum_{i=p}^{p+K-1} <grad_i, embed(mutant)_i - embed(ids)_i>``, K the longest n-gram. Each substitution only
    changes the embeddings of K positions, so every (p, b) is computed on a window of 2K-1 ids around p
    (left context for the n-grams; ids before the sequence start count as 0, as the model hashes them),
    windows batched ``chunk`` at a time: cost O(4 L K D), no loop over positions."""
    k = max(getattr(embed, "ngram_sizes", None) or [1])
    n, length = ids.shape
    pad = k - 1
    windows = F.pad(ids, (pad, pad), value=0).unfold(1, 2 * k - 1, 1).reshape(n * length, 2 * k - 1)
    grad_windows = F.pad(grad, (0, 0, 0, pad)).unfold(1, k, 1).permute(0, 1, 3, 2).reshape(n * length, k, -1)
    out = torch.zeros(n * length, 4, device=ids.device)
    for start in range(0, n * length, chunk):
        win, g = windows[start:start + chunk], grad_windows[start:start + chunk]
        ref = embed(win)[:, pad:]
        for b in range(4):
            mutant = win.clone()
            mutant[:, pad] = acgt_ids[b]
            out[start:start + chunk, b] = ((embed(mutant)[:, pad:] - ref) * g).sum((1, 2))
    return out.view(n, length, 4).permute(0, 2, 1)


def _integrated_gradients(scorer, x, ids, targets, seqs, baseline, steps, n_baselines, batch_size, rng):
    from captum.attr import IntegratedGradients

    if steps < 1:
        raise UsageError(f"{option('steps')} must be at least 1 (got {steps})")
    n = n_baselines if baseline == "shuffle" else 1
    baselines = make_baselines(seqs, baseline, n, rng).to(x.device)
    ig = IntegratedGradients(scorer)
    total = torch.zeros_like(x)
    delta = torch.zeros(x.shape[0], device=x.device)
    # internal_batch_size bounds memory: at most batch_size interpolated sequences go through the model at once.
    for b in baselines:
        attr, d = ig.attribute(x, baselines=b, additional_forward_args=(ids, targets), n_steps=steps,
                               method="gausslegendre", internal_batch_size=max(1, batch_size),
                               return_convergence_delta=True)
        total += attr
        delta += d
    return total / n, delta / n


def _deeplift(scorer, x, ids, targets, seqs, method, baseline, n_baselines, rng):
    """captum's DeepLIFT rules cover a fixed list of modules (ReLU, Sigmoid, Tanh, Softmax, pooling ...).
    Elsewhere it falls back to plain gradients and its attributions stop summing to f(x) - f(baseline); Hyena
    operators (multiplicative gating, FFT convolution, sine-activated filter MLPs) are such places. So we run it
    and refuse the result when the summation-to-delta property fails."""
    from captum.attr import DeepLift

    # DeepSHAP = DeepLIFT averaged over several baselines (dinucleotide shuffles unless asked otherwise): every
    # (input, baseline) pair is one row of a single batched DeepLIFT call.
    n = 1 if method == "deeplift" else max(2, n_baselines)
    kind = "shuffle" if method == "deepshap" and baseline == "uniform" else baseline
    base = make_baselines(seqs, kind, n, rng).to(x.device).reshape(n * x.shape[0], *x.shape[1:])
    xs, id_rows, target_rows = x.repeat(n, 1, 1), ids.repeat(n, 1), targets.repeat(n)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # captum's notes about the hooks it sets
            attr, delta = DeepLift(scorer).attribute(xs, baselines=base, additional_forward_args=(id_rows, target_rows),
                                                     return_convergence_delta=True)
            with torch.no_grad():
                gap = scorer(xs, id_rows, target_rows) - scorer(base, id_rows, target_rows)
    except (RuntimeError, AssertionError, TypeError, ValueError) as err:
        raise UsageError(f"{option('method', method)}: captum cannot run DeepLIFT on this model ({err}); "
                         f"use {option('method', 'integrated-gradients')}") from None
    tolerance = 1e-2 * (1.0 + gap.abs())
    if bool((delta.abs() > tolerance).any()):
        worst = float(delta.abs().max())
        raise UsageError(f"{option('method', method)}: captum does not support this model's layers (Hyena "
                         f"gating/FFT convolution): its attributions miss f(x) - f(baseline) by up to {worst:.3g}; "
                         f"use {option('method', 'integrated-gradients')} or {option('method', 'ism')}")
    rows = x.shape[0]
    return attr.view(n, rows, *x.shape[1:]).mean(0), delta.view(n, rows).mean(0)


def ism(scorer: ScoreModel, ids: torch.Tensor, targets: torch.Tensor, x: torch.Tensor, *, batch_size: int = 64,
        window: tuple[int, int] | None = None, ref_scores: torch.Tensor | None = None) -> torch.Tensor:
    """In-silico mutagenesis: every single-base substitution in ``window`` (0-based, half-open; whole sequence
    when None), all mutants of a sequence built at once by indexing and scored ``batch_size`` at a time.
    Returns (N, 4, L) mean-centred score changes (zero outside the window and at non-ACGT positions)."""
    n, length = ids.shape
    start, end = window or (0, length)
    if not 0 <= start < end <= length:
        raise UsageError(f"{option('ism_window')} {start + 1}-{end} does not fit a sequence of {length} bases")
    if ref_scores is None:
        ref_scores = scorer.score_ids(ids, targets, batch_size)
    ref_base = x.argmax(1)  # (N, L); only meaningful where the position is a base
    is_base = x.sum(1) > 0
    out = torch.zeros(n, 4, length, device=ids.device)
    for row in range(n):  # one sequence's mutants form their own batches
        positions = torch.nonzero(is_base[row, start:end]).squeeze(1) + start  # (P,)
        if positions.numel() == 0:
            continue
        alt = (ref_base[row, positions].unsqueeze(1) + torch.arange(1, 4, device=ids.device)) % 4  # (P, 3)
        pos = positions.repeat_interleave(3)
        alt = alt.reshape(-1)
        scores = torch.empty(pos.numel(), device=ids.device)
        for s in range(0, pos.numel(), batch_size):  # mutants are built a batch at a time: memory stays bounded
            p, a = pos[s:s + batch_size], alt[s:s + batch_size]
            mutants = ids[row].expand(p.numel(), length).clone()
            mutants[torch.arange(p.numel(), device=ids.device), p] = scorer.acgt_ids[a]
            with torch.no_grad():
                scores[s:s + batch_size] = scorer.score_logits(scorer.logits(mutants), targets[row].expand(p.numel()))
        out[row, alt, pos] = scores - ref_scores[row]
    centred = out - out.mean(1, keepdim=True)
    inside = torch.zeros(length, dtype=torch.bool, device=ids.device)
    inside[start:end] = True
    return centred * (is_base & inside).unsqueeze(1)
