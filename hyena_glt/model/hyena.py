"""The Hyena operator (Poli et al. 2023, as in HyenaDNA) and the blocks built from it.

    u (B, L, D) ─ in_proj ─► (B, (order+1)·D, L) ─ short causal depthwise conv ─► x_0 … x_{order-1}, v
    for i = order-1 … 1:   v = long_conv_i(v · x_i)      # implicit filter, FFT, fp32
    y = out_proj(v · x_0)

The long filter h(t) of each channel is implicit: features of the lag t → small MLP with sine activations
→ times an exponential decay window. The features depend on t alone (never on L), so a filter for length L
is the first L taps of the filter for any longer length: models run on any length, and a padded record
gives the same outputs as the record alone. Bidirectional operators also have taps at negative lags.
"""

from __future__ import annotations

import functools
import math
import threading
import weakref

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..runtime import allocator_tuned, autocast_on
from .positions import angles

# Memory bounds for inference on megabase inputs (none of them applies when autograd is recording):
# the Hyena operator projects chunks of positions, and convolves groups of channels, of at most this many
# elements at a time. On GPUs, whose kernels want large operands and whose memory is not the host's, the
# bound follows the device's memory (see _piece_elements): pieces cost copies and launches (H200, small
# preset, 16 x 8k units: 77.3 -> 72.3 ms a forward in one pass), so they are only taken where memory needs them.
_GROUP_ELEMENTS = 1 << 24
_GROUP_ELEMENTS_GPU = None  # None: from the device's memory; tests set a number
# filter-derived tensors cached for inference (spectra, taps, convolution matrices) may hold this many bytes,
# over all filters of the process together: tiny preset at 1 M units, two 1 GiB spectra (whose transform is
# a third of a forward's FFTs); small at 128k, eight of 256 MB. What does not fit is recomputed each forward,
# a spectrum then per channel group from its taps, which are half its size.
_FILTER_CACHE_BYTES = 5 << 29
# spectra up to this size are built whole (and cached) at their first use (see ImplicitFilter.spectra),
_WHOLE_SPECTRUM_BYTES = 1 << 28
# filter taps are generated over this many lags at a time,
_TAP_ROWS = 1 << 14
# and blocks run their MLP over at most this many (batch x position) rows at a time: the (rows x d_inner)
# hidden activations then stay in cache (small preset, 8 x 1024 units: 941 -> 753 ms a forward with 2048
# rows; 1024 measured as fast or faster). GPUs take up to _MLP_ROWS_GPU rows at once: small chunks would
# only add kernel launches and starve their matmuls.
_MLP_ROWS = 1024
_MLP_ROWS_GPU = 1 << 18
# Batches of records up to this long, and at least a quarter as many records as units, are convolved by a
# batched matmul with each channel's (L x L) Toeplitz matrix instead of FFTs: 226 windows x 64 channels x 70
# units take 1.2 ms against 5.7 ms, 32 x 128 x 128 1.5 against 2.1; with fewer records each matrix is
# read for too little work (16 x 128 x 128: 1.1 against 0.9), and at 300 units FFTs are as fast.
# Inference only: in training, the matrices' backward (a (C, L, L) gradient gathered back into the taps) costs
# more than the FFTs' (tiny, a 64 x 128 training step 302 -> 230 ms by FFTs; 64 x 70 level).
_DIRECT_LENGTH = 128
# CPU inference projects (and short-convolves) this many positions at a time (see _projected_blocks); 0: all.
# Layers narrower than _NARROW_D channels take proportionally longer blocks: 1k positions of the local encoder's
# 32 channels were mostly per-operation overhead (tiny static:4 at 32k units, its block: 13.9 -> 12.3 ms with
# 4k-position blocks, 12.5 with 8k).
_PROJECT_BLOCK = 1024
_NARROW_D = 128
# padding of channel-major rows whose length is a multiple of 4 KB (see _unaliased)
_ROW_PAD = 272
# where malloc is not tuned, CPU inference convolves channel groups of about this many bytes (see _fft_group)
_FFT_GROUP_BYTES = 2 << 20
# CPU inference reuses work buffers up to this size (see _scratch)
_SCRATCH_BYTES = 1 << 26
_SCRATCH = threading.local()


@functools.lru_cache(maxsize=None)
def fast_fft_size(n: int) -> int:
    """Smallest size ≥ n of the form 2^a·3^b·5^c with 2^a ≥ 32, or a power of two: FFT libraries
    are fastest on such sizes. A 3^b·5^c size with few factors of two runs 1.5-3x slower than one a little
    larger with more (MKL, 2-core AMD EPYC, an rfft-multiply-irfft of 32-128 channels: 10,125 samples 9.0 ms
    against 3.0 for 10,240; 33,750 15.3 against 10.5 for 34,560; 140,625 36 against 12 for 144,000)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        odd = p5
        while odd < best:
            size = odd * 32
            while size < n:
                size *= 2
            best = min(best, size)
            odd *= 3
        p5 *= 5
    return best


def _unaliased(length: int) -> int:
    """A row stride of at least ``length`` floats for (…, channels, length) buffers that are read across
    channels (transposed): rows a large power of two apart share cache sets, and reading position-major
    across them thrashes (1 M units, 128 channels: a transposed multiply of 43k positions takes 12.7 ms with
    rows 4 MB apart, 3.7 ms with 1,088 bytes more)."""
    return length + _ROW_PAD if length % 1024 == 0 else length


def _scratch(name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised work buffer for inference. On CPU, one per ``name`` (and thread) is kept from layer to
    layer and forward to forward, up to _SCRATCH_BYTES: with glibc's default malloc, the large temporaries
    that every layer frees are handed back to the system and faulted in again by the next (tiny preset,
    1 x 32k units, in a process that has not tuned malloc as the CLI does: 82k -> 61k page faults, ~318 -> ~302
    ms a forward). Elsewhere (and above that size) a new tensor. The caller must not let a scratch tensor (or
    a view of one) escape."""
    numel = math.prod(shape)
    if device.type != "cpu" or numel * dtype.itemsize > _SCRATCH_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    # Inference-mode tensors cannot be updated outside inference mode (a no-grad evaluation), so each mode
    # has its own buffers.
    key = (name, dtype, torch.is_inference_mode_enabled())
    buffers = _SCRATCH.__dict__
    buffer = buffers.get(key)
    if buffer is None or buffer.numel() < numel:
        buffer = buffers[key] = torch.empty(numel, dtype=dtype, device=device)
    return buffer[:numel].view(shape)


