"""Shared fixtures: paths to the bundled real data in example_data/."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "example_data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(autouse=True)
def auto_device_is_cpu(request, monkeypatch):
    """The suite compares against CPU results to the last digits, so `--device auto` means the CPU here even
    on a GPU machine (where it would pick CUDA and bf16). tests/test_cuda.py sees the real choice."""
    if request.module.__name__.rpartition(".")[2] == "test_cuda":
        return
    from hyena_glt import runtime

    resolve = runtime.resolve_device
    monkeypatch.setattr(runtime, "resolve_device",
                        lambda spec="auto": resolve("cpu" if (spec or "auto").strip().lower() == "auto" else spec))
