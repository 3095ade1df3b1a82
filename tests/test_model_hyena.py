import copy

import pytest
import torch

from hyena_glt.model.hyena import Block, HyenaOperator, direct_conv, fast_fft_size, fft_conv


def test_fast_fft_size():
    assert fast_fft_size(2047) == 2048
    assert fast_fft_size(1999) == 2048  # not 2000 = 2^4 * 5^3: too few factors of two
    assert fast_fft_size(2 * 100_000 - 1) == 200_000  # 2^6 * 5^5
    assert fast_fft_size(10_123) == 10_240  # not 10,125 = 3^4 * 5^3 (3x slower)
    assert fast_fft_size(32768 + 255) == 34_560  # not 33,750 = 2 * 3^3 * 5^4
    assert fast_fft_size(2 * 70_001 - 1) == 144_000  # not 140,625 = 3^2 * 5^6
    assert [fast_fft_size(n) for n in (1, 2, 3, 5, 17, 33)] == [1, 2, 4, 8, 32, 64]
    for n in range(1, 3000):
        size = fast_fft_size(n)
        assert size >= n
        twos = size & -size
        m = size // twos
        for p in (3, 5):
            while m % p == 0:
                m //= p
        assert m == 1 and (twos >= 32 or size == twos)
        # the smallest such size
        assert not any((c & -c) >= 32 and _is_smooth(c // (c & -c)) for c in range(n, size))


def _is_smooth(m: int) -> bool:
    for p in (3, 5):
        while m % p == 0:
            m //= p
    return m == 1


@pytest.mark.parametrize("length", [1, 5, 37, 128])
def test_fft_conv_equals_direct_conv(length):
    g = torch.Generator().manual_seed(length)
    v = torch.randn(2, 3, length, generator=g)
    h = torch.randn(3, length, generator=g) / length ** 0.5
    skip = torch.randn(3, generator=g)
    n = fast_fft_size(2 * length - 1)
    got = fft_conv(v, torch.fft.rfft(h, n=n), n, skip)
    want = direct_conv(v, h) + v * skip[:, None]
    assert torch.allclose(got, want, atol=1e-5)


def test_bidirectional_filter_equals_direct_conv():
    op = HyenaOperator(4, bidirectional=True, filter_scale=16).eval()
    length = 23
    n = fast_fft_size(2 * length - 1)
    taps = op.filter.taps(length, torch.device("cpu")).detach()
    v = torch.randn(2, 4, length)
    with torch.no_grad():
        got = fft_conv(v, op.filter.spectrum(length, n, torch.device("cpu")), n, torch.zeros(4))
    want = direct_conv(v, taps[:4], taps[4:])
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_operator_causality(bidirectional):
    torch.manual_seed(0)
    op = HyenaOperator(8, bidirectional=bidirectional, filter_scale=32).eval()
    u = torch.randn(1, 40, 8)
    changed = u.clone()
    changed[:, 25:] = torch.randn(1, 15, 8)
    with torch.no_grad():
        a, b = op(u), op(changed)
    same_prefix = torch.allclose(a[:, :25], b[:, :25], atol=1e-6)
    assert same_prefix != bidirectional
    assert not torch.allclose(a[:, 25:], b[:, 25:])


def test_filter_is_prefix_of_longer_filter_and_cached_in_eval():
    op = HyenaOperator(4, filter_scale=16)
    short = op.filter.taps(10, torch.device("cpu"))
    long = op.filter.taps(1000, torch.device("cpu"))
    assert torch.allclose(short, long[:, :10], atol=1e-6)
    op.eval()
    with torch.no_grad():
        first = op.filter.spectrum(10, 32, torch.device("cpu"))
        assert op.filter.spectrum(10, 32, torch.device("cpu")).data_ptr() == first.data_ptr()
        op.filter.mlp[0].weight.add_(1.0)  # a weight update must invalidate the cache
        assert not torch.equal(op.filter.spectrum(10, 32, torch.device("cpu")), first)


def test_operator_moved_inside_inference_mode_runs_and_caches():
    """`model.to(device)` inside inference_mode makes the parameters inference tensors, which have no version
    counter: the filter cache must still work (it raised 'Inference tensors do not track version counter')."""
    torch.manual_seed(0)
    op = HyenaOperator(8, filter_scale=16).eval()
    u = torch.randn(2, 300, 8)
    with torch.inference_mode():
        want = op(u)
        moved = copy.deepcopy(op).to(torch.float64).to(torch.float32)
        moved.filter._cache.clear()
        assert moved.filter.skip.is_inference()
        got, again = moved(u), moved(u)
    assert torch.allclose(got, want, atol=1e-6) and torch.equal(got, again)
    assert len(moved.filter._cache) == 1


@pytest.mark.parametrize("in_pieces", [False, True])
def test_fp32_long_conv_under_bf16_autocast(monkeypatch, in_pieces):
    import hyena_glt.model.hyena as hyena

    if in_pieces:  # the megabase path: chunks of 8 positions, channel groups of 1
        monkeypatch.setattr(hyena, "_GROUP_ELEMENTS", 2 * 8 * 3 * 8)
    op = HyenaOperator(8, filter_scale=32).eval()
    u = torch.randn(2, 33, 8)
    with torch.no_grad():
        ref = op(u)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = op(u, consume_input=True)
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low.float(), ref, atol=0.05, rtol=0.05)
    # the residual stream keeps fp32 when a block adds the operator's bf16 output into it in place
    block = Block(8, 16, op).eval()
    with torch.no_grad():
        ref = block(u)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x = u.clone()
            low = block(x, consume_input=True)
    assert low.dtype == torch.float32 and (low.data_ptr() == x.data_ptr()) == in_pieces
    assert torch.allclose(low, ref, atol=0.05, rtol=0.05)


# Pieces of the megabase path (2 records x 64 projection rows): channel groups of 7 (16 = 7 + 7 + 2) at FFT
# size 600, or all 16 channels in one group; positions in blocks of 64 (CPU's cache-sized blocks), or as many
# as the limit allows (65 or 272, as on GPUs), the short conv's look-back carried from block to block.
@pytest.mark.parametrize("limit", [2 * 600 * 7, 2 * 64 * (256 + 16)])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("project_block", [64, 0])
def test_chunked_inference_equals_unchunked(monkeypatch, bidirectional, limit, project_block):
    import hyena_glt.model.hyena as hyena

    monkeypatch.setattr(hyena, "_PROJECT_BLOCK", project_block)
    monkeypatch.setattr(hyena, "_NARROW_D", 0)  # blocks of _PROJECT_BLOCK positions in these narrow layers too
    torch.manual_seed(0)
    block = Block(16, 32, HyenaOperator(16, order=3, filter_scale=64, bidirectional=bidirectional)).eval()
    u = torch.randn(2, 300, 16)
    mask = torch.ones(2, 300, dtype=torch.bool)
    mask[1, 250:] = False  # a padded record: its padding must not reach it in pieces either
    with_autograd = block(u, mask).detach()
    with torch.no_grad():
        whole = block(u, mask)
        assert torch.allclose(whole, with_autograd, atol=1e-6)  # the no-grad path equals the autograd one
        x = u.clone()  # in one pass, a block that may consume its input has the output projection add into it
        one_pass = block(x, mask, consume_input=True)
        assert one_pass.data_ptr() == x.data_ptr() and torch.allclose(one_pass, with_autograd, atol=1e-6)
        monkeypatch.setattr(hyena, "_FILTER_CACHE_BYTES", 1000)  # spectra per channel group, not kept whole
        monkeypatch.setattr(hyena, "_TAP_ROWS", 64)  # filter taps in chunks of 64 lags
        monkeypatch.setattr(hyena, "_GROUP_ELEMENTS", limit)
        monkeypatch.setattr(hyena, "_MLP_ROWS", 2 * 70)  # MLP rows in chunks of 70 positions
        chunked = block(u, mask)
        norm = block.norm1(u)
        kept = norm.clone()
        alone = block.mixer(norm, mask)
        assert torch.equal(norm, kept)  # the operator's input is left alone unless it may be consumed
        consumed = block.mixer(norm, mask, consume_input=True)
        assert consumed.data_ptr() == norm.data_ptr() and torch.equal(consumed, alone)
        # A block that may consume its input adds the residual branch into it, normalising block by block
        x = u.clone()
        residual = block(x, mask, consume_input=True)
        assert residual.data_ptr() == x.data_ptr()
    assert torch.allclose(whole, chunked, atol=1e-5)
    assert torch.allclose(whole, residual, atol=1e-5)
    assert not torch.equal(u, chunked)  # the block's input itself was not updated in place


@pytest.mark.parametrize("length", [37, 20, 37, 5, 64])
def test_fft_conv_pads_into_a_scratch_buffer_with_a_zero_tail(monkeypatch, length):
    """Where malloc is not tuned, CPU inference pads FFT inputs into one reused buffer, whose zero tail is
    written again whenever the shape changes (the lengths above shrink and grow through the same buffer)."""
    import hyena_glt.model.hyena as hyena

    monkeypatch.setattr(hyena, "allocator_tuned", lambda: False)
    g = torch.Generator().manual_seed(1)
    # garbage in the whole buffer first, as another shape's use would leave it
    with torch.inference_mode():
        hyena._zero_padded(torch.randn(2, 3, 128, generator=g) + 5, 128)
        for previous in (64, length):
            v = torch.randn(2, 3, previous, generator=g)
            h = torch.randn(3, previous, generator=g) / previous ** 0.5
            skip = torch.randn(3, generator=g)
            got = fft_conv(v, torch.fft.rfft(h, n=128), 128, skip).clone()
            assert torch.allclose(got, direct_conv(v, h) + v * skip[:, None], atol=1e-5)
        padded = hyena._zero_padded(v, 128)
        assert padded.data_ptr() == hyena._zero_padded(v, 128).data_ptr()  # the same buffer, call after call
        assert torch.equal(padded, torch.nn.functional.pad(v, (0, 128 - length)))
    monkeypatch.setattr(hyena, "allocator_tuned", lambda: True)  # tuned malloc: a new padded tensor each time
    with torch.inference_mode():
        assert torch.equal(hyena._zero_padded(v, 128), padded)


@pytest.mark.parametrize("tuned", [True, False])
def test_batches_of_short_records_are_projected_in_blocks_where_malloc_is_not_tuned(monkeypatch, tuned):
    """Untuned malloc: batches of records up to _PROJECT_BLOCK units are projected by blocks of about that many
    (batch x position) rows into a reused buffer, and big FFT convolutions run by channel groups (the last one
    short); the operator's output is the same either way."""
    import hyena_glt.model.hyena as hyena

    monkeypatch.setattr(hyena, "_NARROW_D", 0)  # blocks of _PROJECT_BLOCK rows in this narrow layer too
    torch.manual_seed(0)
    op = HyenaOperator(8).eval()
    u = torch.randn(8, 200, 8)
    with torch.no_grad():
        monkeypatch.setattr(hyena, "allocator_tuned", lambda: True)
        assert hyena._project_block(u) is None
        want = op(u)
        monkeypatch.setattr(hyena, "allocator_tuned", lambda: tuned)
        assert hyena._project_block(u) == (None if tuned else 128)  # 1024 rows / 8 records: 128 positions
        assert hyena._project_block(u[:5]) is None  # 5 x 200 rows: one matmul
        assert torch.allclose(op(u), want, atol=1e-6, rtol=0)
        monkeypatch.setattr(hyena, "_FFT_GROUP_BYTES", 8 * 3 * 400 * 4)  # FFTs of 400: groups of 3 channels
        assert hyena._fft_group(u, 8, 400) == (None if tuned else 3)
        assert torch.allclose(op(u), want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("k,length", [(1, 9), (3, 9), (4, 9), (4, 2)])
def test_short_conv_trains_and_infers_the_same_convolution(k, length):
    """Training runs a grouped conv1d, inference shifted multiply-adds: both must be the causal depthwise
    convolution, with the gradients of the sum written out tap by tap (the slow reference)."""
    torch.manual_seed(0)
    z = torch.randn(2, 5, length, requires_grad=True)
    weight = torch.randn(5, k, requires_grad=True)
    bias = torch.randn(5, requires_grad=True)
    want = bias[:, None] + sum(torch.nn.functional.pad(z[..., :length - j] * weight[:, k - 1 - j, None], (j, 0))
                               for j in range(min(k, length)))
    from hyena_glt.model.hyena import causal_depthwise_conv

    got = causal_depthwise_conv(z, weight, bias)
    assert torch.allclose(got, want, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(causal_depthwise_conv(z, weight, bias), want, atol=1e-6)
    grad = torch.randn_like(want)
    expected = torch.autograd.grad(want, (z, weight, bias), grad)
    for g, e in zip(torch.autograd.grad(got, (z, weight, bias), grad), expected):
        assert torch.allclose(g, e, atol=1e-5)


@pytest.mark.parametrize("short_conv", [1, 3, 4])
def test_projection_in_blocks_equals_whole(monkeypatch, short_conv):
    """CPU inference projects and short-convolves blocks of positions, carrying the conv's look-back."""
    import hyena_glt.model.hyena as hyena

    monkeypatch.setattr(hyena, "allocator_tuned", lambda: True)
    monkeypatch.setattr(hyena, "_NARROW_D", 0)  # blocks of _PROJECT_BLOCK positions in this narrow layer too
    torch.manual_seed(0)
    op = HyenaOperator(8, short_conv=short_conv).eval()
    u = torch.randn(2, 300, 8)
    with torch.no_grad():
        want = hyena.causal_depthwise_conv(op.in_proj(u).transpose(1, 2), op.short_conv.weight.squeeze(1),
                                           op.short_conv.bias)
        for block in (64, 2):  # 4 blocks of 64 and one of 44; blocks shorter than the look-back
            monkeypatch.setattr(hyena, "_PROJECT_BLOCK", block)
            got = op._project(u)
            assert got.shape == want.shape
            assert torch.allclose(got, want, atol=1e-6, rtol=0)
        monkeypatch.setattr(hyena, "_PROJECT_BLOCK", 1024)  # whole: no blocks
        assert torch.allclose(op._project(u), want, atol=1e-6, rtol=0)
    # blocks of _PROJECT_BLOCK positions from _NARROW_D channels up; narrower layers take proportionally longer
    monkeypatch.setattr(hyena, "_NARROW_D", 128)
    with torch.no_grad():
        assert [hyena._project_block(torch.empty(1, 10_000, d)) for d in (32, 96, 128, 256)] == [4096, 1024, 1024,
                                                                                                  1024]
        assert hyena._project_block(torch.empty(1, 4096, 32)) is None  # one block: projected whole


@pytest.mark.parametrize("bidirectional,window", [(False, 0), (True, 0), (False, 16), (True, 16)])
def test_short_records_by_matrices_equal_ffts(monkeypatch, bidirectional, window):
    import hyena_glt.model.hyena as hyena

    torch.manual_seed(3)
    op = HyenaOperator(8, order=3, bidirectional=bidirectional, filter_scale=32, window=window).eval()
    u = torch.randn(13, 50, 8)  # 13 records of 50 units: the matrices are used (4 x 13 >= 50)
    mask = torch.ones(13, 50, dtype=torch.bool)
    mask[1, 41:] = False  # a padded record
    outputs = []
    for limit in (128, 0):  # Toeplitz matmuls, then FFTs
        monkeypatch.setattr(hyena, "_DIRECT_LENGTH", limit)
        with torch.no_grad():
            outputs.append(op(u, mask))
        assert any(key[0] == "matrices" for key in op.filter._cache) == (limit > 0)  # the path taken
        op.filter._cache.clear()
    monkeypatch.setattr(hyena, "_DIRECT_LENGTH", 128)

    def no_matrices(*args, **kwargs):
        raise AssertionError("autograd took the Toeplitz matmuls")

    monkeypatch.setattr(hyena.ImplicitFilter, "matrices", no_matrices)
    trained = op(u, mask)  # autograd takes the FFTs (their backward is the cheaper one)
    assert all(torch.allclose(o, trained, atol=2e-5) for o in outputs)
    trained.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in op.filter.mlp.parameters())


def test_inference_keeps_the_residual_stream_in_fp32_under_autocast():

    torch.manual_seed(0)
    block = Block(16, 32, HyenaOperator(16, filter_scale=64)).eval()
    u = torch.randn(2, 100, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trained_way = block(u).detach()  # autograd path: x + h promotes to fp32
        with torch.no_grad():
            inferred = block(u)
    assert trained_way.dtype == inferred.dtype == torch.float32
    assert torch.allclose(inferred, trained_way, atol=1e-2)


def _reference_operator(op: HyenaOperator, u: torch.Tensor, window: int) -> torch.Tensor:
    """The operator written out step by step, with direct convolutions and every tap at a lag of `window`
    or more set to zero (order 2)."""
    d, length = op.d, u.shape[1]
    k = op.short_conv.weight.shape[-1]
    z = torch.nn.functional.conv1d(torch.nn.functional.pad(op.in_proj(u).transpose(1, 2), (k - 1, 0)),
                                   op.short_conv.weight, op.short_conv.bias, groups=3 * d)
    x0, x1, v = z.split(d, dim=1)
    taps = op.filter.taps(length, torch.device("cpu")).clone()
    taps[:, window:] = 0
    v = v * x1
    back = taps[d:] if op.bidirectional else None
    v = direct_conv(v, taps[:d], back) + v * op.filter.skip[:, None]
    return op.out_proj((v * x0).transpose(1, 2))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_windowed_operator_equals_truncated_filter(bidirectional):
    torch.manual_seed(1)
    op = HyenaOperator(6, bidirectional=bidirectional, filter_scale=8, window=8).eval()
    u = torch.randn(2, 45, 6)
    with torch.no_grad():
        got = op(u)
        want = _reference_operator(op, u, 8)
        assert torch.allclose(got, want, atol=1e-5)
        # A record no longer than the window sees every lag: the same as an unwindowed operator.
        op.window = 0
        full = op(u[:, :8])
        op.window = 8
        assert torch.allclose(op(u[:, :8]), full, atol=1e-6)
    # Outputs depend on inputs at most window - 1 (+ short conv) units away, and no further.
    changed = u.clone()
    changed[:, 40:] += 1.0
    with torch.no_grad():
        moved = (op(changed) - got).abs().amax(dim=(0, 2)) > 1e-6
    first = 40 - 7 if bidirectional else 40  # backward taps reach 7 units ahead; the short conv is causal
    assert not moved[:first].any() and moved[first:].all()


def test_mlp_inference_through_onednn_equals_nn_linear(monkeypatch):
    """CPU fp32 inference runs the MLP through oneDNN's linear with a fused GELU (where this torch has it):
    same result as nn.Linear + F.gelu, on the strided row chunks that blocks pass; autocast falls back."""
    import torch.nn.functional as F

    import hyena_glt.model.hyena as hyena

    torch.manual_seed(0)
    mlp = hyena.MLP(32, 128).eval()
    x = torch.randn(2, 50, 32)[:, 5:45]
    want = mlp.fc2(F.gelu(mlp.fc1(x))).detach()
    calls = []
    real = hyena._onednn_linear

    def counting(*args):
        calls.append(args[3])
        return real(*args)

    monkeypatch.setattr(hyena, "_onednn_linear", counting)
    with torch.no_grad():
        got = mlp(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = mlp(x)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)
    assert calls == (["gelu", "none"] if hyena._onednn_agrees() else [])
    assert low.dtype == torch.bfloat16  # under autocast nn.Linear runs, in bf16


def test_filter_cache_budget_is_shared_and_big_spectra_are_cached_at_their_second_use(monkeypatch):
    """Spectra bigger than _WHOLE_SPECTRUM_BYTES are cached as taps first and whole at the second forward of that
    length; all filters' caches together stay within _FILTER_CACHE_BYTES; every path gives the same output."""
    import hyena_glt.model.hyena as hyena

    torch.manual_seed(0)
    ops = [HyenaOperator(8, filter_scale=32).eval() for _ in range(2)]
    u = torch.randn(1, 200, 8)
    n = fast_fft_size(2 * 200 - 1)
    spectrum_bytes = 8 * (n // 2 + 1) * 8
    with torch.no_grad():
        want = [op(u) for op in ops]  # small spectra: cached whole at once
    assert all([key[0] for key in op.filter._cache] == ["spectra"] for op in ops)
    for op in ops:
        op.filter._cache.clear()
    monkeypatch.setattr(hyena, "_FILTERS", hyena.weakref.WeakSet())  # (models of other tests do not count)
    monkeypatch.setattr(hyena, "_WHOLE_SPECTRUM_BYTES", 1000)  # as if megabase
    monkeypatch.setattr(hyena, "_FILTER_CACHE_BYTES", spectrum_bytes + 8 * 200 * 4)  # one spectrum and one taps
    with torch.no_grad():
        for forward in range(3):
            got = [op(u) for op in ops]
            assert all(torch.allclose(g, w, atol=1e-6) for g, w in zip(got, want))
            kinds = [[key[0] for key in op.filter._cache] for op in ops]
            # first forward: both keep their taps; second: the first filter's spectrum replaces its taps, the
            # second's does not fit beside it, so it keeps its taps (and transforms them per forward)
            assert kinds == ([["taps"], ["taps"]] if forward == 0 else [["spectra"], ["taps"]])
            assert hyena._cached_bytes() <= hyena._FILTER_CACHE_BYTES
