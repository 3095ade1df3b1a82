"""Labelled sequence data for training: CSV/TSV (or Parquet) tables, FASTA with labels in the headers, one FASTA per
class, a folder per class (Genomic Benchmarks' layout), BED intervals cut from a reference genome, and plain
FASTA chunked into windows for language modelling.

Every reader returns a :class:`LabelledData` whose ``labels`` are already numeric:

- ``classification``: int64 ``(N,)`` indices into ``class_names``;
- ``multilabel``: float32 ``(N, C)`` of 0/1, columns named by ``class_names``;
- ``regression``: float32 ``(N, T)``, columns named by ``target_names``;
- ``lm``: ``None`` (the sequence is its own target).

Validation and test data are encoded with the *training* class names (:func:`load_labelled` with
``class_names=``), so a label seen only in validation is an :class:`InputError` rather than a silent new
class. Errors name the file and the line or record.

With ``alphabet=`` (the tokenizer's ``alphabet``: 'nucleotide', 'protein'; None = no check) every sequence is
checked as ``read_sequences`` checks it for `classify`: a character outside the alphabet is an
:class:`InputError` naming the file, the line or record and the position; ambiguity codes read as N (X
for protein).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import logging
import math
import os
import re
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import HyenaGLTError, InputError, UsageError, option
from .sequences import (ID_COLUMNS, PARQUET_MAGIC, SEQUENCE_COLUMNS, _AlphabetCheck, _decompressed_head, _read_head,
                        check_distinct_columns, is_stream, fetch_region, folder_files, gunzip, natural_order,
                        parquet_rows)

log = logging.getLogger("hyena_glt")

TASKS = ("classification", "multilabel", "regression", "lm")
# multilabel values in one table cell or header: "a;b", "a|b" or "a,b" (commas only in tab-separated files)
_MULTI_SPLIT = re.compile(r"[;|]")
DEFAULT_LABEL_REGEX = r"(?:^|\s)label=(\S+)"
TABLE_EXTENSIONS = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".parquet": None, ".pq": None}
FASTA_EXTENSIONS = {".fa", ".fasta", ".fna", ".fas", ".ffn", ".fq", ".fastq"}
DATA_FORMATS = ("table", "fasta", "bed")
# csv's default cell limit is 128 KiB; a training table may hold longer sequences
_CSV_FIELD_LIMIT = 2**31 - 1


@dataclass
class LabelledData:
    """Sequences with their ids and numeric labels (see the module docstring for the label layout)."""

    ids: list[str]
    sequences: list[str]
    labels: np.ndarray | None
    task: str
    class_names: list[str] | None = None
    target_names: list[str] | None = None
    sources: list[str] = field(default_factory=list)
    # how the labels were given: 'table', 'fasta' (in headers), 'bed', 'folder' (class folders), 'class_fasta', 'lm'
    layout: str = ""
    # the classes as the data write them, where display names replaced them (apply_class_display_names)
    label_values: list[str] | None = None

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def num_outputs(self) -> int | None:
        if self.task in ("classification", "multilabel"):
            return len(self.class_names or [])
        if self.task == "regression":
            return len(self.target_names or [])
        return None

    def subset(self, index: Sequence[int] | np.ndarray) -> "LabelledData":
        index = np.asarray(index, dtype=np.int64)
        return LabelledData(
            ids=[self.ids[i] for i in index],
            sequences=[self.sequences[i] for i in index],
            labels=None if self.labels is None else self.labels[index],
            task=self.task,
            class_names=self.class_names,
            target_names=self.target_names,
            sources=list(self.sources),
            layout=self.layout,
            label_values=self.label_values,
        )

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=len(self.sequences))

    def records(self) -> list:
        """The sequences as records (each one of its own, as a table row is), e.g. for a ``Predictor``."""
        from .sequences import SequenceRecord

        source = ", ".join(self.sources)
        return [SequenceRecord(i, s, standalone=True, source=source, number=n)
                for n, (i, s) in enumerate(zip(self.ids, self.sequences), 1)]


# ----------------------------------------------------------------------------------------------------
# entry points


def load_labelled(
    path: str | Path,
    task: str,
    *,
    fmt: str | None = None,
    sequence_column: str | None = None,
    label_columns: Sequence[str] | None = None,
    label_regex: str | None = None,
    reference: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    target_names: Sequence[str] | None = None,
    window: int | None = None,
    stride: int | None = None,
    alphabet: str | None = None,
) -> LabelledData:
    """Read one labelled file; ``fmt`` is 'table', 'fasta' or 'bed' (default: from the extension/content;
    a ``fmt`` the content contradicts is a UsageError).

    ``class_names``/``target_names`` (from the training set) fix the label encoding of validation and test
    files. For ``task='lm'`` the file is plain sequence (FASTA/FASTQ/...) cut into ``window``-long chunks.
    ``alphabet`` checks every sequence (see the module docstring).
    """
    if task not in TASKS:
        raise UsageError(f"unknown task '{task}' (use one of: {', '.join(TASKS)})")
    if task != "lm" and is_stream(path):
        # tables and labelled FASTA are read twice (format, then records): a stream is copied to a file first
        with _spooled(path) as copy:
            data = load_labelled(copy, task, fmt=fmt, sequence_column=sequence_column, label_columns=label_columns,
                                 label_regex=label_regex, reference=reference, class_names=class_names,
                                 target_names=target_names, window=window, stride=stride, alphabet=alphabet)
        data.sources = [str(path)]
        data.ids = _named_as_stream(data.ids, copy, path)
        return data
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path=str(path))
    if path.is_dir() and task != "lm":
        if fmt is not None:
            raise UsageError(f"{option('data_format', fmt)}, but this is a folder (of class folders: leave "
                             f"{option('data_format')} out)", path=str(path))
        data = _read_class_folders(path, task, class_names, alphabet)
        data.layout = "folder"
        return data
    if task == "lm":
        return load_lm_sequences([path], window=window, stride=stride, alphabet=alphabet, fmt=fmt, reference=reference)
    fmt = check_format(path, fmt) if fmt else detect_format(path)
    if fmt == "table":
        data = _read_table(path, task, sequence_column, label_columns, class_names, target_names, alphabet)
    elif fmt == "fasta":
        data = _read_fasta_labels(path, task, label_regex, class_names, target_names, alphabet)
    elif reference is None:
        raise UsageError(f"BED intervals need a reference genome ({option('reference')}) to read their sequences",
                         path=str(path))
    else:
        data = _read_bed(path, task, Path(reference), label_columns, class_names, target_names, alphabet)
    data.layout = fmt
    return data


# The options of load_labelled that only some layouts read (and what they are for): one given for data of none
# of those layouts is a mistake, not something to ignore.
LAYOUT_OPTIONS = {
    "sequence_column": (("table",), "tables"),
    "label_columns": (("table", "bed"), "tables and BED files"),
    "label_regex": (("fasta",), "FASTA with labels in the headers"),
    "reference": (("bed", "lm"), "BED intervals (and CRAM reads)"),
}
_LAYOUT_NAMES = {"table": "a table", "fasta": "FASTA with labels in the headers", "bed": "BED intervals",
                 "folder": "class folders (the folder names are the labels)", "class_fasta": "one FASTA per class",
                 "lm": "sequences to model"}


def check_options_apply(datasets: Sequence["LabelledData"], **given) -> None:
    """A UsageError for an option given (not None) that none of ``datasets`` (training, validation, test) read:
    e.g. a label regex for a table, whose labels are in a column."""
    layouts = {d.layout for d in datasets if d is not None}
    for name, value in given.items():
        read_by, what = LAYOUT_OPTIONS[name]
        if value is None or value == [] or layouts & set(read_by):
            continue
        held = " and ".join(sorted(_LAYOUT_NAMES.get(layout, layout) for layout in layouts))
        raise UsageError(f"{option(name)} applies to {what}; the data given are {held}")


def load_class_fastas(
    specs: Sequence[tuple[str, str | Path]], *, class_names: Sequence[str] | None = None,
    alphabet: str | None = None,
) -> LabelledData:
    """One FASTA (or FASTQ/BAM: anything :func:`read_sequences` reads) per class: ``[(name, path), ...]``;
    ``alphabet`` checks every sequence (see the module docstring)."""
    from .sequences import read_sequences

    names = [name for name, _ in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"{option('class_fasta')} names must be distinct (got {', '.join(names)})")
    _check_class_names(names, "class_fasta")
    ids, seqs, raw, where = [], [], [], []
    for name, file in specs:
        n_before = len(seqs)
        for rec in read_sequences(str(file), alphabet=alphabet):
            if not rec.seq:  # it would be trained on as a record of padding alone
                raise _error("empty sequence", str(file), rec.id)
            ids.append(rec.id)
            seqs.append(rec.seq)
            raw.append(name)
            where.append((str(file), rec.id))
        if len(seqs) == n_before:
            raise InputError(f"class '{name}' has no sequences", path=str(file))
    if class_names is None and len(specs) < 2:
        raise UsageError(f"{option('class_fasta')} needs at least two classes (NAME=FILE, repeated)")
    labels, found = _encode_single(raw, class_names, where, "class")
    return LabelledData(ids, seqs, labels, "classification", class_names=found,
                        sources=[str(f) for _, f in specs], layout="class_fasta")


def load_lm_sequences(
    paths: Sequence[str | Path], *, window: int | None, stride: int | None = None,
    alphabet: str | None = None, fmt: str | None = None, reference: str | Path | None = None,
) -> LabelledData:
    """Plain sequences for next-unit language modelling, cut into ``window``-long chunks (the last,
    shorter chunk of each record is kept when at least a quarter of a window long; records shorter than
    that are kept whole only when no window is set). ``alphabet`` checks every sequence (see the module
    docstring); ``fmt`` ('fasta' or 'table'), when given, must agree with each file's content; ``reference``
    is the FASTA a CRAM file's reads need."""
    from .sequences import read_sequences

    if window is not None and window < 1:
        raise UsageError(f"{option('window')} must be at least 1 (got {window})")
    if stride is not None and stride < 1:
        raise UsageError(f"{option('stride')} must be at least 1 (got {stride})")
    if fmt is not None:
        if fmt == "bed":
            raise UsageError(f"{option('data_format', 'bed')} is for labelled intervals; {option('task', 'lm')} reads "
                             "sequences "
                             "(FASTA/FASTQ/SAM/BAM/CRAM, or a table with a sequence column)")
        for p in paths:
            # (read_sequences reads a stream once, and a folder file by file: their content is checked there)
            if not is_stream(p) and not Path(p).is_dir():
                check_format(Path(p), fmt)
    # a stream is checked as it is read (the formats its content may be in)
    formats = None if fmt is None else ("table",) if fmt == "table" else ("fasta", "fastq", "sam", "bam", "cram")
    ids, seqs = [], []
    with contextlib.ExitStack() as copies:
        # a stream is copied to a file as it is read, for its sha256 (what resuming a training run checks)
        readable = {str(p): copies.enter_context(_spooled(p)) if is_stream(p) else str(p) for p in paths}
        for path, source in readable.items():
            first = len(ids)
            _chunk_records(read_sequences(source, alphabet=alphabet, formats=formats, reference=reference), window,
                           stride, ids, seqs)
            if source != path:
                ids[first:] = _named_as_stream(ids[first:], source, path)
    if not seqs:
        raise InputError("no sequences to train on", path=", ".join(str(p) for p in paths))
    return LabelledData(ids, seqs, None, "lm", sources=[str(p) for p in paths], layout="lm")


