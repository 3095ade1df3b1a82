"""Complete, atomic training checkpoints.

A checkpoint is a folder: the model as a normal model directory (``save_pretrained``: config.json,
model.safetensors, hyena_glt.json, so a checkpoint can be used like any model) plus ``trainer_state.pt``
holding the optimiser, scheduler, grad-scaler and RNG states and the position in the data. The state file
contains only tensors and plain Python values and is read with ``torch.load(weights_only=True)``: nothing
is ever unpickled.

Atomicity (a ``kill -9`` may land at any instant): the new checkpoint is written to a temporary sibling
folder, the old one is renamed to ``NAME.old``, the new one renamed into place, and only then is
``NAME.old`` deleted. :func:`find_checkpoint` falls back to ``NAME.old`` when the kill landed between the
two renames, so there is always one complete checkpoint to resume from.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

STATE_FILE = "trainer_state.pt"


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def write_checkpoint(directory: Path, write_model, state: dict | None) -> None:
    """Atomically (re)write the checkpoint folder ``directory``.

    ``write_model(tmp_folder)`` writes the model files; ``state`` (or None for a weights-only checkpoint
    such as 'best') goes to trainer_state.pt.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        write_model(tmp)
        if state is not None:
            torch.save(state, tmp / STATE_FILE)
        _fsync_tree(tmp)
        old = directory.with_name(directory.name + ".old")
        if old.exists():
            if directory.exists():
                shutil.rmtree(old)
            else:  # the previous save was killed between its renames: `old` is the good one; keep it out of the way
                os.replace(old, directory)
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def find_checkpoint(directory: Path) -> Path | None:
    """The complete checkpoint folder at ``directory`` (or its ``.old`` twin), or None."""
    directory = Path(directory)
    for candidate in (directory, directory.with_name(directory.name + ".old")):
        if (candidate / STATE_FILE).is_file():
            return candidate
    return None


def read_state(folder: Path) -> dict:
    return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)


def rng_state() -> dict:
    """Every RNG training touches, as tensors and plain values (weights_only-loadable)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_tuplify(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(value):
    """random.setstate wants tuples; a serialisation round trip may hand back lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuplify(v) for v in value)
    return value