def _piece_elements(device: torch.device) -> int:
    """How many elements of the (B, (order+1)·D, L) projection one pass (or one piece) may hold on ``device``.
    One pass peaks at about 3-4 such tensors of fp32, so a CUDA device's memory / 128 keeps it near a tenth
    of the device (H200: 1.1 G elements, so 1 M units of the tiny preset run in one pass)."""
    if device.type == "cpu":
        return _GROUP_ELEMENTS
    if _GROUP_ELEMENTS_GPU:
        return _GROUP_ELEMENTS_GPU
    if device.type == "cuda":
        return max(1 << 26, _cuda_memory(device.index if device.index is not None else torch.cuda.current_device()) // 128)
    return 1 << 26


@functools.lru_cache(maxsize=None)
def _cuda_memory(index: int) -> int:
    return torch.cuda.get_device_properties(index).total_memory


def fft_conv(v: torch.Tensor, k_f: torch.Tensor, n: int, skip: torch.Tensor,
             padded: torch.Tensor | None = None) -> torch.Tensor:
    """y = (v ⊛ h)[:L] + skip·v over the last dim, in fp32. v (B, C, L); k_f = rfft(h, n) (C, n//2+1).
    ``padded`` (inference): a (B, ≥C, n) float32 work space for the zero-padded input."""
    length = v.shape[-1]
    v32 = v.float()
    if padded is not None:
        # The megabase path convolves channel group after channel group, padding each into the same buffer.
        # The FFTs' outputs are new tensors: torch's CPU FFTs write an explicit output (out=) by computing into
        # a new tensor and copying it over (tiny, 1 M units, groups of 8 x 2 M points: 0.5 s of copies in a
        # 12.5 s forward).
        real = padded[:, :v.shape[1]]
        real[..., :length] = v32
        real[..., length:].zero_()
        return torch.fft.irfft(torch.fft.rfft(real).mul_(k_f), n=n)[..., :length].addcmul_(v32, skip[:, None])
    if torch.is_grad_enabled():
        spectrum = torch.fft.rfft(v32, n=n)
        return torch.addcmul(torch.fft.irfft(spectrum * k_f, n=n)[..., :length], v32, skip[:, None])
    # Inference: reuse the buffers (the result is a view of the first L samples of the irfft output).
    spectrum = torch.fft.rfft(_zero_padded(v32, n))
    return torch.fft.irfft(spectrum.mul_(k_f), n=n)[..., :length].addcmul_(v32, skip[:, None])


def _zero_padded(v: torch.Tensor, n: int) -> torch.Tensor:
    """v (B, C, L) zero-padded to n samples, for an inference rfft (the FFT reads the same numbers either way).
    rfft(v, n=n) pads into a new tensor at each call, which glibc's default malloc hands back to the system
    and faults in again; so where malloc is not tuned (see runtime.allocator_tuned), CPU inference pads into a
    scratch buffer whose zero tail is kept from call to call (written once per shape), and copies only v."""
    shape, length = (*v.shape[:-1], n), v.shape[-1]
    if v.device.type != "cpu" or allocator_tuned() or math.prod(shape) * v.dtype.itemsize > _SCRATCH_BYTES:
        return F.pad(v, (0, n - length))
    buffer = _scratch("fft zero-padded input", shape, v.dtype, v.device)
    state, key = (buffer.data_ptr(), shape, length), ("fft zero-padded input: tail", torch.is_inference_mode_enabled())
    if _SCRATCH.__dict__.get(key) != state:  # another shape (or buffer) since: zero its tail
        buffer[..., length:].zero_()
        _SCRATCH.__dict__[key] = state
    buffer[..., :length] = v
    return buffer


def matrix_conv(v: torch.Tensor, m: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """y = v ⊛ h + skip·v in fp32 for short records, with m (C, L, L) the convolution matrices of
    ``ImplicitFilter.matrices`` (m[c, s, t] = h_c[t - s]). v (B, C, L) → (B, C, L). Inference only (training
    takes the FFTs; see _DIRECT_LENGTH)."""
    v32 = v.float()
    return torch.bmm(v32.transpose(0, 1), m).transpose(0, 1).addcmul_(v32, skip[:, None])


def direct_conv(v: torch.Tensor, h: torch.Tensor, h_back: torch.Tensor | None = None) -> torch.Tensor:
    """Slow reference: y[t] = Σ_s v[s]·h[t-s] (and h_back[s-t] for s > t). Used by the tests."""
    length = v.shape[-1]
    lag = torch.arange(length)[:, None] - torch.arange(length)[None, :]  # t - s
    taps = h[:, lag.clamp(min=0)] * (lag >= 0)
    if h_back is not None:
        taps = taps + h_back[:, (-lag).clamp(min=0)] * (lag < 0)
    return torch.einsum("bcs,cts->bct", v.double(), taps.double()).to(v.dtype)


def causal_depthwise_conv(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Causal depthwise conv over L: out[c, t] = bias[c] + Σ_j weight[c, k-1-j]·z[c, t-j]. z (B, C, L),
    weight (C, k). Inference: k shifted multiply-adds in place, on CPU much faster than a grouped conv1d.
    Training: the grouped conv1d, whose backward is one op where k shifted copies would each keep a padded
    tensor for autograd (a tiny 64 x 500 training step on 2 CPU cores, median of 6: 0.94 -> 0.84, 0.85 -> 0.81 and
    0.85 -> 0.82 s in three runs)."""
    k = weight.shape[1]
    if torch.is_grad_enabled() and (z.requires_grad or weight.requires_grad or bias.requires_grad):
        return F.conv1d(F.pad(z, (k - 1, 0)), weight[:, None].to(z.dtype), bias.to(z.dtype), groups=weight.shape[0])
    # z·w then += bias: addcmul with a broadcast bias as its first operand runs ~3x slower on CPU.
    out = (z * weight[:, k - 1:].to(z.dtype)).add_(bias.to(z.dtype)[:, None])
    for j in range(1, min(k, z.shape[-1])):
        out[..., j:].addcmul_(z[..., :-j], weight[:, k - 1 - j, None].to(z.dtype))
    return out


class Sin(nn.Module):
    def __init__(self, dim: int, freq: float):
        super().__init__()
        self.freq = nn.Parameter(torch.full((dim,), float(freq)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


# the filters holding cached tensors (see _FILTER_CACHE_BYTES)
_FILTERS: weakref.WeakSet = weakref.WeakSet()


def _cached_bytes(exclude=None) -> int:
    return sum(v.numel() * v.element_size() for f in list(_FILTERS) if f is not exclude for v in f._cache.values())


class ImplicitFilter(nn.Module):
    """h(t) for t = 0..L-1 (and t = -1..-(L-1) when bidirectional), for `channels` channels."""

    def __init__(self, channels: int, dim: int, layers: int, bands: int, scale: int, freq: float,
                 bidirectional: bool):
        super().__init__()
        self.channels, self.scale, self.bands, self.bidirectional = channels, scale, bands, bidirectional
        out = channels * (2 if bidirectional else 1)
        mlp = [nn.Linear(1 + 2 * bands, dim), Sin(dim, freq)]
        for _ in range(layers):
            mlp += [nn.Linear(dim, dim), Sin(dim, freq)]
        mlp.append(nn.Linear(dim, out, bias=False))
        self.mlp = nn.Sequential(*mlp)
        # Decay rates spread from fast (1% at 0.3·scale) to slow (1% at 1.5·scale); the small shift keeps
        # some reach beyond the scale, as in HyenaDNA. Fixed, like HyenaDNA's (modulation_lr = 0).
        decay = torch.linspace(math.log(1e-2) / 1.5, math.log(1e-2) / 0.3, channels).abs()
        self.register_buffer("decay", decay.repeat(2 if bidirectional else 1), persistent=True)
        self.shift = 0.05
        self.skip = nn.Parameter(torch.randn(channels))  # the "D" term: y += skip · v
        self._cache: dict = {}

    def taps(self, length: int, device: torch.device) -> torch.Tensor:
        """(channels·(1|2), length) taps at lags 0..length-1 (backward filter stacked second). Without
        autograd they are computed over chunks of lags, which bounds memory for megabase lengths."""
        step = length if torch.is_grad_enabled() else _TAP_ROWS
        body, last = self.mlp[:-1], self.mlp[-1]
        out = None
        for start in range(0, length, step):
            t = torch.arange(start, min(start + step, length), device=device, dtype=torch.float32) / self.scale
            phase = 2 * math.pi * t[:, None] * torch.arange(1, self.bands + 1, device=device, dtype=torch.float32)
            hidden = body(torch.cat([t[:, None], torch.sin(phase), torch.cos(phase)], dim=-1))
            h = torch.mm(last.weight, hidden.t())  # (channels, lags): the layout the FFT wants, no transpose
            # Decay window; the exponent is clamped so far lags never produce slow subnormal floats.
            window = torch.exp((-self.decay[:, None] * t[None, :]).clamp_(min=-80.0)) + self.shift
            if step >= length:
                return h * window
            out = h.new_empty(h.shape[0], length) if out is None else out
            torch.mul(h, window, out=out[:, start:start + h.shape[1]])
        return out

    def spectra(self, length: int, n: int, device: torch.device):
        """A function channels (slice) → rfft of those channels' filters at FFT size n, (c, n//2+1) complex64.

        Computed once per forward, and cached in eval mode without autograd (keyed on the parameters'
        storage and version, so weight updates invalidate it) within the cache budget. Spectra up to
        _WHOLE_SPECTRUM_BYTES are cached whole at once. A bigger (megabase) one costs more to build whole than
        to transform per channel group (its fresh pages alone: ~1.5 s a GB on the 2-core EPYC), so its first
        forward caches only the taps, transformed per group; a second forward at that length builds the whole
        spectrum from them and caches it instead.
        """
        with torch.autocast(device_type=device.type, enabled=False):
            key = self._cache_key("spectra", length, n, device)
            cached = self._cache.get(key)
            if cached is not None:
                return lambda rows: cached[rows]
            size = self.channels * (n // 2 + 1) * 8
            taps_key = self._cache_key("taps", length, device)
            h = self._cache.pop(taps_key, None)
            again = h is not None
            if h is None:
                h = self.taps(length, device)
            small = size <= _WHOLE_SPECTRUM_BYTES
            if torch.is_grad_enabled() or ((small or again) and (key is None or self._fits(key, size))):
                spectrum = self._whole_spectrum(h, n)
                self._remember(key, spectrum)
                return lambda rows: spectrum[rows]
            self._remember(taps_key, h)
        return lambda rows: self._rfft(h, rows, n)
    def matrices(self, length: int, taps: int, device: torch.device):
        """A function channels (slice) → (c, L, L) convolution matrices, m[c, s, t] = h_c[t - s] for lags
        0 ≤ t - s < taps (and the backward filter at lags -taps < t - s < 0 when bidirectional), so that
        ``v @ m`` is the long convolution of a record of L units. Cached like the spectra."""
        with torch.autocast(device_type=device.type, enabled=False):
            key = self._cache_key("matrices", length, taps, device)
            cached = self._cache.get(key)
            if cached is None:
                h = self.taps(taps, device)
                pos = torch.arange(length, device=device)
                lag = pos[None, :] - pos[:, None]  # [s, t] = t - s
                cached = h[:self.channels][:, lag.clamp(0, taps - 1)] * ((lag >= 0) & (lag < taps))
                if self.bidirectional:
                    back = h[self.channels:][:, (-lag).clamp(0, taps - 1)] * ((lag < 0) & (lag > -taps))
                    cached = cached + back
                self._remember(key, cached)
        return lambda rows: cached[rows]

    def _cache_key(self, *parts):
        """A cache key for filter-derived tensors, None (no caching) while training or under autograd; the
        parameters' storage and version are part of it, so weight updates invalidate it. (Parameters moved to
        a device inside inference_mode are inference tensors, which keep no version: their storage is the key.)"""
        if self.training or torch.is_grad_enabled():
            return None
        return (*parts, tuple((p.data_ptr(), 0 if p.is_inference() else p._version) for p in self.parameters()))

    def _fits(self, key, size: int) -> bool:
        """Whether a tensor of ``size`` bytes may be cached under ``key`` (this filter's other entries would
        make room first)."""
        return key is not None and _cached_bytes(exclude=self) + size <= _FILTER_CACHE_BYTES

    def _remember(self, key, value: torch.Tensor) -> None:
        if key is None:
            return
        size = value.numel() * value.element_size()
        if len(self._cache) >= 4 or _cached_bytes() + size > _FILTER_CACHE_BYTES:
            self._cache.clear()  # entries for other lengths (or old weights) go first
        if self._fits(key, size):
            self._cache[key] = value
            _FILTERS.add(self)

    def _whole_spectrum(self, h: torch.Tensor, n: int) -> torch.Tensor:
        """The (channels, n//2+1) spectrum of all filters; past _GROUP_ELEMENTS points, transformed a group of
        channels at a time into one tensor, so megabase spectra need no whole-size temporaries."""
        group = max(1, _GROUP_ELEMENTS // n)
        if torch.is_grad_enabled() or group >= self.channels:
            return self._rfft(h, slice(0, self.channels), n)
        out = torch.empty(self.channels, n // 2 + 1, dtype=torch.complex64, device=h.device)
        for c in range(0, self.channels, group):
            rows = slice(c, min(c + group, self.channels))
            self._rfft(h, rows, n, out=out[rows])
        return out

    def _rfft(self, h: torch.Tensor, rows: slice, n: int, out: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(device_type=h.device.type, enabled=False):
            fwd = h[rows]
            if self.bidirectional:
                back = h[self.channels:][rows]
                # Negative lags -1..-(L-1) wrap around to the end of the circular buffer.
                length = h.shape[1]
                gap = h.new_zeros(fwd.shape[0], n - 2 * length + 1)
                fwd = torch.cat([fwd, gap, back[:, 1:].flip(-1)], dim=-1)
            return torch.fft.rfft(fwd, n=n) if out is None else torch.fft.rfft(fwd, n=n, out=out)

    def spectrum(self, length: int, n: int, device: torch.device) -> torch.Tensor:
        """The whole (channels, n//2+1) spectrum."""
        return self.spectra(length, n, device)(slice(0, self.channels))

    def train(self, mode: bool = True):
        self._cache.clear()
        return super().train(mode)


class HyenaOperator(nn.Module):
    """The Hyena operator. ``window`` > 0 makes it local (the patched model's unit-level blocks): its long
    filters keep only lags below ``window``, which also shortens the FFTs from 2L to L + window."""

    def __init__(self, d: int, order: int = 2, filter_dim: int = 64, filter_layers: int = 2,
                 filter_bands: int = 2, filter_scale: int = 2048, filter_freq: float = 10.0,
                 short_conv: int = 3, bidirectional: bool = False, dropout: float = 0.0, window: int = 0):
        super().__init__()
        self.d, self.order, self.bidirectional, self.window = d, order, bidirectional, window
        width = (order + 1) * d
        self.in_proj = nn.Linear(d, width)
        self.short_conv = nn.Conv1d(width, width, short_conv, groups=width)  # weights only; see causal_depthwise_conv
        self.filter = ImplicitFilter((order - 1) * d, filter_dim, filter_layers, filter_bands, filter_scale,
                                     filter_freq, bidirectional)
        self.out_proj = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, u: torch.Tensor, mask: torch.Tensor | None = None, consume_input: bool = False) -> torch.Tensor:
        """u (B, L, D) → (B, L, D). ``mask`` (B, L) bool marks real units; padding is zeroed before every
        long convolution so it cannot reach real units (it only could in the bidirectional case).
        ``consume_input``: u is the caller's scratch, and megabase inference may write its result over it."""
        return self._run(u, mask, consume_input)

    def add_residual_(self, x: torch.Tensor, norm: nn.Module, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Inference: x + self(norm(x), mask), the pre-norm block's residual branch. Where the megabase path
        runs, x itself is updated, block by block, and neither norm(x) nor x_0 is ever whole in memory (tiny,
        1 M units: two fewer (B, L, D) tensors, 512 MB each). Elsewhere x is updated too, by the output
        projection, except under autocast, where the result is a new tensor."""
        if self._in_pieces(x):
            return self._run(x, mask, True, norm=norm)
        if not autocast_on(x.device):  # the output projection adds into x (see _run)
            return self._run(norm(x), mask, True, residual=x)
        h = self._run(norm(x), mask, True)
        return x + h  # under autocast h is bf16/fp16; x keeps its precision

    def _in_pieces(self, u: torch.Tensor) -> bool:
        """Whether inference on u takes the megabase path (see _forward_in_pieces)."""
        batch, length, _ = u.shape
        return not torch.is_grad_enabled() and batch * length * (self.order + 1) * self.d > _piece_elements(u.device)

    def _run(self, u: torch.Tensor, mask: torch.Tensor | None, consume_input: bool, norm: nn.Module | None = None,
             residual: torch.Tensor | None = None):
        """forward, or with ``norm`` (megabase path only) u + self(norm(u)) written over u, or with ``residual``
        (inference, u's dtype) residual + self(u) written over residual."""
        batch, length, _ = u.shape
        order, d = self.order, self.d
        taps = min(length, self.window) if self.window else length
        # Linear (not circular) convolution of `taps` taps (each way, bidirectional) over L inputs: by FFTs,
        # or for short records by matmuls with Toeplitz matrices.
        matrices = length <= _DIRECT_LENGTH and 4 * batch >= length and not torch.is_grad_enabled()
        n = fast_fft_size(length + taps - 1)
        kernels = self.filter.matrices(length, taps, u.device) if matrices else self.filter.spectra(taps, n, u.device)
        skip = self.filter.skip.view(order - 1, d)
        keep = None if mask is None or not self.bidirectional else mask[:, None, :].to(u.dtype)
        conv = matrix_conv if matrices else functools.partial(fft_conv, n=n)
        if self._in_pieces(u):
            return self._forward_in_pieces(u, keep, kernels, conv, skip, n if not matrices else length,
                                           consume_input, norm)
        *xs, v = self._project(u).split(d, dim=1)
        # (a long record's projection is a scratch buffer: the first gate may go into its rows of v)
        reuse = _project_block(u) is not None
        for i in range(order - 1):
            v = v.mul_(xs[order - 1 - i]) if reuse and i == 0 else v * xs[order - 1 - i]
            if keep is not None:
                v = v * keep
            with torch.autocast(device_type=u.device.type, enabled=False):
                group = None if matrices or self.training else _fft_group(u, d, n)
                if group:  # channel group by channel group, through a reused input buffer, back into v's rows
                    padded = _scratch("fft input", (batch, group, n), torch.float32, u.device)
                    for c in range(0, d, group):
                        g = slice(c, min(c + group, d))
                        v[:, g] = fft_conv(v[:, g], kernels(slice(i * d + g.start, i * d + g.stop)), n, skip[i, g],
                                           padded=padded)
                else:
                    v = self.dropout(conv(v, kernels(slice(i * d, (i + 1) * d)), skip=skip[i])).to(xs[0].dtype)
        y = (v.mul_(xs[0]) if not v.requires_grad else v * xs[0]).transpose(1, 2)
        weight = self.out_proj.weight.t().expand(batch, -1, -1)
        if residual is not None:
            # The GEMM accumulates into the residual stream (beta = 1), then the bias: one pass over the (B, L, D)
            # output fewer than bias + GEMM into a new tensor and its sum with the residual (small, 8 x 1k units:
            # 645-718 -> 628-697 ms a forward; 1 x 1k 72-77 -> 72-73 ms).
            return torch.baddbmm(residual, y, weight, out=residual).add_(self.out_proj.bias)
        return torch.baddbmm(self.out_proj.bias, y, weight)

    def _project(self, u: torch.Tensor) -> torch.Tensor:
        """In-projection, then the short causal conv: (B, L, D) → (B, (order+1)·D, L). Channels-first: FFTs run
        over contiguous rows, and baddbmm reads/writes the transposed layout directly (no transposing copies)."""
        block = _project_block(u)
        if block is not None:  # ~1k positions (or batch x position rows) at a time (see _projected_blocks)
            shape = (u.shape[0], self.in_proj.out_features, _unaliased(u.shape[1]))
            out = _scratch("projection", shape, u.dtype, u.device)[..., :u.shape[1]]
            for _ in self._projected_blocks(u, block, into=out):
                pass
            return out
        if _use_onednn(u):
            # oneDNN's GEMM with the weight as its left operand writes the channels-first projection of all B·L
            # rows at once, as (C, B·L); the (B, C, L) view of it keeps each channel's positions contiguous, which
            # is all the short conv and the FFTs need. baddbmm's transposed batches ran at 95-170 GFLOP/s where
            # this runs at 180-200 (tiny, 64 x 300 units: 164 -> 149 ms a forward).
            batch, length, width = u.shape
            z = _onednn_linear(self.in_proj.weight, u.reshape(batch * length, width), None, "none", [], "")
            z = z.add_(self.in_proj.bias[:, None]).view(z.shape[0], batch, length).transpose(0, 1)
        else:
            z = torch.baddbmm(self.in_proj.bias[:, None], self.in_proj.weight.expand(u.shape[0], -1, -1),
                              u.transpose(1, 2))
        # Shifted multiply-adds on every device, though CUDA's grouped conv1d is ~3 % faster there (H200, small,
        # 16 x 8k: 77.3 -> 74.6 ms): its other summation order changes fp32 rounding, which flipped entropy patch
        # boundaries lying on the calibrated threshold, so GPU and CPU classified 2 of 328 records differently.
        return causal_depthwise_conv(z, self.short_conv.weight.squeeze(1), self.short_conv.bias)

    def _projected_blocks(self, u: torch.Tensor, block: int, into: torch.Tensor | None = None,
                          channels: slice = slice(None), norm: nn.Module | None = None):
        """Inference: yields (start, z) for blocks of ``block`` positions, z (B, C, n) the block's projection
        onto ``channels`` (default: all (order+1)·D) and short conv, in a buffer reused for the next block, or
        in ``into``'s positions. With ``norm``, each block of u is normalised first. On CPU, blocks of ~1k
        positions keep each block in cache for the conv's k passes, which over a whole (B, 3D, L) tensor would
        each go to memory (tiny, 1 x 32k: ~4 % a forward). The last k-1 projected positions of a block are
        carried in front of the next (zeros before the first), so the caller may overwrite a block of u once it
        has been yielded; the arithmetic, in its order, is causal_depthwise_conv's."""
        batch, length, _ = u.shape
        block = min(block, length)
        weight, conv_bias = self.short_conv.weight.squeeze(1)[channels], self.short_conv.bias[channels, None]
        k = weight.shape[1]
        # raw[..., front:front + n] holds the block's projection, raw[..., front - j] the position j before it;
        # front is a multiple of 16 floats, so the projection's rows start on 64-byte boundaries (GEMMs writing
        # misaligned rows ran ~1.4x slower).
        front = -(-(k - 1) // 16) * 16
        proj_weight, proj_bias = self.in_proj.weight[channels].expand(batch, -1, -1), self.in_proj.bias[channels, None]
        in_place = not autocast_on(u.device) and u.dtype == proj_weight.dtype  # (autocast ignores explicit outputs)
        raw = out = taps = None
        if in_place:
            raw = _scratch("projection carry", (batch, proj_weight.shape[1], front + block), u.dtype, u.device)
            raw[..., :front].zero_()
            out = into if into is not None else _scratch("projection block", (batch, raw.shape[1], block), u.dtype,
                                                         u.device)
            taps = [weight[:, k - 1 - j, None].to(u.dtype) for j in range(k)]  # the input j positions back
            conv_bias = conv_bias.to(u.dtype)
        for s in range(0, length, block):
            n = min(block, length - s)
            part = u[:, s:s + n] if norm is None else norm(u[:, s:s + n])
            if raw is not None and in_place:
                torch.baddbmm(proj_bias, proj_weight, part.transpose(1, 2), out=raw[..., front:front + n])
            else:
                z = torch.baddbmm(proj_bias, proj_weight, part.transpose(1, 2))
                if raw is None:  # the first block sets the dtype (bf16/fp16 under autocast)
                    raw = z.new_zeros(batch, z.shape[1], front + block)
                    out = z.new_empty(batch, z.shape[1], block) if into is None else into
                    taps = [weight[:, k - 1 - j, None].to(z.dtype) for j in range(k)]  # the input j positions back
                    conv_bias = conv_bias.to(z.dtype)
                raw[..., front:front + n] = z
            z = torch.mul(raw[..., front:front + n], taps[0], out=out[..., :n] if into is None else out[..., s:s + n])
            z.add_(conv_bias)
            for j in range(1, k):
                z.addcmul_(raw[..., front - j:front - j + n], taps[j])
            yield s, z
            if k > 1:
                raw[..., front - k + 1:front] = raw[..., front + n - k + 1:front + n].clone()

    def _forward_in_pieces(self, u, keep, kernels, conv, skip, row: int, consume_input: bool,
                           norm: nn.Module | None = None) -> torch.Tensor:
        """Inference on inputs too big for one pass (megabase records, huge batches), in three sweeps that
        bound memory to the input, the output and one (B, L, D) tensor of gates: (1) positions in blocks:
        projection onto x_1 … v, short conv, v·x_{order-1}; (2) channels in groups: the long convolutions;
        (3) positions in blocks: projection onto x_0 (u is read twice, so x_0 never exists whole), gate,
        output projection. On CPU the blocks are ~1k positions (cache-sized; the transposes between the
        channel-major gates and the positions-major u stay in cache); elsewhere as many as the memory limit
        allows. The projections stay large matmuls: groups of channels in (1) and (3) would re-read all of u
        for each group and turn them into thin, memory-bound matmuls (tiny, 1 M units: 21.3 -> 16.8 s a
        forward). The output is written over u when u may be consumed (else into one new tensor). With
        ``norm``, u is the block's residual stream x: sweeps (1) and (3) normalise it block by block, and (3)
        adds the output to it, in place. ``row`` is the length of one channel's convolution buffer (the FFT
        size)."""
        batch, length, _ = u.shape
        order, d = self.order, self.d
        limit = _piece_elements(u.device)
        if _blockwise(u):
            block = _PROJECT_BLOCK
        else:  # GPUs, autocast: as many positions as the limit allows, a multiple of 16 (aligned GEMM rows)
            block = max(1, limit // (batch * (order + 1) * d))
            block = block // 16 * 16 if block >= 256 else block
        block = min(block, length)
        # gates[:, j] = x_{j+1}, except gates[:, order-2] = v·x_{order-1}, the first convolution's input, which the
        # convolutions' output replaces; (B, order-1, D, L) keeps each channel's row contiguous for the FFTs.
        gates = None
        for s, z in self._projected_blocks(u, block, channels=slice(d, None), norm=norm):
            e = s + z.shape[-1]
            z = z.unflatten(1, (order, d))  # x_1 … x_{order-1}, v
            if gates is None:
                gates = _scratch("gates", (batch, order - 1, d, _unaliased(length)), z.dtype, z.device)[..., :length]
            gates[:, :order - 2, :, s:e] = z[:, :order - 2]
            v = torch.mul(z[:, order - 2], z[:, order - 1], out=gates[:, order - 2, :, s:e])
            if keep is not None:
                v.mul_(keep[..., s:e])
        # Each of a group's convolution tensors (padded input, spectrum, output) holds about group x row floats,
        # within the limit (so in malloc's heap, see runtime.tune_allocator). Groups of 8 rows of 2 M points
        # transform faster than groups of 4, at no more peak memory (tiny, 1 M units: 12.7-13.1 -> 11.6-11.8 s).
        group = max(1, min(d, limit // (batch * row)))
        if isinstance(conv, functools.partial) and conv.func is fft_conv:
            conv = functools.partial(conv, padded=_scratch("fft input", (batch, group, row), torch.float32, u.device))
        for c in range(0, d, group):
            g = slice(c, min(c + group, d))
            v = gates[:, order - 2, g]
            for i in range(order - 1):
                if i > 0:
                    v = v * gates[:, order - 2 - i, g]
                    if keep is not None:
                        v = v * keep
                with torch.autocast(device_type=u.device.type, enabled=False):
                    v = self.dropout(conv(v, kernels(slice(i * d + g.start, i * d + g.stop)), skip=skip[i, g]))
                v = v.to(gates.dtype)
            gates[:, order - 2, g] = v
        dtype = gates.dtype
        if norm is not None:
            out = u
        elif consume_input and u.is_contiguous() and u.dtype == dtype:
            out = u
        else:
            out = u.new_empty(u.shape, dtype=dtype)
        weight, bias = self.out_proj.weight.to(dtype).t().expand(batch, -1, -1), self.out_proj.bias.to(dtype)
        # The output projection writes straight into the output's storage (a separate output and its copy cost
        # ~15 % more), or adds into the residual stream as the one-pass path does (see _run); under autocast,
        # whose blocks are bf16/fp16 and the stream fp32, into a block-sized buffer first.
        y = h = None
        for s, x0 in self._projected_blocks(u, block, channels=slice(0, d), norm=norm):
            e = s + x0.shape[-1]
            # y = v·x_0, positions-major (an explicit output: the two operands' layouts differ)
            y = _scratch("gated block", (batch, block, d), x0.dtype, x0.device) if y is None else y
            torch.mul(gates[:, order - 2, :, s:e].transpose(1, 2), x0.transpose(1, 2), out=y[:, :e - s])
            if norm is None:
                torch.baddbmm(bias, y[:, :e - s], weight, out=out[:, s:e])
                continue
            if out.dtype == y.dtype:
                torch.baddbmm(out[:, s:e], y[:, :e - s], weight, out=out[:, s:e]).add_(bias)
                continue
            h = _scratch("output block", (batch, block, d), y.dtype, y.device) if h is None else h
            torch.baddbmm(bias, y[:, :e - s], weight, out=h[:, :e - s])
            out[:, s:e].add_(h[:, :e - s])
        return out


def _blockwise(u: torch.Tensor) -> bool:
    """Whether inference on u runs its position-wise parts in cache-sized blocks (CPU, fp32, no autocast)."""
    return (_PROJECT_BLOCK > 0 and u.device.type == "cpu" and u.dtype == torch.float32
            and not torch.is_grad_enabled() and not autocast_on("cpu"))


def _fft_group(u: torch.Tensor, d: int, n: int) -> int | None:
    """Channels per group for convolving u's d channels at FFT size n group by group, or None for one FFT of
    them all. Only where malloc is not tuned (see runtime.allocator_tuned), and their FFTs' tensors would pass
    _FFT_GROUP_BYTES: there the new spectra and outputs of whole (B, D, n) FFTs were faulted in afresh layer
    after layer (small, 8 x 1k units: 26.8k -> 4.1k page faults a forward, ~5 % of its time; a group's are
    small enough for malloc to keep in its heap: 0 a forward), and with tuned malloc the groups' copies in and
    out of v only cost time."""
    batch = u.shape[0]
    if not _blockwise(u) or allocator_tuned() or batch * d * n * 4 <= _FFT_GROUP_BYTES:
        return None
    return max(1, _FFT_GROUP_BYTES // (batch * n * 4))


def _project_block(u: torch.Tensor) -> int | None:
    """Positions per block for projecting u (B, L, D) into a reused buffer (see _projected_blocks), or None for
    one matmul into a new tensor. Records over _PROJECT_BLOCK units (more in narrow layers, see _NARROW_D) go by
    blocks of that many positions. Where malloc is not tuned (see runtime.allocator_tuned), so do batches of
    shorter records, by blocks of about that many batch x position rows (at least 128 positions: shorter GEMMs
    run slower): their new projections were faulted in afresh at each layer (tiny, 8 x 1k units: 16-20k page
    faults a forward)."""
    batch, length, d = u.shape
    block = _PROJECT_BLOCK * max(1, _NARROW_D // d)
    if not _blockwise(u) or batch * length <= block:
        return None
    if allocator_tuned():
        return block if length > block else None
    return min(length, max(128, block // batch // 16 * 16))


class Attention(nn.Module):
    """Multi-head self-attention through scaled_dot_product_attention, with rotary positions."""

    def __init__(self, d: int, n_heads: int, causal: bool, dropout: float = 0.0):
        super().__init__()
        self.n_heads, self.causal, self.dropout = n_heads, causal, dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, u: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, d = u.shape
        q, k, v = self.qkv(u).view(batch, length, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = _rotary(q), _rotary(k)
        attn_mask = None
        if mask is not None and not self.causal:  # causal + right padding: real queries never see padding
            attn_mask = mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=self.causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(batch, length, d))


def _rotary(x: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding over the last dim of (B, H, L, dh)."""
    length, dh = x.shape[-2], x.shape[-1]
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, dh, 2, device=x.device, dtype=torch.float32) / dh))
    angle = angles(torch.arange(length, device=x.device), inv_freq)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class MLP(nn.Module):
    def __init__(self, d: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1, self.fc2, self.dropout = nn.Linear(d, hidden), nn.Linear(hidden, d), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _use_onednn(x):
            rows = x.reshape(-1, x.shape[-1])
            hidden = _onednn_linear(rows, self.fc1.weight, self.fc1.bias, "gelu", [], "none")  # exact (erf) GELU
            return self.dropout(_onednn_linear(hidden, self.fc2.weight, self.fc2.bias, "none", [], "").view(x.shape))
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))


# CPU inference runs the MLP through oneDNN's linear with the GELU fused into it (the op torch's own compiler
# uses for CPU inference): small preset, 1 x 1k units, 98.8 -> 89.5 ms a forward on the 2-core AMD EPYC, whose
# MKL sgemm reaches 120-200 GFLOP/s where oneDNN reaches 150-220. Checked against F.linear once per process;
# a torch without it, or with a different one, falls back to nn.Linear.
try:
    _onednn_linear = torch.ops.mkldnn._linear_pointwise
except (AttributeError, RuntimeError):  # a torch built without it (older ones raise RuntimeError)
    _onednn_linear = None


def _use_onednn(x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not autocast_on("cpu") and _onednn_agrees())


@functools.lru_cache(maxsize=None)
def _onednn_agrees() -> bool:
    if _onednn_linear is None or not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(shape, generator=generator) for shape in ((8, 16), (32, 16), (32,)))
    try:
        with torch.no_grad():
            ok = torch.allclose(_onednn_linear(x, w, b, "gelu", [], "none"), F.gelu(F.linear(x, w, b)), atol=1e-5)
            return ok and torch.allclose(_onednn_linear(x, w, b, "none", [], ""), F.linear(x, w, b), atol=1e-5)
    except (RuntimeError, TypeError):
        return False


class Block(nn.Module):
    """Pre-norm residual block: x + mixer(norm(x)), then x + MLP(norm(x)) when hidden > 0."""

    def __init__(self, d: int, hidden: int, mixer: nn.Module, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.mixer, self.dropout = nn.LayerNorm(d), mixer, nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d) if hidden else None
        self.mlp = MLP(d, hidden, dropout) if hidden else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, consume_input: bool = False) -> torch.Tensor:
        """``consume_input``: x is the caller's scratch, and inference may update it in place (the megabase
        path then holds no normalised copy of x; see HyenaOperator.add_residual_)."""
        if not torch.is_grad_enabled():  # inference: update in place, and run the MLP over row chunks
            if isinstance(self.mixer, HyenaOperator) and consume_input and not self.training:  # (no dropout)
                x = self.mixer.add_residual_(x, self.norm1, mask)
            else:
                # norm1's output is a temporary; h is a fresh tensor, so adding into it leaves the caller's x
                # alone; under autocast h is bf16/fp16 and the residual stream stays in x's precision, as in
                # training.
                h = self.mixer(self.norm1(x), mask, consume_input=True) if isinstance(self.mixer, HyenaOperator) \
                    else self.mixer(self.norm1(x), mask)
                h = self.dropout(h)
                x = h.add_(x) if h.dtype == x.dtype else x + h
            if self.mlp is not None:
                step = (_MLP_ROWS if x.device.type == "cpu" else _MLP_ROWS_GPU) // x.shape[0] or 1
                for s in range(0, x.shape[1], step):
                    part = x[:, s:s + step]
                    part += self.mlp(self.norm2(part))
            return x
        h = self.dropout(self.mixer(self.norm1(x), mask))
        x = x + h
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x


def hyena_block(config, d: int, hidden: int, window: int = 0) -> Block:
    """A Hyena block; ``window`` > 0 makes it local, with its filters' decay scaled to the window."""
    c = config
    scale = min(c.filter_scale, window) if window else c.filter_scale
    mixer = HyenaOperator(d, c.hyena_order, c.filter_dim, c.filter_layers, c.filter_bands, scale,
                          c.filter_freq, c.short_conv, c.bidirectional, c.dropout, window)
    return Block(d, hidden, mixer, c.dropout)


def attention_block(config, d: int, hidden: int) -> Block:
    return Block(d, hidden, Attention(d, config.n_heads, not config.bidirectional, config.dropout), config.dropout)
