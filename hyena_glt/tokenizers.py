"""Tokenizers: text → integer units, vectorised (a numpy lookup table over the byte buffer; no
Python loop over characters), reversible, and saved as JSON (``to_dict`` / ``get_tokenizer``).

Every tokenizer shares the same five special ids: PAD=0, CLS=1, SEP=2, MASK=3, UNK=4.

- ``nucleotide`` (default): A=5 C=6 G=7 T=8 N=9. Case is folded, U reads as T (RNA), IUPAC
  ambiguity codes read as N, anything else is UNK. ``nucleotide:softmask`` keeps soft-masked
  (lower-case) bases as their own ids a=10 c=11 g=12 t=13 n=14.
- ``kmer:K[:S]``: k-mers over ACGTN (so N round-trips) taken every S units (default S=K,
  non-overlapping; ``kmer:6:1`` is DNABERT-style overlapping). Bases left over at the end (fewer than
  S, or a sequence shorter than K) become single-base tokens A..N=5..9, so nothing is lost.
  k-mer ids start at 10: id = 10 + sum(digit_i * 5**(K-1-i)), digits A0 C1 G2 T3 N4.
- ``byte``: each UTF-8 byte b is id b + 5 (any alphabet, BLT-style).
- ``protein``: the 20 amino acids ACDEFGHIKLMNPQRSTVWY = 5..24 and X = 25; B Z J U O read as X; ``*``
  (a stop codon, common in translated FASTA) is SEP = 2, the end of a sequence (the vocabulary stays 26,
  so saved protein models, LM heads included, still load).

No tokenizer has ids of its own for nucleotide ambiguity codes (R, Y, ...): they read as N, so a
reader's ``iupac="keep"`` gives the same ids as ``iupac="N"``.
"""

from __future__ import annotations

import abc

from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from .errors import UsageError

if TYPE_CHECKING:  # torch is imported only where tensors are made: `tokenize` starts faster without it
    import torch

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")
PAD_ID, CLS_ID, SEP_ID, MASK_ID, UNK_ID = range(5)
_FIRST = len(SPECIAL_TOKENS)