def _chunk_records(records: Iterable, window: int | None, stride: int | None, ids: list[str],
                   seqs: list[str]) -> None:
    """Append the ``window``-long chunks of each record to ``ids``/``seqs`` (see load_lm_sequences)."""
    for rec in records:
        if window is None or len(rec.seq) <= window:
            if rec.seq:
                ids.append(rec.id)
                seqs.append(rec.seq)
            continue
        step = stride or window
        min_last = max(1, window // 4)
        for start in range(0, len(rec.seq), step):
            chunk = rec.seq[start:start + window]
            if len(chunk) < window and (len(chunk) < min_last or start + len(chunk) < len(rec.seq)):
                break
            ids.append(f"{rec.id}:{start + 1}-{start + len(chunk)}")
            seqs.append(chunk)
            if start + window >= len(rec.seq):
                break


def _named_as_stream(ids: list[str], copy: str, path) -> list[str]:
    """Rows of a table without an id column are named FILE:LINE: the stream's name, as classify names them,
    not its temporary copy's."""
    copied, stem = f"{Path(copy).name}:", "stdin" if str(path) == "-" else Path(str(path)).name
    return [f"{stem}:{i[len(copied):]}" if i.startswith(copied) else i for i in ids]


def detect_format(path: Path) -> str:
    """'table', 'fasta' or 'bed' from the extension (``.gz`` ignored), else from the first character."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bgz"):
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext in TABLE_EXTENSIONS:
        return "table"
    if ext in FASTA_EXTENSIONS:
        return "fasta"
    if ext == ".bed":
        return "bed"
    return "fasta" if _holds_records(path) else "table"


def check_format(path: Path, fmt: str) -> str:
    """``fmt`` (the data format) after checking the file's content does not contradict it: 'fasta' must be
    sequence records (FASTA/FASTQ/SAM/BAM/CRAM), 'table' and 'bed' must not be."""
    if fmt not in DATA_FORMATS:
        raise UsageError(f"unknown data format '{fmt}' (use one of: {', '.join(DATA_FORMATS)})")
    records = _holds_records(path)
    if fmt == "fasta" and not records:
        raise UsageError(f"{option('data_format', 'fasta')}, but the file holds no FASTA/FASTQ records (it does not "
                         f"start with '>' or '@'); leave {option('data_format')} out, or give table or bed", path=str(path))
    if fmt != "fasta" and records:
        raise UsageError(f"{option('data_format', fmt)}, but the file holds FASTA/FASTQ (or SAM/BAM/CRAM) records; "
                         f"leave {option('data_format')} out, or give fasta", path=str(path))
    return fmt


def _holds_records(path: Path) -> bool:
    """Whether the file's content (gzip looked into) is sequence records that ``read_sequences`` reads
    (FASTA, FASTQ, SAM, BAM, CRAM) rather than text lines (a table, BED). A missing file, a folder or a
    gzip file truncated within its first block is an InputError."""
    head = _read_head(str(path))
    if head[:4] == b"CRAM":
        return True
    if head[:2] == b"\x1f\x8b":
        head = _decompressed_head(head, str(path))
    if head[:4] == b"BAM\x01":
        return True
    return head.lstrip()[:1] in (b">", b"@")


def split_validation(data: LabelledData, fraction: float, seed: int) -> tuple[LabelledData, LabelledData]:
    """Seeded split into (train, validation); stratified by class for classification."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < fraction < 1.0:
        raise UsageError(f"{option('val_fraction')} must be between 0 and 1 (got {fraction})")
    n_val = int(round(len(data) * fraction))
    if n_val < 1 or n_val >= len(data):
        raise InputError(f"{option('val_fraction', fraction)} of {len(data)} sequences leaves an empty split",
                         path=", ".join(data.sources))
    stratify = data.labels if data.task == "classification" else None
    if stratify is not None and np.bincount(stratify).min() < 2:
        stratify = None  # a class with one example cannot be split; fall back to a plain random split
    train_idx, val_idx = train_test_split(
        np.arange(len(data)), test_size=n_val, random_state=seed, shuffle=True, stratify=stratify
    )
    train, val = data.subset(np.sort(train_idx)), data.subset(np.sort(val_idx))
    _check_split_classes(data, train, fraction)
    return train, val


def _check_split_classes(data: LabelledData, train: LabelledData, fraction: float) -> None:
    """A class (or multilabel label) the split left without a training example: an InputError when fewer
    than two classes are left to learn, else a warning (the model can never predict it)."""
    if data.task == "classification":
        counts = np.bincount(train.labels, minlength=len(data.class_names or []))
    elif data.task == "multilabel":
        counts = train.labels.sum(0)
    else:
        return
    missing = [name for name, count in zip(data.class_names or [], counts) if count == 0]
    if not missing:
        return
    what = f"{option('val_fraction', fraction)} of {len(data)} sequences leaves no training example of " \
           f"{'class(es)' if data.task == 'classification' else 'label(s)'} {', '.join(map(repr, missing))}"
    if data.task == "classification" and len(counts) - len(missing) < 2:
        raise InputError(f"{what}; classification needs at least two classes to train on (give more data, "
                         f"a smaller {option('val_fraction')} or {option('val')})", path=", ".join(data.sources))
    log.warning("%s: %s; the model will not learn to predict them", ", ".join(data.sources), what)


# Training data of mixed lengths, with no window given, are read whole and padded to the longest, unless
# that stores more than this many units per unit of sequence (one genome among short records).
MAX_PADDING = 4


def check_lengths(data: LabelledData, window: int | None, what: str) -> None:
    """Training data of mixed lengths and no ``window``: the model reads each sequence whole (its window is
    the longest; the padding is masked, and batches are grouped by length), as logged. An InputError asking
    for a window when padding every sequence to the longest would store more than MAX_PADDING times the
    data's units."""
    if data.task == "lm" or window is not None or not len(data):
        return
    lengths = data.lengths()
    if lengths.min() == lengths.max():
        return
    i_short, i_long = int(lengths.argmin()), int(lengths.argmax())
    spread = (f"{what} sequences have mixed lengths ({lengths.min()} nt '{data.ids[i_short]}' to "
              f"{lengths.max()} nt '{data.ids[i_long]}')")
    padded = int(lengths.max()) * len(lengths) / max(1, int(lengths.sum()))
    if padded > MAX_PADDING:
        raise InputError(f"{spread}, and padding each to the longest would take {padded:.0f} times their length; "
                         f"give {option('window', 'N')} to centre-crop longer and pad shorter sequences to N units",
                         path=", ".join(data.sources))
    log.info("%s: %s: each is read whole, padded to %d units (%s N centre-crops longer ones to N)",
             ", ".join(data.sources), spread, lengths.max(), option("window"))


def fingerprint(path: str | Path) -> str | None:
    """sha256 of a file's bytes, recorded with a trained model so its data can be checked later. A stream
    (stdin, a pipe) cannot be read again: its sha256 is that of the bytes this process read from it, None
    if it has not read it. A folder's is the sha256 of its files' names and sha256s, in reading order."""
    if Path(path).is_dir():
        digest = hashlib.sha256()
        for name, file in folder_files(path):
            digest.update(f"{name}\t{fingerprint(file)}\n".encode())
        return digest.hexdigest()
    if str(path) == "-" or is_stream(path) or not Path(path).is_file():
        return _STREAM_SHA256.get(str(path))
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def apply_class_display_names(data: LabelledData, mapping: dict[str, str]) -> LabelledData:
    """Rename classes (``{'0': 'non_promoter', '1': 'promoter'}``); every key must be a class."""
    unknown = [k for k in mapping if k not in (data.class_names or [])]
    if unknown:
        raise UsageError(
            f"{option('class_names')}: no class {', '.join(map(repr, unknown))} in the training labels "
            f"({', '.join(data.class_names or [])})"
        )
    _check_class_names(list(mapping.values()), "class_names")
    names = [mapping.get(c, c) for c in data.class_names or []]
    _check_class_names(names, "class_names")
    data.label_values = data.label_values or list(data.class_names or [])
    data.class_names = names
    return data


def _check_class_names(names: Sequence[str], named_by: str) -> None:
    """Class names given as an option (``named_by``) become column names (``p_NAME`` in classify's TSV): each
    must be non-empty, free of tabs and line breaks, and distinct."""
    for name in names:
        if not name.strip():
            raise UsageError(f"{option(named_by)}: a class name is empty")
        if any(c in name for c in "\t\n\r"):
            raise UsageError(f"{option(named_by)}: class name {name!r} holds a tab or line break, which a class "
                             "name cannot")
    seen = set()
    for name in names:
        if name in seen:
            raise UsageError(f"{option(named_by)}: two classes are named '{name}'; give each class its own name")
        seen.add(name)


# sha256 of each stream this process has copied (_spooled), by its name: it can be read only once
_STREAM_SHA256: dict[str, str] = {}


@contextlib.contextmanager
def _spooled(path: str | Path):
    """A stream (stdin, a pipe, ``<(...)``) copied into a temporary file, for readers that read their input
    twice; errors and log messages about the copy name the stream. The copy is removed in every case: after
    an error, Ctrl-C, and a signal that ends the process (see ``_removed_on_signals``)."""
    name = str(path)
    fd, copy = tempfile.mkstemp(prefix="hyena-glt-", suffix=".spool")
    renamed = _StreamName(copy, "stdin" if name == "-" else name)
    log.addFilter(renamed)
    try:
        with _removed_on_signals(copy):
            with os.fdopen(fd, "wb") as sink:
                source = sys.stdin.buffer if name == "-" else open(name, "rb")
                try:
                    _STREAM_SHA256[name] = _copy_and_hash(source, sink)
                except OSError as err:
                    if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                        raise
                    # the temporary folder is full (a small /tmp on a cluster node): say which, and how to move it
                    raise HyenaGLTError(f"cannot copy the data into a temporary file in {os.path.dirname(copy)} "
                                        f"({err.strerror.lower()}): set TMPDIR to a folder with room for them",
                                        path=name) from None
                finally:
                    if source is not sys.stdin.buffer:
                        source.close()
            try:
                yield copy
            except HyenaGLTError as err:
                if err.path == copy:
                    err.path = name
                    err.args = (str(err),)
                raise
    finally:
        log.removeFilter(renamed)
        os.unlink(copy)


def _copy_and_hash(source, sink) -> str:
    """Copy ``source`` into ``sink``, 1 MB at a time → the sha256 of the bytes."""
    digest = hashlib.sha256()
    for block in iter(lambda: source.read(1 << 20), b""):
        digest.update(block)
        sink.write(block)
    return digest.hexdigest()


class _StreamName(logging.Filter):
    """Log messages (warnings while reading) name the stream, not its temporary copy."""

    def __init__(self, copy: str, name: str):
        super().__init__()
        self.copy, self.name = copy, name

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.name if str(arg) == self.copy else arg for arg in record.args)
        return True


