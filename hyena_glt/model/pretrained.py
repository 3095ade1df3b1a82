"""Model directories: ``config.json`` + ``model.safetensors`` + ``hyena_glt.json`` (metadata).

Weights are only ever read with safetensors, which cannot execute code; pickle-based files
(``*.bin``, ``*.pt``, ``*.pth``, ``*.pkl``, ``*.ckpt``) are refused, never unpickled. Every problem with a
directory is a :class:`ModelError` naming the file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .. import __version__
from ..config import HyenaGLTConfig
from ..errors import ModelError, UsageError, option
from .heads import TASKS, HyenaGLTForTask

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "hyena_glt.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _finite_or_null(value):
    """``value`` with every NaN or infinite float (an AUROC on one-class data) as None: bare ``NaN`` is not
    JSON, and strict readers (jq aside) refuse the whole file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


def save_pretrained(model: HyenaGLTForTask, directory: str | Path, metadata: dict | None = None) -> None:
    """Write the three files (each atomically). ``metadata`` is completed with task, num_outputs, patcher
    and package_version; an attached entropy patcher is saved in ``entropy_model/``."""
    from safetensors.torch import save_file

    from ..io.writers import atomic_output, atomic_path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = dict(metadata or {})
    meta.update(task=model.task, num_outputs=model.num_outputs, package_version=__version__)
    meta.setdefault("patcher", model.config.patcher)
    meta = _finite_or_null(meta)
    try:
        json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise UsageError(f"model metadata is not JSON-serialisable: {err}") from None
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_output(directory / CONFIG_FILE) as fh:
        fh.write(model.config.to_json())
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    with atomic_output(directory / METADATA_FILE) as fh:
        fh.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    patcher = getattr(model.backbone, "patcher", None)
    if patcher is not None and getattr(patcher, "spec", "").startswith("entropy"):
        from .entropy import save_entropy_patcher

        save_entropy_patcher(patcher, directory)


def from_pretrained(directory: str | Path, map_location: str | torch.device = "cpu") -> tuple[HyenaGLTForTask, dict]:
    """(model in eval mode, metadata). ModelError for a missing, corrupt, unsafe or inconsistent directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError("model directory does not exist" if not directory.exists() else "not a model directory",
                         path=str(directory))
    files = {p.name for p in directory.iterdir()}
    if not files & {CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE} and not any(
            f.lower().endswith(tuple(PICKLE_SUFFIXES)) for f in files):
        raise ModelError(f"not a model directory (no {CONFIG_FILE}, {WEIGHTS_FILE} or {METADATA_FILE}: a model "
                         f"directory is what training writes to {option('output_dir')})", path=str(directory))
    config = _read_config(directory / CONFIG_FILE)
    metadata = _read_json(directory / METADATA_FILE)
    task, num_outputs = metadata.get("task"), metadata.get("num_outputs")
    if task not in TASKS or not isinstance(num_outputs, int):
        raise ModelError(f"metadata needs a task (one of {', '.join(TASKS)}) and an integer num_outputs",
                         path=str(directory / METADATA_FILE))
    for key in ("class_names", "target_names", "label_values"):
        names = metadata.get(key)
        if names is not None and task != "lm" and (not isinstance(names, list) or len(names) != num_outputs):
            raise ModelError(f"{key} must list {num_outputs} name(s), one per model output (got {names!r})",
                             path=str(directory / METADATA_FILE))
        if key != "label_values" and names is not None and len(set(map(str, names))) != len(names):
            raise ModelError(f"{key} must be distinct: each names an output column (got {names!r})",
                             path=str(directory / METADATA_FILE))
    rc_average = metadata.get("rc_average")
    if rc_average is not None and not isinstance(rc_average, bool):
        raise ModelError(f"rc_average must be true, false or null (got {rc_average!r})",
                         path=str(directory / METADATA_FILE))
    window = metadata.get("window")
    if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 1):
        raise ModelError(f"window must be a positive integer or null (got {window!r})", path=str(directory / METADATA_FILE))
    try:
        model = HyenaGLTForTask(config, task, num_outputs)
    except UsageError as err:
        raise ModelError(err.problem, path=str(directory)) from None
    model.load_state_dict(_read_weights(directory, model), strict=True)
    model.to(map_location).eval()
    spec = metadata.get("patcher", config.patcher)
    if config.patcher.startswith("entropy"):
        from .entropy import has_entropy_model
        from .patching import build_patcher

        if not has_entropy_model(directory):
            raise ModelError("the model uses entropy patching but has no entropy_model/ directory", path=str(directory))
        model.backbone.patcher = build_patcher(spec if spec.startswith("entropy") else "entropy",
                                               model_dir=directory, map_location=map_location)
    return model, metadata


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ModelError("missing file", path=str(path))
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"unreadable or corrupt JSON ({err})", path=str(path)) from None
    if not isinstance(data, dict):
        raise ModelError("expected a JSON object", path=str(path))
    return data


def _read_config(path: Path) -> HyenaGLTConfig:
    try:
        return HyenaGLTConfig.from_dict(HyenaGLTConfig.upgrade(_read_json(path)))
    except UsageError as err:
        raise ModelError(err.problem, path=str(path)) from None


def _read_weights(directory: Path, model: torch.nn.Module) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = directory / WEIGHTS_FILE
    if not path.is_file():
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise ModelError(f"refusing to load pickle-based weights ({', '.join(pickles)}): only {WEIGHTS_FILE} "
                             "is accepted (pickles can run code and are never unpickled)", path=str(directory))
        raise ModelError("missing file", path=str(path))
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ModelError(f"not a valid safetensors file ({' '.join(str(err).split())})", path=str(path)) from None
    expected = model.state_dict()
    if getattr(model, "task", None) == "regression":  # saved before targets were standardised: outputs as they were
        state.setdefault("target_mean", torch.zeros_like(expected["target_mean"]))
        state.setdefault("target_scale", torch.ones_like(expected["target_scale"]))
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        if wrong:
            k = wrong[0]
            parts.append(f"shape of {k} is {tuple(state[k].shape)}, config wants {tuple(expected[k].shape)}"
                         + (f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""))
        raise ModelError(f"weights do not match config.json: {'; '.join(parts)}", path=str(path))
    broken = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if broken:  # e.g. saved from a diverged run: every score would be NaN
        raise ModelError(f"weights hold NaN or infinite values ({_few(broken)})", path=str(path))
    return state


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
