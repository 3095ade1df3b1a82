"""Reading sequences: one entry point, ``read_sequences``, for every input a user may hand us.

- FASTA and FASTQ, plain, gzip or BGZF, told apart by their first bytes (never by extension), and
  stdin (``-``). Parsed by pysam's FastxFile (htslib's kseq), the fastest correct parser we have;
  where it is lax (a FASTQ record with no quality is returned as if it were FASTA; a bad record is
  reported with no record name) we check and diagnose ourselves.
- SAM/BAM/CRAM through pysam, unmapped reads included, secondary/supplementary alignments skipped
  (they repeat a read already returned). A read on the reverse strand is returned as sequenced
  (reverse-complemented back, qualities reversed) unless ``stored_orientation=True``.
- Regions of an indexed FASTA (``.fai`` built when missing; bgzipped FASTA with ``.gzi``):
  samtools-style strings ``chrI:1,001-2,000`` (1-based, inclusive; a bare contig is the whole
  contig) and BED files (0-based, half-open). A region record is named ``contig:start1-end`` and
  carries contig/start (0-based)/end (exclusive). Record names must be unique there (an index keeps only
  the first of two).
- CSV/TSV and Parquet tables with a sequence column (one record per row), plain sequence text (one per line),
  and folders of any of these (read file by file, in natural order).
- ``sliding_windows`` cuts long records into windows with genome coordinates.
- ``drop_empty`` skips records with no sequence (with a warning naming the first); ``check_names`` checks record
  names as an output needs them: not empty, and unique where a record's name becomes its contig (BED, bedGraph,
  windows), as ``samtools faidx`` wants them. Each record knows its file and 1-based number, for messages.

Soft-masked (lower-case) bases are kept as they are; tokenizers fold case by default.
Every problem with the data raises ``InputError`` naming the file, the record and the problem.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import logging
import mmap
import os
import re
import stat
import sys
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np
import pysam

from ..errors import InputError, UsageError, option

log = logging.getLogger("hyena_glt")

FORMATS = ("fasta", "fastq", "sam", "bam", "cram", "table", "text", "parquet")
_FORMAT_ALIASES = {"fa": "fasta", "fna": "fasta", "fas": "fasta", "fq": "fastq", "csv": "table", "tsv": "table"}
# Table columns (CSV/TSV) holding a record's sequence, and its name (else the file name and line number).
SEQUENCE_COLUMNS = ("sequence", "seq")
ID_COLUMNS = ("id", "name")
_SNIFF_BYTES = 1 << 16
WINDOW_POLICIES = ("shift", "pad", "drop")


@dataclass
class SequenceRecord:
    """One sequence. ``start`` is 0-based and ``end`` exclusive (BED style); both are set, with
    ``contig``, only when the sequence has a known place in a genome (regions, windows of them)."""

    id: str
    seq: str
    qual: str | None = None
    contig: str | None = None
    start: int | None = None
    end: int | None = None
    strand: str = "."
    description: str = ""
    standalone: bool = False  # a table row: a sequence of its own, never taken for a genome to scan in windows
    # Where the reader found it, for messages: the input ('-' for stdin) and the record's 1-based number in it.
    source: str | None = field(default=None, compare=False, repr=False)
    number: int = field(default=0, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.seq)


# --------------------------------------------------------------------------------------------
# Reverse complement

_COMPLEMENT = str.maketrans(
    "ACGTUNRYKMSWBDHVacgtunrykmswbdhv", "TGCAANYRMKSWVHDBtgcaanyrmkswvhdb"
)


def reverse_complement(seq: str) -> str:
    """Reverse complement of a DNA string; IUPAC codes are complemented and case is kept
    (U is complemented to A, so RNA comes back written as DNA)."""
    return seq.translate(_COMPLEMENT)[::-1]


# --------------------------------------------------------------------------------------------
# Alphabet checks

# Letters each alphabet accepts as they are, and the ambiguity codes the ``iupac`` policy handles.
ALPHABETS = {
    "dna": ("ACGTN", "RYKMSWBDHV", "N"),
    "rna": ("ACGUN", "RYKMSWBDHV", "N"),
    "nucleotide": ("ACGTUN", "RYKMSWBDHV", "N"),  # DNA or RNA: what the nucleotide tokenizer reads
    "protein": ("ACDEFGHIKLMNPQRSTVWYX*", "BZJUO", "X"),  # '*': a stop codon
}
IUPAC_POLICIES = ("N", "keep", "error")


class _AlphabetCheck:
    """Checks a sequence against an alphabet in C speed (``bytes.translate`` deletes the allowed
    letters; whatever is left is wrong) and applies the ambiguity-code policy: ``N`` replaces
    ambiguity codes by N (X for protein, case kept), ``keep`` leaves them, ``error`` rejects them."""

    def __init__(self, alphabet: str, iupac: str = "N"):
        if alphabet not in ALPHABETS:
            raise UsageError(f"unknown alphabet '{alphabet}' (use one of: {', '.join(ALPHABETS)})")
        if iupac not in IUPAC_POLICIES:
            raise UsageError(f"unknown IUPAC policy '{iupac}' (use one of: {', '.join(IUPAC_POLICIES)})")
        letters, ambiguous, unknown = ALPHABETS[alphabet]
        self.name = alphabet
        self.strict = (letters + letters.lower()).encode()
        ambiguous_both = (ambiguous + ambiguous.lower()).encode()
        self.accepted = self.strict + (b"" if iupac == "error" else ambiguous_both)
        self.replace = None
        if iupac == "N":
            self.replace = bytes.maketrans(
                ambiguous_both, (unknown * len(ambiguous) + unknown.lower() * len(ambiguous)).encode()
            )

    def __call__(self, seq: str, path: str, record: str | int) -> str:
        if not seq.isascii():
            pos, char = next((i, c) for i, c in enumerate(seq) if ord(c) > 127)
            raise self._bad(char, pos, path, record)
        raw = seq.encode("ascii")
        extra = raw.translate(None, self.strict)
        if not extra:
            return seq
        wrong = extra.translate(None, self.accepted)
        if wrong:
            char = chr(wrong[0])
            raise self._bad(char, raw.index(wrong[:1]), path, record)
        if self.replace is not None:
            return raw.translate(self.replace).decode("ascii")
        return seq

    def _bad(self, char: str, pos: int, path: str, record: str | int) -> InputError:
        return InputError(
            f"invalid character {char!r} at position {pos + 1} (not in the {self.name} alphabet)",
            path=path,
            record=record,
        )


# --------------------------------------------------------------------------------------------
# Opening and format detection


def _decompressed_head(head: bytes, path: str) -> bytes:
    """The first decompressed bytes of a gzip/BGZF head (BGZF is many small gzip members)."""
    out = b""
    data = head
    while data[:2] == b"\x1f\x8b" and len(out) < 4096:
        inflater = zlib.decompressobj(wbits=31)
        try:
            out += inflater.decompress(data, 8192)
        except zlib.error as err:
            raise InputError(f"corrupt gzip data ({err})", path=path) from None
        if not inflater.eof:
            if not out and len(head) < _SNIFF_BYTES:
                raise InputError("truncated gzip file (unexpected end of compressed data)", path=path)
            break
        data = inflater.unused_data
    return out


_SAM_HEADER = re.compile(rb"@(HD|SQ|RG|PG|CO)\t")
PARQUET_MAGIC = b"PAR1"
# A line of plain text that is a sequence and nothing else (Genomic Benchmarks keeps one per .txt file).
_PLAIN_SEQUENCE = re.compile(rb"[A-Za-z]+")
# UTF-8 byte-order mark: Windows editors and Excel put it before text files; skipped in front of FASTA/FASTQ
# and table headers.
_BOM = b"\xef\xbb\xbf"


def _sniff(head: bytes, path: str) -> tuple[str, bool]:
    """(format, compressed) from the first bytes of a file; InputError when it is none we read."""
    if not head:
        raise InputError("empty file", path=path)
    if head[:4] == b"CRAM":
        return "cram", False
    if head[:4] == PARQUET_MAGIC:
        return "parquet", False
    compressed = head[:2] == b"\x1f\x8b"
    content = _decompressed_head(head, path) if compressed else head
    if content[:4] == b"BAM\x01":
        return "bam", True
    text = content.removeprefix(_BOM).lstrip()
    if not text:
        raise InputError("empty file", path=path)
    if text[:1] == b">":
        return "fasta", compressed
    if _SAM_HEADER.match(text):
        return "sam", compressed
    if text[:1] == b"@":
        return "fastq", compressed
    first_line = text.split(b"\n", 1)[0]
    if first_line.count(b"\t") >= 10:  # a headerless SAM file
        return "sam", compressed
    if _table_columns(first_line) is not None:
        return "table", compressed
    if _PLAIN_SEQUENCE.fullmatch(first_line.rstrip()):
        return "text", compressed
    if content[:3] == b"BCF":
        raise InputError("unknown format: looks like BCF, not sequences", path=path)
    for magic, what, hint in _OTHER_CONTAINERS:
        if content.startswith(magic):
            raise InputError(f"unknown format: {what} ({hint})", path=path)
    raise InputError(
        f"unknown format (not FASTA, FASTQ, SAM, BAM, CRAM, a CSV/TSV table with a 'sequence' column, or plain "
        f"sequence, one per line; "
        f"{_shown_start(first_line)})", path=path
    )


# Compressed or archive files people hand to sequence tools by mistake (gzip and BGZF are read).
_OTHER_CONTAINERS = (
    (b"BZh", "bzip2-compressed", "decompress it, or recompress it with gzip or bgzip"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it, or recompress it with gzip or bgzip"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it, or recompress it with gzip or bgzip"),
    (b"PK\x03\x04", "a zip archive", "unzip it first"),
)


def _shown_start(line: bytes) -> str:
    """How an unreadable file starts, for a one-line message: its first characters when they are text,
    else the first bytes in hex (raw binary would print as replacement characters and escapes)."""
    sample = line[:30]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as err:  # text cut inside a multi-byte character at the end is still text
        text = sample[: err.start].decode("utf-8") if err.reason == "unexpected end of data" else None
    if text and text.replace("\t", " ").rstrip("\r").isprintable():
        return f"starts with {text.rstrip(chr(13))!r}"
    return f"binary data: {line[:8].hex(' ')}{' ...' if len(line) > 8 else ''}"


def _table_columns(header: bytes) -> list[str] | None:
    """The column names of a CSV/TSV header line that names a sequence column, else None."""
    import csv

    # a byte-order mark (Excel's "CSV UTF-8") and quoted names ("sequence", R's write.csv) are read as train reads them
    line = header.decode("utf-8", "replace").removeprefix("\ufeff").rstrip("\r\n")
    try:
        cells = next(csv.reader([line], delimiter="\t" if "\t" in line else ","), [])
    except csv.Error:
        return None
    columns = [c.strip().lower() for c in cells]
    return columns if any(c in columns for c in SEQUENCE_COLUMNS) else None


def check_distinct_columns(header: Iterable[str], path: str) -> None:
    """InputError for a table header that names one column twice (either would be read as 'the' column)."""
    seen: set[str] = set()
    for name in header:
        key = name.strip().lower()
        if key and key in seen:
            raise InputError(f"line 1: column '{name.strip()}' appears twice in the header", path=path)
        seen.add(key)


def _normalise_format(fmt: str | None) -> str | None:
    if fmt is None:
        return None
    name = _FORMAT_ALIASES.get(fmt.lower(), fmt.lower())
    if name not in FORMATS:
        raise UsageError(f"unknown input format '{fmt}' (use one of: {', '.join(FORMATS)})")
    return name


def is_stream(source: str | os.PathLike) -> bool:
    """Whether an input can be read only once: stdin (``-``) or any path that is not a regular file (a named
    pipe, process substitution ``<(...)`` = /dev/fd/N, /dev/stdin on a pipe, a character device)."""
    if str(source) == "-":
        return True
    try:
        mode = os.stat(source).st_mode
    except OSError:
        return False  # reported as missing or unreadable when opened
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _open_input(source: str, kind: str = "sequence", note: str = "") -> tuple[bytes, BinaryIO | None]:
    """The first bytes of an input (to sniff its format) and, for one that can be read only once (see
    ``is_stream``), the stream itself, left open after them: reading it a second time by its name would
    lose those bytes (a pipe) or wait forever (a FIFO with no writer left). ``note`` ends messages."""
    if source == "-":
        return sys.stdin.buffer.read(_SNIFF_BYTES), sys.stdin.buffer
    if not os.path.exists(source):
        raise InputError(f"no such file{note}", path=source)
    if os.path.isdir(source):
        raise InputError(f"is a folder, not a {kind} file{note}", path=source)
    try:
        handle = open(source, "rb")
        head = handle.read(_SNIFF_BYTES)
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}{note}", path=source) from None
    if stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        return head, None
    return head, handle


def _read_head(source: str) -> bytes:
    """The first bytes of a file, for callers that open it again by name (regular files only)."""
    head, stream = _open_input(source)
    if stream is not None and stream is not sys.stdin.buffer:
        stream.close()
    return head


# A carriage return that ends no CRLF line break (old Mac line breaks, or a stray one inside a line); one at
# the very end of a buffer may be the first half of a CRLF split across two reads.
_LONE_CR = re.compile(rb"\r(?!\n|\Z)")
_TRAILING_BLANKS = re.compile(rb"[ \t]+(?=\r?\n)")


def _first_bad_byte(data) -> int:
    """Offset of the first byte of FASTA/FASTQ text that no parser should see, or -1: NUL (htslib's parser
    and pysam take it for the end of a sequence and silently cut the sequence there) or a lone carriage
    return (kseq takes it for a blank inside a line: old Mac files lose every record). ``data``: bytes or an
    mmap. memchr-speed; a second, regex pass (~1.5 GB/s) only when the data has carriage returns (CRLF files)."""
    found = [data.find(b"\0")]
    if data.find(b"\r") >= 0:
        lone = _LONE_CR.search(data)
        found.append(lone.start() if lone else -1)
    found = [at for at in found if at >= 0]
    return min(found) if found else -1


def _strip_trailing_blanks(data: bytes) -> bytes:
    """Lines without the spaces and tabs that end them (seqkit and Biopython accept them on sequence lines;
    pysam would keep them inside the sequence). Blanks inside a line stay, and stay an error."""
    if b" \n" in data or b"\t\n" in data or b" \r" in data or b"\t\r" in data:
        return _TRAILING_BLANKS.sub(b"", data)
    return data


class _Cut:
    """Where the pump of a FASTA/FASTQ stream stopped (``_stream_as_path`` with ``cut``): at the first bad
    byte (see ``_first_bad_byte``). The parser then sees the text before it only, so the last record it
    returns is the one holding that byte, cut just before it: ``error`` names it."""

    def __init__(self):
        self.char: bytes | None = None
        self.first_line = False  # the byte is on the file's first line (a file of CR-only line breaks)
        self.in_header = False  # the byte is on a header line ('>' or '@')

    def stop_at(self, data: bytes, at: int, seen_newline: bool) -> None:
        line_start = data.rfind(b"\n", 0, at) + 1
        self.first_line = not seen_newline and line_start == 0
        # a line begun in an earlier chunk is taken for a sequence line (its header was seen long before)
        self.in_header = (line_start > 0 or not seen_newline) and data[line_start:line_start + 1] in (b">", b"@")
        self.char = data[at:at + 1]

    def error(self, held, path: str) -> InputError:
        what = "NUL (\\x00)" if self.char == b"\0" else "carriage return (\\r)"
        name = held.name if held is not None and held.name else None
        if self.char == b"\r" and self.first_line:
            problem = "line breaks are carriage returns only (old Mac format): convert with `tr '\\r' '\\n'`"
        elif held is None or self.in_header:
            problem = f"invalid character {what} in a header line"
        elif held.quality is not None:
            problem = f"invalid character {what} in the quality line"
        else:
            problem = f"invalid character {what} at position {len(held.sequence or '') + 1}"
        return InputError(problem, path=path, record=name)


@contextlib.contextmanager
def _stream_as_path(head: bytes, stream: BinaryIO, cut: _Cut | None = None) -> Iterator[str]:
    """pysam (and gzip, csv) want a file name, but a stream (stdin, a pipe) has been read from already (to
    sniff its format) and cannot be opened again: feed the bytes already read plus the rest of the stream
    into a pipe from a thread and hand out ``/dev/fd/N``. With ``cut`` (FASTA/FASTQ text), lines lose their
    trailing blanks and the feed stops before the first bad byte (recorded in ``cut``)."""
    read_fd, write_fd = os.pipe()

    def pump() -> None:
        try:
            with os.fdopen(write_fd, "wb") as sink:
                if cut is None:
                    sink.write(head)
                    while chunk := stream.read(1 << 20):
                        sink.write(chunk)
                    return
                pending, seen_newline = b"", False  # blanks ending a chunk: a line break may follow them
                for chunk in itertools.chain([head], iter(lambda: stream.read(1 << 20), b"")):
                    data = pending + chunk
                    body = data.rstrip(b" \t")
                    pending = data[len(body):]
                    bad = _first_bad_byte(body)
                    if bad >= 0:
                        cut.stop_at(body, bad, seen_newline)  # before the parser can see the end of the text
                        sink.write(_strip_trailing_blanks(body[:bad]))
                        return
                    sink.write(_strip_trailing_blanks(body))
                    seen_newline = seen_newline or b"\n" in body
        except (BrokenPipeError, OSError, ValueError):
            pass  # the reader stopped early (error, or only the first records were wanted)
        finally:
            if stream is not sys.stdin.buffer:
                with contextlib.suppress(OSError):
                    stream.close()

    thread = threading.Thread(target=pump, name="hyena-glt-stream", daemon=True)
    thread.start()
    try:
        yield f"/dev/fd/{read_fd}"
    finally:
        with contextlib.suppress(OSError):
            os.close(read_fd)


@contextlib.contextmanager
def quiet_htslib() -> Iterator[None]:
    """htslib prints its own errors and warnings to stderr ([E::...], [W::...]); we raise one clear error instead."""
    previous = pysam.set_verbosity(0)
    try:
        yield
    finally:
        pysam.set_verbosity(previous)


# --------------------------------------------------------------------------------------------
# FASTA / FASTQ


def _gzip_problem(path: str) -> str | None:
    """Why a gzip/BGZF file cannot be decompressed to its end (truncated, or damaged data), or None if it can
    (then a read error is the format's). Error path only: it reads the whole file."""
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 22):
                pass
    except EOFError:
        return "truncated gzip file (unexpected end of compressed data)"
    except (OSError, zlib.error) as err:
        return f"corrupt gzip data ({err})"
    return None


