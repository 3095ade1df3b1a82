"""`hyena-glt classify`: predict a label for every record, or scan genomes in windows into a BED.

Output kind (decided once, before anything is written):

1. ``--format tsv|bed``, else the ``-o`` extension: ``.tsv``/``.tsv.gz`` → one row per record;
   ``.bed`` / ``.bed.gz`` → windows (``.bed.gz`` is bgzipped and tabix-indexed).
2. Writing to stdout without ``--format``: BED when the first record is longer than the window and has no
   base qualities (a genome or contig, not a read), TSV otherwise. The choice is logged.

TSV: ``id length label p_<class>...`` (regression: ``id length <target>...``), a header line without
``#``, rows in input order, each record read whole by the model. BED6+: ``contig start end label score
strand p_<class>...``, 0-based half-open, sorted like ``sort -k1,1 -k2,2n``, preceded by one ``#``
comment line naming the columns (IGV, bedtools and tabix skip it); score = 1000 × the label's probability.
With ``--shard I/N`` only shard 1 writes the header line, so ``cat`` of the shards is a complete file.
"""

from __future__ import annotations

import itertools
import logging
from typing import Annotated, Optional

import typer

from hyena_glt.errors import InputError, UsageError

from ..common import (
    DeviceOpt,
    FormatOpt,
    InputsArg,
    ModelOpt,
    PrecisionOpt,
    ReferenceOpt,
    RegionOpt,
    RegionsOpt,
    ShardOpt,
    check_files,
    output_format,
    parse_shard,
    progress,
)

log = logging.getLogger("hyena_glt")

FORMATS = ("tsv", "bed")
DEFAULT_MAX_N = 0.5  # windows more than half N (assembly gaps) are not classified


def register(app: typer.Typer) -> None:
    @app.command("classify")
    def classify(
        inputs: InputsArg,
        model: ModelOpt = None,
        output: Annotated[str, typer.Option("--output", "-o", help="Output: .tsv[.gz] (per record), .bed or "
                                            ".bed.gz (windows; bgzipped + tabix index); '-' for stdout.")] = "-",
        fmt: FormatOpt = None,
        window: Annotated[Optional[int], typer.Option("--window", help="Window length (default: the model's "
                                                      "training window; another one runs, with a warning).")] = None,
        stride: Annotated[Optional[int], typer.Option("--stride", help="Window step (default: the window).")] = None,
        last: Annotated[str, typer.Option("--last", help="Last partial window: shift (end at the contig end), "
                                          "pad (keep the shorter tail) or drop.")] = "shift",
        rc_average: Annotated[Optional[bool], typer.Option(
            "--rc-average/--no-rc-average",
            help="Average forward and reverse-complement predictions (default: on for DNA models).")] = None,
        min_score: Annotated[Optional[int], typer.Option("--min-score", help="Keep rows with score >= this (0-1000).")] = None,
        label: Annotated[Optional[list[str]], typer.Option("--label", help="Keep rows with this predicted label (repeatable).")] = None,
        merge: Annotated[bool, typer.Option("--merge", help="BED: merge overlapping/adjacent windows with the same label.")] = False,
        max_n: Annotated[Optional[float], typer.Option(
            "--max-n", help="BED: skip windows with more than this fraction of N (assembly gaps; ambiguity codes "
            "count as N, as the model reads them; DNA models). 1 keeps all.  [default: 0.5]", show_default=False)] = None,
        region: RegionOpt = None,
        regions: RegionsOpt = None,
        reference: ReferenceOpt = None,
        shard: ShardOpt = None,
        metrics: Annotated[Optional[str], typer.Option(
            "--metrics", metavar="FILE.tsv",
            help="Score the predictions against the input's labels (a table with a label column, FASTA with "
                 "'label=' in its headers, or class folders, as train reads them) and write the metrics train "
                 "reports for test data to this TSV ('-': stdout).")] = None,
        label_column: Annotated[Optional[list[str]], typer.Option(
            "--label-column", help="--metrics: the table's label column(s), as for train (default: 'label'; "
                                   "regression: the model's targets).")] = None,
        label_regex: Annotated[Optional[str], typer.Option(
            "--label-regex", help="--metrics: regex with one (group) capturing the label in FASTA headers, as "
                                  "for train (default: label=(\\S+)).")] = None,
        batch_size: Annotated[str, typer.Option("--batch-size", help="Sequences per batch, or auto (fits memory).")] = "auto",
        device: DeviceOpt = "auto",
        precision: PrecisionOpt = "auto",
    ) -> None:
        """Classify sequences (TSV, one row per record) or scan genomes in windows (BED).

        Output kind: --format, else the -o extension (.tsv/.tsv.gz: one row per record, read whole;
        .bed/.bed.gz: windows, sorted, 0-based; .bed.gz is bgzipped + tabix-indexed). On stdout: BED when
        the first record is longer than the window and has no base qualities (a genome), else TSV.

        Example: hyena-glt classify example_data/MT-human.fa -o promoters.bed --label promoter --merge
        """
        from hyena_glt.inference import SEQUENCE_TASKS, Predictor, write_predictions_bed, write_predictions_tsv
        from hyena_glt.io.sequences import read_many

        check_files([*inputs, regions, reference], [output, metrics])
        if metrics == "-" and output == "-":
            raise UsageError("--metrics - and the predictions (-o) cannot both go to stdout: give -o FILE")
        if metrics is None and (label_column or label_regex):
            raise UsageError(f"{'--label-column' if label_column else '--label-regex'} says where --metrics finds "
                             "the labels: give --metrics FILE.tsv too")
        shard_index, shard_count = parse_shard(shard)
        explicit = output_format(output, fmt, FORMATS, "") if (fmt or output != "-") else ""
        if explicit == "tsv" and merge:
            raise UsageError("--merge needs BED output (-o out.bed or --format bed)")
        predictor = Predictor.from_pretrained(
            model, tasks=SEQUENCE_TASKS, device=device, precision=precision, batch_size=batch_size,
            window=window, stride=stride, last=last, rc_average=rc_average,
            max_n=DEFAULT_MAX_N if max_n is None else max_n)

        if metrics is None:
            records = read_many(inputs, regions=region, regions_bed=regions, reference=reference,
                                alphabet=predictor.alphabet)
        else:
            labelled = _labelled_input(inputs, predictor, reference, bool(region or regions), explicit,
                                       filtered=shard is not None or min_score is not None or bool(label),
                                       label_columns=label_column, label_regex=label_regex)
            records = iter(labelled.records())
        first = next(records, None)
        if first is None and not (region or regions):
            raise InputError("no sequences in the input", path=", ".join(inputs))
        if first is None:  # no reads in the regions: an empty result, as `samtools view` gives
            log.warning("%s: no records in the given region(s)", ", ".join(inputs))
            kind = explicit or "tsv"
        else:
            kind = explicit or _auto_kind(first, predictor.window)
            records = progress(itertools.chain([first], records), "classifying")
        if kind == "tsv" and (window is not None or stride is not None or max_n is not None):
            # refused rather than ignored: a TSV row is a whole record
            given = "--max-n applies" if window is None and stride is None else "--window/--stride apply"
            raise UsageError(f"{given} to window scans (BED output, -o out.bed); TSV output has "
                             "one row per record, read whole")
        options = dict(shard=(shard_index, shard_count), min_score=min_score, labels=label or None,
                       header=shard_index == 0)
        if kind == "bed":
            trained = predictor.metadata.get("window")
            if window is not None and trained and window != trained:
                # any length runs (the filters fit it), but the model's scores are calibrated on its own
                log.warning("--window %d: the model was trained on %d-unit windows, so its scores for %d-unit "
                            "windows may be off (its recorded metrics are for %d)", window, trained, window, trained)
            rows = write_predictions_bed(predictor, records, output, merge=merge, **options)
        else:
            if merge:
                raise UsageError("--merge needs BED output (-o out.bed or --format bed)")
            values = [] if metrics is not None else None
            rows = write_predictions_tsv(predictor, records, output, values_out=values, **options)
        log.info("wrote %d %s row(s) to %s", rows, kind.upper(), "stdout" if output == "-" else output)
        if metrics is not None:
            _write_metrics(metrics, inputs[0], predictor.task, values, labelled.labels)


