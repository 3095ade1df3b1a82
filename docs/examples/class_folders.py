"""Write GUE mouse_2's train and test splits in Genomic Benchmarks' layout: SPLIT/CLASS/N.txt, one sequence per file."""
import csv
from collections import Counter
from pathlib import Path

for split in ("train", "test"):
    written = Counter()
    with open(f"example_data/gue/mouse_2/{split}.csv") as fh:
        for row in csv.DictReader(fh):
            name = "site" if row["label"] == "1" else "no_site"
            folder = Path("mouse_folders", split, name)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{written[name]}.txt").write_text(row["sequence"])  # no line break, as Genomic Benchmarks
            written[name] += 1
