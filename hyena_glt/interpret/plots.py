"""Sequence logos of attributions (logomaker), with the model's patch boundaries on the same axis.

A logo shows each base's contribution (the importance at the observed base, letters above or below zero).
For models that patch (entropy or static), dashed lines mark where patches start, so one can see whether
the model's important bases sit inside one patch or straddle several.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..io.writers import atomic_path
from .records import RecordAttribution
from .scoring import BASES


def patch_starts(model, input_ids) -> np.ndarray | None:
    """0-based positions where a patch starts (excluding 0), or None when the model has no patcher
    (every unit its own patch, where lines would carry no information)."""
    import torch

    patcher = getattr(model, "patcher", None)
    if patcher is None:
        patcher = getattr(getattr(model, "backbone", None), "patcher", None)
    spec = str(getattr(patcher, "spec", "none") or "none")
    if patcher is None or spec == "none":
        return None
    ids = torch.as_tensor(input_ids).view(1, -1)
    with torch.no_grad():
        lengths = patcher(ids, torch.ones_like(ids, dtype=torch.bool))[0]
    lengths = lengths[lengths > 0].cpu().numpy()
    return np.cumsum(lengths)[:-1]


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "record"


def plot_logo(rec: RecordAttribution, path: str | Path, *, boundaries: np.ndarray | None = None,
              span: tuple[int, int] | None = None, title: str | None = None):
    """Write a PNG logo of ``rec`` (positions ``span``, 0-based half-open; the whole record by default).
    Returns the matplotlib figure (closed) for inspection."""
    import matplotlib

    matplotlib.use("Agg")
    import logomaker
    import matplotlib.pyplot as plt
    import pandas as pd

    start, end = span or (0, len(rec.seq))
    contrib = (rec.one_hot * rec.importance[None, :])[:, start:end].T  # (W, 4)
    frame = pd.DataFrame(contrib, columns=list(BASES), index=np.arange(start, end) + 1)
    width = min(40.0, max(6.0, 0.12 * (end - start)))
    fig, ax = plt.subplots(figsize=(width, 2.6))
    logomaker.Logo(frame, ax=ax, color_scheme="classic")
    ax.axhline(0, color="black", linewidth=0.5)
    if boundaries is not None:
        for b in boundaries[(boundaries >= start) & (boundaries < end)]:
            ax.axvline(b + 0.5, color="tab:purple", linestyle="--", linewidth=0.8)  # between base b and b+1 (1-based)
    ax.set_xlabel("position in record (1-based)" + ("; dashed: patch starts" if boundaries is not None else ""))
    ax.set_ylabel("contribution")
    ax.set_title(title or f"{rec.name} ({rec.target_name}: score {rec.score:.3g})", fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return fig


def peak_span(rec: RecordAttribution, width: int) -> tuple[int, int]:
    """The ``width``-base span centred on the strongest smoothed |importance| (the whole record if shorter)."""
    length = len(rec.seq)
    if length <= width:
        return 0, length
    smooth = np.convolve(np.abs(rec.importance), np.ones(width), mode="valid")  # sums over every span
    start = int(np.argmax(smooth))
    return start, start + width


def plot_records(results: list[RecordAttribution], folder: str | Path, *, model=None, scorer=None,
                 width: int = 200) -> list[Path]:
    """One PNG per record in ``folder`` (created), named after the record; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for rank, rec in enumerate(results, 1):
        boundaries = None
        if model is not None and scorer is not None:
            boundaries = patch_starts(model, scorer.encode([rec.seq])[0])
        path = folder / f"{rank:03d}_{_safe_name(rec.name)}.png"
        plot_logo(rec, path, boundaries=boundaries, span=peak_span(rec, width))
        written.append(path)
    return written
