"""Interruption and scale-out, in real subprocesses: kill -9 then --resume ends exactly where an
uninterrupted run ends; SIGTERM writes a checkpoint and exits 143; two gloo processes under torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TINY = ["--set", "d_model=32", "--set", "n_layers=1", "--set", "d_inner=64", "--set", "filter_dim=16"]


@pytest.fixture(scope="module")
def gue_small(data_dir, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("gue_small")
    out = {}
    for split, n in (("train", 128), ("dev", 64)):
        lines = (data_dir / "gue/prom_core_all" / f"{split}.csv").read_text().splitlines()[: n + 1]
        out[split] = folder / f"{split}.csv"
        out[split].write_text("\n".join(lines) + "\n")
    return out


def train_args(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    # dropout on, so the resumed run must also restore the RNG that drives it. 128 sequences in batches
    # of 32: 4 steps per epoch; 6 steps end in the middle of epoch 2.
    return ["-@", "1", "--seed", "5", "train", str(data["train"]),
            "--val", str(data["dev"]), "--test", str(data["dev"]), *TINY, "--dropout", "0.1",
            "--max-steps", "6", "--batch-size", "32", "--checkpoint-every", "2", "--device", "cpu",
            "-o", str(out), *extra]


def in_process(args):
    """Runs that are not killed run in this process (no interpreter start-up): same numbers as a subprocess."""
    from typer.testing import CliRunner

    from hyena_glt_cli.main import app

    before = torch.get_num_threads()
    try:
        return CliRunner().invoke(app, args)
    finally:
        torch.set_num_threads(before)


def subprocess_args(args) -> list[str]:
    return [sys.executable, "-m", "hyena_glt_cli", *args]


def start_and_wait_for_checkpoint(args, out: Path) -> subprocess.Popen:
    proc = subprocess.Popen(subprocess_args(args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state = out / "checkpoints" / "last" / "trainer_state.pt"
    deadline = time.time() + 240
    while not state.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    return proc


def final(out: Path) -> tuple[dict, bytes]:
    meta = json.loads((out / "hyena_glt.json").read_text())
    return meta["metrics"], (out / "model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def uninterrupted(gue_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "uninterrupted"
    result = in_process(train_args(gue_small, out))
    assert result.exit_code == 0, result.stderr
    return final(out), out


def test_model_files_get_the_permissions_of_a_plain_open(uninterrupted):
    # mkstemp/mkdtemp make 0600 files and 0700 folders: a model shared in a lab folder would be unreadable
    umask = os.umask(0)
    os.umask(umask)
    out = uninterrupted[1]
    modes = {path.name: path.stat().st_mode & 0o777 for path in out.iterdir()}
    assert modes["model.safetensors"] == 0o666 & ~umask
    assert modes["config.json"] == modes["hyena_glt.json"] == 0o666 & ~umask
    for path in out.rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o777 if path.is_dir() else 0o666) & ~umask, path


def test_kill9_then_resume_matches_uninterrupted(gue_small, uninterrupted, tmp_path):
    out = tmp_path / "killed"
    proc = start_and_wait_for_checkpoint(train_args(gue_small, out), out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "hyena_glt.json").exists()  # it really died before the end
    resumed = in_process(train_args(gue_small, out, "--resume"))
    assert resumed.exit_code == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    metrics, weights = final(out)
    # the model records the run's own command line (from the killed process), not the --resume one
    command = json.loads((out / "hyena_glt.json").read_text())["training"]["command"]
    assert command == "hyena-glt " + " ".join(train_args(gue_small, out))
    assert metrics == uninterrupted[0][0]
    assert weights == uninterrupted[0][1]  # bit for bit


def test_sigterm_writes_checkpoint_and_resumes(gue_small, uninterrupted, tmp_path):
    out = tmp_path / "preempted"
    proc = start_and_wait_for_checkpoint(train_args(gue_small, out), out)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:  # the run was already finishing when the signal came
        pytest.skip("training finished before SIGTERM arrived")
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("hyena-glt: stopped by SIGTERM at step ")  # a requested stop, not an error
    assert "run the same command with --resume" in last
    state = torch.load(out / "checkpoints/last/trainer_state.pt", weights_only=True)
    assert 0 < state["global_step"] < 6
    resumed = in_process(train_args(gue_small, out, "--resume"))
    assert resumed.exit_code == 0, resumed.stderr
    assert final(out) == uninterrupted[0]


def test_resume_refuses_other_settings_and_fresh_run_refuses_used_dir(gue_small, uninterrupted):
    out = uninterrupted[1]
    again = in_process(train_args(gue_small, out))
    assert again.exit_code == 2
    assert "is not empty; continue its run with --resume" in again.stderr
    changed = in_process(train_args(gue_small, out, "--lr", "0.01", "--resume"))
    assert changed.exit_code == 2
    assert "started with different settings (lr=0.001)" in changed.stderr
    assert final(out) == uninterrupted[0]  # untouched


def test_ddp_two_gloo_processes(gue_small, tmp_path):
    from hyena_glt.io.datasets import load_labelled
    from hyena_glt.model import from_pretrained, rc_average_logits
    from hyena_glt.tokenizers import get_tokenizer
    from hyena_glt.training.metrics import classification_metrics

    out = tmp_path / "ddp"
    args = train_args(gue_small, out)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run(launcher + subprocess_args(args)[1:], env=ENV, capture_output=True, text=True,
                            timeout=300)  # `torchrun ... -m hyena_glt_cli train ...`
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("hyena-glt: wrote ") == 1  # rank 0 alone reports, as it alone writes
    meta = json.loads((out / "hyena_glt.json").read_text())
    assert meta["training"]["world_size"] == 2
    assert meta["training"]["command"] == "hyena-glt " + " ".join(args)
    # 128 sequences over 2 ranks x 32 per batch = 2 steps per epoch; max-steps 6 = 3 epochs
    log = (out / "train_log.tsv").read_text().splitlines()
    assert [row.split("\t")[1] for row in log[1:]] == ["2", "4", "6"]
    # the validation metrics gathered across ranks equal those of one process scoring every sequence
    model, _ = from_pretrained(out)
    dev = load_labelled(gue_small["dev"], "classification")
    batch = get_tokenizer(meta["tokenizer"]).encode_batch(dev.sequences)
    with torch.no_grad():
        logits = rc_average_logits(model, batch["input_ids"], batch["attention_mask"], get_tokenizer(meta["tokenizer"]))
    expected = classification_metrics(logits.numpy(), dev.labels)
    for key, value in meta["metrics"]["val"].items():
        assert value == pytest.approx(expected[key], rel=1e-5, abs=1e-6), key


def test_resume_from_a_damaged_checkpoint_is_bad_input(gue_small, uninterrupted, tmp_path):
    import shutil

    from safetensors.torch import save_file

    out = tmp_path / "damaged"
    shutil.copytree(uninterrupted[1], out)
    last = out / "checkpoints" / "last"
    good_state, good_weights = (last / "trainer_state.pt").read_bytes(), (last / "model.safetensors").read_bytes()
    message = "not a readable training checkpoint (damaged or not made by hyena-glt); start the run again in a " \
              "new -o folder, or restore the file"
    for name, damage in (
        ("trainer_state.pt", lambda p: p.write_bytes(bytes(range(256)) * 4)),  # torch: 'UnpicklingError ... weights_only'
        ("trainer_state.pt", lambda p: p.write_bytes(b"")),  # torch: EOFError
        ("trainer_state.pt", lambda p: torch.save({"format": 1}, p)),  # a torch file, not a trainer state
        ("model.safetensors", lambda p: p.write_bytes(b"\x00" * 100)),
        ("model.safetensors", lambda p: p.unlink()),
        ("model.safetensors", lambda p: save_file({"w": torch.zeros(3)}, str(p))),  # another model's tensors
    ):
        damage(last / name)
        result = in_process(train_args(gue_small, out, "--resume"))
        assert result.exit_code == 2, result.stderr
        assert result.stderr.strip().splitlines() == [f"hyena-glt: error: {last / name}: {message}"]
        (last / "trainer_state.pt").write_bytes(good_state)
        (last / "model.safetensors").write_bytes(good_weights)
    assert in_process(train_args(gue_small, out, "--resume")).exit_code == 0
    assert final(out) == uninterrupted[0]
