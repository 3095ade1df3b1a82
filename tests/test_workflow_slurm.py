"""workflows/slurm/ and workflows/scripts/: the batch scripts' shell, run without SLURM, and the shard merger."""

from __future__ import annotations

import gzip
import os
import random
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pysam
import pytest

REPO = Path(__file__).resolve().parent.parent
SLURM = REPO / "workflows" / "slurm"
SCRIPTS = REPO / "workflows" / "scripts"
VENV_BIN = Path(sys.executable).parent


def slurm_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(variables)
    return env


@pytest.mark.parametrize("script", sorted(p.name for p in SLURM.glob("*.sbatch")))
def test_sbatch_scripts_parse_and_ask_for_a_signal_and_threads(script):
    path = SLURM / script
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert "SLURM_CPUS_PER_TASK" in text or script == "merge_shards.sbatch"


def genome_tiling(fai: Path, width: int) -> list[str]:
    """BED lines tiling every contig of a real genome index in windows (contigs in reference order)."""
    lines = []
    for row in fai.read_text().splitlines():
        contig, length = row.split("\t")[:2]
        for start in range(0, int(length), width):
            end = min(start + width, int(length))
            lines.append(f"{contig}\t{start}\t{end}\t{contig}_{start}\t{(start // width) % 1001}\t+")
    return lines


def write_shards(lines: list[str], directory: Path, n: int, header: str | None = None) -> list[Path]:
    """Deals shuffled lines into shard_I_of_N.bed files, as array tasks would leave them."""
    shuffled = lines[:]
    random.Random(7).shuffle(shuffled)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = directory / f"shard_{i + 1}_of_{n}.bed"
        body = "".join(line + "\n" for line in shuffled[i::n])
        path.write_text((header + "\n" if header else "") + body)
        paths.append(path)
    return paths


def test_merge_shards_sorts_bgzips_and_indexes(tmp_path, data_dir):
    lines = (data_dir / "arabidopsis_chloroplast_genes.bed").read_text().splitlines()
    header = "#contig\tstart\tend\tname\tscore\tstrand"
    shards = write_shards(lines, tmp_path / "shards", 3, header=header)
    out = tmp_path / "merged.bed.gz"
    subprocess.run([sys.executable, str(SCRIPTS / "merge_shards.py"), "-o", str(out), *map(str, shards)], check=True)

    with gzip.open(out, "rt") as handle:
        merged = handle.read().splitlines()
    assert merged[0] == header and merged.count(header) == 1
    expected = sorted(lines, key=lambda l: (l.split("\t")[0], int(l.split("\t")[1]), int(l.split("\t")[2]),
                                            l.split("\t")[3:]))
    assert merged[1:] == expected
    with open(out, "rb") as raw:  # BGZF: gzip with the 'BC' extra field
        magic = raw.read(16)
    assert magic[:4] == b"\x1f\x8b\x08\x04" and magic[12:14] == b"BC"
    # The index answers region queries: psbA (1-based 383-1444) overlaps exactly the lines that say so.
    with pysam.TabixFile(str(out)) as tabix:
        hits = list(tabix.fetch("NC_000932.1", 500, 600))
    assert hits == [l for l in expected if int(l.split("\t")[1]) < 600 and int(l.split("\t")[2]) > 500]
    assert any("psbA" in h for h in hits)


def test_merge_shards_orders_contigs_like_the_reference_with_fai(tmp_path, data_dir):
    fai = data_dir / "ce.fa.fai"
    lines = genome_tiling(fai, 50_000)
    shards = write_shards(lines, tmp_path / "shards", 4)
    by_reference, by_name = tmp_path / "ref.bed.gz", tmp_path / "name.bed.gz"
    merge = [sys.executable, str(SCRIPTS / "merge_shards.py")]
    subprocess.run([*merge, "-o", str(by_reference), "--fai", str(fai), *map(str, shards)], check=True)
    subprocess.run([*merge, "-o", str(by_name), *map(str, shards)], check=True)
    with gzip.open(by_reference, "rt") as handle:
        assert handle.read().splitlines() == lines  # genome_tiling is already in reference order
    with gzip.open(by_name, "rt") as handle:
        contigs = list(dict.fromkeys(line.split("\t")[0] for line in handle))
    assert contigs == sorted(contigs) and "CHROMOSOME_MtDNA" in contigs[:5]


