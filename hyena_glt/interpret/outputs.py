"""Writers for attributions: tfmodisco-lite ``.npz``, genome ``.bedgraph``, per-position ``.tsv``.

All are atomic (a failed run leaves no file). Genome coordinates: a record with contig/start (regions, genome
windows) maps its base i to ``start + i`` (``end - 1 - i`` on the minus strand); a record without them is
its own "contig" starting at 0.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..io.writers import bed_output, text_output
from ..io.writers import write_npz as write_arrays
from .records import RecordAttribution
from .scoring import BASES

FORMATS = ("npz", "bedgraph", "tsv")


def genome_positions(rec: RecordAttribution) -> np.ndarray:
    """0-based genome coordinate of every base of the record."""
    offsets = np.arange(len(rec.seq))
    if rec.strand == "-":
        return rec.start + len(rec.seq) - 1 - offsets
    return rec.start + offsets


def write_npz(path: str, results: list[RecordAttribution], method: str) -> None:
    """``one_hot`` and ``attributions`` (N, 4, L) as tfmodisco-lite reads them (``modisco motifs -s ... -a ...``
    with the npz's arrays), plus ``importance`` (N, L), ``names``, ``coordinates`` (contig, 0-based start,
    end, strand), ``lengths``, ``scores``, ``targets``. Records shorter than the longest are right-padded with zeros
    (tfmodisco-lite itself wants one length: use --window for genome inputs)."""
    n = len(results)
    length = max((len(r.seq) for r in results), default=0)
    one_hot = np.zeros((n, 4, length), dtype=np.float32)
    attributions = np.zeros((n, 4, length), dtype=np.float32)
    importance = np.zeros((n, length), dtype=np.float32)
    for i, r in enumerate(results):
        one_hot[i, :, : len(r.seq)] = r.one_hot
        attributions[i, :, : len(r.seq)] = r.attributions
        importance[i, : len(r.seq)] = r.importance
    coordinates = np.array([(r.contig, r.start, r.start + len(r.seq), r.strand) for r in results],
                           dtype=object).astype(str).reshape(n, 4)
    arrays = dict(one_hot=one_hot, attributions=attributions, importance=importance,
                  names=np.array([r.name for r in results], dtype=str), coordinates=coordinates,
                  lengths=np.array([len(r.seq) for r in results], dtype=np.int64),
                  scores=np.array([r.score for r in results], dtype=np.float32),
                  targets=np.array([r.target_name for r in results], dtype=str), method=np.array(method))
    write_arrays(path, arrays, compressed=True)  # '-': stdout


def bedgraph_tracks(results: Iterable[RecordAttribution]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per contig: sorted unique 0-based positions and their mean importance (overlapping records averaged)."""
    positions: dict[str, list[np.ndarray]] = {}
    values: dict[str, list[np.ndarray]] = {}
    for r in results:
        positions.setdefault(r.contig, []).append(genome_positions(r))
        values.setdefault(r.contig, []).append(r.importance.astype(np.float64))
    tracks = {}
    for contig in positions:
        pos = np.concatenate(positions[contig])
        val = np.concatenate(values[contig])
        unique, inverse = np.unique(pos, return_inverse=True)
        sums = np.bincount(inverse, weights=val, minlength=len(unique))
        counts = np.bincount(inverse, minlength=len(unique))
        tracks[contig] = (unique, sums / counts)
    return tracks


def write_bedgraph(path: str, results: list[RecordAttribution], track_name: str) -> None:
    """One line per base, contigs in byte order then by position (``sort -k1,1 -k2,2n``, what
    bedGraphToBigWig wants)."""
    tracks = bedgraph_tracks(results)
    with bed_output(path, header_lines=1) as fh:  # .bedgraph.gz: BGZF + tabix index
        fh.write(f'track type=bedGraph name="{track_name}"\n')
        for contig in sorted(tracks, key=lambda c: c.encode()):
            pos, val = tracks[contig]
            lines = [f"{contig}\t{p}\t{p + 1}\t{v:.6g}\n" for p, v in zip(pos.tolist(), val.tolist())]
            fh.write("".join(lines))


def write_tsv(path: str, results: Iterable[RecordAttribution]) -> None:
    """One row per base: record, contig, 1-based position, strand, base, importance, and the four channels."""
    with text_output(path) as fh:
        fh.write("record\tcontig\tposition\tstrand\tbase\ttarget\timportance\tA\tC\tG\tT\n")
        for r in results:
            pos = (genome_positions(r) + 1).tolist()
            att = r.attributions
            rows = [
                f"{r.name}\t{r.contig}\t{p}\t{r.strand}\t{b}\t{r.target_name}\t{imp:.6g}\t{a:.6g}\t{c:.6g}\t{g:.6g}\t{t:.6g}\n"
                for p, b, imp, a, c, g, t in zip(pos, r.seq, r.importance.tolist(), *(att[k].tolist() for k in range(4)))
            ]
            fh.write("".join(rows))


__all__ = ["FORMATS", "BASES", "write_npz", "write_bedgraph", "write_tsv", "bedgraph_tracks", "genome_positions"]
