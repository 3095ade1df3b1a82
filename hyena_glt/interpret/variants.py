"""Variant effects: score the reference and the alternative allele of every VCF variant, each centred in a
model window cut from the reference genome.

For a variant at 0-based ``pos`` with alleles REF/ALT the reference window is ``window`` bases of the contig
starting ``window // 2`` bases before ``pos`` (shifted to stay inside the contig). The alternative window is cut,
at the same length, from the alternative contig (the contig with REF replaced by ALT): it has the same left flank,
then ALT, then the reference after REF, so SNVs and short indels are compared on windows of one length with the
variant at the centre. Where the reference window ends at the contig's end, the alternative window ends at the
alternative contig's end, so an insertion there is inside it rather than cut off; the whole ALT allele is always
inside the alternative window. Alleles longer than the window (or than a contig shorter than it) are skipped
with a count, as are records without an ALT allele (``.``).

Scores are RC-averaged when the model (or the caller) asks for it. For every class/output: ref and alt
probability (classification: softmax; multi-label: sigmoid; regression: the raw output), their difference
(alt − ref) and, for probabilities, the log-odds ratio ``log(p_alt/(1-p_alt)) - log(p_ref/(1-p_ref))``.
Multi-allelic records are split: one effect per ALT allele.
"""

from __future__ import annotations

import errno
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, UsageError, option
from ..io.sequences import fetch_region, open_indexed_fasta, quiet_htslib
from ..io.writers import atomic_path, text_output
from .scoring import ScoreModel

log = logging.getLogger("hyena_glt")
_ALLELE = re.compile(r"^[ACGTNacgtn]+$")
_AMBIGUOUS = re.compile(r"^[ACGTNRYSWKMBDHVacgtnryswkmbdhv]*[RYSWKMBDHVryswkmbdhv][ACGTNRYSWKMBDHVacgtnryswkmbdhv]*$")


@dataclass
class VariantEffect:
    contig: str
    pos: int          # 1-based, as in the VCF
    id: str
    ref: str
    alt: str
    ref_values: np.ndarray   # (num_outputs,)
    alt_values: np.ndarray

    @property
    def diff(self) -> np.ndarray:
        return self.alt_values - self.ref_values


@dataclass
class VariantScan:
    effects: list[VariantEffect]
    skipped_mismatch: int
    skipped_unsupported: int
    header: object  # the input pysam.VariantHeader, for VCF output
    skipped_ambiguous: int = 0  # ALT alleles with IUPAC ambiguity codes (R, Y, ...): no one sequence to score
    skipped_no_alt: int = 0     # records whose ALT is '.' (no alternative allele: nothing to compare)
    skipped_too_long: int = 0   # REF or ALT longer than the window (or than a contig shorter than the window)


