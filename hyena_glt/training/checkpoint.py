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

from ..errors import ModelError, option
from ..io.writers import default_permissions

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
        default_permissions(tmp)
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


# what every trainer_state.pt written by write_checkpoint holds (Trainer._state)
STATE_KEYS = ("options", "data", "global_step", "epoch", "micro_in_epoch", "epoch_loss_sum", "epoch_loss_count",
              "best_value", "best_step", "bad_evals", "finished", "stopped_early", "history", "elapsed_s",
              "optimizer", "scheduler", "scaler", "rng")


def damaged(path: Path) -> ModelError:
    """The error for a checkpoint file that cannot be used (torch/safetensors' own messages are not for users:
    torch's even suggests unpickling with weights_only=False)."""
    return ModelError("not a readable training checkpoint (damaged or not made by hyena-glt); start the run again "
                      f"in a new {option('output_dir')} folder, or restore the file", path=str(path))


def read_state(folder: Path) -> dict:
    """trainer_state.pt of a checkpoint, loaded with ``weights_only=True``; a damaged, empty or foreign
    file is a :class:`ModelError` naming it."""
    path = Path(folder) / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # UnpicklingError, EOFError, RuntimeError (not a zip), ...: all mean a damaged file
        raise damaged(path) from None
    if not isinstance(state, dict) or any(key not in state for key in STATE_KEYS):
        raise damaged(path)
    return state


def read_weights(folder: Path, device: str = "cpu") -> dict:
    """model.safetensors of a checkpoint; a missing or damaged file is a :class:`ModelError` naming it."""
    from safetensors.torch import load_file

    path = Path(folder) / "model.safetensors"
    try:
        return load_file(str(path), device=device)
    except Exception:  # SafetensorError (header too small/large...), FileNotFoundError, ...
        raise damaged(path) from None


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
