"""Latency, throughput and peak memory of Hyena-GLT forwards over sequence lengths, against attention.

Each configuration (model kind × preset × patcher × batch × length) is timed in eval mode under
``torch.inference_mode()``: one warm-up forward, then ``repeats`` timed forwards; the row reports the median.
Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA, and on CPU the peak resident set of the process
measuring that one configuration (a fresh subprocess by default, so configurations cannot inflate each
other; the kernel's high-water mark is reset before each one). A configuration that runs out of memory or
past ``timeout_s`` becomes a row with status ``oom`` / ``timeout`` instead of stopping the sweep.

The attention baseline ("transformer") is the same model with every block's mixer replaced by SDPA
attention (rotary positions) and patching ``none``: same width, depth and MLPs.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator

import torch

from .config import PRESETS, HyenaGLTConfig
from .errors import HyenaGLTError, UsageError, option
from .runtime import OOM_MESSAGES

log = logging.getLogger("hyena_glt")

MODELS = ("hyena-glt", "transformer")
COLUMNS = ("model", "preset", "patcher", "task", "params", "batch", "length", "median_ms", "nt_per_s",
           "peak_mem_mb", "device", "precision", "status")
DEFAULT_LENGTHS = "1k,4k,16k,32k,64k,128k"
QUICK = dict(lengths="1k,4k", batch_sizes="1", presets="tiny", patchers="none,static:4", repeats=2)
VOCAB = 12  # token ids drawn from 0..11, as in the peer benchmark


@dataclass
class Case:
    model: str
    preset: str
    patcher: str
    batch: int
    length: int
    task: str = "classification"
    entropy_model: str = ""  # patcher "entropy": the LM directory (a model trained with task "lm")


@dataclass
class Row:
    model: str
    preset: str
    patcher: str
    task: str
    params: int
    batch: int
    length: int
    median_ms: float | None = None
    nt_per_s: float | None = None
    peak_mem_mb: float | None = None
    device: str = "cpu"
    precision: str = "fp32"
    status: str = "ok"
    times_ms: list[float] = field(default_factory=list)

    def tsv(self) -> str:
        def fmt(name):
            value = getattr(self, name)
            if value is None:
                return "NA"
            if name == "median_ms":
                return f"{value:.2f}"
            if name in ("nt_per_s", "peak_mem_mb"):
                return f"{value:.0f}"
            return str(value)

        return "\t".join(fmt(c) for c in COLUMNS)


# ------------------------------------------------------------------------------------------ parsing
def parse_lengths(text: str) -> list[int]:
    """'1k,32k,1M,5000' → [1024, 32768, 1048576, 5000] (k = 1024, M = 1024²)."""
    out = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)\s*", part)
        if not m or int(m.group(1)) < 1:
            raise UsageError(f"bad length '{part.strip()}' in {option('lengths')} (use e.g. 1k,32k,1M or 5000)")
        scale = {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]
        out.append(int(m.group(1)) * scale)
    return out


def parse_ints(text: str, what: str) -> list[int]:
    """'1,8' → [1, 8]; ``what`` names the option in messages."""
    try:
        values = [int(p) for p in text.split(",")]
    except ValueError:
        raise UsageError(f"{what} must be comma-separated integers (got '{text}')") from None
    if any(v < 1 for v in values):
        raise UsageError(f"{what} must be positive (got '{text}')")
    return values


def plan(lengths: list[int], batch_sizes: list[int], presets: list[str], patchers: list[str],
         attention: bool = True, task: str = "classification", entropy_model: str | None = None) -> list[Case]:
    from .model.heads import TASKS

    if task not in TASKS:
        raise UsageError(f"unknown {option('task')} '{task}' (use one of: {', '.join(TASKS)})")
    for preset in presets:
        if preset not in PRESETS:
            raise UsageError(f"unknown preset '{preset}' (use {', '.join(PRESETS)})")
    for patcher in patchers:
        if patcher.startswith("entropy") and patcher != "entropy":
            raise UsageError(f"unknown patcher '{patcher}' for the benchmark (use none, static:K or entropy)")
        if patcher == "entropy" and not entropy_model:
            raise UsageError(f"{option('patchers', 'entropy')} needs {option('entropy_model')} (a model trained "
                             f"with {option('task', 'lm')})")
        HyenaGLTConfig(patcher=patcher)  # validates the spec
    if entropy_model and "entropy" not in patchers:
        raise UsageError(f"{option('entropy_model')} only applies with {option('patchers', '...,entropy')}")
    if entropy_model:
        _entropy_patcher(entropy_model)  # a missing or wrong LM directory fails now, not in every worker
    kinds = [("hyena-glt", p) for p in patchers] + ([("transformer", "none")] if attention else [])
    return [Case(model, preset, patcher, batch, length, task, entropy_model if patcher == "entropy" else "")
            for preset in presets for model, patcher in kinds for batch in batch_sizes for length in lengths]


# ------------------------------------------------------------------------------------------ models
def build_model(case: Case):
    """The model of a case; an entropy case's model has its patcher (the LM) attached, not yet calibrated."""
    from .model import HyenaGLTForTask

    overrides = dict(patcher=case.patcher, vocab_size=VOCAB)
    if case.model == "transformer":
        overrides["attn_layers"] = list(range(PRESETS[case.preset]["n_layers"]))
    patcher = _entropy_patcher(case.entropy_model) if case.patcher == "entropy" else None
    if patcher is not None:
        overrides["vocab_size"] = max(VOCAB, patcher.tokenizer.vocab_size)
    config = HyenaGLTConfig.preset(case.preset, **overrides)
    num_outputs = config.vocab_size if case.task == "lm" else 2
    model = HyenaGLTForTask(config, case.task, num_outputs).eval()
    if patcher is not None:
        model.backbone.patcher = patcher
    return model


