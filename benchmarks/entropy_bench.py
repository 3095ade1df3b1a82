"""Throughput of none / static:4 / entropy patching at the same width and depth, 8k–128k units, on real
C. elegans sequence (example_data/ce.fa, CHROMOSOME_I from position 0), batch 1, inference, CPU.

The entropy rows include the entropy LM itself (streamed in windows of its training length) and the
boundary computation; `entropy_ms` is that share, `model_ms` the patched model's forward.

    .venv/bin/python benchmarks/entropy_bench.py LM_DIR [--lengths 8k,16k,32k,64k,128k] [--preset tiny]
        [--target 4] [--repeats 3] [--threads 1] [-o rows.tsv]

    .venv/bin/python benchmarks/entropy_bench.py LM_DIR --train-steps example_data/gue/mouse_2/train.csv

The backbone's benchmark (`hyena-glt benchmark`) times static patchers only; this adds the entropy rows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COLUMNS = ("patcher", "preset", "length", "patches", "mean_patch_length", "entropy_ms", "model_ms", "total_ms",
           "nt_per_s")


def parse_length(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1024, "m": 1024 * 1024}.get(text[-1], 1)
    return int(text.rstrip("km")) * scale


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lm_dir")
    ap.add_argument("--lengths", default="8k,16k,32k,64k,128k")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--target", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--output", default="-")
    ap.add_argument("--train-steps", metavar="CSV", help="instead: time training steps (forward + backward "
                    "+ AdamW, batch 64) of none/static:4/entropy on the sequences of this CSV (e.g. GUE train)")
    args = ap.parse_args(argv)
    if args.train_steps:
        return train_step_rows(args)

    import torch

    from hyena_glt.config import HyenaGLTConfig
    from hyena_glt.io.sequences import read_sequences
    from hyena_glt.model import HyenaGLTForTask
    from hyena_glt.model.entropy import load_entropy_patcher

    torch.set_num_threads(args.threads)
    chrom = next(read_sequences(str(REPO / "example_data" / "ce.fa"))).seq
    patcher = load_entropy_patcher(args.lm_dir, target_patch_length=args.target)
    tokenizer = patcher.tokenizer
    # θ from 200 kb of chromosome I beyond the longest benchmark input, like calibrating on training data.
    patcher.calibrate([chrom[-200_000:]])

    def timed(fn):
        times, result = [], None
        for i in range(1 + args.repeats):
            start = time.perf_counter()
            result = fn()
            if i:  # the first call is the warm-up
                times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times), result

    rows = []
    for length in (parse_length(x) for x in args.lengths.split(",")):
        ids = torch.as_tensor(tokenizer.encode(chrom[:length]))[None]
        for spec in ("none", "static:4", "entropy"):
            torch.manual_seed(0)
            config = HyenaGLTConfig.preset(args.preset, vocab_size=tokenizer.vocab_size, patcher=spec)
            model = HyenaGLTForTask(config, "classification", 2).eval()
            with torch.inference_mode():
                if spec == "entropy":
                    entropy_ms, lengths = timed(lambda: patcher(ids))
                    model_ms, _ = timed(lambda: model(ids, patch_lengths=lengths))
                else:
                    entropy_ms = 0.0
                    lengths = model.backbone.patcher(ids, None)
                    model_ms, _ = timed(lambda: model(ids))
            n_patches = int((lengths > 0).sum())
            total = entropy_ms + model_ms
            rows.append(dict(patcher=spec, preset=args.preset, length=length, patches=n_patches,
                             mean_patch_length=length / n_patches, entropy_ms=entropy_ms, model_ms=model_ms,
                             total_ms=total, nt_per_s=length / (total / 1000)))
            print("\t".join(_fmt(rows[-1][c]) for c in COLUMNS), file=sys.stderr)
    text = "\t".join(COLUMNS) + "\n" + "".join("\t".join(_fmt(r[c]) for c in COLUMNS) + "\n" for r in rows)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)


def train_step_rows(args) -> None:
    """Per-step training cost at the same width/depth, interleaved in one process so that machine load
    hits all three alike: the fair way to compare training time on a shared CPU."""
    import csv

    import torch

    from hyena_glt.config import HyenaGLTConfig
    from hyena_glt.model import HyenaGLTForTask
    from hyena_glt.model.entropy import load_entropy_patcher

    torch.set_num_threads(args.threads)
    with open(args.train_steps) as fh:
        rows = list(csv.DictReader(fh))
    seqs = [r["sequence"] for r in rows]
    labels = torch.tensor([int(r["label"]) for r in rows])
    patcher = load_entropy_patcher(args.lm_dir, target_patch_length=args.target)
    tokenizer = patcher.tokenizer
    patcher.calibrate(seqs)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randperm(len(seqs), generator=gen)[:64] for _ in range(args.repeats + 1)]
    encoded = [tokenizer.encode_batch([seqs[i] for i in b.tolist()]) for b in batches]
    setups = {}
    for spec in ("none", "static:4", "entropy"):
        torch.manual_seed(0)
        config = HyenaGLTConfig.preset(args.preset, vocab_size=tokenizer.vocab_size, patcher=spec, bidirectional=True)
        model = HyenaGLTForTask(config, "classification", 2).train()
        setups[spec] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3), [])
    for i, (batch, enc) in enumerate(zip(batches, encoded)):
        for spec, (model, opt, times) in setups.items():  # interleaved: same load for all three
            start = time.perf_counter()
            ids, mask = enc["input_ids"], enc["attention_mask"]
            lengths = patcher(ids, mask) if spec == "entropy" else None
            loss = model.loss(model(ids, mask, patch_lengths=lengths), labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:  # the first step is the warm-up
                times.append((time.perf_counter() - start) * 1000)
    print("patcher\tpreset\tbatch\tlength\tstep_ms_median\trelative_to_none")
    base = statistics.median(setups["none"][2])
    for spec, (_, _, times) in setups.items():
        med = statistics.median(times)
        print(f"{spec}\t{args.preset}\t64\t{encoded[0]['input_ids'].shape[1]}\t{med:.1f}\t{med / base:.2f}")


def _fmt(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main(sys.argv[1:])