def _diagnose_fastq(path: str, compressed: bool) -> InputError | None:
    """pysam says only 'truncated quality string'; re-read strictly with Biopython to name the
    record and the problem (error path only, so speed does not matter)."""
    from Bio.SeqIO.QualityIO import FastqGeneralIterator

    opener = gzip.open if compressed else open
    # Most FASTQ is four lines a record: check that layout first, since a multi-line parser reads a
    # short quality line as continued and misreports the length.
    with opener(path, "rt") as handle:
        while header := handle.readline():
            if not header.strip():
                continue
            seq, plus, qual = (handle.readline().rstrip("\r\n") for _ in range(3))
            if not header.startswith("@") or not plus.startswith("+"):
                break
            if len(seq) != len(qual):
                return InputError(
                    f"quality length {len(qual)} differs from sequence length {len(seq)}",
                    path=path,
                    record=header[1:].split()[0] if header[1:].strip() else None,
                )
    number = 0
    try:
        with opener(path, "rt") as handle:
            for number, (title, seq, qual) in enumerate(FastqGeneralIterator(handle), 1):
                if len(seq) != len(qual):
                    return InputError(
                        f"quality length {len(qual)} differs from sequence length {len(seq)}",
                        path=path,
                        record=title.split()[0] if title else number,
                    )
    except ValueError as err:
        lengths = re.search(r"differs for (\S+) \((\d+) and (\d+)\)", str(err))
        if lengths:
            name, seq_len, qual_len = lengths.groups()
            return InputError(
                f"quality length {qual_len} differs from sequence length {seq_len}", path=path, record=name
            )
        return InputError(f"malformed FASTQ after record {number}: {err}", path=path)
    return None


