"""Models bundled with the package.

``promoter-tiny``: a human core-promoter detector (promoter vs non-promoter, 70 nt windows) trained on GUE
``prom_core_all`` by ``make default-model``; its test metrics, next to DNABERT-2's published MCC on the same
split, are in its ``hyena_glt.json`` under ``metrics`` and ``benchmark``.

``dna-lm-tiny``: a causal DNA language model (tiny preset, 568k parameters) trained by ``make dna-lm`` on the
unlabelled DNA in ``example_data`` (see its ``hyena_glt.json`` under ``corpus``): a starting point for
fine-tuning (``train --init dna-lm-tiny``) and an entropy model (``--entropy-model dna-lm-tiny``).

Commands take a bundled model by its name (``--model``, ``--init``, ``--entropy-model``): see ``find_model``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelError

DEFAULT_MODEL = "promoter-tiny"


def bundled_models() -> list[str]:
    """Names of the models installed with the package (``--model NAME`` and ``--init NAME`` take them)."""
    return sorted(p.name for p in Path(__file__).resolve().parent.iterdir() if (p / "hyena_glt.json").is_file())


def find_model(directory: str | os.PathLike) -> Path:
    """``directory`` as a path, or the bundled model of that name when no such file or folder exists here and
    the name is bare (no ``/``: ``./promoter-tiny`` stays a path)."""
    path = Path(directory)
    text = str(directory)
    if not path.exists() and "/" not in text and os.sep not in text and text in bundled_models():
        return model_dir(text)
    return path


def model_dir(name: str = DEFAULT_MODEL) -> Path:
    """The folder of bundled model ``name`` (ModelError when it is not installed)."""
    folder = Path(__file__).resolve().parent / name
    if not (folder / "hyena_glt.json").is_file():
        raise ModelError(
            f"no bundled model '{name}' (available: {', '.join(bundled_models()) or 'none'}; "
            f"build the default one with `make default-model`)",
            path=str(folder),
        )
    return folder


def default_model_dir() -> Path:
    """The bundled default model, used by `classify`/`embed`/`interpret` when no --model is given."""
    return model_dir(DEFAULT_MODEL)
