"""Entropy patch boundaries: the vectorised rule equals a slow position-by-position reference."""

from __future__ import annotations

import pytest
import torch

from hyena_glt.errors import UsageError
from hyena_glt.model.entropy import (
    NO_CONTEXT_ENTROPY_BITS,
    boundary_candidates,
    calibrate_threshold,
    clamp_patch_starts,
    mean_patch_length,
    next_unit_entropy,
    patch_starts,
    starts_to_patch_lengths,
)


def reference_patch_lengths(entropy, length, threshold, mode, min_len, max_len):
    """The rule written as the obvious loop over positions (one row)."""
    starts = []
    last = None
    for t in range(length):
        if t == 0:
            is_start = True
        else:
            if mode == "global":
                candidate = entropy[t] > threshold
            else:
                candidate = entropy[t] - entropy[t - 1] > threshold
            since = t - last
            is_start = (max_len is not None and since >= max_len) or (candidate and since >= min_len)
        if is_start:
            starts.append(t)
            last = t
    return [b - a for a, b in zip(starts, starts[1:] + [length])]


CASES = [(mode, mn, mx) for mode in ("global", "monotonic")
         for mn, mx in [(1, None), (1, 5), (1, 1), (2, None), (3, 7), (4, 4), (2, 16)]]


@pytest.mark.parametrize("mode,min_len,max_len", CASES)
def test_vectorised_boundaries_match_reference(mode, min_len, max_len):
    gen = torch.Generator().manual_seed(CASES.index((mode, min_len, max_len)))
    batch, width = 7, 97
    entropy = torch.rand(batch, width, generator=gen) * 2
    # Ragged rows, including a length-1 row and a full row; padding holds garbage that must be ignored.
    lengths = torch.tensor([97, 1, 50, 96, 13, 2, 70])
    mask = torch.arange(width)[None, :] < lengths[:, None]
    threshold = 1.3 if mode == "global" else 0.4
    starts = patch_starts(entropy, mask, threshold, mode, min_len, max_len)
    got = starts_to_patch_lengths(starts, mask)
    assert got.dtype == torch.long
    assert got.sum(1).tolist() == lengths.tolist()
    for row in range(batch):
        expected = reference_patch_lengths(entropy[row].tolist(), int(lengths[row]), threshold, mode, min_len, max_len)
        row_lengths = got[row].tolist()
        assert row_lengths[: len(expected)] == expected
        assert all(v == 0 for v in row_lengths[len(expected):])
        # Every patch but the last obeys the clamps (the last one may be cut by the sequence end).
        assert all(min_len <= v for v in expected[:-1])
        if max_len is not None:
            assert all(v <= max_len for v in expected)


def test_long_rows_many_jumps_match_reference():
    """Pointer doubling must follow chains of hundreds of starts (min > 1 uses it)."""
    gen = torch.Generator().manual_seed(7)
    entropy = torch.rand(3, 3000, generator=gen)
    lengths = torch.tensor([3000, 2999, 1234])
    mask = torch.arange(3000)[None, :] < lengths[:, None]
    starts = patch_starts(entropy, mask, 0.2, "global", 2, 9)
    got = starts_to_patch_lengths(starts, mask)
    for row in range(3):
        expected = reference_patch_lengths(entropy[row].tolist(), int(lengths[row]), 0.2, "global", 2, 9)
        assert got[row, : len(expected)].tolist() == expected


def test_constant_entropy_gives_max_length_patches():
    entropy = torch.zeros(1, 20)
    starts = patch_starts(entropy, None, 1.0, "global", 1, 6)
    assert starts_to_patch_lengths(starts).tolist() == [[6, 6, 6, 2]]


def test_candidates_and_position_zero():
    entropy = torch.tensor([[0.0, 2.0, 0.5, 1.8, 1.9]])
    assert boundary_candidates(entropy, 1.0, "global").tolist() == [[True, True, False, True, True]]
    # monotonic: rises of 2.0, -1.5, 1.3, 0.1
    assert boundary_candidates(entropy, 1.0, "monotonic").tolist() == [[True, True, False, True, False]]
    with pytest.raises(UsageError, match="unknown entropy patching mode"):
        boundary_candidates(entropy, 1.0, "sideways")


def test_bad_clamps_raise_usage_error():
    with pytest.raises(UsageError, match="smaller than min"):
        clamp_patch_starts(torch.ones(1, 4, dtype=torch.bool), torch.tensor([4]), 5, 3)
    with pytest.raises(UsageError, match="at least 1"):
        clamp_patch_starts(torch.ones(1, 4, dtype=torch.bool), torch.tensor([4]), 0, None)


def test_next_unit_entropy_shifts_and_uses_bits():
    # Logits at t predict unit t+1, so H[t+1] is the entropy of logits[t]; uniform over 4 = 2 bits,
    # a point mass = 0 bits.
    logits = torch.full((1, 3, 4), -1e4)
    logits[0, 0] = 0.0  # uniform
    logits[0, 1, 2] = 0.0  # certain
    h = next_unit_entropy(logits)
    assert h[0, 0].item() == NO_CONTEXT_ENTROPY_BITS
    assert h[0, 1].item() == pytest.approx(2.0, abs=1e-5)
    assert h[0, 2].item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("mode,min_len,max_len,target", [
    ("global", 1, None, 4.0), ("global", 1, 16, 6.0), ("monotonic", 1, None, 3.0), ("global", 2, 12, 5.0)])
def test_calibration_hits_target_within_ten_percent(mode, min_len, max_len, target):
    gen = torch.Generator().manual_seed(3)
    # Entropies with structure: low stretches (repeats) and high ones, like a real LM's output.
    base = torch.rand(16, 2000, generator=gen) * 2
    low = (torch.rand(16, 2000 // 50, generator=gen) < 0.3).repeat_interleave(50, dim=1)
    entropy = torch.where(low, base * 0.1, base)
    mask = torch.ones_like(entropy, dtype=torch.bool)
    mask[5, 1500:] = False
    theta = calibrate_threshold(entropy, mask, target, mode, min_len, max_len)
    got = mean_patch_length(patch_starts(entropy, mask, theta, mode, min_len, max_len), mask)
    assert abs(got - target) / target < 0.10


def test_calibration_rejects_impossible_targets():
    entropy = torch.rand(2, 50)
    with pytest.raises(UsageError, match="exceeds max"):
        calibrate_threshold(entropy, None, 10, "global", 1, 4)
    with pytest.raises(UsageError, match="at least 1"):
        calibrate_threshold(entropy, None, 0.5)
