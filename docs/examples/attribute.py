"""Per-base attributions: which bases move the model's promoter score."""
from hyena_glt.interpret import attribute, attribute_records, load_scorer
from hyena_glt.io.sequences import read_sequences

# load_scorer gives (model, metadata, scorer); the scorer maps a one-hot sequence to one score: for a
# classifier, the log-odds of the target class (averaged over both strands when the model does rc-average).
model, metadata, scorer = load_scorer(None, device="cpu")

# The most promoter-like window of the genome scan (see predict.py); target: a class name, an index,
# "predicted", or None (for a two-class model, the second class).
window = read_sequences("example_data/MT-human.fa", regions=["MT_human:13021-13090"])
(result,) = attribute_records(scorer, window, "ism", "promoter")
print(result.name, result.target_name, f"score {result.score:.3f}", result.attributions.shape)
# ISM: importance = how much mutating the base lowers the score; the five strongest bases, genome coordinates.
top = result.importance.argsort()[::-1][:5]
print([(result.start + int(i) + 1, result.seq[i], round(float(result.importance[i]), 3)) for i in sorted(top)])

# attribute() works on a list of same-length strings and returns arrays: one_hot and attributions (N, 4, L)
# in A, C, G, T order, importance (N, L), scores (N,). Methods: saliency, integrated-gradients, ism, and
# deeplift/deepshap where captum covers the layers (not Hyena's: they raise a UsageError saying so).
seqs = [result.seq, result.seq[::-1]]
ig = attribute(scorer, seqs, "integrated-gradients", "promoter", baseline="shuffle", steps=32)
# Integrated gradients: each sequence's importances add up to f(x) - f(baseline); delta is what they miss by.
print("scores", [f"{s:.3f}" for s in ig.scores], "| every |delta| < 1e-4:", bool(abs(ig.delta).max() < 1e-4))
