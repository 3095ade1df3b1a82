"""Labelled sequence data for training: CSV/TSV tables, FASTA with labels in the headers, one FASTA per
class, BED intervals cut from a reference genome, and plain FASTA chunked into windows for language
modelling.

Every reader returns a :class:`LabelledData` whose ``labels`` are already numeric:

- ``classification``: int64 ``(N,)`` indices into ``class_names``;
- ``multilabel``: float32 ``(N, C)`` of 0/1, columns named by ``class_names``;
- ``regression``: float32 ``(N, T)``, columns named by ``target_names``;
- ``lm``: ``None`` (the sequence is its own target).

Validation and test data are encoded with the *training* class names (:func:`load_labelled` with
``class_names=``), so a label seen only in validation is an :class:`InputError` rather than a silent new
class. Errors name the file and the line or record.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import InputError, UsageError
from .sequences import ID_COLUMNS, SEQUENCE_COLUMNS

TASKS = ("classification", "multilabel", "regression", "lm")
# multilabel values in one table cell or header: "a;b", "a|b" or "a,b" (commas only in tab-separated files)
_MULTI_SPLIT = re.compile(r"[;|]")
DEFAULT_LABEL_REGEX = r"(?:^|\s)label=(\S+)"
TABLE_EXTENSIONS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
FASTA_EXTENSIONS = {".fa", ".fasta", ".fna", ".fas", ".ffn", ".fq", ".fastq"}


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
        )

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=len(self.sequences))


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
) -> LabelledData:
    """Read one labelled file; ``fmt`` is 'table', 'fasta' or 'bed' (default: from the extension/content).

    ``class_names``/``target_names`` (from the training set) fix the label encoding of validation and test
    files. For ``task='lm'`` the file is plain sequence (FASTA/FASTQ/...) cut into ``window``-long chunks.
    """
    if task not in TASKS:
        raise UsageError(f"unknown task '{task}' (use one of: {', '.join(TASKS)})")
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path=str(path))
    if task == "lm":
        return load_lm_sequences([path], window=window, stride=stride)
    fmt = fmt or detect_format(path)
    if fmt == "table":
        return _read_table(path, task, sequence_column, label_columns, class_names, target_names)
    if fmt == "fasta":
        return _read_fasta_labels(path, task, label_regex, class_names, target_names)
    if fmt == "bed":
        if reference is None:
            raise UsageError(f"{path}: BED intervals need --reference genome.fa to read their sequences")
        return _read_bed(path, task, Path(reference), label_columns, class_names, target_names)
    raise UsageError(f"unknown data format '{fmt}' (use table, fasta or bed)")


def load_class_fastas(
    specs: Sequence[tuple[str, str | Path]], *, class_names: Sequence[str] | None = None
) -> LabelledData:
    """One FASTA (or FASTQ/BAM: anything :func:`read_sequences` reads) per class: ``[(name, path), ...]``."""
    from .sequences import read_sequences

    names = [name for name, _ in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"--class-fasta names must be distinct (got {', '.join(names)})")
    ids, seqs, raw, where = [], [], [], []
    for name, file in specs:
        n_before = len(seqs)
        for rec in read_sequences(str(file)):
            ids.append(rec.id)
            seqs.append(rec.seq.upper())
            raw.append(name)
            where.append((str(file), rec.id))
        if len(seqs) == n_before:
            raise InputError(f"class '{name}' has no sequences", path=str(file))
    if class_names is None and len(specs) < 2:
        raise UsageError("--class-fasta needs at least two classes (NAME=FILE, repeated)")
    labels, found = _encode_single(raw, class_names, where, "class")
    return LabelledData(ids, seqs, labels, "classification", class_names=found,
                        sources=[str(f) for _, f in specs])


def load_lm_sequences(
    paths: Sequence[str | Path], *, window: int | None, stride: int | None = None
) -> LabelledData:
    """Plain sequences for next-unit language modelling, cut into ``window``-long chunks (the last,
    shorter chunk of each record is kept when at least a quarter of a window long; records shorter than
    that are kept whole only when no window is set)."""
    from .sequences import read_many

    ids, seqs = [], []
    for rec in read_many([str(p) for p in paths]):
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
    if not seqs:
        raise InputError("no sequences to train on", path=", ".join(str(p) for p in paths))
    return LabelledData(ids, seqs, None, "lm", sources=[str(p) for p in paths])


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
    with _open_text(path) as fh:
        first = fh.read(1)
    if first in (">", "@"):
        return "fasta"
    return "table"


def split_validation(data: LabelledData, fraction: float, seed: int) -> tuple[LabelledData, LabelledData]:
    """Seeded split into (train, validation); stratified by class for classification."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < fraction < 1.0:
        raise UsageError(f"--val-fraction must be between 0 and 1 (got {fraction})")
    n_val = int(round(len(data) * fraction))
    if n_val < 1 or n_val >= len(data):
        raise InputError(f"--val-fraction {fraction} of {len(data)} sequences leaves an empty split",
                         path=", ".join(data.sources))
    stratify = data.labels if data.task == "classification" else None
    if stratify is not None and np.bincount(stratify).min() < 2:
        stratify = None  # a class with one example cannot be split; fall back to a plain random split
    train_idx, val_idx = train_test_split(
        np.arange(len(data)), test_size=n_val, random_state=seed, shuffle=True, stratify=stratify
    )
    return data.subset(np.sort(train_idx)), data.subset(np.sort(val_idx))