@contextlib.contextmanager
def _removed_on_signals(copy: str):
    """While the temporary copy exists, a signal that would end the process at once (SIGTERM from kill or a
    scheduler, SIGHUP from a closed terminal, SIGUSR1 from SLURM) removes it first: Python runs no
    ``finally`` for those, so the copy, as large as the data, would stay in the temporary folder. The
    process then ends by the same signal, as it would have without the copy."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def remove_and_end(signum, frame):
        with contextlib.suppress(OSError):
            os.unlink(copy)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    previous = {}
    for sig in (getattr(signal, s, None) for s in ("SIGTERM", "SIGHUP", "SIGUSR1")):
        if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:  # (a handler of the caller's stays)
            previous[sig] = signal.signal(sig, remove_and_end)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ----------------------------------------------------------------------------------------------------
# label encoding


def _error(problem: str, path: str, where: int | str | None = None) -> InputError:
    """Tables and BED files point at a 1-based line; FASTA files at a record id."""
    if isinstance(where, int):
        return InputError(f"line {where}: {problem}", path=path)
    return InputError(problem, path=path, record=where)


def _sort_names(names: Iterable[str]) -> list[str]:
    """Labels in a stable order: numerically when they are all numbers ('2' before '10')."""
    names = list(set(names))
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)


def _number(value: str) -> float | None:
    """The finite number a label spells, or None ('promoter', 'nan')."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _place(location: tuple, path: str) -> str:
    """'line 3' or "record 'x'" (with its file when that is not ``path``) for a message."""
    file, where = location
    place = f"line {where}" if isinstance(where, int) else f"record {where!r}"
    return place if file == path else f"{file} {place}"