def _entropy_patcher(directory: str):
    from .model.entropy import make_patcher

    return make_patcher("entropy", entropy_model=directory)


def _input_ids(case: Case, model, device: torch.device) -> torch.Tensor:
    """Random token ids (fixed seed). Entropy cases get random A/C/G/T in the LM's own tokens, and the
    patcher's threshold (unless the LM stores one) calibrated on them to a mean patch length of 4, so that
    the global model sees about as many patches as with static:4; real genomes, with their repeats, give
    longer patches."""
    generator = torch.Generator().manual_seed(0)
    patcher = getattr(model.backbone, "patcher", None) if case.patcher == "entropy" else None
    if patcher is None:
        return torch.randint(0, VOCAB, (case.batch, case.length), generator=generator).to(device)
    bases = torch.as_tensor(patcher.tokenizer.encode("ACGT"))
    ids = bases[torch.randint(0, 4, (case.batch, case.length), generator=generator)].to(device)
    patcher.to(device)
    if patcher.threshold is None:
        patcher.calibrate((ids, torch.ones_like(ids, dtype=torch.bool)), 4.0)
    return ids


# ------------------------------------------------------------------------------------------ memory
def _reset_peak_rss() -> bool:
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------------------------ timing
def measure(case: Case, device: torch.device, precision: str = "fp32", repeats: int = 3,
            timeout_s: float | None = None) -> Row:
    """Time one configuration in this process; past ``timeout_s`` (checked after each forward) the row is a
    timeout, with no time, as in a worker that was stopped."""
    from .runtime import autocast

    model = build_model(case).to(device)
    row = Row(case.model, case.preset, case.patcher, case.task, sum(p.numel() for p in model.parameters()),
              case.batch, case.length, device=str(device), precision=precision)
    ids = _input_ids(case, model, device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _reset_peak_rss()
    deadline = None if timeout_s is None else time.perf_counter() + timeout_s
    try:
        with torch.inference_mode(), autocast(device, precision):
            for i in range(1 + repeats):
                if cuda:
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                model(ids)
                if cuda:
                    torch.cuda.synchronize(device)
                if i:  # the first forward is the warm-up
                    row.times_ms.append((time.perf_counter() - start) * 1000)
                if deadline is not None and time.perf_counter() > deadline:
                    row.status = "timeout"
                    break
    except torch.cuda.OutOfMemoryError:
        row.status = "oom"
    except MemoryError:
        row.status = "oom"
    except RuntimeError as err:
        if not any(s in str(err).lower() for s in OOM_MESSAGES):
            raise
        row.status = "oom"
    row.peak_mem_mb = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else _peak_rss_mb()
    if row.status == "ok":
        row.median_ms = statistics.median(row.times_ms)
        row.nt_per_s = case.batch * case.length / (row.median_ms / 1000)
    del model
    if cuda:
        torch.cuda.empty_cache()
    return row


def measure_isolated(case: Case, device: torch.device, precision: str, repeats: int, threads: int,
                     timeout_s: float) -> Row:
    """Time one configuration in a fresh Python process (CPU): honest per-configuration peak RSS, and a
    crash or a timeout there cannot stop the sweep."""
    job = json.dumps(dict(case=asdict(case), device=str(device), precision=precision, repeats=repeats,
                          threads=threads))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    params = sum(p.numel() for p in build_model(case).parameters())
    failed = Row(case.model, case.preset, case.patcher, case.task, params, case.batch, case.length,
                 device=str(device), precision=precision)
    try:
        done = subprocess.run([sys.executable, "-m", "hyena_glt.benchmark", job], capture_output=True, text=True,
                              timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        failed.status = "timeout"
        return failed
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode == 0 and lines:
        return Row(**json.loads(lines[-1]))
    if done.returncode in (-9, 137) or "MemoryError" in done.stderr or any(s in done.stderr.lower() for s in OOM_MESSAGES):
        failed.status = "oom"  # the kernel's OOM killer sends SIGKILL
        return failed
    detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise HyenaGLTError(f"benchmark worker failed on {case.model} {case.patcher} L={case.length}: {detail}")


def run(cases: Iterable[Case], device: torch.device, precision: str = "fp32", repeats: int = 3,
        threads: int | None = None, timeout_s: float = 300.0, isolate: bool | None = None) -> Iterator[Row]:
    """Yield one Row per case, in order. ``isolate`` (default: on CPU) runs each case in a subprocess."""
    if repeats < 1:
        raise UsageError(f"{option('repeats')} must be at least 1 (got {repeats})")
    isolate = device.type == "cpu" if isolate is None else isolate
    threads = threads or torch.get_num_threads()
    for case in cases:
        log.info("benchmark: %s %s %s batch %d length %d", case.model, case.preset, case.patcher, case.batch,
                 case.length)
        if isolate:
            row = measure_isolated(case, device, precision, repeats, threads, timeout_s)
        else:
            row = measure(case, device, precision, repeats, timeout_s)
        yield row


def plot(rows: list[Row], path: str) -> None:
    """Throughput and peak memory against length, log-log, one line per model/patcher/preset/batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io.writers import atomic_path

    fig, (ax_speed, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    series: dict[tuple, list[Row]] = {}
    for r in rows:
        series.setdefault((r.model, r.patcher, r.preset, r.batch), []).append(r)
    for (model, patcher, preset, batch), rs in series.items():
        ok = sorted((r for r in rs if r.status == "ok"), key=lambda r: r.length)
        if not ok:
            continue
        label = f"{model} {patcher} ({preset}, batch {batch})" if model == "hyena-glt" else f"{model} ({preset}, batch {batch})"
        x = [r.length for r in ok]
        ax_speed.plot(x, [r.nt_per_s for r in ok], marker="o", label=label)
        ax_mem.plot(x, [r.peak_mem_mb for r in ok], marker="o", label=label)
    cuda = bool(rows) and rows[0].device.startswith("cuda")
    mem_label = "peak memory (MB, CUDA allocated)" if cuda else "peak memory (MB, process peak RSS)"
    for ax, ylabel in ((ax_speed, "throughput (units / s)"), (ax_mem, mem_label)):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length (units)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_speed.legend(fontsize=7)
    device = rows[0].device if rows else ""
    fig.suptitle(f"hyena-glt benchmark ({device}, {torch.get_num_threads()} threads)")
    fig.tight_layout()
    suffix = os.path.splitext(path)[1] or ".png"
    with atomic_path(path, suffix=suffix) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def _worker(job_text: str) -> None:
    """Subprocess entry: time one case, print its Row as JSON on stdout."""
    from .runtime import tune_allocator

    job = json.loads(job_text)
    tune_allocator()  # as the CLI does
    torch.set_num_threads(job["threads"])
    row = measure(Case(**job["case"]), torch.device(job["device"]), job["precision"], job["repeats"])
    sys.stdout.write(json.dumps(asdict(row)) + "\n")


if __name__ == "__main__":
    _worker(sys.argv[1])
