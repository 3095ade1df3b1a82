"""Predict with the bundled promoter model: whole FASTA records, plain strings, and a genome scanned in windows."""
from hyena_glt.inference import Predictor
from hyena_glt.io.sequences import read_sequences, reverse_complement

# None = the bundled default model (hyena_glt/pretrained/promoter-tiny); a path loads any model directory.
predictor = Predictor.from_pretrained(None, device="cpu")
print("task:", predictor.task, "| classes:", predictor.output_names, "| window:", predictor.window,
      "| rc-average:", predictor.rc_average)

# Whole records: the model reads each record at its full length, whatever the window.
for batch in predictor.predict(read_sequences("example_data/ex1.fa")):
    for record, probs in zip(batch.records, batch.values):
        print(f"{record.id}\t{len(record)} nt\tp(promoter)={probs[1]:.3f}")

# Plain strings are records too, named "1", "2", ... in input order. Pass a list, even for one sequence.
# With rc-average on, a sequence and its reverse complement get the same probabilities.
seq = "CTCCACCCCTGACTCCCCTCAGCCATAGAAGGCCCCACCCCAGTCTCAGCCCTACTCCACTCAAGCACTA"
for batch in predictor.predict([seq, reverse_complement(seq)]):
    print([(r.id, round(float(p[1]), 3)) for r, p in zip(batch.records, batch.values)])

# windowed=True cuts every record longer than the window into windows with 0-based, half-open coordinates.
windows = [(p[1], r.contig, r.start, r.end)
           for batch in predictor.predict(read_sequences("example_data/MT-human.fa"), windowed=True)
           for r, p in zip(batch.records, batch.values)]
print(len(windows), "windows; the three most promoter-like:")
for p, contig, start, end in sorted(windows, reverse=True)[:3]:
    print(f"{contig}\t{start}\t{end}\t{p:.3f}")
