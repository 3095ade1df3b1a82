"""Tokenizers turn text into unit ids; patchers group units into patches (what a patched model pools over)."""
from hyena_glt.io.sequences import read_sequences
from hyena_glt.model import build_patcher
from hyena_glt.model.entropy import patch_records
from hyena_glt.tokenizers import get_tokenizer

# Specs: nucleotide, nucleotide:softmask, kmer:K[:S], byte, protein. Ids 0-4 are PAD CLS SEP MASK UNK.
for spec in ("nucleotide", "nucleotide:softmask", "kmer:3", "byte"):
    tokenizer = get_tokenizer(spec)
    ids = tokenizer.encode("ACGTnACGTAC")
    print(f"{spec:20} vocab {tokenizer.vocab_size:3}  {ids.tolist()}  -> {tokenizer.decode(ids)!r}")

# A batch: right-padded ids, a mask of real units, and the lengths.
tokenizer = get_tokenizer("nucleotide")
batch = tokenizer.encode_batch(["ACGTACGTAC", "GGGCCA"])
print(batch["input_ids"].tolist(), batch["lengths"].tolist())

# A patcher takes (input_ids, attention_mask) and returns patch lengths (batch, patches): each row sums to its
# record's length and is right-padded with 0. "static:K" cuts every K units, "none" makes every unit a patch.
patcher = build_patcher("static:4")
print(patcher, patcher(batch["input_ids"], batch["attention_mask"]).tolist())

# Over records: patch_records streams a PatchedRecord per record (patch lengths and 0-based starts).
# An entropy patcher needs a language model: hyena_glt.model.entropy.make_patcher("entropy", entropy_model=DIR).
for patched in patch_records(read_sequences("example_data/ex1.fa"), patcher, tokenizer):
    print(patched.contig, len(patched.patch_lengths), "patches; starts", patched.starts[:4].tolist(),
          "last length", int(patched.patch_lengths[-1]))
