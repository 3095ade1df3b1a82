import os
import sys

import pytest
import torch

from hyena_glt import runtime
from hyena_glt.errors import DeviceError, UsageError


def test_devices():
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    assert runtime.resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        runtime.resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(DeviceError, match="device 'cuda:1' requested but CUDA is not available"):
        runtime.resolve_device("cuda:1")


def test_precisions():
    cpu = torch.device("cpu")
    assert runtime.resolve_precision("auto", cpu) == "fp32"
    assert runtime.resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(DeviceError, match="fp16 is not supported on CPU"):
        runtime.resolve_precision("fp16", cpu)
    with pytest.raises(UsageError, match="unknown precision 'fp8'"):
        runtime.resolve_precision("fp8", cpu)
    assert not runtime.needs_grad_scaler(cpu, "bf16")


def test_seed_and_threads():
    runtime.seed_everything(5)
    a = torch.rand(3)
    runtime.seed_everything(5)
    assert torch.equal(a, torch.rand(3))
    old = torch.get_num_threads()
    try:
        assert runtime.set_threads(1) == 1 and torch.get_num_threads() == 1
        with pytest.raises(UsageError, match="at least 1"):
            runtime.set_threads(-2)
    finally:
        torch.set_num_threads(old)


def test_tune_allocator(monkeypatch):
    import platform

    for name in runtime._MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        assert runtime.tune_allocator() is False
        return
    monkeypatch.setattr(runtime, "_ALLOCATOR_TUNED", False)
    assert not runtime.allocator_tuned()
    assert runtime.tune_allocator() is True
    assert runtime.allocator_tuned()
    monkeypatch.setattr(runtime, "_ALLOCATOR_TUNED", False)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")  # the user's own malloc settings win
    assert runtime.tune_allocator() is False
    assert runtime.allocator_tuned()  # (by the user)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_tune_allocator_asks_torch_for_huge_pages_before_torch_is_imported():
    import subprocess

    code = ("import os, sys; from hyena_glt import runtime; runtime.tune_allocator(huge_pages={}); "
            "print(os.environ.get('THP_MEM_ALLOC_ENABLE'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    run = subprocess.run([sys.executable, "-c", code.format(True)], env=env, capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["1", "False"]
    run = subprocess.run([sys.executable, "-c", code.format(False)], env=env, capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["None", "False"]  # training: no huge pages
    env["THP_MEM_ALLOC_ENABLE"] = "0"  # the user's choice wins
    run = subprocess.run([sys.executable, "-c", code.format(True)], env=env, capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["0", "False"]


def test_thread_counts_that_would_run_slowly_or_be_ignored_are_said(monkeypatch, caplog):
    before = torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "abc")
    try:
        with caplog.at_level("WARNING", logger="hyena_glt"):
            assert runtime.set_threads(3) == 3
            assert runtime.default_threads() == len(os.sched_getaffinity(0))
            assert runtime.set_threads(2) == 2
    finally:
        torch.set_num_threads(before)
    # the library names the option 'threads'; under the CLI it is '--threads'
    assert caplog.messages == ["threads 3 is more than this machine's 2 cores: expect it to run slower",
                               "SLURM_CPUS_PER_TASK=abc is not a positive integer: ignored (using the cores available)"]