class _BlanksInSequence(Exception):
    """A record of a plain file has blanks in its sequence: read the file again through ``_stream_as_path``,
    which strips those ending lines, from this record on (``done`` records were returned already)."""

    def __init__(self, done: int):
        super().__init__(done)
        self.done = done


def _held_back(entries: Iterator, cut: _Cut, path: str) -> Iterator:
    """``entries`` one behind, so that the record holding the byte where the pump stopped (the last one
    parsed, cut short there) is reported instead of returned."""
    held = None
    try:
        for entry in entries:
            if held is not None:
                yield held
            held = entry
    except (ValueError, OSError):
        if cut.char is None:
            raise  # a real format error, diagnosed by the caller
    if cut.char is not None:
        raise cut.error(held, path)
    if held is not None:
        yield held


def _read_fastx(pysam_path: str, path: str, fmt: str, compressed: bool, check, *, once: bool = False,
                cut: _Cut | None = None, skip: int = 0) -> Iterator[SequenceRecord]:
    """Records of FASTA/FASTQ text. ``once``: the input is a stream (no second look to diagnose an error);
    ``cut``: it comes through ``_stream_as_path``'s checking pump; ``skip``: records returned already."""
    count = 0
    try:
        with quiet_htslib(), pysam.FastxFile(pysam_path) as handle:
            entries = handle if cut is None else _held_back(iter(handle), cut, path)
            for entry in entries:
                count += 1
                if count <= skip:
                    continue
                name, seq, qual = entry.name, entry.sequence, entry.quality
                # blanks ending lines are allowed (stripped by the pump); only a plain file can be read again
                if cut is None and not once and not compressed and (" " in seq or "\t" in seq):
                    raise _BlanksInSequence(count - 1)
                if fmt == "fastq":
                    if qual is None:
                        raise InputError(
                            "FASTQ record without '+' line or quality string (malformed or truncated)",
                            path=path,
                            record=name,
                        )
                    if len(qual) != len(seq):
                        raise InputError(
                            f"quality length {len(qual)} differs from sequence length {len(seq)}",
                            path=path,
                            record=name,
                        )
                elif qual is not None:
                    raise InputError("FASTQ record inside a FASTA file", path=path, record=name)
                if check is not None:
                    seq = check(seq, path, name)
                yield SequenceRecord(name, seq, qual, description=entry.comment or "", source=path, number=count)
    except (ValueError, OSError) as err:
        problem = _gzip_problem(path) if compressed and not once else None
        if problem:
            raise InputError(problem, path=path) from None
        if fmt == "fastq" and not once:
            precise = _diagnose_fastq(path, compressed)
            if precise is not None:
                raise precise from None
        reason = str(err).replace(pysam_path, "input").strip()
        if compressed and once:  # a stream cannot be read again to tell the two apart
            raise InputError(f"truncated gzip stream or malformed {fmt.upper()} after record {count} ({reason})",
                             path=path) from None
        raise InputError(f"malformed {fmt.upper()} after record {count} ({reason})", path=path) from None


def _bom_error(path: str, compressed: bool = False) -> InputError:
    """A byte-order mark where it cannot be skipped (compressed text, indexed access)."""
    command = ("zcat FILE | sed '1s/^\\xEF\\xBB\\xBF//' | bgzip > FIXED.gz" if compressed
               else "sed -i '1s/^\\xEF\\xBB\\xBF//' FILE")
    return InputError(f"starts with a UTF-8 byte-order mark (BOM); remove it: {command}", path=path)


def _check_compressed_start(head: bytes, path: str) -> None:
    """Compressed text is not scanned whole for the bytes pysam misreads (see ``_first_bad_byte``), but its
    first decompressed kilobytes are: a file of old Mac (CR-only) line breaks would otherwise lose every record."""
    text = _decompressed_head(head, path)
    bad = _first_bad_byte(text[:-1])  # a CR ending the sample may be the first half of a CRLF
    if bad < 0:
        return
    if text[bad:bad + 1] == b"\r" and b"\n" not in text[:bad]:
        raise InputError("line breaks are carriage returns only (old Mac format): convert with "
                         "`zcat FILE | tr '\\r' '\\n'`", path=path)
    what = "NUL (\\x00)" if text[bad:bad + 1] == b"\0" else "carriage return (\\r)"
    raise InputError(f"invalid character {what} at byte {bad + 1} of the decompressed text", path=path)


def _read_plain_or_stream(source: str, head: bytes, stream: BinaryIO | None, fmt: str, compressed: bool,
                          check) -> Iterator[SequenceRecord]:
    """FASTA/FASTQ records of a file or stream. Plain text goes to pysam directly unless it holds a byte
    pysam would misread (NUL, a lone CR: one memchr pass over the mapped file) or a sequence with blanks;
    then it goes through ``_stream_as_path``'s checking pump, which reports the one and strips the other.
    Compressed files cannot be looked into cheaply and go to pysam as they are."""
    once = stream is not None  # else a plain file, read again by name to diagnose an error
    if compressed:
        _check_compressed_start(head, source)
        if _decompressed_head(head, source).startswith(_BOM):
            raise _bom_error(source, compressed=True)
    elif head.startswith(_BOM):  # pysam would read the mark as part of the first header: skip it in the pump
        if stream is None:
            stream = open(source, "rb")
            stream.read(len(_BOM))
            head = b""
        else:
            head = head[len(_BOM):]
    if stream is None and not compressed:
        with contextlib.closing(_mapped(source)) as data:
            if _first_bad_byte(data) >= 0:
                head, stream = b"", open(source, "rb")
    if stream is None:
        try:
            yield from _read_fastx(source, source, fmt, compressed, check)
            return
        except _BlanksInSequence as blanks:
            head, stream, skip = b"", open(source, "rb"), blanks.done
    else:
        skip = 0
    cut = None if compressed else _Cut()
    with _stream_as_path(head, stream, cut) as pysam_path:
        yield from _read_fastx(pysam_path, source, fmt, compressed, check, once=once, cut=cut, skip=skip)


