import math

import pytest
import torch

from hyena_glt.errors import UsageError
from hyena_glt.model.patching import (AttentionPooling, NoPatcher, StaticPatcher, build_patcher, pool_mean,
                                      segment_softmax, unpool)
from hyena_glt.model.positions import Segments


def random_ragged_batch(seed, batch=4, length=30):
    """Random real lengths and random patch lengths per record, right-padded with 0."""
    g = torch.Generator().manual_seed(seed)
    real = torch.randint(1, length + 1, (batch,), generator=g)
    real[0] = length
    rows = []
    for n in real.tolist():
        row, left = [], n
        while left:
            size = min(left, int(torch.randint(1, 7, (1,), generator=g)))
            row.append(size)
            left -= size
        rows.append(row)
    width = max(len(r) for r in rows)
    lengths = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    x = torch.randn(batch, length, 5, generator=g)
    return x, real, lengths


def reference_segments(real, lengths):
    """Slow loop reference: (b, t) -> (patch, position in patch)."""
    out = {}
    for b in range(len(real)):
        t = 0
        for p, size in enumerate(lengths[b].tolist()):
            for i in range(size):
                out[b, t] = (p, i)
                t += 1
        assert t == real[b]
    return out


@pytest.mark.parametrize("seed", range(5))
def test_pool_unpool_match_loop_reference(seed):
    x, real, lengths = random_ragged_batch(seed)
    batch, length, d = x.shape
    seg = Segments.from_lengths(lengths, length)
    ref = reference_segments(real, lengths)
    pooled = pool_mean(x, seg)
    want = torch.zeros(batch, lengths.shape[1], d)
    for b in range(batch):
        for p, size in enumerate(lengths[b].tolist()):
            units = [x[b, t] for t in range(length) if ref.get((b, t), (None,))[0] == p]
            assert len(units) == size
            if size:
                want[b, p] = torch.stack(units).mean(0)
    assert torch.allclose(pooled, want, atol=1e-6)
    spread = unpool(pooled, seg)
    for b in range(batch):
        for t in range(length):
            if (b, t) in ref:
                p, i = ref[b, t]
                assert torch.equal(spread[b, t], pooled[b, p])
                assert seg.unit_patch[b, t] == p and seg.pos_in_patch[b, t] == i
                assert seg.patch_starts[b, p] == t - i
            else:
                assert torch.all(spread[b, t] == 0) and seg.unit_patch[b, t] == lengths.shape[1]
    assert torch.equal(seg.patch_mask, lengths > 0)


def test_segment_softmax_and_attention_pooling_match_loop_reference():
    x, real, lengths = random_ragged_batch(7)
    batch, length, d = x.shape
    seg = Segments.from_lengths(lengths, length)
    scores = torch.randn(batch, length, 2)
    got = segment_softmax(scores, seg)
    ref = reference_segments(real, lengths)
    for b in range(batch):
        for p in range(lengths.shape[1]):
            ts = [t for t in range(length) if ref.get((b, t), (None,))[0] == p]
            if ts:
                assert torch.allclose(got[b, ts], torch.softmax(scores[b, ts], dim=0), atol=1e-6)

    pool = AttentionPooling(4, 2)
    x4 = torch.randn(batch, length, 4)
    out = pool(x4, seg)
    with torch.no_grad():
        for b in range(batch):
            for p in range(lengths.shape[1]):
                ts = [t for t in range(length) if ref.get((b, t), (None,))[0] == p]
                if not ts:
                    continue
                units = x4[b, ts]
                mean = units.mean(0)
                q = pool.query(mean).view(2, 2)
                k, v = pool.key_value(units).view(len(ts), 2, 2, 2).unbind(1)
                w = torch.softmax((k * q).sum(-1) / math.sqrt(2), dim=0)  # (units, heads)
                want = mean + pool.out_proj((w[..., None] * v).sum(0).reshape(4))
                assert torch.allclose(out[b, p], want, atol=1e-5)


def test_static_and_none_patchers():
    ids = torch.zeros(3, 10, dtype=torch.long)
    mask = torch.arange(10)[None, :] < torch.tensor([[10], [7], [1]])
    assert StaticPatcher(4)(ids, mask).tolist() == [[4, 4, 2], [4, 3, 0], [1, 0, 0]]
    assert StaticPatcher(3)(ids).tolist() == [[3, 3, 3, 1]] * 3
    assert torch.equal(NoPatcher()(ids, mask), mask.long())
    assert build_patcher("static:3").spec == "static:3"
    with pytest.raises(UsageError, match="unknown patcher 'dynamic'"):
        build_patcher("dynamic")
    with pytest.raises(UsageError, match="needs an entropy model"):
        build_patcher("entropy")


@pytest.mark.parametrize("dim", [8, 9])
def test_patch_position_features(dim):
    """sinusoid: sin(start·f_i), then cos(start·f_i), f_i = 1e6^(-i/half), then a zero column for an odd width,
    checked against math (to float32's precision at these positions); PatchPositions gives the same sum
    without autograd (the projection accumulating into the length embeddings) as with it."""
    from hyena_glt.model.positions import PatchPositions, sinusoid

    starts = torch.tensor([[0, 3, 7, 4000], [0, 1, 2, 12345]])
    half = dim // 2
    want = [[[math.sin(s * 1e6 ** (-i / half)) for i in range(half)] + [math.cos(s * 1e6 ** (-i / half))
              for i in range(half)] + [0.0] * (dim % 2) for s in row] for row in starts.tolist()]
    assert torch.allclose(sinusoid(starts, dim).double(), torch.tensor(want, dtype=torch.float64), atol=1e-3)
    torch.manual_seed(0)
    positions = PatchPositions(dim, max_length=5)
    _, _, lengths = random_ragged_batch(3)
    seg = Segments.from_lengths(lengths, int(lengths.sum(1).max()))
    with_grad = positions(seg)
    with torch.inference_mode():
        without = positions(seg)
    assert with_grad.requires_grad and not without.requires_grad
    assert torch.allclose(with_grad, without, atol=1e-6)


def test_uniform_patches_pool_and_unpool_by_reshapes():
    """Static patches tiling unpadded records (length a multiple of K) are marked uniform, and pooling,
    attention pooling and unpooling then reshape: the same results as the general segment operations."""
    import dataclasses

    x = torch.randn(3, 12, 5, generator=torch.Generator().manual_seed(0))
    lengths = StaticPatcher(4)(torch.zeros(3, 12, dtype=torch.long))
    seg = Segments.from_lengths(lengths, 12)
    general = dataclasses.replace(seg, uniform=0)
    assert seg.uniform == 4
    assert torch.allclose(pool_mean(x, seg), pool_mean(x, general), atol=1e-6)
    assert torch.allclose(pool_mean(x, seg), x.view(3, 3, 4, 5).mean(2), atol=1e-6)
    patches = torch.randn(3, 3, 5)
    assert torch.equal(unpool(patches, seg), unpool(patches, general))
    torch.manual_seed(0)
    attention = AttentionPooling(5, 1)
    assert torch.allclose(attention(x, seg), attention(x, general), atol=1e-6)
    # not uniform: a shorter last patch, a padded record, or ragged patches
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 10:] = False
    assert Segments.from_lengths(StaticPatcher(4)(torch.zeros(3, 10, dtype=torch.long)), 10).uniform == 0
    assert Segments.from_lengths(StaticPatcher(4)(torch.zeros(3, 12, dtype=torch.long), mask), 12).uniform == 0
    assert Segments.from_lengths(torch.tensor([[4, 4, 4], [4, 2, 6]]), 12).uniform == 0