class Tokenizer(abc.ABC):
    """Base class. Subclasses set ``name``, ``vocab_size``, ``alphabet`` (what ``read_sequences``
    should check input against, or None) and implement ``encode``/``decode``/``to_dict``."""

    name: str = ""
    vocab_size: int = _FIRST
    alphabet: str | None = None
    pad_id, cls_id, sep_id, mask_id, unk_id = PAD_ID, CLS_ID, SEP_ID, MASK_ID, UNK_ID
    # How many characters of text one unit stands for when units map 1:1 onto characters (so
    # units have genome coordinates); None for k-mers.
    chars_per_unit: int | None = 1
    # True when encode gives UNK exactly for the characters outside ``alphabet`` (ambiguity codes
    # read as N or X), so that encoding can check the input too: one pass over it instead of two.
    checks_alphabet: bool = False

    @abc.abstractmethod
    def encode(self, seq: str) -> np.ndarray:
        """Implemented by each tokenizer."""

    @abc.abstractmethod
    def decode(self, ids) -> str:
        """Implemented by each tokenizer."""

    @property
    def compact_dtype(self) -> np.dtype:
        """The smallest unsigned dtype that holds every id (uint8 for nucleotide and protein)."""
        size = self.vocab_size
        return np.dtype(np.uint8 if size <= 256 else (np.uint16 if size <= 65536 else np.uint32))

    def encode_compact(self, seq: str) -> np.ndarray:
        """``encode`` in ``compact_dtype``: an eighth of the memory for genome-sized outputs."""
        return self.encode(seq).astype(self.compact_dtype)

    @abc.abstractmethod
    def to_dict(self) -> dict:
        """Implemented by each tokenizer."""

    @abc.abstractmethod
    def tokens(self) -> list[str]:
        """The text of every id, index = id (specials in brackets)."""

    def _encode_many(self, seqs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(all ids concatenated, number of ids per sequence)."""
        encoded = [self.encode(s) for s in seqs]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        flat = np.concatenate(encoded) if encoded else np.zeros(0, dtype=np.int64)
        return flat, lengths

    def encode_batch(self, seqs: Sequence[str], pad_to: int | None = None) -> dict[str, "torch.Tensor"]:
        """Right-padded batch: ``input_ids`` (B, L) LongTensor, ``attention_mask`` (B, L) bool
        (True = real unit), ``lengths`` (B,). L = the longest sequence, or ``pad_to`` if larger."""
        import torch

        if isinstance(seqs, (str, bytes)):  # iterated, one string would be a batch of one-letter sequences
            raise UsageError(f"encode_batch takes a list of sequences, not a single {type(seqs).__name__}: "
                             "use encode(seq), or encode_batch([seq])")
        flat, lengths = self._encode_many(seqs)
        batch = len(lengths)
        width = max(int(lengths.max(initial=0)), pad_to or 0)
        input_ids = np.full((batch, width), self.pad_id, dtype=np.int64)
        starts = np.cumsum(lengths) - lengths
        rows = np.repeat(np.arange(batch), lengths)
        cols = np.arange(len(flat)) - np.repeat(starts, lengths)
        input_ids[rows, cols] = flat
        attention_mask = np.arange(width)[None, :] < lengths[:, None]
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention_mask),
            "lengths": torch.from_numpy(lengths),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.name)


class _TableTokenizer(Tokenizer):
    """One character → one id through a 256-entry lookup table; decoding through the reverse table
    (ids that decode to nothing, PAD/CLS/SEP/MASK, map to byte 0 and are dropped)."""

    _lut: np.ndarray  # (256,) int64: byte → id
    _chars: np.ndarray  # (vocab_size,) uint8: id → byte, 0 = none

    def encode(self, seq: str) -> np.ndarray:
        # Non-ASCII characters become '?', which every table maps to UNK.
        return self._lut[np.frombuffer(seq.encode("ascii", "replace"), dtype=np.uint8)]

    def _encode_many(self, seqs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
        buffer = "".join(seqs).encode("ascii", "replace")
        return self._lut[np.frombuffer(buffer, dtype=np.uint8)], lengths

    def encode_compact(self, seq: str) -> np.ndarray:
        if self.vocab_size > 256:
            return super().encode_compact(seq)
        # bytes.translate is a C loop over a 256-byte table, and its result is the uint8 array
        if not hasattr(self, "_lut_bytes"):
            self._lut_bytes = self._lut.astype(np.uint8).tobytes()
        raw = seq.encode("ascii", "replace").translate(self._lut_bytes)
        return np.frombuffer(raw, dtype=np.uint8)

    def decode(self, ids) -> str:
        ids = _as_ids(ids, self.vocab_size)
        chars = self._chars[ids]
        return chars[chars != 0].tobytes().decode("ascii")

    def tokens(self) -> list[str]:
        return list(SPECIAL_TOKENS) + [chr(c) for c in self._chars[_FIRST:]]


def _as_ids(ids, vocab_size: int) -> np.ndarray:
    if type(ids).__module__.startswith("torch"):
        ids = ids.detach().cpu().numpy()
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise UsageError(f"token id out of range 0..{vocab_size - 1}")
    return ids


def _table(mapping: dict[str, int], default: int) -> np.ndarray:
    lut = np.full(256, default, dtype=np.int64)
    for chars, token_id in mapping.items():
        lut[np.frombuffer(chars.encode(), dtype=np.uint8)] = token_id
    return lut


class NucleotideTokenizer(_TableTokenizer):
    """A C G T N (+ specials); U → T, IUPAC → N, case folded unless ``soft_mask``."""

    alphabet = "nucleotide"
    checks_alphabet = True
    BASES = "ACGTN"
    _IUPAC = "RYKMSWBDHV"

    def __init__(self, soft_mask: bool = False):
        self.soft_mask = bool(soft_mask)
        self.name = "nucleotide:softmask" if self.soft_mask else "nucleotide"
        upper = {"A": 5, "C": 6, "G": 7, "TU": 8, "N" + self._IUPAC: 9}
        lower = {k.lower(): v + (5 if self.soft_mask else 0) for k, v in upper.items()}
        self._lut = _table({**upper, **lower}, UNK_ID)
        self.vocab_size = 15 if self.soft_mask else 10
        chars = [0, 0, 0, 0, ord("?")] + [ord(b) for b in self.BASES]
        if self.soft_mask:
            chars += [ord(b) for b in self.BASES.lower()]
        self._chars = np.array(chars, dtype=np.uint8)
        # id → id of the complementary base (specials and N map to themselves).
        complement = [0, 1, 2, 3, 4, 8, 7, 6, 5, 9]
        if self.soft_mask:
            complement += [13, 12, 11, 10, 14]
        self._complement = np.array(complement, dtype=np.int64)

    def reverse_complement_batch(self, input_ids: "torch.Tensor", lengths: "torch.Tensor") -> "torch.Tensor":
        """Reverse complement of each row's first ``lengths[b]`` ids; right padding stays right."""
        import torch

        width = input_ids.shape[1]
        positions = torch.arange(width, device=input_ids.device)[None, :]
        lengths = lengths.to(input_ids.device).view(-1, 1)
        source = torch.where(positions < lengths, lengths - 1 - positions, positions)
        complement = torch.as_tensor(self._complement, device=input_ids.device)
        return complement[input_ids.gather(1, source)]

    def to_dict(self) -> dict:
        return {"type": "nucleotide", "soft_mask": self.soft_mask, "vocab_size": self.vocab_size}


class ByteTokenizer(_TableTokenizer):
    """UTF-8 bytes, id = byte + 5: any alphabet, case kept."""

    name = "byte"
    vocab_size = 256 + _FIRST

    def __init__(self):
        self._lut = np.arange(256, dtype=np.int64) + _FIRST

    def encode(self, seq: str) -> np.ndarray:
        return self._lut[np.frombuffer(seq.encode("utf-8"), dtype=np.uint8)]

    def _encode_many(self, seqs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encoded = [s.encode("utf-8") for s in seqs]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        return self._lut[np.frombuffer(b"".join(encoded), dtype=np.uint8)], lengths

    def decode(self, ids) -> str:
        ids = _as_ids(ids, self.vocab_size)
        return (ids[ids >= _FIRST] - _FIRST).astype(np.uint8).tobytes().decode("utf-8", "replace")

    def tokens(self) -> list[str]:
        return list(SPECIAL_TOKENS) + [f"<0x{b:02X}>" for b in range(256)]

    def to_dict(self) -> dict:
        return {"type": "byte", "vocab_size": self.vocab_size}


class ProteinTokenizer(_TableTokenizer):
    """The 20 amino acids + X (+ specials); B Z J U O → X; ``*`` (stop) → SEP, decoded back to ``*``;
    case folded."""

    name = "protein"
    alphabet = "protein"
    checks_alphabet = True
    AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"

    def __init__(self):
        letters = self.AMINO_ACIDS + "X"
        mapping = {aa + aa.lower(): _FIRST + i for i, aa in enumerate(letters)}
        mapping["BZJUObzjuo"] = _FIRST + len(self.AMINO_ACIDS)
        # A stop codon takes an existing id: a new one would change the vocabulary of saved models.
        mapping["*"] = SEP_ID
        self._lut = _table(mapping, UNK_ID)
        self.vocab_size = _FIRST + len(letters)
        self._chars = np.array([0, 0, ord("*"), 0, ord("?")] + [ord(c) for c in letters], dtype=np.uint8)

    def to_dict(self) -> dict:
        return {"type": "protein", "vocab_size": self.vocab_size}


class KmerTokenizer(Tokenizer):
    """k-mers over ACGTN every ``stride`` units, leftover bases as single-base tokens (module doc)."""

    alphabet = "nucleotide"
    chars_per_unit = None
    MAX_K = 8

    def __init__(self, k: int, stride: int | None = None):
        stride = k if stride is None else stride
        if not 1 <= k <= self.MAX_K:
            raise UsageError(f"k-mer size must be 1..{self.MAX_K} (got {k})")
        if not 1 <= stride <= k:
            raise UsageError(f"k-mer stride must be 1..k (got {stride} for k={k}); a larger stride would skip bases")
        self.k, self.stride = int(k), int(stride)
        self.name = f"kmer:{k}" if stride == k else f"kmer:{k}:{stride}"
        self.vocab_size = 2 * _FIRST + 5**k
        self._digits = _table({"Aa": 0, "Cc": 1, "Gg": 2, "TtUu": 3}, 4)  # anything else reads as N
        self._powers = 5 ** np.arange(k - 1, -1, -1, dtype=np.int64)

    def encode(self, seq: str) -> np.ndarray:
        digits = self._digits[np.frombuffer(seq.encode("ascii", "replace"), dtype=np.uint8)]
        k, stride = self.k, self.stride
        if len(digits) >= k:
            count = (len(digits) - k) // stride + 1
            windows = np.lib.stride_tricks.sliding_window_view(digits, k)[::stride][:count]
            kmers = windows @ self._powers + 2 * _FIRST
            covered = (count - 1) * stride + k
        else:
            kmers, covered = np.zeros(0, dtype=np.int64), 0
        return np.concatenate([kmers, digits[covered:] + _FIRST])

    def decode(self, ids) -> str:
        """Inverse of ``encode``: the first k-mer gives k bases, each later one its last ``stride``
        bases, each single-base token one base; specials are dropped."""
        ids = _as_ids(ids, self.vocab_size)
        ids = ids[ids >= _FIRST]
        is_kmer = ids >= 2 * _FIRST
        digits = np.where(is_kmer[:, None], (ids[:, None] - 2 * _FIRST) // self._powers % 5, 0)
        digits[~is_kmer, -1] = ids[~is_kmer] - _FIRST
        keep = np.zeros(digits.shape, dtype=bool)
        keep[:, self.k - self.stride :] = is_kmer[:, None]
        keep[~is_kmer, -1] = True
        first_kmer = np.flatnonzero(is_kmer)[:1]
        keep[first_kmer, :] = True
        return np.frombuffer(b"ACGTN", dtype=np.uint8)[digits[keep]].tobytes().decode("ascii")

    def tokens(self) -> list[str]:
        codes = np.arange(5**self.k)[:, None] // self._powers % 5
        letters = np.frombuffer(b"ACGTN", dtype=np.uint8)[codes]
        kmers = [row.tobytes().decode() for row in letters]
        return list(SPECIAL_TOKENS) + list("ACGTN") + kmers

    def to_dict(self) -> dict:
        return {"type": "kmer", "k": self.k, "stride": self.stride, "vocab_size": self.vocab_size}


def encode_records(records: Iterable, tokenizer: Tokenizer, *, check: bool = False, source: str | None = None):
    """(record, ids in ``tokenizer.compact_dtype``) for each record.

    With ``check`` (tokenizers with ``checks_alphabet``), a character outside the tokenizer's
    alphabet raises the same InputError that ``read_sequences(alphabet=...)`` raises (``source``
    names the file, else the record's own ``source``), found from the UNK ids of the encoding itself:
    the input is read once.
    """
    from .errors import InputError

    if check and not tokenizer.checks_alphabet:
        raise UsageError(f"tokenizer '{tokenizer.name}' cannot check its input while encoding")
    unk = tokenizer.unk_id
    for record in records:
        ids = tokenizer.encode_compact(record.seq)
        if check:
            if ids.dtype == np.uint8:
                position = ids.tobytes().find(bytes([unk]))  # memchr, far faster than ids == unk
            else:
                hits = np.flatnonzero(ids == unk)
                position = int(hits[0]) if hits.size else -1
            if position >= 0:
                raise InputError(
                    f"invalid character {record.seq[position]!r} at position {position + 1} "
                    f"(not in the {tokenizer.alphabet} alphabet)",
                    path=source if source is not None else getattr(record, "source", None),
                    record=record.id,
                )
        yield record, ids


TOKENIZER_SPECS = ("nucleotide", "nucleotide:softmask", "kmer:K", "kmer:K:S", "byte", "protein")


def get_tokenizer(spec: str | dict | Tokenizer | None = "nucleotide") -> Tokenizer:
    """A tokenizer from a spec string (``nucleotide``, ``nucleotide:softmask``, ``kmer:K``,
    ``kmer:K:S``, ``byte``, ``protein``) or from the dict ``Tokenizer.to_dict()`` made."""
    if spec is None:
        return NucleotideTokenizer()
    if isinstance(spec, Tokenizer):
        return spec
    if isinstance(spec, dict):
        kind = spec.get("type")
        if kind == "nucleotide":
            return NucleotideTokenizer(soft_mask=spec.get("soft_mask", False))
        if kind == "kmer":
            return KmerTokenizer(int(spec["k"]), int(spec.get("stride", spec["k"])))
        if kind == "byte":
            return ByteTokenizer()
        if kind == "protein":
            return ProteinTokenizer()
        raise UsageError(f"unknown tokenizer type {kind!r} in tokenizer settings")
    text = str(spec).strip().lower()
    if text == "nucleotide":
        return NucleotideTokenizer()
    if text in ("nucleotide:softmask", "nucleotide:soft-mask"):
        return NucleotideTokenizer(soft_mask=True)
    if text == "byte":
        return ByteTokenizer()
    if text == "protein":
        return ProteinTokenizer()
    if text.startswith("kmer:"):
        parts = text.split(":")[1:]
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            numbers = []
        if len(numbers) in (1, 2):
            return KmerTokenizer(*numbers)
    raise UsageError(f"unknown tokenizer '{spec}' (use one of: {', '.join(TOKENIZER_SPECS)})")