def log_odds_ratio(ref_p: np.ndarray, alt_p: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    ref_p = np.clip(ref_p, eps, 1 - eps)
    alt_p = np.clip(alt_p, eps, 1 - eps)
    return np.log(alt_p / (1 - alt_p)) - np.log(ref_p / (1 - ref_p))


def _open_vcf(path: str | Path):
    import pysam

    if Path(path).is_dir() or not Path(path).exists():
        raise InputError("no such file" if not Path(path).exists() else "is a folder, not a VCF", path=str(path))
    with quiet_htslib():
        try:
            return pysam.VariantFile(str(path))
        except (OSError, ValueError) as err:
            if Path(path).stat().st_size == 0:
                raise InputError("empty file, not a VCF/BCF", path=str(path)) from None
            if getattr(err, "errno", None) == errno.ENOEXEC or "is it VCF/BCF format" in str(err):
                raise InputError("not a VCF/BCF file (no ##fileformat header)", path=str(path)) from None
            raise InputError(f"cannot read as VCF/BCF ({_plain(err)})", path=str(path)) from None


def _plain(err: Exception) -> str:
    """pysam's message without Python's bytes reprs (``b'x.vcf'``) or errno prefixes."""
    text = re.sub(r"b'([^']*)'", r"\1", str(err))
    return re.sub(r"^\[Errno \d+\] ", "", text)


def _htslib_reason(path: str | Path) -> str | None:
    """Why htslib stopped reading a VCF: pysam itself only says 'truncated file', and htslib's own message
    ([E::vcf_parse] ...) goes to the process's stderr. Error path only: read the file again with htslib's
    errors on and stderr captured."""
    import os
    import tempfile

    import pysam

    previous = pysam.set_verbosity(1)
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                with pysam.VariantFile(str(path)) as vcf:
                    for _ in vcf:
                        pass
            except (ValueError, OSError):
                pass
            finally:
                os.dup2(saved, 2)
            capture.seek(0)
            lines = capture.read().decode("utf-8", "replace").splitlines()
    finally:
        os.close(saved)
        pysam.set_verbosity(previous)
    errors = [line.split("] ", 1)[-1].strip() for line in lines if line.startswith("[E::")]
    return errors[0] if errors else None


def _windows(variants, fasta, window: int, path):
    """(ref_seq, alt_seq) windows of one length per variant; variant = (contig, pos0, ref, alt), with REF and
    ALT each at most ``min(window, contig length)`` long (``scan_variants`` skips longer ones)."""
    pairs = []
    for contig, pos0, ref, alt in variants:
        contig_len = fasta.get_reference_length(contig)
        width = min(window, contig_len)
        start = min(max(0, pos0 - width // 2), contig_len - width)
        # The alternative window, in the coordinates of the alternative contig (REF replaced by ALT): the same
        # left flank as the reference window, except where that window ends at the contig's end; then it ends
        # at the alternative contig's end. Never past that end where it can be helped, and always holding
        # the whole ALT allele.
        alt_len = contig_len + len(alt) - len(ref)
        alt_start = start if start == 0 or start + width < contig_len else alt_len - width
        alt_start = min(alt_start, max(0, alt_len - width))
        alt_start = max(min(alt_start, pos0), pos0 + len(alt) - width, 0)
        # Reference bases: the reference window, the alternative window's left flank, and its right flank
        # (the bases after REF that refill the window).
        right = pos0 + len(ref) + max(0, width - (pos0 - alt_start) - len(alt))
        lo, hi = min(start, alt_start), min(contig_len, max(start + width, right))
        seq = fetch_region(fasta, contig, lo, hi, path).upper()
        ref_seq = seq[start - lo:start - lo + width]
        alt_seq = (seq[alt_start - lo:pos0 - lo] + alt.upper() + seq[pos0 + len(ref) - lo:])[:width]
        if len(alt_seq) < width:  # a deletion left the alternative contig shorter than the window: pad with N
            alt_seq = alt_seq + "N" * (width - len(alt_seq))
        pairs.append((ref_seq, alt_seq))
    return pairs


def scan_variants(vcf_path: str | Path, reference: str | Path, scorer: ScoreModel, *, window: int,
                  batch_size: int = 32, skip_mismatch: bool = False, max_indel: int | None = None) -> VariantScan:
    """Score every ALT allele of ``vcf_path`` against ``reference``. Raises :class:`InputError` naming the
    variant for a contig the reference lacks, a position past the contig's end, a REF that does not match
    the reference (unless ``skip_mismatch``) or a malformed record. Symbolic alleles (``<DEL>``, ``*``,
    breakends), ALT alleles with IUPAC ambiguity codes, indels longer than ``max_indel`` (default: a quarter of
    the window), alleles longer than the window and records without an ALT allele (``.``) are skipped with a
    count."""
    if window < 1:
        raise UsageError(f"{option('window')} must be at least 1 (got {window})")
    if max_indel is not None and max_indel < 0:
        raise UsageError(f"{option('max_indel')} must be at least 0 (got {max_indel})")
    max_indel = window // 4 if max_indel is None else max_indel
    vcf = _open_vcf(vcf_path)
    fasta = open_indexed_fasta(reference)
    lengths = dict(zip(fasta.references, fasta.lengths))
    todo, meta = [], []
    mismatches = unsupported = ambiguous = no_alt = too_long = number = 0
    with quiet_htslib():
        try:
            for number, rec in enumerate(vcf, 1):
                name = f"{rec.chrom}:{rec.pos} {rec.ref}>{','.join(rec.alts or ('.',))}"
                if rec.chrom not in lengths:
                    raise InputError(f"contig '{rec.chrom}' is not in the reference {reference}", path=str(vcf_path), record=name)
                if rec.pos < 1:
                    raise InputError(f"POS {rec.pos} is before the start of the contig (VCF positions are 1-based)",
                                     path=str(vcf_path), record=name)
                if rec.stop > lengths[rec.chrom]:
                    raise InputError(f"position is beyond the end of contig '{rec.chrom}' ({lengths[rec.chrom]} bp)",
                                     path=str(vcf_path), record=name)
                if not rec.ref or not _ALLELE.match(rec.ref):
                    raise InputError(f"REF '{rec.ref}' is not a DNA allele", path=str(vcf_path), record=name)
                genome_ref = fetch_region(fasta, rec.chrom, rec.start, rec.stop, reference).upper()
                if genome_ref != rec.ref.upper():
                    if skip_mismatch:
                        mismatches += len(rec.alts or ())
                        continue
                    raise InputError(f"REF '{rec.ref}' does not match the reference ('{genome_ref}'); "
                                     f"wrong genome build? ({option('skip_mismatch')} skips such variants)",
                                     path=str(vcf_path), record=name)
                if not rec.alts:  # ALT '.': a site with no alternative allele
                    no_alt += 1
                    continue
                for alt in rec.alts:
                    if _AMBIGUOUS.match(alt):
                        ambiguous += 1
                        continue
                    if not _ALLELE.match(alt) or abs(len(alt) - len(rec.ref)) > max_indel or len(rec.ref) > max_indel + 1:
                        unsupported += 1
                        continue
                    if max(len(rec.ref), len(alt)) > min(window, lengths[rec.chrom]):
                        too_long += 1  # no window of the model's length holds the whole allele
                        continue
                    todo.append((rec.chrom, rec.start, rec.ref, alt))
                    meta.append((rec.chrom, rec.pos, rec.id or ".", rec.ref, alt))
        except (ValueError, OSError) as err:
            reason = _plain(err)
            if "BGZF EOF" not in reason:  # pysam says 'truncated file' for any line htslib cannot parse
                reason = _htslib_reason(vcf_path) or "a malformed line"
            raise InputError(f"cannot read VCF record {number + 1} ({reason})", path=str(vcf_path)) from None
    header = vcf.header
    vcf.close()
    effects = []
    pairs = _windows(todo, fasta, window, reference)
    fasta.close()
    # Same-length windows batch together; only windows on contigs shorter than `window` differ.
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]))
    values: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(pairs)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        by_len: dict[int, list[int]] = {}
        for i in chunk:
            by_len.setdefault(len(pairs[i][0]), []).append(i)
        for idx in by_len.values():
            seqs = [pairs[i][0] for i in idx] + [pairs[i][1] for i in idx]
            with torch.no_grad():
                probs = scorer.probabilities(scorer.logits(scorer.encode(seqs))).float().cpu().numpy()
            for k, i in enumerate(idx):
                values[i] = (probs[k], probs[len(idx) + k])
    for (contig, pos, vid, ref, alt), (ref_v, alt_v) in zip(meta, values):
        effects.append(VariantEffect(contig, pos, vid, ref, alt, ref_v, alt_v))
    return VariantScan(effects, mismatches, unsupported, header, ambiguous, no_alt, too_long)


