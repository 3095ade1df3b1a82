"""Output writers. Every file is written atomically: a temporary file in the destination folder,
then ``os.replace``; a failed run leaves no partial output and never clobbers an existing good file.
``-`` means stdout. A symbolic link is followed (its target is replaced, the link stays); a device or a
named pipe (``/dev/null``, ``/dev/stdout``, a FIFO) is written straight into, since nothing can be renamed
onto it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import logging
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import IO, Iterator

from ..errors import UsageError

log = logging.getLogger("hyena_glt")


def default_permissions(path: str | os.PathLike) -> None:
    """mkstemp/mkdtemp make 0600 files and 0700 folders; an output should get the permissions a plain open()
    or mkdir() would give (0644/0755 under umask 022), so that a model shared in a lab folder can be read."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~umask)


def destination(path: str | os.PathLike) -> tuple[Path, bool]:
    """Where output for ``path`` goes: (the regular file to replace, False), with a symbolic link resolved to
    its target, or (``path``, True) for a device or pipe to write straight into. A UsageError names the user's
    path when it cannot be written: a folder, a missing or unwritable parent folder. Commands call it (through
    ``check_destination``) before any work, so a bad ``-o`` fails at once."""
    dest = Path(path)
    try:
        mode = os.stat(dest).st_mode
    except FileNotFoundError:
        mode = None
    except NotADirectoryError:
        raise UsageError(f"cannot write {dest}: {dest.parent} is not a folder") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UsageError(f"cannot write {dest}: it is a folder")
    if mode is not None and not stat.S_ISREG(mode):
        return dest, True
    if dest.is_symlink():
        dest = Path(os.path.realpath(dest))
    folder = dest.parent
    if not folder.is_dir():
        raise UsageError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {path}: no permission to create files in {folder}")
    return dest, False


def check_destination(path: str | os.PathLike) -> None:
    """UsageError now if ``path`` ('-' is stdout) could not be written later (see ``destination``)."""
    if str(path) != "-":
        destination(path)


