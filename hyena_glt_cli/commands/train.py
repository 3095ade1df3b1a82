"""`hyena-glt train`: fit a model on labelled sequences (or plain sequence for --task lm)."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from hyena_glt.errors import UsageError

from ..common import DeviceOpt, PrecisionOpt, Settings, check_files, flag

LM_DEFAULT_WINDOW = 1024


def _parse_pairs(values: list[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        for item in value.split(",") if option == "--class-names" else [value]:
            name, sep, rest = item.partition("=")
            if not sep or not name or not rest:
                raise UsageError(f"{option} takes NAME=VALUE (got '{item}')")
            pairs.append((name.strip(), rest.strip()))
    return pairs


def _class_display_names(values: list[str]) -> dict[str, str]:
    """--class-names LABEL=NAME,... as a mapping; a label named twice is a UsageError (the names themselves
    are checked against the classes by ``datasets.apply_class_display_names``)."""
    pairs = _parse_pairs(values, "--class-names")
    labels = [label for label, _ in pairs]
    again = next((label for i, label in enumerate(labels) if label in labels[:i]), None)
    if again is not None:
        raise UsageError(f"--class-names names class '{again}' twice; give each class one name")
    return dict(pairs)


def _parse_json_values(values: list[str], option: str) -> dict:
    """KEY=JSON pairs: the value is JSON (a number, list, object, quoted string...), or, when it does not
    start like JSON, a bare word kept as a string (``--set pooling=attention``). Broken JSON is an error."""
    parsed = {}
    for key, text in _parse_pairs(values, option):
        try:
            parsed[key] = json.loads(text)
        except json.JSONDecodeError as err:
            if text[:1] in '{["':
                raise UsageError(f"{option} {key}={text}: not valid JSON ({err.msg} at character "
                                 f"{err.pos + 1})") from None
            parsed[key] = text
    return parsed


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    return [p for p in (folder, *folder.parents) if not p.exists()]


def _check_streams_read_once(inputs) -> None:
    """A stream (stdin, a pipe) can be read once: named twice (a named pipe as TRAIN_FILE and --val, '-' and
    /dev/stdin, '-' for two --class-fasta classes) the second read would wait forever for a writer that is
    gone (a named pipe) or find nothing. Told apart by what they are, not how they are spelled."""
    from hyena_glt.io.sequences import is_stream

    seen: dict[tuple, str] = {}
    for name in (str(f) for f in inputs if f is not None):
        if not is_stream(name):
            continue
        try:
            info = os.fstat(sys.stdin.fileno()) if name == "-" else os.stat(name)
        except (OSError, AttributeError, ValueError):  # stdin closed (said when it is read) or not a real file
            key: tuple = (name,)
        else:
            key = (info.st_dev, info.st_ino)
        if key in seen:
            first = seen[key]
            shown = "stdin ('-')" if name == "-" else name
            both = shown if first == name else f"{'stdin' if first == '-' else first} and {shown}"
            raise UsageError(f"{both}: given twice, but a stream can be read only once; give the data as a file")
        seen[key] = name


def _command_line() -> str:
    # under `torchrun -m hyena_glt_cli` argv[0] is a path to __main__.py; record the user-facing name
    return " ".join(shlex.quote(a) for a in ["hyena-glt", *sys.argv[1:]])


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        ctx: typer.Context,
        train_files: Annotated[Optional[list[str]], typer.Argument(
            metavar="TRAIN_FILE...",
            help="Training data: CSV/TSV/Parquet with sequence,label columns; FASTA with 'label=X' in headers; a folder "
                 "with a folder of sequences per class (Genomic Benchmarks: DATASET/train); BED with --reference; "
                 "plain FASTA/FASTQ for --task lm. Not needed with --class-fasta.")] = None,
        output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write (created).")] = ...,
        task: Annotated[str, typer.Option("--task", help="classification, multilabel, regression or lm.")] = "classification",
        val: Annotated[Optional[Path], typer.Option("--val", help="Validation data (same layout as the training data).")] = None,
        val_fraction: Annotated[Optional[float], typer.Option("--val-fraction", help="Hold out this fraction of the training data (seeded; stratified by class).")] = None,
        test: Annotated[Optional[Path], typer.Option("--test", help="Test data, scored once with the best model at the end.")] = None,
        data_format: Annotated[Optional[str], typer.Option("--data-format", help="table, fasta or bed (default: from the extension).")] = None,
        sequence_column: Annotated[Optional[str], typer.Option("--sequence-column", help="Table column with the sequence (default: 'sequence').")] = None,
        label_column: Annotated[Optional[list[str]], typer.Option("--label-column", help="Label/target column (repeatable; BED: 1-based column number). Default: 'label' (classification), all other columns (regression/multilabel).")] = None,
        label_regex: Annotated[Optional[str], typer.Option("--label-regex", help="Regex with one (group) capturing the label in FASTA headers (default: label=(\\S+)).")] = None,
        class_fasta: Annotated[Optional[list[str]], typer.Option("--class-fasta", help="NAME=FILE: one FASTA per class (repeatable).")] = None,
        reference: Annotated[Optional[Path], typer.Option("--reference", help="Genome FASTA for BED intervals.")] = None,
        class_names: Annotated[Optional[list[str]], typer.Option("--class-names", help="Display names for labels, e.g. 0=non_promoter,1=promoter.")] = None,
        init: Annotated[Optional[str], typer.Option("--init", metavar="<path|name>", help="Start from this model folder's (or bundled model's) weights (fine-tuning; e.g. an LM from --task lm): its backbone, and its head when it predicts the same classes. The architecture, tokenizer and patcher are that model's.")] = None,
        preset: Annotated[Optional[str], typer.Option("--preset", help="Model size: tiny, small or base (default: tiny).")] = None,
        d_model: Annotated[Optional[int], typer.Option("--d-model", help="Override the preset's width.")] = None,
        n_layers: Annotated[Optional[int], typer.Option("--n-layers", help="Override the preset's depth.")] = None,
        dropout: Annotated[Optional[float], typer.Option("--dropout", help="Dropout rate.")] = None,
        config_set: Annotated[Optional[list[str]], typer.Option("--set", help="Override any model config field, KEY=VALUE with a JSON value (e.g. --set d_inner=256 --set attn_layers=[1]).")] = None,
        tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", help="nucleotide, nucleotide:softmask, kmer:K, byte or protein (default: nucleotide).")] = None,
        patcher: Annotated[Optional[str], typer.Option("--patcher", help="none, static:K or entropy (default: none).")] = None,
        entropy_model: Annotated[Optional[str], typer.Option("--entropy-model", metavar="<path|name>", help="LM folder (from --task lm) or bundled LM name (dna-lm-tiny) for --patcher entropy.")] = None,
        target_patch_length: Annotated[Optional[float], typer.Option("--target-patch-length", help="Mean patch length the entropy threshold is calibrated to.")] = None,
        window: Annotated[Optional[int], typer.Option("--window", help="Sequence length: longer sequences are centre-cropped, shorter padded (default: the longest training sequence; lm: chunk length, default 1024).")] = None,
        stride: Annotated[Optional[int], typer.Option("--stride", help="lm: step between chunks (default: --window).")] = None,
        epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training data.")] = 10,
        max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Stop after this many optimiser steps (overrides --epochs).")] = None,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Sequences per micro-batch (per process).")] = 64,
        grad_accum: Annotated[int, typer.Option("--grad-accum", help="Micro-batches per optimiser step.")] = 1,
        lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW).")] = 1e-3,
        weight_decay: Annotated[float, typer.Option("--weight-decay", help="AdamW weight decay.")] = 0.01,
        warmup: Annotated[float, typer.Option("--warmup", help="Warm-up: a fraction of all steps (< 1) or a step count.")] = 0.05,
        grad_clip: Annotated[float, typer.Option("--grad-clip", help="Clip the gradient norm (0: off).")] = 1.0,
        rc_augment: Annotated[Optional[bool], typer.Option("--rc-augment/--no-rc-augment", help="Reverse-complement half of each batch (default: on for DNA).")] = None,
        curriculum_start: Annotated[Optional[int], typer.Option("--curriculum-start", help="Length curriculum: train on random crops of this length first, growing to the full window over --curriculum-fraction of the steps.")] = None,
        curriculum_fraction: Annotated[float, typer.Option("--curriculum-fraction", help="Fraction of steps over which the curriculum grows.")] = 0.3,
        patience: Annotated[Optional[int], typer.Option("--patience", help="Early stopping: evaluations without improvement before stopping.")] = None,
        select_metric: Annotated[Optional[str], typer.Option("--select-metric", help="Validation metric for the best checkpoint (default: mcc / macro_f1 / pearson / loss).")] = None,
        eval_every: Annotated[Optional[int], typer.Option("--eval-every", help="Evaluate every N steps and at the end (default: each epoch).")] = None,
        checkpoint_every: Annotated[Optional[int], typer.Option("--checkpoint-every", help="Write the resumable checkpoint every N steps (also each epoch and every 10 minutes).")] = None,
        keep_checkpoints: Annotated[bool, typer.Option("--keep-checkpoints/--no-keep-checkpoints", help="Keep OUT/checkpoints after a successful run.")] = True,
        meta: Annotated[Optional[list[str]], typer.Option("--meta", help="Extra KEY=JSON recorded in the model's hyena_glt.json (e.g. a benchmark reference).")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue the run in -o from its last checkpoint (same command otherwise).")] = False,
        device: DeviceOpt = "auto",
        precision: PrecisionOpt = "auto",
    ) -> None:
        """Train a model.

        Example: hyena-glt train example_data/gue/prom_core_all/train.csv --val example_data/gue/prom_core_all/dev.csv -o promoter_model
        """
        from hyena_glt.io import datasets
        from hyena_glt.tokenizers import get_tokenizer
        from hyena_glt.training import (TrainOptions, check_output_dir, distributed_env,
                                        train as run_training)

        global_options = ctx.find_object(Settings) or Settings()
        if distributed_env()[1] != 0:  # under torchrun rank 0 alone reports progress; others warn only
            logging.getLogger("hyena_glt").setLevel(max(logging.WARNING, logging.getLogger("hyena_glt").level))
        seed = global_options.seed
        check_files([*(train_files or []), val, test], folders=[output])
        _check_streams_read_once([*(train_files or []), val, test,
                                  *(f for _, f in _parse_pairs(class_fasta or [], "--class-fasta"))])
        if val is not None and val_fraction is not None:
            raise UsageError("give either --val or --val-fraction, not both")
        if task == "lm" and window is None:
            window = LM_DEFAULT_WINDOW
        if stride is not None and task != "lm":
            raise UsageError("--stride is for --task lm (the step between training chunks)")
        overrides = _parse_json_values(config_set or [], "--set")
        for key, value in (("d_model", d_model), ("n_layers", n_layers), ("dropout", dropout)):
            if value is not None and key in overrides:
                raise UsageError(f"--set {key}={json.dumps(overrides[key])} and {flag(key)} {value} both set {key}: give one")
        overrides.update({k: v for k, v in (("d_model", d_model), ("n_layers", n_layers), ("dropout", dropout)) if v is not None})
        options = TrainOptions(
            task=task, preset=preset, config_overrides=overrides, tokenizer=tokenizer, patcher=patcher,
            init=init,
            entropy_model=str(entropy_model) if entropy_model else None, target_patch_length=target_patch_length,
            window=window, epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
            lr=lr, weight_decay=weight_decay, warmup=warmup, grad_clip=grad_clip, rc_augment=rc_augment,
            curriculum_start=curriculum_start, curriculum_fraction=curriculum_fraction, patience=patience,
            select_metric=select_metric, eval_every=eval_every, checkpoint_every=checkpoint_every,
            keep_checkpoints=keep_checkpoints, device=device, precision=precision, seed=seed,
        )
        options.check()
        options.resolve_architecture(output if resume else None)  # with --init: its tokenizer, read before the data
        extra_metadata = _parse_json_values(meta or [], "--meta")
        mapping = _class_display_names(class_names or [])
        # sequences are checked against the tokenizer's alphabet, as classify checks them
        alphabet = get_tokenizer(options.tokenizer).alphabet
        missing_folders = _missing_folders(output)
        check_output_dir(output, resume)

        # --- read and check every input before anything is written -----------------------------------
        read = dict(fmt=data_format, sequence_column=sequence_column, label_columns=label_column,
                    label_regex=label_regex, reference=reference, window=window, stride=stride,
                    alphabet=alphabet)
        data_files: dict[str, list[str]] = {}
        if class_fasta:
            if train_files:
                raise UsageError("give training data either as TRAIN_FILE or as --class-fasta, not both")
            if task != "classification":
                raise UsageError("--class-fasta is for --task classification")
            specs = _parse_pairs(class_fasta, "--class-fasta")
            train_data = datasets.load_class_fastas(specs, alphabet=alphabet)
            data_files["train"] = [f for _, f in specs]
        else:
            if not train_files:
                raise UsageError("no training data: give TRAIN_FILE (or --class-fasta NAME=FILE ...)")
            if task == "lm":
                train_data = datasets.load_lm_sequences(train_files, window=window, stride=stride,
                                                        alphabet=alphabet, fmt=data_format, reference=reference)
            else:
                if len(train_files) > 1:
                    raise UsageError("give one TRAIN_FILE for labelled data (several only for --task lm)")
                train_data = datasets.load_labelled(train_files[0], task, **read)
            data_files["train"] = list(train_files)
        encode = dict(read, class_names=train_data.class_names, target_names=train_data.target_names)
        val_data = test_data = None
        if val is not None:
            val_data = datasets.load_labelled(val, task, **encode)
            data_files["val"] = [str(val)]
        elif val_fraction is not None:
            train_data, val_data = datasets.split_validation(train_data, val_fraction, seed)
        if test is not None:
            test_data = datasets.load_labelled(test, task, **encode)
            data_files["test"] = [str(test)]
        # (validation and test data are read in the training window: centre-cropped or padded to it)
        datasets.check_lengths(train_data, window, "training")
        datasets.check_options_apply([train_data, val_data, test_data], sequence_column=sequence_column,
                                     label_columns=label_column, label_regex=label_regex, reference=reference)
        if mapping:
            for data in (train_data, val_data, test_data):
                if data is not None:
                    datasets.apply_class_display_names(data, mapping)

        try:
            result = run_training(
                options, train_data, val_data, output, test_data=test_data, data_files=data_files,
                command=_command_line(), resume=resume, extra_metadata=extra_metadata,
            )
        except BaseException:
            # a run that failed before writing anything leaves no empty folder (nor parents it made) behind
            for folder in missing_folders:
                if not folder.is_dir() or any(folder.iterdir()):
                    break
                folder.rmdir()
            raise
        logging.getLogger("hyena_glt").info(
            "wrote %s (%d steps, %.0f s)%s", result.output_dir, result.steps, result.wall_time_s,
            " (stopped early)" if result.stopped_early else "",
        )