def _labelled_input(inputs: list[str], predictor, reference, regional: bool, explicit: str, filtered: bool,
                    **read):
    """The one labelled input --metrics scores, read as `train` reads test data (labels in the model's class
    order), its records whole."""
    from hyena_glt.io import datasets

    if len(inputs) != 1 or regional:
        raise UsageError("--metrics scores one labelled input (a table with a label column, FASTA with 'label=' "
                         "in its headers, or class folders), not several inputs or regions")
    if filtered:
        raise UsageError("--metrics scores every record: not with --shard, --min-score or --label")
    if explicit == "bed":
        raise UsageError("--metrics scores records read whole (TSV output), not windows (BED)")
    names = predictor.output_names
    regression = predictor.task == "regression"

    def load(labels):
        return datasets.load_labelled(inputs[0], predictor.task, reference=reference, alphabet=predictor.alphabet,
                                      class_names=None if regression else labels,
                                      target_names=names if regression else None, **read)

    # a model trained with --class-names records the labels its data wrote (0, 1): test data may write those, or
    # the class names (non_promoter, promoter)
    written = predictor.metadata.get("label_values")
    try:
        data = load(written or names)
    except InputError as first:
        if not written:
            raise
        try:
            data = load(names)
        except InputError:
            raise first from None  # (it names the labels the model's training data wrote)
    datasets.check_options_apply([data], reference=reference, **read)
    return data


def _write_metrics(dest: str, source: str, task: str, values: list, labels) -> None:
    """One header line and one row: the input, its number of records and the metrics (as train's test)."""
    import numpy as np

    from hyena_glt.io.writers import text_output
    from hyena_glt.training.metrics import prediction_metrics, warn_undefined

    scores = prediction_metrics(task, np.concatenate(values), labels)
    warn_undefined(scores, "stdin" if source == "-" else source, log)
    with text_output(dest) as fh:
        fh.write("\t".join(["input", "n", *scores]) + "\n")
        fh.write("\t".join(["stdin" if source == "-" else source, str(len(labels)),
                            *(f"{v:.6g}" for v in scores.values())]) + "\n")
    log.info("metrics: %s (wrote %s)", " ".join(f"{k} {v:.6g}" for k, v in scores.items()),
             "stdout" if dest == "-" else dest)


def _auto_kind(first, window: int | None) -> str:
    from hyena_glt.inference import looks_like_genome

    if looks_like_genome(first, window):
        log.info("writing BED windows: record '%s' (%d bp) is longer than the %d-unit window "
                 "(use --format tsv for one row per record)", first.id, len(first.seq), window)
        return "bed"
    return "tsv"

