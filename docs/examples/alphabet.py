"""What is not checked: read_sequences takes any letters unless given alphabet=, and models read them anyway."""
import os
import tempfile

from hyena_glt.errors import InputError
from hyena_glt.inference import Predictor
from hyena_glt.io.sequences import read_sequences

with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "odd.fa")
    with open(path, "w") as fh:
        fh.write(">iupac\nACGTRYACGT\n>protein\nMKVLAAGIVG\n")

    # No alphabet: both records come back as they are, protein included.
    print([(r.id, r.seq) for r in read_sequences(path)])

    # The nucleotide tokenizer reads IUPAC codes (M, K, V among them) as N (9) and other letters as UNK (4),
    # so the model gives the protein a prediction too: nothing says it is not DNA.
    predictor = Predictor.from_pretrained(None, device="cpu")
    print("tokens of 'MKVLAAGIVG':", predictor.tokenizer.encode("MKVLAAGIVG").tolist())
    for batch in predictor.predict(read_sequences(path)):
        print([(r.id, round(float(p[1]), 3)) for r, p in zip(batch.records, batch.values)])

    # alphabet= checks every record as it is read (the predictor knows which alphabet its model reads).
    # Ambiguity codes follow iupac=: "N" (the default) replaces them, "keep" leaves them, "error" refuses them.
    print("alphabet:", predictor.alphabet)
    records = read_sequences(path, alphabet=predictor.alphabet)
    print(next(records).seq)
    try:
        next(records)
    except InputError as err:
        print("InputError:", err.problem, "| record:", err.record)
    print(next(read_sequences(path, alphabet="dna", iupac="keep")).seq)
