"""The Hyena operator of a git revision against the working tree's, forward by forward in one process.

    python benchmarks/ab_versions.py --rev HEAD --config tiny --shapes 1x32768,8x1024 --repeats 7
    python benchmarks/ab_versions.py --rev ef8f264 --config tiny --patcher static:4 --shapes 1x32768
    python benchmarks/ab_versions.py --rev db682ef --train --shapes 64x70,64x128,16x1024

On a shared 2-core machine separate runs drift by up to ±30 %, more than most changes are worth; here one model
(benchmarks/peer_factory.py's, random weights) runs with the classes of `hyena_glt/model/hyena.py` as they were
at --rev and as they are now, alternating within each repeat, so that both see the same machine state. Only
that file is swapped (blocks, operator, filter, MLP and the functions they call); the rest of the model is
the working tree's. Prints each shape's medians, their ratio, and the largest difference between the outputs.
Same conditions as `hyena-glt`: eval mode, fp32, torch.inference_mode(), glibc malloc tuned as the CLI does
(`--malloc default` leaves it as a library user, or ../shared/bench/bench_peer.py, has it). `--train` times a
training step instead: train mode, forward and backward of the mean squared unit state (no optimiser).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def old_module(rev: str) -> types.ModuleType:
    """hyena_glt/model/hyena.py at ``rev``, as a module of the hyena_glt.model package (relative imports work)."""
    source = subprocess.run(["git", "show", f"{rev}:hyena_glt/model/hyena.py"], cwd=HERE.parent,
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("hyena_glt.model.hyena_at_rev")
    module.__package__ = "hyena_glt.model"
    exec(compile(source, f"hyena.py@{rev}", "exec"), module.__dict__)
    return module


def use(model, module: types.ModuleType) -> None:
    """Give every submodule defined in hyena.py the class of the same name from ``module``."""
    for sub in model.modules():
        cls = type(sub)
        if cls.__module__.startswith("hyena_glt.model.hyena") and hasattr(module, cls.__name__):
            sub.__class__ = getattr(module, cls.__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD", help="git revision to compare the working tree with")
    parser.add_argument("--config", default="tiny", help="tiny or small (benchmarks/peer_factory.py)")
    parser.add_argument("--patcher", default="none")
    parser.add_argument("--shapes", default="1x1024,8x1024,1x32768", help="batch x length, comma-separated")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--malloc", choices=["tuned", "default"], default="tuned",
                        help="glibc malloc as the CLI tunes it, or untouched")
    parser.add_argument("--train", action="store_true", help="time forward + backward in train mode")
    args = parser.parse_args()

    from hyena_glt.runtime import tune_allocator

    if args.malloc == "tuned":
        tune_allocator(huge_pages=True)
    import torch

    import hyena_glt.model.hyena as current
    from peer_factory import build

    torch.manual_seed(0)
    model = build(args.config, args.patcher).train(args.train)
    versions = {args.rev: old_module(args.rev), "now": current}
    print("config\tpatcher\tbatch\tlength\t" + "\t".join(f"{name}_ms" for name in versions) + "\tspeedup\tmax_abs_diff")
    for shape in args.shapes.split(","):
        batch, length = (int(v) for v in shape.lower().split("x"))
        ids = torch.randint(0, 12, (batch, length))
        times: dict[str, list[float]] = {name: [] for name in versions}
        outputs = {}
        with torch.inference_mode(not args.train):
            for repeat in range(args.repeats + 1):  # the first round is the warm-up
                for name, module in versions.items():
                    use(model, module)
                    model.zero_grad(set_to_none=True)
                    start = time.perf_counter()
                    outputs[name] = model(ids)
                    if args.train:
                        outputs[name].square().mean().backward()
                        outputs[name] = outputs[name].detach()
                    if repeat:
                        times[name].append((time.perf_counter() - start) * 1000)
        medians = [statistics.median(t) for t in times.values()]
        old, new = outputs.values()
        print(f"{args.config}\t{args.patcher}\t{batch}\t{length}\t" + "\t".join(f"{m:.2f}" for m in medians)
              + f"\t{medians[0] / medians[1]:.3f}\t{float((old - new).abs().max()):.3g}")


if __name__ == "__main__":
    main()