def _temp_beside(path: str | os.PathLike, suffix: str) -> tuple[int, str]:
    """(fd, name) of a new temporary file in ``path``'s folder (same file system: ``os.replace`` is atomic).
    ``path`` has passed ``destination``, which checked the folder."""
    dest = Path(path)
    folder = dest.parent if str(dest.parent) else Path(".")
    try:
        return tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=folder)
    except OSError as err:
        raise UsageError(f"cannot write {dest}: {(err.strerror or str(err)).lower()}") from None


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open ``path`` for writing atomically (``mode`` 'w' text or 'wb' binary); ``-`` is stdout.

    The temporary file is removed if the body raises, so the destination is either the complete new
    file or untouched.
    """
    if str(path) == "-":
        stream = sys.stdout.buffer if "b" in mode else sys.stdout
        yield stream
        stream.flush()
        return
    dest, special = destination(path)
    if special:
        with open(dest, mode) as fh:
            yield fh
        return
    fd, tmp = _temp_beside(dest, ".tmp")
    try:
        default_permissions(tmp)
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for writers that need a file name (np.savez, pysam
    tabix); it is renamed onto ``path`` when the body succeeds and removed otherwise."""
    dest, special = destination(path)
    if special:  # the writer writes a temporary file, copied into the device or pipe when it is complete
        fd, tmp = tempfile.mkstemp(prefix="hyena-glt.", suffix=".tmp" + suffix)
        os.close(fd)
        try:
            yield Path(tmp)
            with open(tmp, "rb") as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
        finally:
            os.unlink(tmp)
        return
    fd, tmp = _temp_beside(dest, ".tmp" + suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        default_permissions(tmp)  # after the writer: some (safetensors) replace the file
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_npz(path: str | os.PathLike, arrays: dict, compressed: bool = False) -> None:
    """Write ``arrays`` (name → numpy array) as an ``.npz`` atomically; ``-`` writes the bytes to
    stdout. Only plain (non-object) arrays, so readers never need ``allow_pickle``."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez
    if str(path) == "-":
        buffer = io.BytesIO()
        save(buffer, **arrays)
        sys.stdout.buffer.write(buffer.getvalue())
        sys.stdout.buffer.flush()
        return
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            save(fh, **arrays)


@contextlib.contextmanager
def text_output(path: str | os.PathLike) -> Iterator[IO[str]]:
    """``atomic_output`` for text, gzip-compressed when ``path`` ends in ``.gz`` (no timestamp in the
    header, so the same rows give the same bytes)."""
    if not str(path).endswith(".gz"):
        with atomic_output(path) as fh:
            yield fh
        return
    with atomic_output(path, "wb") as raw:
        with io.TextIOWrapper(gzip.GzipFile(fileobj=raw, mode="wb", mtime=0), encoding="utf-8") as fh:
            yield fh


@contextlib.contextmanager
def bed_output(path: str | os.PathLike, preset: str = "bed", header_lines: int = 0) -> Iterator[IO[str]]:
    """Text output for BED-like rows (BED, bedGraph): plain, or for ``.gz`` BGZF-compressed and indexed
    with tabix (``path.tbi``) when the rows are sorted by contig and start; unsorted rows are still
    compressed, with a warning and no index. ``header_lines`` (a bedGraph ``track`` line) are not indexed.
    Atomic like every writer here; ``-`` is stdout, plain."""
    if not str(path).endswith(".gz"):
        with atomic_output(path) as fh:
            yield fh
        return
    dest, special = destination(path)
    fd, plain = tempfile.mkstemp(suffix=".plain") if special else _temp_beside(dest, ".plain")
    try:
        with os.fdopen(fd, "w") as fh:
            yield fh
        bgzip_tabix(plain, dest, preset, required=False, header_lines=header_lines)
    finally:
        os.unlink(plain)


def bgzip_tabix(plain_path: str | os.PathLike, dest: str | os.PathLike, preset: str = "bed",
                required: bool = True, header_lines: int = 0) -> Path:
    """Compress a sorted plain-text file (BED, bedGraph, GFF, VCF) with BGZF to ``dest`` and index
    it with tabix (``dest.tbi``). Both files appear atomically; returns ``dest``. A file tabix cannot
    index (rows out of order) is an error, or with ``required=False`` a warning and no index."""
    import pysam

    from ..errors import HyenaGLTError
    from .sequences import quiet_htslib

    dest, special = destination(dest)
    with atomic_path(dest, suffix=".gz") as tmp:
        try:
            pysam.tabix_compress(str(plain_path), str(tmp), force=True)
        except (OSError, ValueError) as err:
            raise HyenaGLTError(f"cannot bgzip {dest}: {err}") from None
        if special:  # a pipe or device has no place for an index beside it
            return dest
        with quiet_htslib():  # htslib's own stderr line would duplicate ours
            try:
                # pysam ignores line_skip under a preset; BED-like columns spelled out honour it.
                layout = dict(seq_col=0, start_col=1, end_col=2, zerobased=True, line_skip=header_lines) \
                    if header_lines else dict(preset=preset)
                pysam.tabix_index(str(tmp), force=True, keep_original=True, **layout)
            except (OSError, ValueError) as err:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{tmp}.tbi")
                if required:
                    raise HyenaGLTError(f"cannot tabix-index {dest}: {err} (is it sorted by contig and start?)") from None
                log.warning("%s: rows are not sorted by contig and start, so it has no tabix index "
                            "(sort -k1,1 -k2,2n, then bgzip and tabix)", dest)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{dest}.tbi")  # an old index would not match the new file
            else:
                os.replace(f"{tmp}.tbi", f"{dest}.tbi")
    return dest


def join_ints(values, sep: str = " ") -> str:
    """``sep.join(map(str, values))`` for non-negative integers, vectorised: each value becomes a
    fixed-width row of its digits and ``sep`` (gathered from a table of all values up to the
    largest), and the NUL padding of shorter numbers is dropped. No Python loop over values."""
    import numpy as np

    values = np.asarray(values).reshape(-1)
    if values.size == 0:
        return ""
    if values.min() < 0 or len(sep.encode()) != 1:
        return sep.join(map(str, values.tolist()))
    top = int(values.max())
    width = len(str(top))
    if width < 8 and top < 1 << 20:
        # one row of 2, 4 or 8 bytes per value, gathered as a single integer (a 1-D take is far
        # faster than gathering 2-D rows)
        row = 2 if width < 2 else (4 if width < 4 else 8)
        table = np.zeros((top + 1, row), dtype=np.uint8)
        digits = np.arange(top + 1).astype(f"S{width}")  # left-aligned, NUL-padded
        table[:, :width] = np.frombuffer(digits.tobytes(), dtype=np.uint8).reshape(-1, width)
        table[np.arange(top + 1), np.char.str_len(digits)] = ord(sep)
        flat = np.take(table.view(f"<u{row}").reshape(-1), values).view(np.uint8)
        if row == width + 1 and values.min() >= 10 ** (width - 1):  # no padding anywhere
            return flat[:-1].tobytes().decode("ascii")
        return flat[flat != 0][:-1].tobytes().decode("ascii")
    # very large values: digits by arithmetic, leading zeros (digits of powers of ten larger than
    # the value; the last digit always stays) blanked to NUL and dropped
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    rows = np.zeros((values.size, width + 1), dtype=np.uint8)
    rows[:, :width] = values[:, None] // powers % 10 + ord("0")
    rows[:, : width - 1][values[:, None] < powers[None, :-1]] = 0
    rows[:, width] = ord(sep)
    flat = rows.reshape(-1)
    return flat[flat != 0][:-1].tobytes().decode("ascii")


TOKENIZED_FORMATS = ("tsv", "npz")


def write_tokenized(records, tokenizer, output: str | os.PathLike, fmt: str = "tsv") -> tuple[int, int]:
    """Tokenize a record stream and write it (see ``write_encoded``); returns (records, units)."""
    from ..tokenizers import encode_records

    return write_encoded(encode_records(records, tokenizer), tokenizer, output, fmt)


def write_encoded(pairs, tokenizer, output: str | os.PathLike, fmt: str = "tsv") -> tuple[int, int]:
    """Write (record, ids) pairs (``tokenizers.encode_records``); returns (records, units) written.

    ``tsv``: a header ``id  length  ids``, then one line per record with its ids space-separated.
    ``npz``: ``ids`` (all records concatenated, in ``tokenizer.compact_dtype``), ``offsets`` (n+1;
    record i is ``ids[offsets[i]:offsets[i+1]]``), ``names``, ``tokenizer`` (the JSON of
    ``Tokenizer.to_dict()``), and, when any record has genome coordinates, ``contigs``, ``starts``
    (0-based; -1 where unknown), ``ends`` (exclusive; -1 where unknown) and ``strands``.
    """
    import json

    import numpy as np

    if fmt not in TOKENIZED_FORMATS:
        raise UsageError(f"unknown token output format '{fmt}' (use one of: {', '.join(TOKENIZED_FORMATS)})")
    count = units = 0
    if fmt == "tsv":
        # The first record is read before anything is written: a bad input fails with an empty stdout.
        pairs = iter(pairs)
        first = next(pairs, None)
        with text_output(output) as fh:
            fh.write("id\tlength\tids\n")
            for record, ids in itertools.chain([first] if first is not None else [], pairs):
                fh.write(f"{record.id}\t{len(ids)}\t{join_ints(ids)}\n")
                count += 1
                units += len(ids)
        return count, units
    chunks, names, contigs, starts, ends, strands = [], [], [], [], [], []
    for record, ids in pairs:
        chunks.append(ids)
        names.append(record.id)
        contigs.append(record.contig if record.contig is not None else record.id)
        starts.append(-1 if record.start is None else record.start)
        ends.append(-1 if record.end is None else record.end)
        strands.append(record.strand)
    lengths = np.fromiter(map(len, chunks), dtype=np.int64, count=len(chunks))
    arrays = {
        "ids": np.concatenate(chunks) if chunks else np.zeros(0, dtype=tokenizer.compact_dtype),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "names": np.array(names, dtype=str),
        "tokenizer": np.array(json.dumps(tokenizer.to_dict())),
    }
    if any(s >= 0 for s in starts):
        arrays.update(
            contigs=np.array(contigs, dtype=str),
            starts=np.array(starts, dtype=np.int64),
            ends=np.array(ends, dtype=np.int64),
            strands=np.array(strands, dtype=str),
        )
    write_npz(output, arrays)
    return len(chunks), int(lengths.sum())


def load_tokenized(path: str | os.PathLike) -> dict:
    """Read what ``write_tokenized(..., fmt="npz")`` wrote: its arrays (``ids`` as int64) plus
    ``tokenizer``, the Tokenizer object itself."""
    import json

    import numpy as np

    from ..errors import InputError
    from ..tokenizers import get_tokenizer

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as err:
        raise InputError(f"not a tokenized .npz file ({err})", path=str(path)) from None
    if not {"ids", "offsets", "names", "tokenizer"} <= arrays.keys():
        raise InputError("not a tokenized .npz file (needs ids, offsets, names, tokenizer)", path=str(path))
    arrays["ids"] = arrays["ids"].astype(np.int64)
    arrays["tokenizer"] = get_tokenizer(json.loads(str(arrays["tokenizer"])))
    return arrays