# --------------------------------------------------------------------------------------------
# CSV / TSV tables (GUE-style: sequence,label)


def _read_table(pysam_path: str, path: str, compressed: bool, check) -> Iterator[SequenceRecord]:
    """One record per row of a CSV/TSV whose header names a sequence column (the layout `train` reads);
    named by an id column when there is one, else ``FILE:LINE`` as `train` names rows. The other columns
    go to the description as ``column=value``."""
    import csv

    opener = gzip.open if compressed else open
    with opener(pysam_path, "rt", newline="", encoding="utf-8-sig") as handle:
        first = handle.readline()
        columns = _table_columns(first.encode())
        delimiter = "\t" if "\t" in first else ","
        check_distinct_columns(next(csv.reader([first.rstrip("\r\n")], delimiter=delimiter)), path)
        seq_col = next(columns.index(c) for c in SEQUENCE_COLUMNS if c in columns)
        id_col = next((columns.index(c) for c in ID_COLUMNS if c in columns), None)
        others = [i for i in range(len(columns)) if i not in (seq_col, id_col)]
        stem = "stdin" if path == "-" else Path(path).name
        count = 0
        for line_no, row in enumerate(csv.reader(handle, delimiter=delimiter), 2):
            if not row or not "".join(row).strip():
                continue
            if len(row) <= seq_col:
                raise InputError(f"line {line_no}: {len(row)} column(s), no sequence", path=path)
            count += 1
            # a row with an empty id cell is named as rows are in a table without an id column
            name = (row[id_col].strip() if id_col is not None and id_col < len(row) else "") or f"{stem}:{line_no}"
            if any(c in name for c in "\t\n\r"):  # a quoted cell: it would break every TSV/BED row written
                raise InputError(f"line {line_no}: id {name!r} holds a tab or line break, which a record name "
                                 "cannot", path=path)
            seq = row[seq_col].strip()
            if check is not None:
                seq = check(seq, path, name)
            extra = " ".join(f"{columns[i]}={row[i]}" for i in others if i < len(row))
            yield SequenceRecord(name, seq, None, description=extra, standalone=True, source=path, number=count)


