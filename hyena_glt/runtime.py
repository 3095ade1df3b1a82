"""Device and precision choice, thread count, seeding.

``resolve_device("auto")`` prefers CUDA, then MPS, then CPU; an explicit device that is not available
raises :class:`DeviceError`. ``resolve_precision("auto", device)`` is bf16 on CUDA where the GPU supports
it natively, fp16 on other CUDA GPUs and fp32 elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import sys
from typing import TYPE_CHECKING

import numpy as np

from .errors import DeviceError, UsageError, option

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that need it: `hyena-glt tokenize` never needs torch, and
# importing it costs seconds of start-up.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# How out-of-memory errors read when they are plain RuntimeErrors (the CPU allocator's among them), lower case.
OOM_MESSAGES = ("out of memory", "not enough memory", "can't allocate memory")
_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# The log level of `hyena-glt -v`: what was chosen for the run (device, precision, threads, batch sizes, model),
# between INFO (shown by default) and DEBUG (-vv).
VERBOSE = 15
logging.addLevelName(VERBOSE, "VERBOSE")
log = logging.getLogger("hyena_glt")


def resolve_device(spec: str = "auto") -> "torch.device":
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise DeviceError("device 'mps' requested but MPS is not available on this machine")
        return torch.device("mps")
    m = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if m:
        if not torch.cuda.is_available():
            raise DeviceError(f"device '{spec}' requested but CUDA is not available on this machine")
        index = int(m.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"device '{spec}' requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return torch.device("cuda", index)
    raise UsageError(f"unknown device '{spec}' (use auto, cpu, cuda, cuda:N or mps)")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_precision(spec: str, device: "torch.device") -> str:
    """Return one of 'fp32', 'bf16', 'fp16' for ``device``."""
    chosen = _resolve_precision(spec, device)
    name = torch_device_name(device)
    log.log(VERBOSE, "device %s%s, precision %s%s", device, f" ({name})" if name else "", chosen,
            " (auto)" if (spec or "auto").strip().lower() == "auto" else "")
    return chosen


def torch_device_name(device: "torch.device") -> str | None:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return None


def _resolve_precision(spec: str, device: "torch.device") -> str:
    import torch

    spec = (spec or "auto").strip().lower()
    if spec not in PRECISIONS:
        raise UsageError(f"unknown precision '{spec}' (use {', '.join(PRECISIONS)})")
    if spec == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if spec == "fp16" and device.type == "cpu":
        raise DeviceError("precision fp16 is not supported on CPU (use fp32 or bf16)")
    if spec == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("precision bf16 is not supported by this GPU (use fp16 or fp32)")
    return spec


def torch_dtype(precision: str) -> "torch.dtype":
    import torch

    return getattr(torch, _DTYPE_NAMES[precision])


def autocast(device: "torch.device", precision: str):
    """Autocast context for ``precision`` on ``device``; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device.type, dtype=torch_dtype(precision))


def needs_grad_scaler(device: "torch.device", precision: str) -> bool:
    return device.type == "cuda" and precision == "fp16"


def default_threads() -> int:
    """SLURM_CPUS_PER_TASK when set (HPC jobs), else the cores this process may run on."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    if slurm:
        log.warning("SLURM_CPUS_PER_TASK=%s is not a positive integer: ignored (using the cores available)", slurm)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def set_threads(n: int | None) -> int:
    n = default_threads() if not n else int(n)
    if n < 1:
        raise UsageError(f"{option('threads')} must be at least 1 (got {n})")
    cores = os.cpu_count() or n
    if n > cores:  # oversubscribed OpenMP threads spin and wait on each other: many times slower, not faster
        log.warning("%s %d is more than this machine's %d cores: expect it to run slower", option("threads"), n, cores)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:  # torch reads these when it is first imported
        os.environ["OMP_NUM_THREADS"] = str(n)
        os.environ["MKL_NUM_THREADS"] = str(n)
    return n


# glibc malloc serves blocks above its mmap threshold (at most 32 MB by default) with fresh mmap()ed pages and
# unmaps them when freed, so every large temporary tensor is page-faulted in again on its next use: at megabase
# lengths a third of the CPU time went to the kernel. Blocks below 96 MB are kept in the heap instead (and the
# heap is not trimmed), so Hyena's per-chunk and per-channel-group buffers (at most 64 MB: hyena._GROUP_ELEMENTS
# floats; a threshold at exactly 64 MB still mmapped them, malloc's header tipping them over) are reused; the few
# larger ones (whole (B, L, D) activations) are still mmapped, which keeps fragmentation, and so peak memory, in
# check, and are faulted in as 2 MB transparent huge pages (torch's THP_MEM_ALLOC_ENABLE, read once, when torch
# makes its first tensor): 512x fewer faults. Tiny, 1 M units, a forward: 23.8 s untuned, 18-21 s with a 256 MB
# threshold and no huge pages, 14.6-15.5 s with huge pages and chunks just over a 64 MB threshold, 13.0-13.3 s
# as set here (peak RSS 3.3-3.6 GB). Huge pages are for inference only: training gains no time from them, and
# its RSS grew by 7-28 % (the heap's partly used huge pages count whole).
_MMAP_THRESHOLD = 96 << 20
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")
_ALLOCATOR_TUNED = False


def allocator_tuned() -> bool:
    """Whether malloc has been tuned for large tensors, by tune_allocator or by the user through the environment.
    CPU inference then lets torch allocate its temporaries (served from the untrimmed heap at no page-fault
    cost), where an untuned process (a library user, ../shared/bench) reuses buffers of its own."""
    return _ALLOCATOR_TUNED or any(k in os.environ for k in _MALLOC_ENV)


def tune_allocator(huge_pages: bool = False) -> bool:
    """Tune glibc malloc for large tensors, and with ``huge_pages`` ask torch for transparent huge pages if
    torch is not imported yet (see above); True if malloc was tuned. A no-op on other C libraries, and where the
    user has tuned malloc (or set THP_MEM_ALLOC_ENABLE) through the environment."""
    if not sys.platform.startswith("linux"):
        return False
    if huge_pages and "torch" not in sys.modules:  # subprocesses (benchmark workers) inherit it too
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    if any(k in os.environ for k in _MALLOC_ENV):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    global _ALLOCATOR_TUNED
    m_trim_threshold, m_mmap_threshold = -1, -3
    _ALLOCATOR_TUNED = bool(mallopt(m_mmap_threshold, _MMAP_THRESHOLD)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
    return _ALLOCATOR_TUNED


def autocast_on(device) -> bool:
    """Whether torch autocast is on for ``device``'s type (a torch.device or "cpu", "cuda", ...)."""
    import torch

    kind = getattr(device, "type", device)
    try:
        return torch.is_autocast_enabled(kind)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled() if kind == "cpu" else torch.is_autocast_enabled()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    if "torch" in sys.modules:  # code that imports torch later seeds it itself (see Trainer)
        sys.modules["torch"].manual_seed(seed)
