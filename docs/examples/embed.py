"""Embeddings: one vector per read, and one vector per position."""
import numpy as np

from hyena_glt.inference import Predictor
from hyena_glt.io.sequences import read_sequences

predictor = Predictor.from_pretrained(None, device="cpu")
print("embedding width:", predictor.embedding_dim)

# pool="mean" (or "cls"): one vector per work item. Reads (records with base qualities) are embedded whole,
# even when longer than the model's 70 nt window; a genome-like record would be cut into windows.
reads, vectors = [], []
for batch in predictor.embed(read_sequences("example_data/ce_reads.fastq"), pool="mean"):
    reads += batch.records
    vectors.append(batch.values)
vectors = np.concatenate(vectors)
print(vectors.shape, vectors.dtype)

# Cosine similarity of the first read with every other: its nearest reads share its repeat.
unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
similarity = unit @ unit[0]
for i in np.argsort(similarity)[::-1][:4]:
    print(f"{reads[i].id}\t{similarity[i]:.4f}\t{reads[i].seq[:30]}...")

# pool="none": one row per unit; batch.lengths says how many rows belong to each record, in order.
# layer=0 would give the global input, layer=-1 the last block's output (before the final norm).
(batch,) = predictor.embed(["ACGTACGTAC", "GGGCCC"], pool="none")
print(batch.values.shape, batch.lengths.tolist())
rows = np.split(batch.values, np.cumsum(batch.lengths)[:-1])
print([r.shape for r in rows])