def _check_label_values(values: Iterable[tuple[str, tuple]], what: str = "label") -> None:
    """Label values (``(value, (path, line or record))``) that become class names: a tab or line break in
    one (it would break the TSV headers classify writes, ``p_NAME``) and two spellings of one number
    ('1' and '1.0', which would silently be two classes) are InputErrors naming where each appears."""
    first: dict[str, tuple] = {}
    by_number: dict[float, str] = {}
    for value, location in values:
        if value in first:
            continue
        if any(c in value for c in "\t\n\r"):
            raise _error(f"{what} {value!r} holds a tab or line break, which a class name cannot", *location)
        first[value] = location
        number = _number(value)
        if number is None:
            continue
        other = by_number.setdefault(number, value)
        if other != value:
            path = first[other][0]
            raise InputError(f"{what}s '{other}' ({_place(first[other], path)}) and '{value}' "
                             f"({_place(location, path)}) are the same number written two ways; write them one way",
                             path=path)


def _unknown_label(value: str, names: Sequence[str], what: str, location: tuple) -> InputError:
    """A validation/test label the training data do not have (saying so when training writes the same
    number another way)."""
    message = f"{what} '{value}' does not occur in the training data (training {what}s: {', '.join(names)})"
    number = _number(value)
    same = [n for n in names if number is not None and _number(n) == number]
    if same:
        message += f"; the training data write the number as '{same[0]}': write it one way"
    return _error(message, *location)