def check_lengths(data: LabelledData, window: int | None, what: str) -> None:
    """Sequence tasks with mixed lengths need an explicit window; say so instead of guessing."""
    if data.task == "lm" or window is not None or not len(data):
        return
    lengths = data.lengths()
    if lengths.min() != lengths.max():
        i_short, i_long = int(lengths.argmin()), int(lengths.argmax())
        raise InputError(
            f"{what} sequences have mixed lengths ({lengths.min()} nt '{data.ids[i_short]}' to "
            f"{lengths.max()} nt '{data.ids[i_long]}'); give --window N to centre-crop longer and pad "
            f"shorter sequences to N units",
            path=", ".join(data.sources),
        )


def fingerprint(path: str | Path) -> str:
    """sha256 of a file's bytes, recorded with a trained model so its data can be checked later."""
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
            f"--class-names: no class {', '.join(map(repr, unknown))} in the training labels "
            f"({', '.join(data.class_names or [])})"
        )
    data.class_names = [mapping.get(c, c) for c in data.class_names or []]
    return data


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
                path, line = where[i]
                raise _error(f"{what} '{value}' does not occur in the training data (training {what}s: "
                    f"{', '.join(names)})", path, line)
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
                path, line = where[row_i]
                raise _error(f"label '{value}' does not occur in the training data (training labels: "
                    f"{', '.join(names)})", path, line)
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


def _finish(
    path: Path, task: str, ids, seqs, raw, where, class_names, target_names, value_names
) -> LabelledData:
    """Turn raw label values into the numeric layout of ``task`` and check classes are not empty."""
    if not seqs:
        raise InputError("no labelled sequences", path=str(path))
    if task == "classification":
        labels, names = _encode_single([r[0] for r in raw], class_names, where, "label")
        if class_names is None and len(names) < 2:
            raise InputError(
                f"only one class ('{names[0]}') in the training data; classification needs at least two",
                path=str(path),
            )
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


