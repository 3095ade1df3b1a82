"""Held-out bits per base of the entropy LM next to simple baselines, on example_data/ce.fa.

Split: the held-out chunk is CHROMOSOME_I:900,001-1,009,800 (the last 109,800 bp of chromosome I);
everything else (chromosome I up to 900,000 + the six 5 kb pieces) is training sequence.

    .venv/bin/python benchmarks/entropy_baselines.py split OUTDIR        # OUTDIR/ce_train.fa, ce_heldout.fa
    .venv/bin/python benchmarks/entropy_baselines.py baselines           # Markov k=2..6, gzip/bzip2/xz
    .venv/bin/python benchmarks/entropy_baselines.py lm MODEL_DIR        # the LM's held-out bits per base

Baselines: an order-k Markov chain fitted on the training sequence (both strands; Krichevsky–Trofimov
add-1/2 smoothing) scored on the held-out chunk; and general-purpose compressors on the held-out chunk as
plain ACGT text (bits per base = 8 × compressed bytes / bases).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CE = REPO / "example_data" / "ce.fa"
HELDOUT_CONTIG, HELDOUT_START = "CHROMOSOME_I", 900_000  # 0-based start; to the contig end


def read_fasta(path: Path) -> dict[str, str]:
    seqs, name, parts = {}, None, []
    for line in open(path):
        if line.startswith(">"):
            if name is not None:
                seqs[name] = "".join(parts)
            name, parts = line[1:].split()[0], []
        else:
            parts.append(line.strip().upper())
    if name is not None:
        seqs[name] = "".join(parts)
    return seqs


def split() -> tuple[dict[str, str], str]:
    seqs = read_fasta(CE)
    train = dict(seqs)
    heldout = seqs[HELDOUT_CONTIG][HELDOUT_START:]
    train[HELDOUT_CONTIG] = seqs[HELDOUT_CONTIG][:HELDOUT_START]
    return train, heldout


def write_fasta(path: Path, seqs: dict[str, str]) -> None:
    with open(path, "w") as fh:
        for name, seq in seqs.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), 60):
                fh.write(seq[i:i + 60] + "\n")


_CODE = np.full(256, -1, dtype=np.int64)
for _i, _b in enumerate(b"ACGT"):
    _CODE[_b] = _i


def encode(seq: str) -> np.ndarray:
    return _CODE[np.frombuffer(seq.encode(), dtype=np.uint8)]


def revcomp(seq: str) -> str:
    return seq[::-1].translate(str.maketrans("ACGT", "TGCA"))


def kmer_codes(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the (k+1)-mers ending at each position ≥ k (base-4) and whether they are all ACGT."""
    n = len(x) - k
    code = np.zeros(n, dtype=np.int64)
    ok = np.ones(n, dtype=bool)
    for j in range(k + 1):  # loop over k, not over positions
        part = x[j:j + n]
        ok &= part >= 0
        code = code * 4 + np.clip(part, 0, 3)
    return code, ok


def markov_bits_per_base(train_seqs: list[str], test: str, k: int, alpha: float = 0.5) -> float:
    counts = np.zeros(4 ** (k + 1))
    for seq in train_seqs:
        for strand in (seq, revcomp(seq)):
            code, ok = kmer_codes(encode(strand), k)
            counts += np.bincount(code[ok], minlength=4 ** (k + 1))
    table = counts.reshape(-1, 4) + alpha
    logp = np.log2(table / table.sum(1, keepdims=True)).reshape(-1)
    code, ok = kmer_codes(encode(test), k)
    return float(-logp[code[ok]].mean())


def compressor_bits_per_base(seq: str) -> dict[str, float]:
    data = seq.encode()
    return {
        "gzip -9": 8 * len(gzip.compress(data, 9)) / len(seq),
        "bzip2 -9": 8 * len(bz2.compress(data, 9)) / len(seq),
        "xz -9e": 8 * len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)) / len(seq),
    }


def baselines() -> list[tuple[str, float]]:
    train, heldout = split()
    rows = [(f"order-{k} Markov (KT, both strands)", markov_bits_per_base(list(train.values()), heldout, k))
            for k in range(2, 7)]
    rows += sorted(compressor_bits_per_base(heldout).items())
    return rows


def lm_bits_per_base(model_dir: str) -> float:
    import torch

    from hyena_glt.model.entropy import load_entropy_patcher

    torch.set_num_threads(1)
    _, heldout = split()
    patcher = load_entropy_patcher(model_dir)
    ids = torch.as_tensor(patcher.tokenizer.encode(heldout))[None]
    bits = patcher.code_lengths(ids)
    return float(bits[0, 1:].mean())  # position 0 has no context; leave it out like the Markov chains do


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("split", "baselines", "lm"):
        sys.exit(__doc__)
    if argv[0] == "split":
        out = Path(argv[1])
        out.mkdir(parents=True, exist_ok=True)
        train, heldout = split()
        write_fasta(out / "ce_train.fa", train)
        write_fasta(out / "ce_heldout.fa", {f"{HELDOUT_CONTIG}:{HELDOUT_START + 1}-{HELDOUT_START + len(heldout)}": heldout})
        print(f"wrote {out}/ce_train.fa ({sum(map(len, train.values()))} bp), {out}/ce_heldout.fa ({len(heldout)} bp)")
    elif argv[0] == "baselines":
        print("model\theld-out bits/base")
        for name, bpb in baselines():
            print(f"{name}\t{bpb:.4f}")
    else:
        print(f"entropy LM {argv[1]}\t{lm_bits_per_base(argv[1]):.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
