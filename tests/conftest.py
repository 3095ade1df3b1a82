"""Shared fixtures: paths to the bundled real data in example_data/."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "example_data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