def _open_text(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _read_table(
    path: Path, task: str, sequence_column: str | None, label_columns: Sequence[str] | None,
    class_names, target_names,
) -> LabelledData:
    with _open_text(path) as fh:
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
        lower = [h.lower() for h in header]

        def column(name: str, line_hint: str) -> int:
            if name.lower() in lower:
                return lower.index(name.lower())
            raise _error(f"no column '{name}' in the header ({', '.join(header)}){line_hint}", str(path), 1)

        if sequence_column is not None:
            seq_i = column(sequence_column, "; choose one with --sequence-column")
        else:
            found = [lower.index(c) for c in SEQUENCE_COLUMNS if c in lower]
            if not found:
                raise _error(f"no sequence column in the header ({', '.join(header)}); expected one named "
                    f"'sequence', or choose one with --sequence-column", str(path), 1)
            seq_i = found[0]
        id_i = next((lower.index(c) for c in ID_COLUMNS if c in lower), None)
        if label_columns:
            label_is = [column(c, "; check --label-column") for c in label_columns]
        elif task == "classification":
            if "label" not in lower:
                raise _error(f"no column 'label' in the header ({', '.join(header)}); name the label column with "
                    f"--label-column", str(path), 1)
            label_is = [lower.index("label")]
        else:
            label_is = [i for i in range(len(header)) if i != seq_i and i != id_i]
            if not label_is:
                raise _error(f"no label column beside the sequence column in ({', '.join(header)})", str(path), 1)
        value_names = [header[i] for i in label_is]

        ids, seqs, raw, where = [], [], [], []
        for line_no, row in enumerate(reader, start=2):
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
                values = [v for v in _MULTI_SPLIT.split(values[0]) if v] if delimiter == "," else \
                    [v for v in re.split(r"[;|,]", values[0]) if v]
            elif task == "multilabel":
                # one 0/1 column per label
                flags = [_parse_float(v, str(path), line_no, value_names[j]) for j, v in enumerate(values)]
                values = [value_names[j] for j, f in enumerate(flags) if f != 0]
            ids.append(row[id_i].strip() if id_i is not None else f"{path.name}:{line_no}")
            seqs.append(seq.upper())
            raw.append(values)
            where.append((str(path), line_no))
    if task == "multilabel" and len(label_is) > 1 and class_names is None:
        class_names = value_names
    return _finish(path, task, ids, seqs, raw, where, class_names, target_names, value_names)


def _read_fasta_labels(path: Path, task: str, label_regex: str | None, class_names, target_names) -> LabelledData:
    from .sequences import read_sequences

    try:
        pattern = re.compile(label_regex or DEFAULT_LABEL_REGEX)
    except re.error as err:
        raise UsageError(f"--label-regex '{label_regex}' is not a valid regular expression: {err}") from None
    if pattern.groups < 1:
        raise UsageError(f"--label-regex '{label_regex}' needs one (group) that captures the label")
    ids, seqs, raw, where = [], [], [], []
    for n, rec in enumerate(read_sequences(str(path)), start=1):
        header = f"{rec.id} {rec.description}".strip() if rec.description and not rec.description.startswith(rec.id) \
            else (rec.description or rec.id)
        match = pattern.search(header)
        if match is None:
            raise _error(f"no label in the header '{header}' (expected 'label=VALUE' or a --label-regex that matches)", str(path), rec.id)
        value = match.group(1)
        if task == "classification":
            values = [value]
        else:
            values = [v for v in re.split(r"[,;|]", value) if v]
        ids.append(rec.id)
        seqs.append(rec.seq.upper())
        raw.append(values)
        where.append((str(path), rec.id))
    value_names = [f"target{j + 1}" for j in range(len(raw[0]))] if raw else []
    return _finish(path, task, ids, seqs, raw, where, class_names, target_names, value_names)


def _read_bed(
    path: Path, task: str, reference: Path, label_columns: Sequence[str] | None, class_names, target_names
) -> LabelledData:
    """BED (0-based, half-open) intervals; the label is column 4 (name) for classification and
    column 5 (score) for regression unless ``label_columns`` gives 1-based column numbers. A '-' strand
    (column 6) reads the reverse complement."""
    import pyfaidx

    from .sequences import reverse_complement

    if not reference.exists():
        raise InputError("no such reference FASTA", path=str(reference))
    if label_columns:
        try:
            cols = [int(c) - 1 for c in label_columns]
        except ValueError:
            raise UsageError(f"for BED input --label-column takes 1-based column numbers (got {label_columns})") from None
        if any(c < 3 for c in cols):
            raise UsageError("BED label columns must come after chrom, start, end (column 4 or later)")
    else:
        cols = [4] if task == "regression" else [3]
    try:
        genome = pyfaidx.Fasta(str(reference), as_raw=True, sequence_always_upper=True, rebuild=False)
    except Exception as err:  # pyfaidx raises several types for unreadable files
        raise InputError(f"cannot read reference FASTA: {err}", path=str(reference)) from None
    ids, seqs, raw, where = [], [], [], []
    try:
        with _open_text(path) as fh:
            for line_no, line in enumerate(fh, start=1):
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
                if contig not in genome:
                    raise _error(f"contig '{contig}' is not in the reference {reference}", str(path), line_no)
                size = len(genome[contig])
                if not 0 <= start < end <= size:
                    raise _error(f"interval {contig}:{start}-{end} is empty or outside the contig "
                                     f"(length {size})", str(path), line_no)
                seq = genome[contig][start:end]
                if len(fields) > 5 and fields[5] == "-":
                    seq = reverse_complement(seq)
                values = [fields[c].strip() for c in cols]
                if task == "multilabel" and len(values) == 1:
                    values = [v for v in re.split(r"[,;|]", values[0]) if v]
                name = fields[3] if len(fields) > 3 and 3 not in cols else f"{contig}:{start + 1}-{end}"
                ids.append(name)
                seqs.append(seq)
                raw.append(values)
                where.append((str(path), line_no))
    finally:
        genome.close()
    value_names = [f"column{c + 1}" for c in cols]
    return _finish(path, task, ids, seqs, raw, where, class_names, target_names, value_names)