def test_merge_sbatch_refuses_a_missing_shard_and_writes_nothing(tmp_path, data_dir):
    lines = (data_dir / "arabidopsis_chloroplast_genes.bed").read_text().splitlines()
    shards = write_shards(lines, tmp_path / "scan", 3)
    shards[1].unlink()
    out = tmp_path / "scan.bed.gz"
    env = slurm_env(PYTHON=sys.executable, HYENA_GLT_WORKFLOWS=str(REPO / "workflows"))
    proc = subprocess.run(["bash", str(SLURM / "merge_shards.sbatch"), str(tmp_path / "scan"), str(out)],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "shard_2_of_3.bed is missing" in proc.stderr
    assert not out.exists() and not Path(str(out) + ".tbi").exists()

    write_shards(lines, tmp_path / "scan", 3)
    proc = subprocess.run(["bash", str(SLURM / "merge_shards.sbatch"), str(tmp_path / "scan"), str(out)],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(lines)} intervals from 3 shards" in proc.stderr
    assert Path(str(out) + ".tbi").exists()


def fake_slurm_bin(tmp_path: Path) -> Path:
    """`scontrol show hostnames` for a two-node allocation (the only SLURM tool the scripts query)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    scontrol = bindir / "scontrol"
    scontrol.write_text('#!/usr/bin/env bash\n[[ "$1 $2" == "show hostnames" ]] && printf "gpu017\\ngpu018\\n"\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IXUSR)
    return bindir


def dry_run_train(tmp_path: Path, outdir: Path, **variables: str) -> list[str]:
    env = slurm_env(DRY_RUN="1", HYENA_GLT=str(VENV_BIN / "hyena-glt"), **variables)
    env["PATH"] = f"{fake_slurm_bin(tmp_path)}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        ["bash", str(SLURM / "train_torchrun.sbatch"), str(outdir), "train.csv", "--task", "classification"],
        env=env, capture_output=True, text=True, check=True)
    return shlex.split(proc.stdout)


def test_train_script_one_node_is_standalone_and_splits_cpus_between_gpus(tmp_path):
    argv = dry_run_train(tmp_path, tmp_path / "model", SLURM_JOB_ID="4242", SLURM_NNODES="1",
                         SLURM_CPUS_PER_TASK="32", SLURM_GPUS_ON_NODE="4")
    assert argv[:3] == ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert argv[3] == str(VENV_BIN / "python") and argv[4:6] == ["-m", "torch.distributed.run"]
    assert "--standalone" in argv and "--nproc-per-node=4" in argv
    assert not any(a.startswith("--rdzv") for a in argv)
    assert "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1" in argv
    cli = argv[argv.index("hyena_glt_cli") - 1:]
    assert cli == ["-m", "hyena_glt_cli", "-@", "8", "train", "train.csv", "--task", "classification",
                   "-o", str(tmp_path / "model"), "--resume"]


def test_train_script_several_nodes_meet_at_a_rendezvous_on_the_first(tmp_path):
    argv = dry_run_train(tmp_path, tmp_path / "model", SLURM_JOB_ID="4243", SLURM_NNODES="2",
                         SLURM_JOB_NODELIST="gpu[017-018]", SLURM_CPUS_PER_TASK="16",
                         SLURM_GPUS_ON_NODE="2", MASTER_PORT="29611")
    assert "--standalone" not in argv
    assert {"--nnodes=2", "--rdzv-id=4243", "--rdzv-backend=c10d", "--rdzv-endpoint=gpu017:29611",
            "--nproc-per-node=2"} <= set(argv)
    assert argv[argv.index("-@") + 1] == "8"


def test_train_script_without_gpus_runs_one_worker_with_all_cpus(tmp_path):
    argv = dry_run_train(tmp_path, tmp_path / "model", SLURM_CPUS_PER_TASK="6")
    assert "--nproc-per-node=1" in argv and argv[argv.index("-@") + 1] == "6"


def launcher_bin(tmp_path: Path) -> Path:
    """`srun` that runs its command here (dropping srun's own options) after noting its pid, and `scontrol`
    that records a requeue: enough SLURM for the batch script's own logic to run for real."""
    bindir = tmp_path / "launcher"
    bindir.mkdir()
    srun = bindir / "srun"
    srun.write_text('#!/usr/bin/env bash\nwhile [[ $1 == --* ]]; do shift; done\n'
                    f'echo $$ > {tmp_path}/srun.pid\nexec "$@"\n')
    scontrol = bindir / "scontrol"
    scontrol.write_text(f'#!/usr/bin/env bash\necho "$@" >> {tmp_path}/scontrol.calls\n')
    for tool in (srun, scontrol):
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return bindir


@pytest.mark.slow
def test_train_script_checkpoints_on_usr1_requeues_and_resumes_to_the_end(tmp_path, data_dir):
    """The pre-emption path for real, on CPU: torchrun (1 worker) trains, USR1 arrives as SLURM would send it,
    the worker checkpoints, the script requeues the job; the requeued run resumes and finishes the model."""
    import json
    import signal
    import time

    outdir = tmp_path / "model"
    env = slurm_env(HYENA_GLT=str(VENV_BIN / "hyena-glt"), SLURM_JOB_ID="777", SLURM_CPUS_PER_TASK="1",
                    NPROC_PER_NODE="1", MASTER_PORT="29733")
    env["PATH"] = f"{launcher_bin(tmp_path)}{os.pathsep}{env['PATH']}"
    train = data_dir / "gue" / "mouse_2" / "train.csv"
    command = ["bash", str(SLURM / "train_torchrun.sbatch"), str(outdir), str(train),
               "--max-steps", "24", "--batch-size", "16", "--checkpoint-every", "2"]

    first = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    last_state = outdir / "checkpoints" / "last" / "trainer_state.pt"
    deadline = time.monotonic() + 300
    while not last_state.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last_state.exists(), "no checkpoint before the deadline"
    os.kill(int((tmp_path / "srun.pid").read_text()), signal.SIGUSR1)  # the job step: torchrun's agent
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-3000:]
    assert "received SIGUSR1" in stderr and "after writing a checkpoint; requeueing job 777" in stderr
    assert (tmp_path / "scontrol.calls").read_text() == "requeue 777\n"
    assert not (outdir / "hyena_glt.json").exists()
    interrupted_at = json.loads((outdir / "checkpoints" / "last" / "hyena_glt.json").read_text())

    env["SLURM_RESTART_COUNT"] = "1"
    second = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "finished" in second.stderr
    meta = json.loads((outdir / "hyena_glt.json").read_text())
    assert 0 < interrupted_at["training"]["steps"] < 24 and meta["training"]["steps"] == 24
    assert (tmp_path / "scontrol.calls").read_text() == "requeue 777\n"  # no second requeue


def test_train_script_does_not_requeue_a_run_that_fails_before_any_checkpoint(tmp_path, data_dir):
    env = slurm_env(HYENA_GLT=str(VENV_BIN / "hyena-glt"), SLURM_JOB_ID="778", SLURM_CPUS_PER_TASK="1",
                    NPROC_PER_NODE="1", MASTER_PORT="29734")
    env["PATH"] = f"{launcher_bin(tmp_path)}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(["bash", str(SLURM / "train_torchrun.sbatch"), str(tmp_path / "model"),
                           str(data_dir / "gue" / "mouse_2" / "train.csv"), "--task", "no-such-task"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "hyena-glt: error:" in proc.stderr and "failed with status" in proc.stderr
    assert not (tmp_path / "scontrol.calls").exists()


@pytest.mark.slow
def test_array_tasks_run_outside_slurm_and_their_shards_merge_into_the_full_scan(tmp_path, data_dir):
    """The array script's body for each task id (bash, no sbatch), then the merge script: the indexed BED is
    the sorted full scan. The 154 kb genome has 2,207 windows of the default model's 70 nt, three blocks of
    classify's sharding, so each of the three tasks gets work."""
    genome = data_dir / "arabidopsis_chloroplast.fa"
    hyena_glt = str(VENV_BIN / "hyena-glt")
    for task in (5, 6, 7):  # --array=5-7: shard = the task's position in the array
        env = slurm_env(HYENA_GLT=hyena_glt, SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_TASK_MIN="5",
                        SLURM_ARRAY_TASK_COUNT="3", SLURM_CPUS_PER_TASK="1")
        proc = subprocess.run(["bash", str(SLURM / "classify_array.sbatch"), str(genome), str(tmp_path / "scan")],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"shard {task - 4}/3" in proc.stderr and "with 1 threads" in proc.stderr
    shards = sorted((tmp_path / "scan").iterdir())
    assert [p.name for p in shards] == [f"shard_{i}_of_3.bed" for i in (1, 2, 3)]
    assert all(len(p.read_text().splitlines()) > 100 for p in shards)

    # A finished shard is not recomputed when the array is resubmitted.
    before = shards[0].stat().st_mtime_ns
    env = slurm_env(HYENA_GLT=hyena_glt, SLURM_ARRAY_TASK_ID="1", SLURM_ARRAY_TASK_COUNT="3")
    proc = subprocess.run(["bash", str(SLURM / "classify_array.sbatch"), str(genome), str(tmp_path / "scan")],
                          env=env, capture_output=True, text=True, check=True)
    assert "already done" in proc.stderr and shards[0].stat().st_mtime_ns == before

    # A lost shard rerun alone, `SHARDS=3 sbatch --array=2`: with SHARDS set, the index is the shard.
    kept = shards[1].read_text()
    shards[1].unlink()
    env = slurm_env(HYENA_GLT=hyena_glt, SHARDS="3", SLURM_ARRAY_TASK_ID="2", SLURM_ARRAY_TASK_MIN="2",
                    SLURM_ARRAY_TASK_COUNT="1", SLURM_CPUS_PER_TASK="1")
    proc = subprocess.run(["bash", str(SLURM / "classify_array.sbatch"), str(genome), str(tmp_path / "scan")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "shard 2/3" in proc.stderr, proc.stderr[-3000:]
    assert shards[1].read_text() == kept

    merged = tmp_path / "scan.bed.gz"
    env = slurm_env(PYTHON=sys.executable, HYENA_GLT_WORKFLOWS=str(REPO / "workflows"))
    subprocess.run(["bash", str(SLURM / "merge_shards.sbatch"), str(tmp_path / "scan"), str(merged), str(genome)],
                   env=env, check=True, capture_output=True)
    full = tmp_path / "full.bed"
    subprocess.run([hyena_glt, "-q", "classify", str(genome), "-o", str(full)], check=True)
    with gzip.open(merged, "rt") as handle:
        assert handle.read() == full.read_text()  # one contig: reference order = sorted order
    with pysam.TabixFile(str(merged)) as tabix:
        assert len(list(tabix.fetch("NC_000932.1", 0, 70))) == 1


@pytest.mark.parametrize("help_text, forwarded", [
    ("  --signals-to-handle SIGNALS\n  --shutdown-timeout SECONDS\n",
     ["--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1", "--shutdown-timeout=110"]),
    ("  --signals-to-handle SIGNALS\n", ["--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"]),  # torch 2.11
    ("  --nnodes NNODES\n", []),  # torchrun before 2.7: SLURM must signal every process
], ids=["current", "no-shutdown-timeout", "old"])
def test_train_script_passes_only_the_flags_this_torchrun_knows(tmp_path, help_text, forwarded):
    """torch 2.11's torchrun has --signals-to-handle but no --shutdown-timeout, and rejects the unknown flag
    (exit 2 before training): the script asks torchrun's --help which of them it takes."""
    fake = tmp_path / "venv"
    fake.mkdir()
    (fake / "hyena-glt").write_text("#!/usr/bin/env bash\nexit 0\n")
    (fake / "python").write_text(
        "#!/usr/bin/env bash\n"
        f'if [[ $* == *--help* ]]; then printf %s {shlex.quote(help_text)}; exit 0; fi\n'
        f'printf "%s\\n" "$@" > {tmp_path}/launched\n')
    for tool in fake.iterdir():
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    env = slurm_env(HYENA_GLT=str(fake / "hyena-glt"), SLURM_CPUS_PER_TASK="1", NPROC_PER_NODE="1")
    env["PATH"] = f"{launcher_bin(tmp_path)}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(["bash", str(SLURM / "train_torchrun.sbatch"), str(tmp_path / "model"), "train.csv"],
                          env=env, capture_output=True, text=True)
    launched = (tmp_path / "launched").read_text().splitlines()
    assert launched[:2] == ["-m", "torch.distributed.run"]
    assert [a for a in launched if a.startswith(("--signals-to-handle", "--shutdown-timeout"))] == forwarded
    assert ("cannot forward USR1" in proc.stderr) == (not forwarded)
