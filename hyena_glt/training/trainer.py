"""The training loop: AdamW with linear warm-up and cosine decay, gradient clipping and accumulation,
mixed precision per :mod:`hyena_glt.runtime`, reverse-complement augmentation, a length curriculum,
early stopping, best + last checkpoints, exact resume, and DDP under ``torchrun``.

Data are tokenized once into a padded tensor; a batch is a row gather, so there is no per-item Python in
the loop. The epoch order comes from ``DistributedSampler(seed, epoch)``, which makes the position in the
data two integers (epoch, batch) that a checkpoint can store and a resumed run can replay exactly.

Exact resume: a checkpoint holds the model, optimiser, scheduler, grad scaler, every RNG state, the data
position, the running epoch loss, the best metric, the early-stopping counter and the log so far. On CPU
with a fixed seed a run killed at any moment and resumed ends with the same weights and metrics as a run
that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import runtime
from ..errors import HyenaGLTError, InputError, UsageError, option
from ..io.datasets import LabelledData, fingerprint
from ..io.writers import default_permissions
from . import checkpoint as ckpt
from .metrics import (DEFAULT_SELECTION, HIGHER_IS_BETTER, is_improvement, lm_metrics, task_metrics,
                      warn_undefined)

log = logging.getLogger("hyena_glt")

LOG_FILE = "train_log.tsv"
CHECKPOINTS = "checkpoints"
# Between evaluations, a progress line at most this often (an HPC job log would otherwise show nothing for as
# long as an epoch takes); 0: never.
PROGRESS_SECONDS = 60.0
# Training data of mixed lengths is batched by length within pools of this many batches (see _grouped_by_length).
_LENGTH_POOL = 64
DNA_TOKENIZERS = ("nucleotide", "nucleotide:softmask")  # reverse-complement augmentation by default
RESERVED_METADATA = {"task", "num_outputs", "tokenizer", "patcher", "window", "rc_average", "metrics", "training",
                     "package_version", "class_names", "target_names", "label_values"}


class TrainingInterrupted(HyenaGLTError):
    """SIGTERM/SIGUSR1 (e.g. SLURM pre-emption) arrived: a checkpoint was written. Exit code 128+signal,
    as for a process the signal killed, so schedulers see a pre-emption rather than a bug. Not an error: the
    CLI reports it as ``hyena-glt: stopped by SIGTERM at step N; checkpoint written to ...``."""

    kind = ""

    def __init__(self, problem: str, signum: int):
        super().__init__(problem)
        self.exit_code = 128 + signum


@dataclass
class TrainOptions:
    """Everything that decides what a run computes. Stored in every checkpoint; resuming checks
    the new invocation computes the same thing."""

    task: str = "classification"
    # preset, tokenizer and patcher: None means the init model's, or else tiny / nucleotide / none
    # (resolve_architecture fills them in, so a stored run always names what it used)
    preset: str | None = None
    config_overrides: dict = field(default_factory=dict)
    tokenizer: str | None = None
    patcher: str | None = None
    init: str | None = None  # model folder whose weights the run starts from (fine-tuning)
    entropy_model: str | None = None
    target_patch_length: float | None = None
    window: int | None = None
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 64
    eval_batch_size: int | None = None
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of all steps (< 1) or a number of steps (>= 1)
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    rc_augment: bool | None = None  # None: on for DNA tokenizers
    curriculum_start: int | None = None  # first training window length; grows to the full length
    curriculum_fraction: float = 0.3  # ... over this fraction of all steps
    patience: int | None = None  # early stopping after this many evaluations without improvement
    select_metric: str | None = None
    eval_every: int | None = None  # steps between evaluations (default: once per epoch)
    checkpoint_every: int | None = None  # steps between 'last' checkpoints (default: per evaluation)
    checkpoint_minutes: float = 10.0  # also write 'last' at least this often
    keep_checkpoints: bool = True
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0

    def check(self) -> None:
        if self.init is None:
            self.resolve_architecture()  # (with an init model the Trainer resolves against the model it loads)
        if self.task not in ("classification", "multilabel", "regression", "lm"):
            raise UsageError(f"unknown {option('task')} '{self.task}' (use classification, multilabel, regression or lm)")
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise UsageError(f"{option(name)} must be at least 1 (got {getattr(self, name)})")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"{option('max_steps')} must be at least 1 (got {self.max_steps})")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise UsageError(f"{option('lr')} must be a positive number (got {self.lr})")
        for name in ("warmup", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise UsageError(f"{option(name)} must be a number >= 0 (got {value})")
        if self.window is not None and self.window < 1:
            raise UsageError(f"{option('window')} must be at least 1 (got {self.window})")
        if self.task == "lm" and self.window is not None and self.window < 2:
            raise UsageError(f"{option('task', 'lm')} needs {option('window')} of at least 2: a unit to see and the "
                             f"next to predict (got {self.window})")
        for name in ("curriculum_start", "eval_every", "checkpoint_every", "patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"{option(name)} must be at least 1 (got {value})")
        if not (math.isfinite(self.curriculum_fraction) and 0 < self.curriculum_fraction <= 1):
            raise UsageError(f"{option('curriculum_fraction')} must be in (0, 1] (got {self.curriculum_fraction})")
        if self.select_metric is not None and self.select_metric not in HIGHER_IS_BETTER:
            raise UsageError(f"unknown {option('select_metric')} '{self.select_metric}' "
                             f"(use one of: {', '.join(sorted(HIGHER_IS_BETTER))})")
        patcher = self.patcher or ""  # (None: the init model's)
        if patcher.startswith("entropy") and not self.entropy_model and not self.init:
            raise UsageError(f"{option('patcher', 'entropy')} needs {option('entropy_model')} (a model trained with "
                             f"{option('task', 'lm')})")
        if self.patcher is not None and not patcher.startswith("entropy"):
            for name, value in (("entropy_model", self.entropy_model), ("target_patch_length", self.target_patch_length)):
                if value is not None:
                    raise UsageError(f"{option(name)} only applies to {option('patcher', 'entropy')} "
                                     f"(got {option('patcher', self.patcher)})")
        if self.target_patch_length is not None and not (
                math.isfinite(self.target_patch_length) and self.target_patch_length >= 1):
            # what the entropy patcher's calibration accepts: 1 = every unit its own patch
            raise UsageError(f"{option('target_patch_length')} must be a number of units >= 1 "
                             f"(got {self.target_patch_length})")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def resolve_architecture(self, resume_dir: str | Path | None = None):
        """Fill in preset, tokenizer and patcher, and check them against the ``init`` model if there is one
        → (init model, its metadata), or None without one. The architecture of a fine-tuned model is
        its starting model's: only dropout may change. ``resume_dir``: the folder of a run being resumed,
        whose last checkpoint stands in for an init model that is no longer there (the weights come from
        the checkpoint anyway)."""
        if self.init is None:
            self.preset = self.preset or "tiny"
            self.tokenizer = self.tokenizer or "nucleotide"
            self.patcher = self.patcher or "none"
            return None
        from ..inference import load_model, resolve_model_dir
        from ..tokenizers import get_tokenizer

        source = self.init
        last = None if resume_dir is None else ckpt.find_checkpoint(Path(resume_dir) / CHECKPOINTS / "last")
        if last is not None and not resolve_model_dir(self.init).exists():
            if not getattr(self, "_told_init_gone", False):  # (the CLI resolves before the Trainer does)
                log.info("%s is no longer there: the run's last checkpoint gives the architecture",
                         option("init", self.init))
                self._told_init_gone = True
            source = last
        # the CLI resolves (to read the data with the model's tokenizer) before the Trainer does: load once
        loaded = getattr(self, "_init_loaded", None)
        if loaded is None or loaded[0] != str(source):
            loaded = (str(source), *load_model(source, named_by="init"))
            self._init_loaded = loaded
        model, meta = loaded[1:]
        where = option("init", self.init)
        if self.preset is not None:
            raise UsageError(f"{option('preset')} does not apply with {option('init')}: the model keeps the size of "
                             f"{self.init}")
        changed = sorted(set(self.config_overrides) - {"dropout"})
        if changed:
            raise UsageError(f"{where}: the architecture is that model's; only dropout may change "
                             f"(got {', '.join(changed)})")
        tokenizer = get_tokenizer(meta.get("tokenizer")).name
        if self.tokenizer is None:
            self.tokenizer = tokenizer
        elif get_tokenizer(self.tokenizer).name != tokenizer:
            raise UsageError(f"{option('tokenizer', self.tokenizer)}: the model of {where} reads '{tokenizer}' "
                             "(its embeddings are for that vocabulary)")
        patcher = model.config.patcher
        if self.patcher is None:
            self.patcher = str(meta.get("patcher") or patcher)
        elif (self.patcher.startswith("entropy") != patcher.startswith("entropy")
              or (not patcher.startswith("entropy") and self.patcher != patcher)):
            raise UsageError(f"{option('patcher', self.patcher)}: the model of {where} was built for '{patcher}' "
                             "(its patch layers are part of its weights)")
        if self.task == "lm" and model.config.bidirectional:
            raise UsageError(f"{option('task', 'lm')}: the model of {where} is bidirectional; a language model must "
                             f"be causal (start from a model trained with {option('task', 'lm')})")
        return model, meta


@dataclass
class TrainResult:
    output_dir: Path
    metrics: dict
    steps: int
    epochs_run: int
    wall_time_s: float
    stopped_early: bool


def check_output_dir(output_dir: str | Path, resume: bool = False) -> None:
    """UsageError now, before any data are read or a model is built, if ``output_dir`` cannot be the
    folder of a new run (or, with ``resume``, of a continued one): it is a file, it is a non-empty folder
    without ``resume``, or it cannot be created or written into. Creating it is tried for real (with any
    missing parent folders) and undone, so nothing is left behind."""
    if str(output_dir) == "-":
        raise UsageError(f"{option('output_dir', '-')}: a trained model is a folder, not a stream "
                         f"(give {option('output_dir', 'FOLDER')})")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} exists and is not a folder")
    try:
        used = out.is_dir() and any(out.iterdir())
    except OSError as err:
        raise UsageError(f"cannot read the output folder: {(err.strerror or str(err)).lower()}", path=str(out)) from None
    if used and not resume:
        raise UsageError(f"output folder {out} is not empty; continue its run with {option('resume', True)} or choose "
                         "another folder")
    if distributed_env()[1] != 0:
        return  # under torchrun rank 0 alone tries: the ranks would trip over each other's trial folders
    if out.is_dir():
        if not os.access(out, os.W_OK | os.X_OK):
            raise UsageError("cannot write into the output folder: permission denied", path=str(out))
        return
    missing = [p for p in (out, *out.parents) if not p.exists()]  # deepest first
    try:
        out.mkdir(parents=True)  # (no trial file inside: another rank may be looking whether it is empty)
    except OSError as err:
        raise UsageError(f"cannot create the output folder: {(err.strerror or str(err)).lower()}",
                         path=str(out)) from None
    finally:
        for folder in missing:
            try:
                folder.rmdir()
            except OSError:
                break


# ----------------------------------------------------------------------------------------------------
# data as tensors


@dataclass
class TensorData:
    input_ids: torch.Tensor  # (N, L) right-padded
    lengths: torch.Tensor  # (N,)
    labels: torch.Tensor | None

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def _fit_window(sequences: list[str], window: int | None) -> list[str]:
    """Centre-crop sequences longer than the window (shorter ones are padded by the tokenizer)."""
    if window is None:
        return sequences
    out = []
    for s in sequences:
        if len(s) > window:
            start = (len(s) - window) // 2
            s = s[start:start + window]
        out.append(s)
    return out


def tensorize(data: LabelledData, tokenizer, window: int | None) -> TensorData:
    seqs = _fit_window(data.sequences, window if data.task != "lm" else None)
    pad_to = window if (window is not None and data.task != "lm") else None
    batch = tokenizer.encode_batch(seqs, pad_to=pad_to)
    labels = None
    if data.labels is not None:
        dtype = torch.long if data.task == "classification" else torch.float32
        labels = torch.as_tensor(data.labels, dtype=dtype)
    return TensorData(batch["input_ids"].long(), batch["lengths"].long(), labels)


def _predictable(data: TensorData, source: LabelledData, what: str) -> TensorData:
    """The rows of language-model data with a next unit to predict (at least 2 units). Shorter rows are
    left out with a warning (a batch of them only would have no loss at all); none left is an InputError."""
    keep = data.lengths >= 2
    if bool(keep.all()):
        return data
    files = ", ".join(source.sources) or None
    if not bool(keep.any()):
        raise InputError(f"no {what} sequence is long enough for a next-unit prediction (each has fewer than "
                         f"2 units: a language model needs a unit to see and the next to predict)", path=files)
    log.warning("%s: left out %d %s sequence(s) of a single unit: no next unit to predict",
                files or "input", int((~keep).sum()), what)
    index = torch.nonzero(keep).squeeze(1)
    width = int(data.lengths[index].max())
    return TensorData(data.input_ids[index, :width], data.lengths[index], None)


def _gather(data: TensorData, index: torch.Tensor):
    ids = data.input_ids[index]
    lengths = data.lengths[index]
    longest = int(lengths.max())
    ids = ids[:, :longest]  # no columns of pure padding
    mask = torch.arange(longest)[None, :] < lengths[:, None]
    labels = None if data.labels is None else data.labels[index]
    return ids, mask, lengths, labels


# ----------------------------------------------------------------------------------------------------
# distributed helpers (all no-ops in a single process)


def distributed_env() -> tuple[int, int, int]:
    """(world size, rank, local rank) from the variables torchrun sets (1, 0, 0 without them). A partial or
    inconsistent set (RANK alone, a rank outside the world, no rendezvous address) is a UsageError, not a
    failure deep inside torch.distributed."""
    hint = "start multi-process training with torchrun (see docs/train.md), or unset these variables"
    values = {}
    for name, default in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)):
        text = os.environ.get(name, "").strip()
        try:
            values[name] = int(text) if text else default
        except ValueError:
            raise UsageError(f"environment variable {name}={text!r} is not an integer; {hint}") from None
    world, rank, local = values["WORLD_SIZE"], values["RANK"], values["LOCAL_RANK"]
    if world < 1 or not 0 <= rank < world or local < 0:
        found = ", ".join(f"{n}={os.environ[n]}" for n in ("WORLD_SIZE", "RANK", "LOCAL_RANK") if n in os.environ)
        raise UsageError(f"inconsistent distributed environment ({found}): RANK must be in 0..WORLD_SIZE-1; {hint}")
    if world > 1:
        missing = [n for n in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(n)]
        if missing:
            raise UsageError(f"WORLD_SIZE={world} but {', '.join(missing)} not set; {hint}")
    return world, rank, local


class Dist:
    def __init__(self, device: torch.device):
        import torch.distributed as dist

        self.dist = dist
        self.world, self.rank, _ = distributed_env()
        self.initialised_here = False
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)
            self.initialised_here = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        self.dist.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        return self.sum([1.0 if flag else 0.0])[0] > 0

    def gather_rows(self, index: np.ndarray, rows: np.ndarray, n_total: int) -> np.ndarray:
        """Reassemble per-rank evaluation outputs (``rows`` for ``index``) into the full array."""
        if self.world == 1:
            return rows
        parts: list = [None] * self.world
        self.dist.all_gather_object(parts, (index, rows))
        out = np.zeros((n_total,) + rows.shape[1:], dtype=rows.dtype)
        for idx, r in parts:
            out[idx] = r
        return out

    def barrier(self) -> None:
        if self.world > 1:
            self.dist.barrier()

    def close(self) -> None:
        if self.initialised_here and self.dist.is_initialized():
            self.dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------------
# the trainer


class Trainer:
    def __init__(
        self,
        options: TrainOptions,
        train_data: LabelledData,
        val_data: LabelledData | None,
        output_dir: str | Path,
        *,
        test_data: LabelledData | None = None,
        data_files: dict[str, list[str]] | None = None,
        command: str = "",
        resume: bool = False,
        extra_metadata: dict | None = None,
    ):
        from ..model import HyenaGLTForTask, build_patcher
        from ..config import HyenaGLTConfig
        from ..tokenizers import get_tokenizer

        start = options.resolve_architecture(output_dir if resume else None)
        options.check()
        self.options = options
        self.output_dir = Path(output_dir)
        self.command = command
        self.extra_metadata = dict(extra_metadata or {})
        clash = sorted(set(self.extra_metadata) & RESERVED_METADATA)
        if clash:
            raise UsageError(f"{option('extra_metadata')} cannot set {', '.join(clash)} (written by training itself)")
        self.resume = resume
        self.device = runtime.resolve_device(options.device)
        self.precision = runtime.resolve_precision(options.precision, self.device)
        self.tokenizer = get_tokenizer(options.tokenizer)
        self.task = options.task
        if options.rc_augment is None:
            options.rc_augment = self.tokenizer.name in DNA_TOKENIZERS
        elif options.rc_augment and not hasattr(self.tokenizer, "reverse_complement_batch"):
            raise UsageError(f"{option('rc_augment', True)} needs a DNA tokenizer (got '{self.tokenizer.name}')")

        self.train_data, self.val_data, self.test_data = train_data, val_data, test_data
        self.class_names = train_data.class_names
        self.label_values = train_data.label_values  # the data's own labels, where --class-names renamed them
        self.target_names = train_data.target_names
        self.num_outputs = self.tokenizer.vocab_size if self.task == "lm" else train_data.num_outputs
        if self.task != train_data.task:
            raise UsageError(f"training data were read for task '{train_data.task}', not '{self.task}'")
        self._check_output_dir()

        self.data_info = {}
        for split, files in (data_files or {}).items():
            self.data_info[split] = {
                "files": [str(f) for f in files],
                "sha256": [fingerprint(f) for f in files],
            }
        # Resuming checks the data by their sha256. A file's is read from it; a stream's (stdin, a pipe) is
        # known once hyena_glt's readers (load_labelled, load_lm_sequences) have read it.
        unknown = [f for info in self.data_info.values()
                   for f, sha in zip(info["files"], info["sha256"]) if sha is None]
        if resume and unknown:
            raise UsageError(f"{'stdin' if unknown[0] == '-' else unknown[0]}: {option('resume', True)} checks that "
                             "the data are those the run started with (by their sha256), and these were not read by "
                             "hyena_glt's readers; give the data as a file")

        # --- model -----------------------------------------------------------------------------------
        runtime.seed_everything(options.seed)
        overrides = dict(options.config_overrides)
        if start is None:
            overrides.setdefault("vocab_size", self.tokenizer.vocab_size)
            overrides.setdefault("patcher", options.patcher)
            overrides.setdefault("bidirectional", self.task != "lm")
            self.config = HyenaGLTConfig.preset(options.preset, **overrides)
        else:
            self.config = dataclasses.replace(start[0].config, **overrides)
        self.model = HyenaGLTForTask(self.config, self.task, self.num_outputs)
        self.init_info = None if start is None else self._start_from(*start)
        self.model.to(self.device)
        # The backbone cuts its own patches (static from the config); an entropy patcher is attached to
        # it, calibrated to the target mean patch length on the training sequences when it has no
        # threshold yet, and is saved with the model (entropy_model/) by save_pretrained.
        if options.patcher.startswith("entropy") and options.entropy_model is None:
            # fine-tuning an entropy-patched model: its own patcher, threshold included, unless a new
            # target mean patch length asks for it to be calibrated again on these data
            patcher = start[0].backbone.patcher.to(self.device)
            if options.target_patch_length is not None:
                patcher.calibrate(train_data.sequences, target_patch_length=options.target_patch_length)
            self.model.backbone.patcher = patcher
        elif options.patcher.startswith("entropy"):
            kwargs = {"model_dir": options.entropy_model}
            if options.target_patch_length is not None:
                kwargs["target_patch_length"] = options.target_patch_length
            patcher = build_patcher(options.patcher, **kwargs)
            if hasattr(patcher, "to"):
                patcher = patcher.to(self.device)
            if getattr(patcher, "threshold", 0.0) is None:
                patcher.calibrate(train_data.sequences)
            self.model.backbone.patcher = patcher

        # --- data ------------------------------------------------------------------------------------
        self.train_t = tensorize(train_data, self.tokenizer, options.window)
        self.val_t = tensorize(val_data, self.tokenizer, options.window) if val_data is not None else None
        self.test_t = tensorize(test_data, self.tokenizer, options.window) if test_data is not None else None
        if self.task == "lm":
            self.train_t = _predictable(self.train_t, train_data, "training")
            if self.val_t is not None:
                self.val_t = _predictable(self.val_t, val_data, "validation")
            if self.test_t is not None:
                self.test_t = _predictable(self.test_t, test_data, "test")
        for split, tensors in (("train", self.train_t), ("val", self.val_t), ("test", self.test_t)):
            if tensors is not None:
                self.data_info.setdefault(split, {})["n_sequences"] = len(tensors)
        self.window = options.window or int(self.train_t.lengths.max())
        # batches by length only where padding would cost much (same-length data keeps its plain shuffled order)
        lengths = self.train_t.lengths.float()
        self.group_by_length = bool(lengths.max() > 1.25 * lengths.median())
        if self.task == "regression":  # (a resumed run reads the same values back with its weights)
            self.model.set_target_scale(self.train_t.labels)

        self.dist = Dist(self.device)
        if self.dist.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", distributed_env()[2])
            self.model.to(self.device)
        micro_batches = math.ceil(math.ceil(len(self.train_t) / self.dist.world) / options.batch_size)
        self.steps_per_epoch = max(1, math.ceil(micro_batches / options.grad_accum))
        self.micro_per_epoch = micro_batches
        if options.max_steps is not None:
            self.total_steps = options.max_steps
            self.epochs = math.ceil(options.max_steps / self.steps_per_epoch)
        else:
            self.epochs = options.epochs
            self.total_steps = options.epochs * self.steps_per_epoch
        warmup = options.warmup if options.warmup >= 1 else options.warmup * self.total_steps
        self.warmup_steps = int(round(warmup))
        if self.warmup_steps >= self.total_steps > 0:
            log.warning("%s %d steps is the whole run (%d step(s)): the learning rate never reaches %s %g",
                        option("warmup"), self.warmup_steps, self.total_steps, option("lr"), options.lr)

        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: self._lr_factor(step))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=runtime.needs_grad_scaler(self.device, self.precision))
        self.augment_rng = torch.Generator().manual_seed(options.seed + 7919 * (self.dist.rank + 1))

        metric, _ = DEFAULT_SELECTION[self.task]
        self.select_metric = options.select_metric or metric
        if self.val_t is None and options.patience is not None:
            raise UsageError(f"early stopping ({option('patience')}) needs validation data ({option('val')} or "
                             f"{option('val_fraction')})")
        if self.val_t is None and options.select_metric is not None:
            raise UsageError(f"{option('select_metric')} chooses the best checkpoint on validation data: give "
                             f"{option('val')} or {option('val_fraction')} (without them the model is the last "
                             "step's)")

        # loop state (all of it goes into checkpoints)
        self.global_step = 0
        self.epoch = 0
        self.micro_in_epoch = 0
        self.epoch_loss_sum = 0.0
        self.epoch_loss_count = 0.0
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self.history: list[dict] = []
        self.finished = False
        self.stopped_early = False
        self.elapsed_before = 0.0
        self._signal: int | None = None
        self._warned_undefined = False  # a one-class validation set is said once, not every evaluation

    def _start_from(self, model, meta: dict) -> dict:
        """Copy the init model's weights: every backbone tensor this model has (an LM's local decoder is
        left out of a sequence classifier's), and the head too when it predicts the same things. What is not
        copied keeps its fresh initialisation. The run's own checkpoint, standing in for an init model that is
        gone (see resolve_architecture), gives the weights when the run is restored: what the run recorded of
        its init model stays."""
        recorded = (meta.get("training") or {}).get("init")
        if recorded and Path(meta["model_dir"]).resolve().parent == (self.output_dir / CHECKPOINTS).resolve():
            return recorded
        own = self.model.state_dict()
        names = self.class_names if self.class_names is not None else self.target_names
        same_head = (model.task == self.task and model.num_outputs == self.num_outputs
                     and (self.task == "lm" or meta.get("class_names", meta.get("target_names")) == names))
        copied = {k: v for k, v in model.state_dict().items()
                  if k in own and own[k].shape == v.shape and k not in ("target_mean", "target_scale")
                  and (same_head or not k.startswith("head."))}
        self.model.load_state_dict(copied, strict=False)
        fresh = sorted(k for k in own if k not in copied and k not in ("target_mean", "target_scale"))
        log.info("%s: %d of %d tensors copied (%s); new: %s", option("init", self.options.init), len(copied), len(own),
                 "backbone and head" if same_head else "backbone", ", ".join(fresh) or "none")
        folder = meta["model_dir"]  # (a bundled model's name resolved to its folder)
        weights = Path(folder) / "model.safetensors"
        return {"model": folder, "task": model.task, "sha256": fingerprint(weights),
                "copied": len(copied), "new": fresh}

    # ------------------------------------------------------------------------------------------------
    def _check_output_dir(self) -> None:
        check_output_dir(self.output_dir, self.resume)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        # no weight decay on biases, norms and embeddings (the usual AdamW recipe)
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim < 2 or "emb" in name or "norm" in name else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.options.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.options.lr, betas=(0.9, 0.98), eps=1e-8)

    def _lr_factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.options.min_lr_ratio + (1.0 - self.options.min_lr_ratio) * cosine

    def _curriculum_length(self) -> int | None:
        start = self.options.curriculum_start
        if start is None or start >= self.window:
            return None
        ramp = max(1, int(self.options.curriculum_fraction * self.total_steps))
        frac = min(1.0, self.global_step / ramp)
        return int(round(start + (self.window - start) * frac))

    # ------------------------------------------------------------------------------------------------
    def _epoch_order(self, epoch: int) -> torch.Tensor:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(
            range(len(self.train_t)), num_replicas=self.dist.world, rank=self.dist.rank,
            shuffle=True, seed=self.options.seed, drop_last=False,
        )
        sampler.set_epoch(epoch)
        order = torch.tensor(list(iter(sampler)), dtype=torch.long)
        return self._grouped_by_length(order, epoch) if self.group_by_length else order

    def _grouped_by_length(self, order: torch.Tensor, epoch: int) -> torch.Tensor:
        """``order`` rearranged so that each batch holds sequences of similar length: a batch is as wide as its
        longest sequence, so one 512 nt chunk among 70 nt records makes the whole batch 512 wide (an LM on
        genomes plus short records spent most of its time on padding). Pools of _LENGTH_POOL batches, in the
        shuffled order, are sorted by length and cut into batches, and the full batches are shuffled (seeded
        by seed and epoch, so a resumed run sees the same order); a last, partial batch stays last."""
        size = self.options.batch_size
        lengths = self.train_t.lengths[order]
        pool = torch.arange(len(order)) // (size * _LENGTH_POOL)
        grouped = order[torch.sort(pool * (int(lengths.max()) + 1) + lengths, stable=True).indices]
        full = len(grouped) // size
        batches = grouped[:full * size].view(full, size)
        generator = torch.Generator().manual_seed(self.options.seed * 1_000_003 + epoch)
        batches = batches[torch.randperm(full, generator=generator)]
        return torch.cat([batches.flatten(), grouped[full * size:]])

    def _augment(self, ids: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor):
        """Reverse-complement half the batch; crop to the curriculum length (random offsets)."""
        if self.options.rc_augment:
            flip = torch.rand(ids.shape[0], generator=self.augment_rng) < 0.5
            rc = self.tokenizer.reverse_complement_batch(ids, lengths)
            ids = torch.where(flip[:, None], rc, ids)
        crop = self._curriculum_length()
        if crop is not None and crop < ids.shape[1]:
            room = (lengths - crop).clamp(min=0)
            offsets = (torch.rand(ids.shape[0], generator=self.augment_rng) * (room + 1).float()).long()
            positions = offsets[:, None] + torch.arange(crop)[None, :]
            ids = torch.gather(ids, 1, positions.clamp(max=ids.shape[1] - 1))
            lengths = lengths.clamp(max=crop)
            mask = torch.arange(crop)[None, :] < lengths[:, None]
            ids = ids.masked_fill(~mask, self.tokenizer.pad_id)
        return ids, mask, lengths

    def _forward(self, model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ids, mask = ids.to(self.device), mask.to(self.device)
        with runtime.autocast(self.device, self.precision):
            return model(ids, attention_mask=mask)

    def _loss(self, logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, labels) -> torch.Tensor:
        target = ids if self.task == "lm" else labels
        return self.model.loss(logits.float(), target.to(self.device), mask.to(self.device))

    # ------------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        start_time = time.time()
        self._restore()
        if self.dist.main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.dist.barrier()
        model = self.model
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        log.info(
            "training %s: %d train / %s val sequences, window %d, %d step(s) per epoch, %d epoch(s), "
            "%d step(s) in all, %s %s%s, %d parameters",
            self.task, len(self.train_t), len(self.val_t) if self.val_t is not None else 0, self.window,
            self.steps_per_epoch, self.epochs, self.total_steps, self.device, self.precision,
            f", {self.dist.world} processes" if self.dist.world > 1 else "",
            sum(p.numel() for p in self.model.parameters()),
        )
        last_checkpoint_time = last_progress = time.time()
        first_step = self.global_step  # (a resumed run times only its own steps)
        previous_handlers = self._install_signal_handlers()
        try:
            while not self.finished and self.epoch < self.epochs and self.global_step < self.total_steps:
                order = self._epoch_order(self.epoch)
                batches = order.split(self.options.batch_size)
                self.model.train()
                while self.micro_in_epoch < len(batches) and self.global_step < self.total_steps:
                    group = batches[self.micro_in_epoch:self.micro_in_epoch + self.options.grad_accum]
                    self._train_step(model, group)
                    self.micro_in_epoch += len(group)
                    stop_signal = self.dist.any(self._signal is not None)
                    end_of_epoch = self.micro_in_epoch >= len(batches) or self.global_step >= self.total_steps
                    if end_of_epoch or stop_signal:
                        break
                    if self.options.eval_every and self.global_step % self.options.eval_every == 0:
                        self._evaluate_and_record(start_time)
                        last_progress = time.time()
                        self.model.train()
                        if self.finished:
                            break
                    elif PROGRESS_SECONDS and time.time() - last_progress >= PROGRESS_SECONDS:
                        self._log_progress(start_time, first_step)
                        last_progress = time.time()
                    due = (self.options.checkpoint_every and self.global_step % self.options.checkpoint_every == 0) or \
                        (time.time() - last_checkpoint_time > 60 * self.options.checkpoint_minutes)
                    if self.dist.any(bool(due)):  # collective: ranks' clocks may disagree
                        self._save_last(start_time)
                        last_checkpoint_time = time.time()
                if self.dist.any(self._signal is not None):
                    self._save_last(start_time)
                    signum = self._signal or signal.SIGTERM
                    streams = ["stdin" if f == "-" else f for info in self.data_info.values()
                               for f in info.get("files", []) if not Path(f).is_file()]
                    # resuming checks the data by their sha256: a stream must bring the same bytes again
                    how = f"run the same command with {option('resume', True)} to continue" + (
                        f" (with the same data on {', '.join(streams)})" if streams else "")
                    raise TrainingInterrupted(
                        f"stopped by {signal.Signals(signum).name} at step {self.global_step}; checkpoint written "
                        f"to {self.output_dir / CHECKPOINTS / 'last'}; {how}",
                        signum,
                    )
                if self.finished:  # early stop at a mid-epoch evaluation
                    self._save_last(start_time)
                    break
                # End of the epoch (or of max_steps): evaluated once an epoch by default; with --eval-every only
                # on its steps (the loop above leaves an epoch's last step to here), and at the end of training.
                every = self.options.eval_every
                due = not every or self.global_step % every == 0 or self.epoch + 1 >= self.epochs \
                    or self.global_step >= self.total_steps
                if due and (not self.history or self.history[-1]["step"] != self.global_step):
                    self._evaluate_and_record(start_time)
                self.epoch += 1
                self.micro_in_epoch = 0
                self.epoch_loss_sum = self.epoch_loss_count = 0.0
                if self.global_step >= self.total_steps:
                    self.finished = True
                self._save_last(start_time)
                last_checkpoint_time = time.time()
            self.finished = True
            result = self._finish(start_time)
        finally:
            self._restore_signal_handlers(previous_handlers)
            self.dist.close()
        return result

    def _log_progress(self, start_time: float, first_step: int) -> None:
        """step, this epoch's mean training loss so far (this process's batches), time and time left."""
        if not self.dist.main:
            return
        elapsed = time.time() - start_time
        per_step = elapsed / max(self.global_step - first_step, 1)
        left = per_step * (self.total_steps - self.global_step)
        loss = self.epoch_loss_sum / max(self.epoch_loss_count, 1)
        log.info("epoch %d step %d/%d train_loss %s (%.0f s; about %s left)", self.epoch + 1, self.global_step,
                 self.total_steps, _fmt(loss), self.elapsed_before + elapsed, _duration(left))

    def _train_step(self, model, group: list[torch.Tensor]) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        total = sum(len(b) for b in group)
        loss_sum = 0.0
        for i, index in enumerate(group):
            ids, mask, lengths, labels = _gather(self.train_t, index)
            ids, mask, lengths = self._augment(ids, mask, lengths)
            sync = i == len(group) - 1 or not hasattr(model, "no_sync")
            context = model.no_sync() if not sync else _nullcontext()
            with context:
                logits = self._forward(model, ids, mask)
                loss = self._loss(logits, ids, mask, labels)
                # weight micro-batches by size so accumulation equals one big batch
                self.scaler.scale(loss * (len(index) / total)).backward()
            loss_sum += float(loss.detach()) * len(index)
        self.scaler.unscale_(self.optimizer)
        if self.options.grad_clip and self.options.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.options.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.global_step += 1
        self.epoch_loss_sum += loss_sum
        self.epoch_loss_count += total
        if not math.isfinite(loss_sum):
            raise HyenaGLTError(
                f"training diverged (loss {loss_sum / total}) at step {self.global_step}; try a lower {option('lr')}"
                + (f" or {option('precision', 'fp32')}" if self.precision != "fp32" else "")
            )

    # ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, data: TensorData, model=None) -> dict[str, float]:
        """Metrics on ``data`` (each rank scores every world-th example; results are gathered)."""
        model = model or self.model
        was_training = model.training
        model.eval()
        n = len(data)
        index = np.arange(self.dist.rank, n, self.dist.world)
        batch_size = self.options.eval_batch_size or 2 * self.options.batch_size
        rc_average = bool(self.options.rc_augment) and self.task != "lm"
        outputs, nll, predicted, correct = [], 0.0, 0.0, 0.0
        for chunk in torch.as_tensor(index).split(batch_size):
            ids, mask, lengths, labels = _gather(data, chunk)
            logits = self._forward(model, ids, mask).float()
            if self.task == "lm":
                target = ids[:, 1:].to(self.device)
                keep = mask[:, 1:].to(self.device)
                step_logits = logits[:, :-1]
                losses = F.cross_entropy(step_logits.reshape(-1, step_logits.shape[-1]), target.reshape(-1),
                                         reduction="none").view_as(target)
                nll += float((losses * keep).sum())
                predicted += float(keep.sum())
                correct += float(((step_logits.argmax(-1) == target) & keep).sum())
                continue
            if rc_average:
                rc_ids = self.tokenizer.reverse_complement_batch(ids, lengths)
                logits = 0.5 * (logits + self._forward(model, rc_ids, mask).float())
            outputs.append(logits.cpu().numpy())
        if was_training:
            model.train()
        if self.task == "lm":
            nll, predicted, correct = self.dist.sum([nll, predicted, correct])
            return lm_metrics(nll, int(predicted), int(correct))
        width = self.num_outputs
        rows = np.concatenate(outputs) if outputs else np.zeros((0, width), dtype=np.float32)
        logits_all = self.dist.gather_rows(index, rows, n)
        return task_metrics(self.task, logits_all, data.labels.numpy())

    def _evaluate_and_record(self, start_time: float) -> None:
        train_loss_sum, train_count = self.dist.sum([self.epoch_loss_sum, self.epoch_loss_count])
        row = {
            "epoch": self.epoch + 1,
            "step": self.global_step,
            "lr": self.scheduler.get_last_lr()[0],
            "train_loss": train_loss_sum / max(train_count, 1),
        }
        if self.val_t is not None:
            metrics = self.evaluate(self.val_t)
            if not self._warned_undefined:
                warn_undefined(metrics, "validation", log)
                self._warned_undefined = True
            row.update({f"val_{k}": v for k, v in metrics.items()})
            value = metrics.get(self.select_metric)
            if value is None:
                raise UsageError(f"{option('select_metric')} '{self.select_metric}' is not computed for task '{self.task}' "
                                 f"(available: {', '.join(metrics)})")
            if is_improvement(value, self.best_value, self.select_metric):
                self.best_value, self.best_step, self.bad_evals = value, self.global_step, 0
                if self.dist.main:
                    ckpt.write_checkpoint(self._checkpoint_dir("best"), self._model_writer(), None)
                row["best"] = 1
            else:
                self.bad_evals += 1
                row["best"] = 0
                if self.options.patience is not None and self.bad_evals >= self.options.patience:
                    self.finished = self.stopped_early = True
        row["time_s"] = round(self.elapsed_before + time.time() - start_time, 1)
        self.history.append(row)
        if self.dist.main:
            self._write_log()
            shown = " ".join(f"{k} {_fmt(v)}" for k, v in row.items() if k not in ("epoch", "step", "time_s", "best"))
            log.info("epoch %d step %d/%d %s%s (%.0f s)", row["epoch"], row["step"], self.total_steps, shown,
                     " *" if row.get("best") else "", row["time_s"])
            if self.stopped_early:
                log.info("early stop: no %s improvement in %d evaluation(s)", self.select_metric, self.bad_evals)

    def _write_log(self) -> None:
        from ..io.writers import atomic_output

        columns: list[str] = []
        for row in self.history:
            columns.extend(k for k in row if k not in columns)
        with atomic_output(self.output_dir / LOG_FILE) as fh:
            fh.write("\t".join(columns) + "\n")
            for row in self.history:
                fh.write("\t".join(_fmt(row.get(c, "")) for c in columns) + "\n")

    # ------------------------------------------------------------------------------------------------
    # checkpoints

    def _checkpoint_dir(self, name: str) -> Path:
        return self.output_dir / CHECKPOINTS / name

    def metadata(self, metrics: dict | None = None, wall_time_s: float | None = None) -> dict:
        from .. import __version__

        meta = {
            "task": self.task,
            "num_outputs": self.num_outputs,
            "tokenizer": self.tokenizer.to_dict(),
            "patcher": self.options.patcher,
            "window": self.window,
            "rc_average": bool(self.options.rc_augment) and self.task != "lm",
            "metrics": metrics or {},
            "training": {
                "command": self.command,
                "data": self.data_info,
                "seed": self.options.seed,
                "options": self.options.to_json(),
                "steps": self.global_step,
                "epochs_run": self.epoch,
                "select_metric": self.select_metric,
                "init": self.init_info,
                "device": str(self.device),
                "precision": self.precision,
                "world_size": self.dist.world,
                "wall_time_s": wall_time_s,
            },
            "package_version": __version__,
        }
        meta.update(self.extra_metadata)
        if self.class_names is not None:
            meta["class_names"] = list(self.class_names)
        if self.label_values is not None:
            meta["label_values"] = list(self.label_values)
        if self.target_names is not None:
            meta["target_names"] = list(self.target_names)
        return meta

    def _model_writer(self, metadata: dict | None = None):
        from ..model import save_pretrained

        def write(folder: Path) -> None:
            save_pretrained(self.model, folder, metadata or self.metadata())

        return write

    def _state(self, start_time: float) -> dict:
        rng = ckpt.rng_state()
        rng["augment"] = self.augment_rng.get_state()
        if self.dist.world > 1:  # every rank's RNGs, so each continues its own stream
            parts: list = [None] * self.dist.world
            self.dist.dist.all_gather_object(parts, rng)
            rng = {"ranks": parts}
        return {
            "format": 1,
            "command": self.command,
            "options": json.dumps(self.options.to_json(), sort_keys=True),
            "data": json.dumps(self.data_info, sort_keys=True),
            "world_size": self.dist.world,
            "global_step": self.global_step,
            "epoch": self.epoch,
            "micro_in_epoch": self.micro_in_epoch,
            "epoch_loss_sum": self.epoch_loss_sum,
            "epoch_loss_count": self.epoch_loss_count,
            "best_value": self.best_value,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "finished": self.finished,
            "stopped_early": self.stopped_early,
            "history": json.dumps(self.history),
            "init_sha256": None if self.init_info is None else self.init_info["sha256"],
            "elapsed_s": self.elapsed_before + time.time() - start_time,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
        }

    def _save_last(self, start_time: float) -> None:
        state = self._state(start_time)  # collective in DDP: every rank takes part
        if self.dist.main:
            ckpt.write_checkpoint(self._checkpoint_dir("last"), self._model_writer(), state)
        self.dist.barrier()

    def _restore(self) -> None:
        if not self.resume:
            return
        folder = ckpt.find_checkpoint(self._checkpoint_dir("last"))
        if folder is None:
            log.info("%s: no checkpoint in %s yet; starting from the beginning", option("resume", True), self.output_dir)
            return
        state = ckpt.read_state(folder)
        try:
            saved_options = json.loads(state["options"])
            saved_data = json.loads(state["data"])
        except (TypeError, ValueError):
            saved_options = saved_data = None
        if not isinstance(saved_options, dict) or not isinstance(saved_data, dict):
            raise ckpt.damaged(folder / ckpt.STATE_FILE)
        now = self.options.to_json()
        ignored = {"device", "keep_checkpoints"}
        started_from = state.get("init_sha256")
        if started_from is not None and self.init_info is not None:
            # the init model is the one the run started from by its weights, however its path is spelled
            # now (relative to another folder, or absolute)
            ignored.add("init")
            if started_from != self.init_info["sha256"]:
                raise InputError(f"{option('resume', True)}: the {option('init')} model {self.options.init} is not "
                                 f"the one the run in {self.output_dir} started from (sha256 of model.safetensors "
                                 "differs)")
        changed = [k for k in now if k not in ignored and saved_options.get(k) != now[k]]
        if changed:
            raise UsageError(
                f"{option('resume', True)}: the run in {self.output_dir} was started with different settings "
                f"({', '.join(f'{k}={saved_options.get(k)!r}' for k in changed)}); rerun it with the original options"
            )
        for split, info in self.data_info.items():
            saved = saved_data.get(split, {})
            if len(saved.get("sha256", [])) < len(saved.get("files", [])) or None in saved.get("sha256", []):
                # (a stream not read by hyena_glt's readers, or by a version that did not record a stream's sha256:
                # there is nothing to check the data given now against)
                streams = ", ".join("stdin" if f == "-" else f for f in saved["files"])
                raise UsageError(f"{option('resume', True)}: the run in {self.output_dir} read its {split} data from a "
                                 f"stream ({streams}), so it cannot be resumed; start it again with another "
                                 f"{option('output_dir')}")
            if saved.get("sha256") != info.get("sha256"):
                raise InputError(f"{option('resume', True)}: the {split} data differ from those the run in "
                                 f"{self.output_dir} was started with (sha256 mismatch)")
        weights = ckpt.read_weights(folder, str(self.device))
        try:
            self.model.load_state_dict(weights)
        except (RuntimeError, KeyError, TypeError, ValueError):  # other tensors than this model's
            raise ckpt.damaged(folder / "model.safetensors") from None
        try:
            self._restore_loop_state(state)
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise ckpt.damaged(folder / ckpt.STATE_FILE) from None
        log.info("resuming from %s: step %d, epoch %d (+%d batches)", folder, self.global_step, self.epoch + 1,
                 self.micro_in_epoch)

    def _restore_loop_state(self, state: dict) -> None:
        """Optimiser, scheduler, scaler, RNGs and loop position from a checkpoint's trainer state."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(dict(state["scheduler"]))
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        if "ranks" in rng:
            if len(rng["ranks"]) == self.dist.world:
                rng = rng["ranks"][self.dist.rank]
            else:
                log.warning("%s: saved with %d processes, now %d; RNG streams restart", option("resume", True),
                            len(rng["ranks"]), self.dist.world)
                rng = None
        if rng is not None:
            ckpt.set_rng_state(rng)
            self.augment_rng.set_state(rng["augment"])
        self.global_step = int(state["global_step"])
        self.epoch = int(state["epoch"])
        self.micro_in_epoch = int(state["micro_in_epoch"])
        self.epoch_loss_sum = float(state["epoch_loss_sum"])
        self.epoch_loss_count = float(state["epoch_loss_count"])
        self.best_value = state["best_value"]
        self.best_step = state["best_step"]
        self.bad_evals = int(state["bad_evals"])
        self.finished = bool(state["finished"])
        self.stopped_early = bool(state["stopped_early"])
        self.history = json.loads(state["history"])
        self.elapsed_before = float(state["elapsed_s"])
        self.command = state.get("command") or self.command  # the run's original command, not the resuming one

    # ------------------------------------------------------------------------------------------------
    def _finish(self, start_time: float) -> TrainResult:
        """Pick the best weights (by validation) or the last, score the test set, write the model dir."""
        best = self._checkpoint_dir("best")
        if self.val_t is not None and (best / "model.safetensors").is_file():
            try:
                self.model.load_state_dict(ckpt.read_weights(best, str(self.device)))
            except (RuntimeError, KeyError, TypeError, ValueError):
                raise ckpt.damaged(best / "model.safetensors") from None
        metrics: dict = {}
        if self.history:
            last = self.history[-1]
            metrics["train_loss"] = last["train_loss"]
        if self.val_t is not None:
            metrics["val"] = self.evaluate(self.val_t)
            metrics["select_metric"] = self.select_metric
            metrics["best_step"] = self.best_step
        if self.test_t is not None:
            metrics["test"] = self.evaluate(self.test_t)
            warn_undefined(metrics["test"], "test", log)
            log.info("test: %s", " ".join(f"{k} {_fmt(v)}" for k, v in metrics["test"].items()))
        wall = round(self.elapsed_before + time.time() - start_time, 1)
        if self.dist.main:
            meta = self.metadata(metrics, wall)
            meta["training"]["stopped_early"] = self.stopped_early
            self._write_final_model(meta)
            if not self.options.keep_checkpoints:
                import shutil

                shutil.rmtree(self.output_dir / CHECKPOINTS, ignore_errors=True)
        self.dist.barrier()
        return TrainResult(self.output_dir, metrics, self.global_step, self.epoch, wall, self.stopped_early)

    def _write_final_model(self, meta: dict) -> None:
        """Write the model files into a temporary folder, then move each into the output folder,
        hyena_glt.json last, so a complete metadata file means a complete model."""
        import shutil
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix=".model.", suffix=".tmp", dir=self.output_dir))
        try:
            self._model_writer(meta)(tmp)
            for path in tmp.iterdir():
                default_permissions(path)
            names = sorted(p.name for p in tmp.iterdir())
            names.sort(key=lambda name: name == "hyena_glt.json")
            for name in names:
                dest = self.output_dir / name
                if dest.is_dir():
                    shutil.rmtree(dest)
                os.replace(tmp / name, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------------------------------------------
    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            self._signal = signum
            log.warning("received %s: writing a checkpoint after this step", signal.Signals(signum).name)

        previous = {}
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            previous[sig] = signal.signal(sig, handler)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous) -> None:
        if previous:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _duration(seconds: float) -> str:
    """12 s, 7 min, 2.5 h: a rough time for a progress line."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _fmt(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.6g}"
    return str(value)


def train(
    options: TrainOptions,
    train_data: LabelledData,
    val_data: LabelledData | None,
    output_dir: str | Path,
    **kwargs,
) -> TrainResult:
    """Train a model and write it to ``output_dir`` (see :class:`Trainer`)."""
    return Trainer(options, train_data, val_data, output_dir, **kwargs).fit()