def _encode_single(
    raw: list[str], class_names: Sequence[str] | None, where: list, what: str
) -> tuple[np.ndarray, list[str]]:
    """Map label strings to indices. ``where[i]`` = (path, line) of ``raw[i]`` for error messages."""
    if class_names is None:
        names = _sort_names(raw)
    else:
        names = list(class_names)
        known = set(names)
        for i, value in enumerate(raw):
            if value not in known:
                raise _unknown_label(value, names, what, where[i])
    index = {name: i for i, name in enumerate(names)}
    return np.fromiter((index[v] for v in raw), dtype=np.int64, count=len(raw)), names


def _encode_multi(
    raw: list[list[str]], class_names: Sequence[str] | None, where: list
) -> tuple[np.ndarray, list[str]]:
    if class_names is None:
        names = _sort_names(v for row in raw for v in row)
    else:
        names = list(class_names)
    index = {name: i for i, name in enumerate(names)}
    labels = np.zeros((len(raw), len(names)), dtype=np.float32)
    for row_i, row in enumerate(raw):
        for value in row:
            if value not in index:
                raise _unknown_label(value, names, "label", where[row_i])
            labels[row_i, index[value]] = 1.0
    return labels, names


def _parse_float(value: str, path: str, line, column: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise _error(f"column '{column}': '{value}' is not a number", path, line) from None
    if not math.isfinite(number):
        raise _error(f"column '{column}': '{value}' is not a finite number", path, line)
    return number


def _check_alphabet(seqs: list[str], where: list, alphabet: str | None) -> None:
    """Check (and normalise: ambiguity codes to N/X) every sequence in place, as ``read_sequences``
    does for `classify`; the error names the file and the line or record (``where[i]``)."""
    if alphabet is None:
        return
    check = _AlphabetCheck(alphabet)
    for i, seq in enumerate(seqs):
        try:
            seqs[i] = check(seq, *where[i])
        except InputError as err:
            raise _error(err.problem, *where[i]) from None


def _finish(
    path: Path, task: str, ids, seqs, raw, where, class_names, target_names, value_names, alphabet=None
) -> LabelledData:
    """Check the sequences' alphabet, turn raw label values into the numeric layout of ``task`` and
    check classes are not empty."""
    if not seqs:
        raise InputError("no labelled sequences", path=str(path))
    _check_alphabet(seqs, where, alphabet)
    if task in ("classification", "multilabel"):
        _check_label_values((v, w) for r, w in zip(raw, where) for v in r)
    if task == "classification":
        labels, names = _encode_single([r[0] for r in raw], class_names, where, "label")
        if class_names is None and len(names) < 2:
            raise InputError(
                f"only one class ('{names[0]}') in the training data; classification needs at least two",
                path=str(path),
            )
        if class_names is None and len(names) > 20 and 2 * len(names) > len(seqs):
            log.warning("%s: %d classes in %d sequences: is that the label column? (numbers to predict need "
                        "%s)", path, len(names), len(seqs), option("task", "regression"))
        return LabelledData(ids, seqs, labels, task, class_names=names, sources=[str(path)])
    if task == "multilabel":
        labels, names = _encode_multi(raw, class_names, where)
        if class_names is None:
            empty = [n for n, count in zip(names, labels.sum(0)) if count == 0]
            if empty:
                raise InputError(f"label(s) {', '.join(empty)} have no positive example", path=str(path))
        return LabelledData(ids, seqs, labels, task, class_names=names, sources=[str(path)])
    # regression: one float per target
    names = list(target_names) if target_names is not None else list(value_names)
    width = {len(r) for r in raw}
    if width != {len(names)}:
        bad = next(i for i, r in enumerate(raw) if len(r) != len(names))
        raise _error(f"expected {len(names)} regression target(s) ({', '.join(names)}), found {len(raw[bad])}", where[bad][0], where[bad][1])
    labels = np.array(
        [[_parse_float(v, where[i][0], where[i][1], names[j]) for j, v in enumerate(r)] for i, r in enumerate(raw)],
        dtype=np.float32,
    ).reshape(len(raw), len(names))
    return LabelledData(ids, seqs, labels, task, target_names=names, sources=[str(path)])


# ----------------------------------------------------------------------------------------------------
# readers


def _read_text(path: Path, what: str) -> str:
    """The whole text of a table or BED file (plain or gzip; a UTF-8 byte-order mark is dropped). A
    folder, an unreadable, truncated or corrupt gzip file and binary content are InputErrors (``what``
    names the kind of file expected). Training data are held in memory anyway, so reading all is fine."""
    source = str(path)
    head = _read_head(source)  # no such file / a folder / unreadable
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror or err}", path=source) from None
    if head[:2] == b"\x1f\x8b":
        raw = gunzip(raw, source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
    else:
        nul = text.find("\x00")  # valid UTF-8 but not text either
        if nul < 0:
            return text
        line = text.count("\n", 0, nul) + 1
    raise InputError(f"line {line}: not a text {what} (binary data)", path=source)


def _read_table(
    path: Path, task: str, sequence_column: str | None, label_columns: Sequence[str] | None,
    class_names, target_names, alphabet: str | None = None,
) -> LabelledData:
    limit = csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        return _read_table_text(path, task, sequence_column, label_columns, class_names, target_names, alphabet)
    finally:
        csv.field_size_limit(limit)


def _table_rows(path: Path, fh: io.StringIO) -> tuple[list[str], Iterable[tuple[int, list[str]]], str | None]:
    """(header, (line number, row) ..., delimiter) of a CSV/TSV table (its text in ``fh``) or, for a Parquet
    file, of its columns (``parquet_rows``: numbered as the lines of the same table written as CSV; delimiter
    None)."""
    if _read_head(str(path))[:4] == PARQUET_MAGIC:
        header, rows = parquet_rows(str(path))
        return [h.strip() for h in header], rows, None
    fh.write(_read_text(path, "table"))
    fh.seek(0)
    sample = fh.read(65536)
    fh.seek(0)
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bgz")]
    delimiter = TABLE_EXTENSIONS.get(suffixes[-1] if suffixes else "", None)
    first_line = sample.splitlines()[0] if sample else ""
    other = {",": "\t", "\t": ","}.get(delimiter)
    if delimiter is None or (delimiter not in first_line and other in first_line):
        # no telling extension, or one that the header contradicts (a tab-separated .csv): the header decides
        delimiter = "\t" if "\t" in first_line else ","
    reader = csv.reader(fh, delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError("empty file (expected a header line such as 'sequence,label')", path=str(path)) from None
    return header, _csv_rows(reader, path), delimiter


def _read_table_text(
    path: Path, task: str, sequence_column: str | None, label_columns: Sequence[str] | None,
    class_names, target_names, alphabet: str | None,
) -> LabelledData:
    with io.StringIO(newline="") as fh:
        header, rows, delimiter = _table_rows(path, fh)
        check_distinct_columns(header, str(path))
        lower = [h.lower() for h in header]

        def column(name: str, line_hint: str) -> int:
            if name.lower() in lower:
                return lower.index(name.lower())
            raise _error(f"no column '{name}' in the header ({', '.join(header)}){line_hint}", str(path), 1)

        if sequence_column is not None:
            seq_i = column(sequence_column, f"; choose one with {option('sequence_column')}")
        else:
            found = [lower.index(c) for c in SEQUENCE_COLUMNS if c in lower]
            if not found:
                # BED is told by its extension only: from a pipe or an odd name it arrives here
                bed = len(header) >= 3 and all(field.strip().isdigit() for field in header[1:3])
                semicolons = len(header) == 1 and ";" in header[0]  # as spreadsheets write CSV in some locales
                raise _error(f"no sequence column in the header ({', '.join(header)}); expected one named "
                             f"'sequence', or choose one with {option('sequence_column')}"
                             + (f"; if these are BED intervals, give {option('data_format', 'bed')}" if bed else "")
                             + ("; its columns look separated by ';': separate them by commas or tabs"
                                if semicolons else ""), str(path), 1)
            seq_i = found[0]
        id_i = next((lower.index(c) for c in ID_COLUMNS if c in lower), None)
        if label_columns:
            label_is = [column(c, f"; check {option('label_columns')}") for c in label_columns]
        elif task == "classification":
            if "label" not in lower:
                raise _error(f"no column 'label' in the header ({', '.join(header)}); name the label column with "
                    f"{option('label_columns')}", str(path), 1)
            label_is = [lower.index("label")]
        else:
            label_is = [i for i in range(len(header)) if i != seq_i and i != id_i]
            if not label_is:
                raise _error(f"no label column beside the sequence column in ({', '.join(header)})", str(path), 1)
        if seq_i in label_is:
            raise _error(f"column '{header[seq_i]}' cannot be both the sequence and a label column; check "
                         f"{option('label_columns')} and {option('sequence_column')}", str(path), 1)
        value_names = [header[i] for i in label_is]

        ids, seqs, raw, where = [], [], [], []
        for line_no, row in rows:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise _error(f"{len(row)} fields where the header has {len(header)}", str(path), line_no)
            seq = row[seq_i].strip()
            if not seq:
                raise _error("empty sequence", str(path), line_no)
            values = [row[i].strip() for i in label_is]
            if any(v == "" for v in values):
                raise _error(f"empty label in column(s) {', '.join(value_names)}", str(path), line_no)
            if task == "multilabel" and len(values) == 1:
                values = _split_multi(values[0], _MULTI_SPLIT if delimiter == "," else r"[;|,]")
            elif task == "multilabel":
                # one 0/1 column per label
                flags = [_parse_flag(v, str(path), line_no, value_names[j]) for j, v in enumerate(values)]
                values = [value_names[j] for j, f in enumerate(flags) if f != 0]
            ids.append(row[id_i].strip() if id_i is not None else f"{path.name}:{line_no}")
            seqs.append(seq)
            raw.append(values)
            where.append((str(path), line_no))
    if task == "multilabel" and len(label_is) > 1 and class_names is None:
        class_names = value_names
    return _finish(path, task, ids, seqs, raw, where, class_names, target_names, value_names, alphabet)


def _split_multi(cell: str, separators) -> list[str]:
    """The labels of one multilabel cell ('a;b', 'a; b'), blanks around each dropped."""
    return [v.strip() for v in re.split(separators, cell) if v.strip()]


def _csv_rows(reader, path: Path):
    """(line number, row) of a csv reader after its header; csv's own errors become InputErrors."""
    line_no = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise _error(f"malformed CSV/TSV line ({err})", str(path), reader.line_num) from None
        line_no += 1
        yield line_no, row


def _parse_flag(value: str, path: str, line, column: str) -> float:
    """A multilabel flag column's value: 0 or 1."""
    number = _parse_float(value, path, line, column)
    if number not in (0.0, 1.0):
        raise _error(f"column '{column}': '{value}' is not 0 or 1 (a multilabel flag column)", path, line)
    return number


def _read_fasta_labels(
    path: Path, task: str, label_regex: str | None, class_names, target_names, alphabet: str | None = None
) -> LabelledData:
    from .sequences import read_sequences

    try:
        pattern = re.compile(label_regex or DEFAULT_LABEL_REGEX)
    except re.error as err:
        raise UsageError(f"{option('label_regex')} '{label_regex}' is not a valid regular expression: {err}") from None
    if pattern.groups < 1:
        raise UsageError(f"{option('label_regex')} '{label_regex}' needs one (group) that captures the label")
    ids, seqs, raw, where = [], [], [], []
    for n, rec in enumerate(read_sequences(str(path)), start=1):
        header = f"{rec.id} {rec.description}".strip() if rec.description and not rec.description.startswith(rec.id) \
            else (rec.description or rec.id)
        match = pattern.search(header)
        if match is None:
            raise _error(f"no label in the header '{header}' (expected 'label=VALUE' or a {option('label_regex')} that "
                         "matches)", str(path), rec.id)
        if not rec.seq:
            raise _error("empty sequence", str(path), rec.id)
        value = match.group(1)
        if task == "classification":
            values = [value]
        else:
            values = _split_multi(value, r"[,;|]")
        ids.append(rec.id)
        seqs.append(rec.seq)
        raw.append(values)
        where.append((str(path), rec.id))
    value_names = [f"target{j + 1}" for j in range(len(raw[0]))] if raw else []
    return _finish(path, task, ids, seqs, raw, where, class_names, target_names, value_names, alphabet)


# folders of a dataset's splits, not of its classes (Genomic Benchmarks: DATASET/train, DATASET/test)
_SPLIT_NAMES = ("train", "training", "val", "valid", "validation", "dev", "test", "testing")


def _read_class_folders(path: Path, task: str, class_names, alphabet: str | None) -> LabelledData:
    """Genomic Benchmarks' layout: one folder per class, named by it, holding the class's sequences (one per
    .txt file there; FASTA/FASTQ or any file ``read_sequences`` reads also do). Records are named by their path
    in ``path`` (``positive/0.txt``) and come in ``read_sequences``' order for the folder, which `classify`
    gives them in too."""
    from .sequences import read_sequences

    if task != "classification":
        raise UsageError(f"a folder of class folders holds classes, for {option('task', 'classification')} "
                         f"(not {task})", path=str(path))
    entries = sorted((e for e in path.iterdir() if not e.name.startswith(".")), key=lambda e: natural_order(e.name))
    classes = [e.name for e in entries if e.is_dir()]
    loose = [e.name for e in entries if not e.is_dir()]
    if not classes:
        raise InputError("a folder of training data holds one folder per class (e.g. positive/ and negative/), "
                         "each with that class's sequences; this one holds no folders", path=str(path))
    # (a dataset's root may hold a metadata file beside its splits: it is checked before loose files are)
    splits = sorted((c for c in classes if c.lower() in _SPLIT_NAMES), key=lambda c: not c.lower().startswith("train"))
    if splits and all(any(e.is_dir() for e in (path / c).iterdir()) for c in classes):
        raise UsageError(f"holds the splits {', '.join(classes)}, not classes: give {path / splits[0]} as the "
                         f"training data (and {option('test', str(path / 'test'))}, if there is one)", path=str(path))
    if loose:
        raise InputError(f"holds the file '{loose[0]}' beside its class folders ({', '.join(classes)}): a folder of "
                         "training data holds class folders only", path=str(path))
    ids, seqs, raw, where = [], [], [], []
    within = len(os.path.join(path, ""))  # a record's file is within/CLASS/...
    for rec in read_sequences(path):
        if not rec.seq:  # it would be trained on as a record of padding alone
            raise _error("empty sequence", rec.source, rec.id)
        ids.append(rec.id)
        seqs.append(rec.seq)
        raw.append((rec.source[within:].split(os.sep, 1)[0],))
        where.append((rec.source, rec.id))
    empty = [c for c in classes if c not in {r[0] for r in raw}]
    if empty:
        raise InputError(f"class folder '{empty[0]}' holds no sequences", path=str(path))
    return _finish(path, task, ids, seqs, raw, where, class_names, None, [], alphabet)


def _read_bed(
    path: Path, task: str, reference: Path, label_columns: Sequence[str] | None, class_names, target_names,
    alphabet: str | None = None,
) -> LabelledData:
    """BED (0-based, half-open) intervals; the label is column 4 (name) for classification and
    column 5 (score) for regression unless ``label_columns`` gives 1-based column numbers. A '-' strand
    (column 6) reads the reverse complement."""
    from .sequences import open_indexed_fasta, reverse_complement

    if not reference.exists():
        raise InputError("no such reference FASTA", path=str(reference))
    if label_columns:
        try:
            cols = [int(c) - 1 for c in label_columns]
        except ValueError:
            raise UsageError(f"for BED input {option('label_columns')} takes 1-based column numbers "
                             f"(got {label_columns})") from None
        if any(c < 3 for c in cols):
            raise UsageError("BED label columns must come after chrom, start, end (column 4 or later)")
    else:
        cols = [4] if task == "regression" else [3]
    text = _read_text(path, "BED file")
    genome = open_indexed_fasta(reference)  # the one reader of genome regions: duplicate names refused, case kept
    sizes = dict(zip(genome.references, genome.lengths))
    ids, seqs, raw, where = [], [], [], []
    try:
        for line_no, line in enumerate(io.StringIO(text, newline=""), start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) <= max(cols) or len(fields) < 3:
                raise _error(f"{len(fields)} tab-separated columns; the label is in column {max(cols) + 1}", str(path), line_no)
            contig = fields[0]
            try:
                start, end = int(fields[1]), int(fields[2])
            except ValueError:
                raise _error("start and end (columns 2, 3) must be integers", str(path), line_no) from None
            if contig not in sizes:
                raise _error(f"contig '{contig}' is not in the reference {reference}", str(path), line_no)
            size = sizes[contig]
            if not 0 <= start < end <= size:
                raise _error(f"interval {contig}:{start}-{end} is empty or outside the contig "
                             f"(length {size})", str(path), line_no)
            seq = fetch_region(genome, contig, start, end, reference)
            if len(fields) > 5 and fields[5] == "-":
                seq = reverse_complement(seq)
            values = [fields[c].strip() for c in cols]
            if task == "multilabel" and len(values) == 1:
                values = _split_multi(values[0], r"[,;|]")
            name = fields[3] if len(fields) > 3 and 3 not in cols else f"{contig}:{start + 1}-{end}"
            ids.append(name)
            seqs.append(seq)
            raw.append(values)
            where.append((str(path), line_no))
    finally:
        genome.close()
    value_names = [f"column{c + 1}" for c in cols]
    return _finish(path, task, ids, seqs, raw, where, class_names, target_names, value_names, alphabet)