def parquet_rows(path: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """(column names, rows) of a Parquet table (as Hugging Face datasets export them), each row's cells as text
    the way a CSV of the same table would hold them, numbered as that CSV's lines (the header is line 1), so a
    table reads alike in either format. Needs pyarrow (an optional dependency)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("reading Parquet needs pyarrow: pip install 'hyena-glt[parquet]' (or pip install pyarrow)",
                         path=path) from None
    try:
        table = pq.ParquetFile(path)
        columns = list(table.schema_arrow.names)
    except Exception as err:  # pyarrow's errors (ArrowInvalid, OSError, ...) share no base class worth naming
        raise InputError(f"not a readable Parquet file ({' '.join(str(err).split())})", path=path) from None

    def rows() -> Iterator[tuple[int, list[str]]]:
        line = 1
        for batch in table.iter_batches(batch_size=65536):
            cells = [[_as_cell(v) for v in batch.column(i).to_pylist()] for i in range(batch.num_columns)]
            for row in zip(*cells):
                line += 1
                yield line, list(row)

    return columns, rows()


def _as_cell(value) -> str:
    """A Parquet value as a CSV cell: a float holding an integer as that integer (labels 0.0/1.0 read as 0/1,
    as they would from a CSV written by pandas' to_csv of ints), a list as its items joined by ';' (multi-label
    cells), bytes as ASCII, a missing value as empty."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ";".join(_as_cell(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)


def _read_parquet(path: str, check) -> Iterator[SequenceRecord]:
    """One record per row of a Parquet table with a sequence column, named as a CSV's rows are (see _read_table)."""
    columns, rows = parquet_rows(path)
    lower = [c.strip().lower() for c in columns]
    seq_col = next((lower.index(c) for c in SEQUENCE_COLUMNS if c in lower), None)
    if seq_col is None:
        raise InputError(f"a Parquet table with no sequence column (columns: {', '.join(columns)}; expected one "
                         "named 'sequence' or 'seq')", path=path)
    id_col = next((lower.index(c) for c in ID_COLUMNS if c in lower), None)
    others = [i for i in range(len(columns)) if i not in (seq_col, id_col)]
    stem = Path(path).name
    for count, (line_no, row) in enumerate(rows, 1):
        name = (row[id_col].strip() if id_col is not None else "") or f"{stem}:{line_no}"
        if any(c in name for c in "\t\n\r"):  # it would break every TSV/BED row written
            raise InputError(f"line {line_no}: id {name!r} holds a tab or line break, which a record name cannot",
                             path=path)
        seq = row[seq_col].strip()
        if check is not None:
            seq = check(seq, path, name)
        extra = " ".join(f"{columns[i]}={row[i]}" for i in others)
        yield SequenceRecord(name, seq, None, description=extra, standalone=True, source=path, number=count)


# --------------------------------------------------------------------------------------------
# SAM / BAM / CRAM


def _read_alignments(
    pysam_path: str, path: str, fmt: str, reference, stored_orientation: bool, check, regions=None, regions_bed=None,
    compressed: bool = False, once: bool = False,
) -> Iterator[SequenceRecord]:
    """Primary alignments as reads (in sequencing orientation unless ``stored_orientation``); with regions,
    the reads of an indexed BAM/CRAM overlapping each region in turn, as ``samtools view FILE REGION``.

    htslib reports a SAM line it cannot parse as a "truncated file" (its read returns -2, as for a BAM cut
    short): for SAM text that is a malformed line, named by its number, unless a gzip stream really ends early."""
    if fmt == "cram" and reference is None:
        raise InputError(f"CRAM input needs its reference FASTA ({option('reference')})", path=path)
    if reference is not None and not Path(reference).exists():
        raise InputError("no such file (reference FASTA)", path=str(reference))
    mode = {"sam": "r", "bam": "rb", "cram": "rc"}[fmt]
    count = skipped = 0
    lines_read = 0  # SAM: header lines, then one per alignment (secondary and supplementary included)
    try:
        with quiet_htslib(), pysam.AlignmentFile(
            pysam_path, mode, reference_filename=None if reference is None else str(reference), check_sq=False
        ) as handle:
            if regions or regions_bed is not None:
                if fmt == "sam" or not handle.has_index():
                    what = "a SAM file cannot be indexed: convert it with `samtools sort -o x.bam`, then " \
                        if fmt == "sam" else "no index found: run "
                    raise InputError(f"regions of reads need an indexed BAM/CRAM ({what}`samtools index`)",
                                     path=path)
                lengths = dict(zip(handle.references, handle.lengths))
                alignments = itertools.chain.from_iterable(
                    handle.fetch(contig, start, end)
                    for contig, start, end, _, _ in wanted_regions(regions, regions_bed, lengths, path))
            else:
                alignments = handle.fetch(until_eof=True)
            if fmt == "sam":
                lines_read = str(handle.header).count("\n")
            for aln in alignments:
                lines_read += 1
                if aln.is_secondary or aln.is_supplementary:
                    skipped += 1
                    continue
                count += 1
                name = aln.query_name or str(count)
                seq = aln.query_sequence or ""
                quals = aln.query_qualities
                qual = pysam.qualities_to_qualitystring(quals) if quals is not None else None
                strand = "." if aln.is_unmapped else ("-" if aln.is_reverse else "+")
                if aln.is_reverse and not stored_orientation:
                    seq = reverse_complement(seq)
                    qual = qual[::-1] if qual is not None else None
                if check is not None:
                    seq = check(seq, path, name)
                mate = " read1" if aln.is_read1 else (" read2" if aln.is_read2 else "")
                where = "unmapped" if aln.is_unmapped else (
                    f"{aln.reference_name}:{aln.reference_start + 1}-{aln.reference_end}"
                )
                yield SequenceRecord(name, seq, qual, strand=strand, description=(where + mate), source=path,
                                     number=count)
        if skipped:  # as samtools fasta does, but said: a read's other alignments would repeat it
            log.info("%s: skipped %d secondary/supplementary alignment(s)", path, skipped)
    except (ValueError, OSError) as err:
        if "Closing failed" in str(err) and err.__context__ is not None:  # closing after the real error
            err = err.__context__
        reason = str(err).replace(pysam_path, "input").strip()
        problem = _gzip_problem(path) if fmt == "sam" and compressed and not once else None
        if problem:
            raise InputError(problem, path=path) from None
        if fmt == "sam" and reason == "truncated file":
            what = "truncated gzip stream or malformed" if compressed and once else "malformed"
            raise InputError(f"{what} SAM record at line {lines_read + 1} (after record {count})",
                             path=path) from None
        if fmt == "cram" and reason == "truncated file":  # what htslib says when the reference's MD5 differs
            raise InputError(f"cannot read CRAM after record {count}: the reference FASTA ({reference}) may not be "
                             "the one it was written with, or the file is truncated", path=path) from None
        raise InputError(f"cannot read {fmt.upper()} after record {count} ({reason})", path=path) from None


# --------------------------------------------------------------------------------------------
# Regions of an indexed FASTA

_REGION = re.compile(r"(?P<contig>.+):(?P<start>[\d,]+)(?:-(?P<end>[\d,]*))?")


def open_indexed_fasta(path: str | os.PathLike) -> pysam.FastaFile:
    """A random-access FASTA (plain or bgzipped). pysam builds ``.fai`` (and ``.gzi``) when missing
    and the folder is writable.

    Record names must be unique: htslib's index keeps the first of two records with one name and drops
    the second with only a warning (samtools faidx does the same), so a region would silently read the
    first. A duplicate is an InputError, and an index built for this call is removed again.

    An index older than the file (the file changed after indexing) would give other bases than asked for:
    it is rebuilt, with a warning, where the folder is writable (as pyfaidx does); elsewhere it is used only
    if every record header sits where it says (else an InputError), as is any existing index."""
    path = str(path)
    if is_stream(path):  # checked before opening: a FIFO would wait for a writer first
        raise InputError("regions need an indexed FASTA file, not a pipe or other stream", path=path)
    if not Path(path).is_file():
        raise InputError("no such file", path=path)
    indexes = (Path(path + ".fai"), Path(path + ".gzi"))
    changed = os.stat(path).st_mtime
    stale = [index for index in indexes if index.exists() and index.stat().st_mtime < changed]
    if stale:
        which = " and ".join(index.suffix for index in stale)
        if os.access(Path(path).resolve().parent, os.W_OK):
            for index in stale:
                index.unlink()
            log.warning("%s: its %s index was older than the file (changed after indexing?); rebuilt", path, which)
        else:  # a shared, read-only reference (copied in another order?): used if its records line up (below)
            log.warning("%s: its %s index is older than the file; checking that it still matches", path, which)
    made = [index for index in indexes if not index.exists()]
    try:
        with quiet_htslib():
            fasta = pysam.FastaFile(path)
    except (OSError, ValueError):
        fasta = None
    if fasta is not None:
        try:
            _check_indexed_names(path, built=Path(path + ".fai") in made)
        except InputError:
            fasta.close()
            for index in made:
                with contextlib.suppress(OSError):
                    index.unlink()
            raise
        return fasta
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    fmt, compressed = _sniff(head, path)
    if fmt != "fasta":
        raise InputError(f"regions need an indexed FASTA file; this is {fmt.upper()}", path=path)
    if compressed and head[12:14] != b"BC":
        raise InputError("cannot index a plain-gzip FASTA for regions; recompress it with bgzip", path=path)
    if (_decompressed_head(head, path) if compressed else head).startswith(_BOM):
        raise _bom_error(path, compressed)
    if Path(path + ".fai") not in made:
        raise InputError(f"its .fai index cannot be read or does not match the file: rebuild it (samtools faidx "
                         f"{path})", path=path)
    if not os.access(Path(path).resolve().parent, os.W_OK):
        raise InputError("no .fai index and its folder is not writable (run `samtools faidx` where you can)", path=path)
    raise InputError("cannot build a FASTA index (lines of unequal length?)", path=path)


_GAP_BYTES = 1 << 16


def _check_indexed_names(path: str, built: bool) -> None:
    """InputError if two records of an indexed FASTA share a name (see ``open_indexed_fasta``).

    The index gives where each indexed record's sequence starts and ends, so only the few bytes between
    records are read: one header line each, unless htslib left out records there (duplicates, and records
    with no sequence, which it also leaves out). Cheap, so an index made earlier (by samtools) is checked
    too. Bgzipped FASTA is read at those (uncompressed) offsets through its ``.gzi`` block index; without a
    readable one, its names are streamed once, when this call has just built its index."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    try:
        with open(path + ".fai") as fh:
            rows = [line.rstrip("\n").split("\t") for line in fh if line.strip()]
        entries = [(row[0], int(row[1]), int(row[2]), int(row[3]), int(row[4])) for row in rows]
        if any(len(row) > 5 for row in rows):
            entries = None  # a FASTQ index (a quality offset too): its headers start with '@', not checked
    except (OSError, ValueError, IndexError):
        entries = None  # an index pysam opened but we cannot parse: leave it to htslib
    names = None
    mismatch = False
    if entries is not None:
        # a damaged file is left to htslib to report, when the records are read
        with contextlib.suppress(OSError), quiet_htslib(), contextlib.ExitStack() as stack:
            data = _BgzfBytes.open(path) if compressed else _mapped(path)
            if data is not None:
                stack.enter_context(data)
                names = _names_between_records(data, entries)
                mismatch = names is None
    if mismatch and not built:  # an index of another file, or of this one before it was changed
        raise InputError(f"the .fai index does not match the FASTA (was the file changed after indexing, or is it "
                         f"another file's? rebuild it: samtools faidx {path})", path=path)
    if names is None and compressed and built:
        with quiet_htslib(), pysam.FastxFile(path) as handle:
            names = [entry.name for entry in handle]
    if names is not None:
        _first_duplicate(names, path)


def _mapped(path: str):
    """The file's bytes (an mmap: sliced, ``len``), or None for an empty file."""
    if os.path.getsize(path) == 0:
        return None
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


class _BgzfBytes:
    """The uncompressed bytes of a BGZF file, sliced like an mmap (``data[a:b]``, ``len(data)``), read through
    its ``.gzi`` index: (compressed, uncompressed) offsets of every block after the first, as htslib writes it
    (a little-endian uint64 count, then the pairs). The last block read is kept: a draft assembly's many
    short records mostly lie in the blocks of the ones before (50,000 records: 0.3 s, 4.7 s re-reading)."""

    def __init__(self, path: str, compressed: np.ndarray, uncompressed: np.ndarray):
        from pysam.libcbgzf import BGZFile

        self._blocks_c, self._blocks_u = compressed, uncompressed
        self._fh = BGZFile(path, "rb")
        self._fh.seek(int(compressed[-1]) << 16)
        self._size = int(uncompressed[-1]) + len(self._fh.read())
        self._cached, self._data = -1, b""

    @classmethod
    def open(cls, path: str) -> "_BgzfBytes | None":
        try:
            raw = np.fromfile(path + ".gzi", dtype="<u8")
            count = int(raw[0])
            pairs = raw[1:1 + 2 * count].reshape(count, 2)
            blocks = np.vstack([np.zeros((1, 2), dtype=pairs.dtype), pairs])
            steps = np.diff(blocks.astype(np.int64), axis=0)
            if not ((steps[:, 0] > 0).all() and (steps[:, 1] >= 0).all()):
                return None
            return cls(path, blocks[:, 0], blocks[:, 1])
        except (OSError, ValueError, IndexError):
            return None

    def __len__(self) -> int:
        return self._size

    def _block(self, i: int) -> bytes:
        if i != self._cached:
            self._fh.seek(int(self._blocks_c[i]) << 16)
            end = int(self._blocks_u[i + 1]) if i + 1 < len(self._blocks_u) else self._size
            self._cached, self._data = i, self._fh.read(end - int(self._blocks_u[i]))
        return self._data

    def __getitem__(self, cut: slice) -> bytes:
        start, stop = max(0, cut.start or 0), min(self._size, self._size if cut.stop is None else cut.stop)
        parts = []
        while start < stop:
            i = int(np.searchsorted(self._blocks_u, start, side="right")) - 1
            data, first = self._block(i), int(self._blocks_u[i])
            piece = data[start - first:stop - first]
            if not piece:  # a block shorter than the index says: a damaged file, which htslib will report
                break
            parts.append(piece)
            start += len(piece)
        return b"".join(parts)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def _names_between_records(data, entries: list[tuple[str, int, int, int, int]]) -> list[str] | None:
    """Every record name of a FASTA in file order, read from the header lines between the sequences of its
    ``.fai`` ``entries`` (name, length, offset, line bases, line width); None when the index does not match
    the file (the header before a record's sequence is not that record's). ``data``: the file's
    (uncompressed) bytes, sliced."""
    size = len(data)
    names: list[str] = []
    end = 0  # where the previous record's sequence ends
    for name, length, offset, line_bases, line_width in [*entries, (None, 0, size, 0, 0)]:
        if offset < end or offset > size:
            return None
        cut = offset - end > _GAP_BYTES  # a left-out record with a long sequence: its header comes first
        gap = data[end:end + _GAP_BYTES] if cut else data[end:offset]
        lines = gap.split(b"\n")
        if cut:
            lines = lines[:-1]  # the last line may be partial
        headers = [line[1:].split(maxsplit=1)[0].decode("utf-8", "replace") if line[1:].strip() else ""
                   for line in lines if line.startswith(b">")]
        if name is not None and not cut:
            if not headers or headers[-1] != name:
                return None
        names.extend(headers)
        if cut:
            return names  # enough to name the duplicate; the rest is not needed
        if line_bases > 0 and length > 0:
            full, rest = divmod(length, line_bases)
            end = offset + full * line_width + (rest + line_width - line_bases if rest else 0)
        else:
            end = offset
        end = min(end, size)
    return names


def _first_duplicate(names: Iterable[str], path: str) -> None:
    seen: dict[str, int] = {}
    for number, name in enumerate(names, 1):
        earlier = seen.setdefault(name, number)
        if earlier != number:
            raise InputError(f"record {name!r} appears twice (records {earlier} and {number}); names must be "
                             "unique in an indexed FASTA (its .fai index keeps only the first)", path=path)


def parse_region(text: str, lengths: dict[str, int], path: str) -> tuple[str, int, int]:
    """``chrI:1,001-2,000`` → ('chrI', 1000, 2000): 1-based inclusive in, 0-based half-open out.
    A bare contig name is the whole contig; ``chr:1,001`` or ``chr:1,001-`` runs to its end. Contig names
    may contain ':'; as in samtools, braces mark the name, ``{HLA-A*01:01}`` or ``{HLA-A*01:01}:1-100``,
    and a name that is also a range of another contig is refused as ambiguous without them."""
    text = text.strip()
    braced = re.fullmatch(r"\{([^{}]+)\}(?::(.*))?", text)
    if braced:
        contig, span = braced.groups()
        if contig not in lengths:
            _unknown_contig(text, contig, lengths, path)
        return (contig, 0, lengths[contig]) if span is None else _span(text, contig, span, lengths[contig], path)
    match = _REGION.fullmatch(text)
    if text in lengths:
        if match and match["contig"] in lengths:
            other = match["contig"]
            raise InputError(f"region '{text}' is ambiguous: a contig has that name, and it is also a range of "
                             f"contig '{other}' (write {{{text}}} for the one, {{{other}}}:"
                             f"{text[len(other) + 1:]} for the other)", path=path)
        return text, 0, lengths[text]
    if not match and text.rpartition(":")[0] in lengths:
        raise InputError(f"region '{text}': bad coordinates '{text.rpartition(':')[2]}' "
                         "(use contig:start-end, 1-based inclusive)", path=path)
    contig = match["contig"] if match else text
    if contig not in lengths:
        _unknown_contig(text, contig, lengths, path)
    return _span(text, contig, text[len(contig) + 1:], lengths[contig], path)


def _span(text: str, contig: str, span: str, length: int, path: str) -> tuple[str, int, int]:
    """``start[-[end]]`` (1-based inclusive, commas allowed) of ``contig`` → (contig, start0, end)."""
    match = re.fullmatch(r"(?P<start>[\d,]+)(?:-(?P<end>[\d,]*))?", span)
    if not match:
        raise InputError(f"region '{text}': bad coordinates '{span}' (use contig:start-end, 1-based inclusive)",
                         path=path)
    start1 = int(match["start"].replace(",", ""))
    end = int(match["end"].replace(",", "")) if match["end"] else length
    if start1 < 1 or start1 > end:
        raise InputError(f"region '{text}': start must be >= 1 and <= end", path=path)
    if end > length:
        raise InputError(f"region '{text}' ends at {end:,}, past the end of contig '{contig}' ({length:,} bp)",
                         path=path)
    return contig, start1 - 1, end


def _unknown_contig(text: str, contig: str, lengths: dict[str, int], path: str):
    known = ", ".join(list(lengths)[:5]) + (", ..." if len(lengths) > 5 else "")
    raise InputError(f"region '{text}': unknown contig '{contig}' (contigs: {known})", path=path)


def _text_lines(handle, path: str, what: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text file opened in text mode; binary content is an InputError, not a
    UnicodeDecodeError."""
    number = 0
    try:
        for number, line in enumerate(handle, 1):
            yield number, line
    except UnicodeDecodeError:
        raise InputError(f"line {number + 1}: not text (is this really a {what} file?)", path=path) from None


def read_bed_regions(bed: str | os.PathLike) -> Iterator[tuple[str, int, int, str, str, int]]:
    """(contig, start, end, name, strand, line number) for each interval of a BED file (0-based,
    half-open). Comment, ``track`` and ``browser`` lines are skipped; gzip is read transparently. A file
    without intervals gives none and a warning (as ``samtools view -L`` with an empty BED gives no reads).
    Zero-length intervals (start = end: an insertion point, valid BED) hold no bases to read: they are
    skipped, with one warning that counts them."""
    bed = str(bed)
    head, stream = _open_input(bed, kind="BED", note=" (BED regions)")
    opener = gzip.open if head[:2] == b"\x1f\x8b" else open
    intervals, empty, first_empty = 0, 0, 0
    # a pipe (`--regions <(...)`) is read once, its first bytes replayed
    opened = contextlib.nullcontext(bed) if stream is None else _stream_as_path(head, stream)
    with opened as readable, opener(readable, "rt") as handle:
        for number, line in _text_lines(handle, bed, "BED regions"):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.rstrip("\r\n").split("\t") if "\t" in line else line.split()
            try:
                contig, start, end = fields[0], int(fields[1]), int(fields[2])
            except (IndexError, ValueError):
                shown = line.strip()[:60]
                raise InputError(
                    f"line {number}: malformed BED line (need contig, start, end; got {shown!r})", path=bed
                ) from None
            if start < 0 or end < start:
                raise InputError(f"line {number}: BED start must be >= 0 and <= end (got {start}, {end})", path=bed)
            name = fields[3] if len(fields) > 3 else ""
            strand = fields[5] if len(fields) > 5 else "."
            if strand not in ("+", "-", "."):
                raise InputError(f"line {number}: BED strand must be +, - or . (got {strand[:20]!r})", path=bed)
            if start == end:
                empty, first_empty = empty + 1, first_empty or number
                continue
            intervals += 1
            yield contig, start, end, name, strand, number
    if empty:
        log.warning("%s: skipped %d zero-length interval(s) (start = end: no bases to read; the first on line %d)",
                    bed, empty, first_empty)
    if not intervals:
        log.warning("%s: no regions", bed)


def wanted_regions(regions, regions_bed, lengths: dict[str, int], path: str) -> Iterator[tuple[str, int, int, str, str]]:
    """(contig, start, end, name, strand), 0-based half-open, of samtools-style ``regions`` then the lines of
    ``regions_bed``, each checked against the contig ``lengths`` of ``path``."""
    for text in regions or ():
        contig, start, end = parse_region(text, lengths, path)
        yield contig, start, end, "", "."
    if regions_bed is not None:
        for contig, start, end, name, strand, number in read_bed_regions(regions_bed):
            where = f"{contig}:{start + 1}-{end}"
            if contig not in lengths:
                raise InputError(f"line {number}: unknown contig '{contig}'", path=str(regions_bed))
            if end > lengths[contig]:
                raise InputError(
                    f"line {number}: region {where} is outside contig '{contig}' (length {lengths[contig]:,})",
                    path=str(regions_bed),
                )
            yield contig, start, end, name, strand


def fetch_region(fasta: pysam.FastaFile, contig: str, start: int, end: int, path: str | os.PathLike) -> str:
    """``fasta.fetch`` of a checked region; damaged compressed data (or a file changed after indexing) is an
    InputError naming the region, not htslib's errno."""
    try:
        with quiet_htslib():
            return fasta.fetch(contig, start, end)
    except OSError:
        raise InputError(f"region {contig}:{start + 1}-{end}: cannot read its sequence (damaged data, or a file "
                         "changed after indexing? check it with `gzip -t`, rebuild the index with samtools faidx)",
                         path=str(path)) from None


def _read_regions(path: str, regions, regions_bed, check) -> Iterator[SequenceRecord]:
    made = [index for index in (Path(path + ".fai"), Path(path + ".gzi")) if not index.exists()]
    fasta = open_indexed_fasta(path)
    try:
        yield from _fetch_regions(fasta, path, regions, regions_bed, check)
    except InputError:  # a wrong region: leave no index behind that this call made (as for duplicates)
        for index in made:
            with contextlib.suppress(OSError):
                index.unlink()
        raise


def _fetch_regions(fasta: pysam.FastaFile, path: str, regions, regions_bed, check) -> Iterator[SequenceRecord]:
    with fasta:
        lengths = dict(zip(fasta.references, fasta.lengths))
        for number, (contig, start, end, name, strand) in enumerate(
                wanted_regions(regions, regions_bed, lengths, path), 1):
            region_id = f"{contig}:{start + 1}-{end}" + ("(-)" if strand == "-" else "")
            seq = fetch_region(fasta, contig, start, end, path)
            if "\n" in seq or ">" in seq:  # offsets from an index of another version of the file
                raise InputError(f"region {region_id}: the .fai index does not match the FASTA (was the file "
                                 f"changed after indexing? rebuild it: samtools faidx {path})", path=path)
            if strand == "-":  # a minus-strand BED line reads the minus strand, as `bedtools getfasta -s` does
                seq = reverse_complement(seq)
            if check is not None:
                seq = check(seq, path, region_id)
            yield SequenceRecord(region_id, seq, None, contig, start, end, strand, name, source=path, number=number)


# --------------------------------------------------------------------------------------------
# Public entry points


def read_sequences(
    source: str | os.PathLike,
    *,
    fmt: str | None = None,
    reference=None,
    regions: list[str] | None = None,
    regions_bed=None,
    stored_orientation: bool = False,
    alphabet: str | None = None,
    iupac: str = "N",
    formats: Iterable[str] | None = None,
) -> Iterator[SequenceRecord]:
    """Stream the records of one input (a path, or ``-`` for stdin).

    ``fmt`` forces a format (fasta, fastq, sam, bam, cram); by default it is read from the content. A folder
    is read as the files in it and its subfolders (see ``folder_files``); a plain sequence file in it is a record
    named by its path in the folder (``positive/0.txt``).
    ``regions`` (samtools strings) and ``regions_bed`` (a BED path) select regions of an indexed
    FASTA, or the reads of an indexed BAM/CRAM overlapping them. ``alphabet`` (dna, rna, nucleotide = DNA or RNA, protein; None = no check) rejects the
    first character outside it, with its 1-based position; ambiguity codes follow ``iupac``
    (``N``: replaced by N, or X for protein; ``keep``; ``error``). ``formats``: the formats the content may
    be in (as sniffed; another is an InputError), e.g. to check a stream that cannot be looked at twice.
    """
    check = None if alphabet is None else _AlphabetCheck(alphabet, iupac)
    fmt = _normalise_format(fmt)
    source = str(source)
    regional = bool(regions) or regions_bed is not None
    if regional and source == "-":
        raise UsageError(f"{option('regions')}/{option('regions_bed')} need an indexed FASTA, BAM or CRAM file, "
                         "not stdin")
    if regional and is_stream(source):  # checked before opening: a FIFO would wait for a writer first
        raise InputError(f"{option('regions')}/{option('regions_bed')} need an indexed FASTA, BAM or CRAM file, "
                         "not a pipe or other stream (it can be read only once)", path=source)
    if source != "-" and os.path.isdir(source):
        if regional:
            raise UsageError(f"{option('regions')}/{option('regions_bed')} need an indexed FASTA, BAM or CRAM file, "
                             "not a folder", path=source)
        for name, path in folder_files(source):
            yield from _read_file(path, name, fmt, check, reference, stored_orientation, formats)
        return
    name = "stdin" if source == "-" else Path(source).name
    yield from _read_file(source, name, fmt, check, reference, stored_orientation, formats, regions, regions_bed)


def _read_file(source: str, name: str, fmt: str | None, check, reference, stored_orientation: bool,
               formats: Iterable[str] | None, regions=None, regions_bed=None) -> Iterator[SequenceRecord]:
    """The records of one input (a file or stream; ``name`` names plain sequence text's records)."""
    regional = bool(regions) or regions_bed is not None
    head, stream = _open_input(source)
    try:
        sniffed, compressed = _sniff(head, source)
        if formats is not None and sniffed not in formats:
            wanted = "a table" if list(formats) == ["table"] else "/".join(f.upper() for f in formats)
            raise InputError(f"holds {'a table' if sniffed == 'table' else sniffed.upper()}, not {wanted}", path=source)
    except InputError:
        if stream is not None and stream is not sys.stdin.buffer:
            stream.close()
        raise
    fmt = fmt or sniffed
    if regional and fmt in ("fasta", "fastq"):
        yield from _read_regions(source, regions, regions_bed, check)
        return
    if fmt in ("fasta", "fastq"):
        yield from _read_plain_or_stream(source, head, stream, fmt, compressed, check)
        return
    if fmt == "text":
        yield from _read_plain_sequences(source, name, head, stream, compressed, check)
        return
    if fmt == "parquet":
        if stream is not None:
            raise InputError("a Parquet table cannot be read from a pipe or stdin (its index is at its end): "
                             "give it as a file", path=source)
        yield from _read_parquet(source, check)
        return
    # a stream is read once, through a pipe that first replays the bytes read to sniff it
    opened = contextlib.nullcontext(source) if stream is None else _stream_as_path(head, stream)
    with opened as pysam_path:
        if fmt == "table":
            yield from _read_table(pysam_path, source, compressed, check)
        else:
            yield from _read_alignments(pysam_path, source, fmt, reference, stored_orientation, check,
                                        regions, regions_bed, compressed=compressed, once=stream is not None)


def folder_files(root: str | os.PathLike) -> list[tuple[str, str]]:
    """The files in a folder and its subfolders, as (path relative to it, with '/'; path): in natural order
    (2.txt before 10.txt), subfolders after the files beside them, links followed. Hidden entries (.DS_Store,
    .git) and the indexes beside FASTA/BAM/CRAM files (.fai, .bai, ...) are skipped. A folder with no other
    file is an InputError."""
    found, seen = [], {os.path.realpath(root)}
    for folder, subfolders, files in os.walk(root, followlinks=True, onerror=_raise_walk_error):
        subfolders[:] = sorted((d for d in subfolders if not d.startswith(".")), key=natural_order)
        for sub in subfolders:  # a link back up the tree would be walked forever
            real = os.path.realpath(os.path.join(folder, sub))
            if real in seen:
                raise InputError(f"a link in the folder leads to a folder read already ({real})",
                                 path=os.path.join(folder, sub))
            seen.add(real)
        within = os.path.relpath(folder, root).replace(os.sep, "/")
        prefix = "" if within == "." else within + "/"
        kept = (f for f in files if not f.startswith(".") and not f.lower().endswith(_INDEX_SUFFIXES))
        for file in sorted(kept, key=natural_order):
            found.append((prefix + file, os.path.join(folder, file)))
    if not found:
        raise InputError("folder holds no files", path=str(root))
    return found


# indexes that sit beside the files they index (a folder of BAMs holds their .bai files too)
_INDEX_SUFFIXES = (".fai", ".gzi", ".bai", ".csi", ".crai", ".tbi")


def natural_order(name: str) -> list:
    """Sort key that reads the digits in a name as a number: '2.txt' before '10.txt'."""
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", name))]


def _raise_walk_error(err: OSError) -> None:
    raise InputError(f"cannot read folder: {err.strerror}", path=str(err.filename))


def _read_plain_sequences(source: str, name: str, head: bytes, stream: BinaryIO | None, compressed: bool,
                          check) -> Iterator[SequenceRecord]:
    """Plain text that is only sequence, one per line: Genomic Benchmarks' layout keeps one sequence per .txt
    file. A file of one line is a record named ``name``; each line of a longer one is ``name:LINE``, as the rows
    of a table without an id column are named. Each is a sequence of its own (``standalone``), like a row."""
    if stream is None:
        if len(head) < _SNIFF_BYTES:  # the whole file
            data = head
        else:
            with open(source, "rb") as handle:
                data = handle.read()
    else:
        data = head + stream.read()
    if compressed:
        data = gunzip(data, source)
    lines = [(number, line.strip()) for number, line in enumerate(data.removeprefix(_BOM).split(b"\n"), 1)
             if line.strip()]
    for count, (number, line) in enumerate(lines, 1):
        if line.startswith(b">"):  # a FASTA file whose first header is missing or misplaced
            raise InputError(f"line {lines[0][0]}: sequence before the first '>' header (line {number}: "
                             f"{_shown_start(line)})", path=source)
        if not _PLAIN_SEQUENCE.fullmatch(line):
            raise InputError(f"line {number}: not a sequence (plain sequence text holds letters only, one sequence "
                             f"per line; {_shown_start(line)})", path=source)
        record_name = name if len(lines) == 1 else f"{name}:{number}"
        seq = line.decode("ascii")
        if check is not None:
            seq = check(seq, source, record_name)
        yield SequenceRecord(record_name, seq, None, standalone=True, source=source, number=count)


def gunzip(data: bytes, path: str) -> bytes:
    """The decompressed bytes of a whole gzip/BGZF file; a truncated or damaged one is an InputError."""
    try:
        return gzip.decompress(data)
    except EOFError:
        raise InputError("truncated gzip file (unexpected end of compressed data)", path=path) from None
    except (OSError, zlib.error) as err:
        raise InputError(f"corrupt gzip data ({err})", path=path) from None


def read_many(sources: Iterable[str | os.PathLike], **kwargs) -> Iterator[SequenceRecord]:
    """``read_sequences`` over several inputs, one after the other (same keyword arguments)."""
    for source in sources:
        yield from read_sequences(source, **kwargs)


def _where(record: SequenceRecord) -> str:
    """``FILE: record 'ID'`` (or ``record N`` when it has no name) for messages."""
    source = "" if record.source is None else ("stdin: " if record.source == "-" else f"{record.source}: ")
    return source + (f"record {record.id!r}" if record.id else f"record {record.number}")


def as_records(items: Iterable[SequenceRecord | str]) -> Iterator[SequenceRecord]:
    """Records as given, and plain strings as records named by their 1-based number (what library callers
    may pass instead of ``read_sequences`` output); anything else is a UsageError. One string or one record
    on its own is refused too: iterated, a string would be read letter by letter, one sequence per base."""
    if isinstance(items, (str, bytes, SequenceRecord)):
        raise UsageError(f"give an iterable of sequences (a list, or read_sequences(...)), not a single "
                         f"{type(items).__name__}: e.g. [seq]")
    for number, item in enumerate(items, 1):
        if isinstance(item, str):
            yield SequenceRecord(str(number), item)
        elif isinstance(item, SequenceRecord):
            yield item
        else:
            raise UsageError(f"item {number} is a {type(item).__name__}: give SequenceRecords (read_sequences) "
                             "or sequence strings")


def drop_empty(records: Iterable[SequenceRecord]) -> Iterator[SequenceRecord]:
    """The records that have a sequence. Those without one (a FASTA header with no sequence lines) are
    skipped, every subcommand alike, with one warning once the stream ends naming the first of them."""
    skipped, first = 0, None
    for record in records:
        if record.seq:
            yield record
            continue
        skipped += 1
        if first is None:
            first = record
    if skipped == 1:
        log.warning("%s has no sequence; skipped", _where(first))
    elif skipped:
        log.warning("skipped %d records with no sequence (the first: %s)", skipped, _where(first))


def check_names(records: Iterable[SequenceRecord], output: str, *,
                unique: bool | Callable[[SequenceRecord], bool] = False) -> Iterator[SequenceRecord]:
    """Pass ``records`` through, checking their names as ``output`` (e.g. "BED output", named in the
    error) needs them: every record with a sequence has a name (a FASTA header ``>`` alone has none); with
    ``unique``, no two records share one (as ``samtools faidx`` requires), for outputs keyed by coordinates,
    where a record's name becomes its contig (BED, bedGraph, windows); ``unique`` may be a test of which
    records are so keyed (those cut into windows, when only some are). Streaming: a set of the names seen,
    no second pass. Records with genome coordinates (regions) are keyed by those and are not checked;
    records with no sequence are skipped by every command, so neither are they."""
    seen: dict[str, tuple[str | None, int]] = {}
    for record in records:
        if record.seq and record.contig is None:
            if not record.id:
                which = f"record {record.number}" if record.number else "a record"
                raise InputError(f"{which} has no name; {output} needs one", path=record.source)
            if unique is True or (unique and unique(record)):
                here = (record.source, record.number)
                earlier = seen.setdefault(record.id, here)
                if earlier is not here:
                    raise InputError(f"record {record.id!r} appears twice ({_both(earlier, here)}); names must "
                                     f"be unique for {output}", path=record.source)
        yield record


def _both(first: tuple[str | None, int], second: tuple[str | None, int]) -> str:
    """Where the two records with one name are: ``records 1 and 3``, or ``record 1 of a.fa and record 2 of b.fa``."""
    if first[0] == second[0]:  # records made in code, not read, have no numbers
        return f"records {first[1]} and {second[1]}" if first[1] and second[1] else "in one input"
    shown = ["stdin" if src == "-" else str(src) for src, _ in (first, second)]
    return f"record {first[1]} of {shown[0]} and record {second[1]} of {shown[1]}"


_WARNED_STRIDES: set[tuple[int, int]] = set()


def sliding_windows(
    records: Iterable[SequenceRecord], window: int, stride: int | None = None, last: str = "shift"
) -> Iterator[SequenceRecord]:
    """Cut records into windows of ``window`` units every ``stride`` (default: ``window``).

    Windows never cross a record's end. The last, partial window follows ``last``:
    ``shift``: moved back to end exactly at the record end (overlapping its neighbour);
    ``pad``: kept as the shorter tail (batch encoding pads it with PAD and masks it out; never with
    N, so coordinates stay exact); ``drop``: left out. A record no longer than ``window`` is yielded
    as one window whatever the policy. Each window has ``contig`` (the record's contig, else its
    id), 0-based ``start``/``end`` offset by the record's own start, and id ``contig:start1-end``. A
    minus-strand record with coordinates holds the reverse complement of its span (a minus-strand BED
    region, a reverse read as sequenced): its windows are mirrored onto the genome and marked ``(-)``.
    """
    if isinstance(records, (str, bytes, SequenceRecord)):  # iterated, a lone record or string fails obscurely
        raise UsageError(f"sliding_windows takes an iterable of records, not a single {type(records).__name__}: "
                         "e.g. [record]")
    if window < 1:
        raise UsageError(f"{option('window')} must be at least 1 (got {window})")
    stride = window if stride is None else stride
    if stride < 1:
        raise UsageError(f"{option('stride')} must be at least 1 (got {stride})")
    if last not in WINDOW_POLICIES:
        raise UsageError(f"unknown last-window policy '{last}' (use one of: {', '.join(WINDOW_POLICIES)})")
    if stride > window and (stride, window) not in _WARNED_STRIDES:  # once a run, not once a record group
        _WARNED_STRIDES.add((stride, window))
        log.warning("%s is larger than the window (%d): %d base(s) between windows are not scanned",
                    option("stride", stride), window, stride - window)
    for record in records:
        length = len(record.seq)
        contig = record.contig if record.contig is not None else record.id
        offset = record.start or 0
        minus = record.strand == "-" and record.start is not None and record.end is not None
        full_starts = range(0, max(length - window, 0) + 1, stride)
        spans = [(s, s + window) for s in full_starts] if length > window else [(0, length)]
        covered = spans[-1][1]
        if covered < length and last != "drop":
            if last == "shift":
                spans.append((length - window, length))
            elif spans[-1][0] + stride < length:  # with stride > window the gap may reach the end
                spans.append((spans[-1][0] + stride, length))
        for begin, end in spans:
            if minus:  # the record is the reverse complement of its span: base i sits at end - 1 - i
                start, stop = record.end - end, record.end - begin
            else:
                start, stop = offset + begin, offset + end
            yield SequenceRecord(
                f"{contig}:{start + 1}-{stop}" + ("(-)" if minus else ""),
                record.seq[begin:end],
                None if record.qual is None else record.qual[begin:end],
                contig,
                start,
                stop,
                record.strand,
                record.description,
                source=record.source,
                number=record.number,
            )