def _field(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def effect_columns(task: str, names: list[str]) -> list[tuple[str, str]]:
    """(column, kind) for every class: kind in ref/alt/diff/lor."""
    cols = []
    for n in names:
        cols += [(f"ref_{n}", "ref"), (f"alt_{n}", "alt"), (f"diff_{n}", "diff")]
        if task != "regression":
            cols.append((f"log_odds_ratio_{n}", "lor"))
    return cols


def _effect_values(effect: VariantEffect, task: str) -> list[np.ndarray]:
    parts = [effect.ref_values, effect.alt_values, effect.diff]
    if task != "regression":
        parts.append(log_odds_ratio(effect.ref_values, effect.alt_values))
    return parts


def write_effects_tsv(path: str, scan: VariantScan, task: str, names: list[str]) -> None:
    with text_output(path) as fh:
        header = ["chrom", "pos", "id", "ref", "alt"] + [c for c, _ in effect_columns(task, names)]
        fh.write("\t".join(header) + "\n")
        for e in scan.effects:
            parts = _effect_values(e, task)
            row = [e.contig, str(e.pos), e.id, e.ref, e.alt]
            for k in range(len(names)):
                row += [f"{p[k]:.6g}" for p in parts]
            fh.write("\t".join(row) + "\n")


def write_effects_vcf(path: str, scan: VariantScan, task: str, names: list[str], model_name: str) -> None:
    """bgzipped VCF (one record per ALT allele, sorted) with INFO fields HG_REF_<class>, HG_ALT_, HG_DIFF_ and
    HG_LOR_, plus a tabix index ``path.tbi``; both written atomically."""
    import pysam

    header = scan.header.copy()
    kinds = [("REF", "reference-allele score"), ("ALT", "alternative-allele score"), ("DIFF", "alt - ref score")]
    if task != "regression":
        kinds.append(("LOR", "log-odds ratio alt vs ref"))
    for n in names:
        for kind, text in kinds:
            key = f"HG_{kind}_{_field(n)}"
            if key not in header.info:
                header.info.add(key, "A", "Float", f"hyena-glt {model_name}: {text} for '{n}'")
    contig_rank = {c: i for i, c in enumerate(header.contigs)}
    effects = sorted(scan.effects, key=lambda e: (contig_rank.get(e.contig, len(contig_rank)), e.contig, e.pos))
    index_path = Path(str(path) + ".tbi")
    with atomic_path(path, suffix=".vcf.gz") as tmp:
        with pysam.VariantFile(str(tmp), "wz", header=header) as out:
            for e in effects:
                rec = out.new_record(contig=e.contig, start=e.pos - 1, stop=e.pos - 1 + len(e.ref),
                                     alleles=(e.ref, e.alt), id=None if e.id == "." else e.id)
                parts = _effect_values(e, task)
                for k, n in enumerate(names):
                    for (kind, _), values in zip(kinds, parts):
                        value = float(values[k])
                        rec.info[f"HG_{kind}_{_field(n)}"] = (value if math.isfinite(value) else 0.0,)
                out.write(rec)
        pysam.tabix_index(str(tmp), preset="vcf", force=True, keep_original=True)  # writes tmp + ".tbi"
        with atomic_path(index_path) as tmp_index:
            Path(str(tmp) + ".tbi").replace(tmp_index)
