"""Why does the model predict what it does, and what does a variant do?

* :func:`load_scorer` — a saved model as a :class:`ScoreModel`: one-hot DNA in, one score per sequence out.
* :func:`attribute` / :func:`attribute_records` — saliency (gradient x input), integrated gradients
  (captum; uniform, zero or dinucleotide-shuffled baselines), DeepLIFT/DeepSHAP where captum's rules cover the
  model, and in-silico mutagenesis (batched).
* :func:`scan_variants` — ref/alt scores of VCF variants centred in model windows.
* writers for tfmodisco-lite ``.npz``, ``.bedgraph``, ``.tsv``, effect ``.tsv``/``.vcf.gz``, and logo PNGs.

Integrated gradients and DeepLIFT differentiate through the unit embedding only; hashed n-gram embeddings
and patch boundaries are discrete functions of the token ids and are held at their values for the real
sequence (see :mod:`hyena_glt.interpret.scoring`). Saliency takes first-order substitution effects at the
embedding layer, n-grams included. ISM and variant scoring re-run the whole model, patcher included.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .attribution import (BASELINES, METHODS, Attributions, attribute, auto_batch_size, dinucleotide_shuffle, ism,
                          make_baselines)
from .records import RecordAttribution, attribute_records, parse_batch_size
from .scoring import ScoreModel, Target, one_hot, resolve_target
from .variants import VariantEffect, VariantScan, scan_variants


def load_scorer(model_dir: str | Path | None = None, *, device: str = "auto", precision: str = "auto",
                rc_average: bool | None = None):
    """(model, metadata, ScoreModel) for a model directory (the bundled default model when None)."""
    from ..model import from_pretrained
    from ..runtime import VERBOSE, resolve_device, resolve_precision
    from ..tokenizers import get_tokenizer

    if model_dir is None:
        from ..pretrained import default_model_dir

        model_dir = default_model_dir()
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    model, metadata = from_pretrained(model_dir, map_location=str(dev))
    tokenizer = get_tokenizer(metadata.get("tokenizer", "nucleotide"))
    scorer = ScoreModel(model, metadata, tokenizer, rc_average=rc_average, device=dev, precision=prec)
    logging.getLogger("hyena_glt").log(
        VERBOSE, "model folder: %s (%s, %s parameters, window %s); rc-average %s", model_dir, metadata.get("task"),
        f"{sum(p.numel() for p in model.parameters()):,}", metadata.get("window"), "on" if scorer.rc_average else "off")
    return model, metadata, scorer


def output_names(metadata: dict, num_outputs: int) -> list[str]:
    return list(metadata.get("class_names") or metadata.get("target_names") or [str(i) for i in range(num_outputs)])


__all__ = [
    "BASELINES", "METHODS", "Attributions", "RecordAttribution", "ScoreModel", "Target", "VariantEffect",
    "VariantScan", "attribute", "attribute_records", "auto_batch_size", "dinucleotide_shuffle", "ism", "load_scorer",
    "make_baselines", "one_hot", "output_names", "parse_batch_size", "resolve_target", "scan_variants",
]
