"""workflows/Snakefile end to end: `snakemake --cores 2` on the example data with the shipped config.

One run (about a minute on 2 cores) trains a tiny classifier, scans the genome as two shard jobs, merges them,
picks the top hits and interprets them; the tests below check what it left.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pysam
import pytest

pytest.importorskip("snakemake", reason="snakemake needs Python >= 3.11 (pip install -e '.[test]')")
import yaml  # noqa: E402 (installed with snakemake)

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "workflows" / "Snakefile"
CONFIG = yaml.safe_load((REPO / "workflows" / "config.yaml").read_text())
HYENA_GLT = str(Path(sys.executable).parent / "hyena-glt")

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
         "--config", f"hyena_glt={HYENA_GLT}", *args],
        capture_output=True, text=True, env=env, timeout=600,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """The workflow's working directory after a complete run, laid out like the repository root."""
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "example_data").symlink_to(REPO / "example_data")
    proc = snakemake(workdir, "--cores", "2")
    if proc.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in sorted(workdir.glob("results/logs/*.log")))
        pytest.fail(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-4000:]}\n{logs}")
    return workdir


def bed_rows(path: Path) -> tuple[list[str], list[str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        lines = handle.read().splitlines()
    return [l for l in lines if l.startswith("#")], [l for l in lines if not l.startswith("#")]


def test_every_target_is_built_and_a_rerun_has_nothing_to_do(run):
    out = run / CONFIG["outdir"]
    for target in ("scan.bed.gz", "scan.bed.gz.tbi", "top_hits.bed", "top_hits.attributions.bedgraph",
                   "model/hyena_glt.json", "model/model.safetensors", "model/config.json"):
        assert (out / target).is_file(), target
    shards = CONFIG["scan"]["shards"]
    assert sorted(p.name for p in (out / "shards").iterdir()) == [f"shard_{i}_of_{shards}.bed"
                                                                  for i in range(1, shards + 1)]
    dry = snakemake(run, "-n", "--cores", "2")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr


def test_the_model_was_trained_and_tested_on_the_configured_data(run):
    meta = json.loads((run / CONFIG["outdir"] / "model" / "hyena_glt.json").read_text())
    assert meta["task"] == "classification" and meta["class_names"] == ["0", "1"]
    assert meta["window"] == 101  # the GUE mouse sequences' length
    assert 0.0 <= meta["metrics"]["test"]["accuracy"] <= 1.0
    assert "mouse_2/train.csv" in meta["training"]["command"]


def test_merged_shards_equal_one_full_scan(run):
    out = run / CONFIG["outdir"]
    full = run / "full.bed"
    subprocess.run([HYENA_GLT, "-q", "classify", CONFIG["scan"]["genome"], "--model", str(out / "model"),
                    "-o", str(full)], cwd=run, check=True)
    merged_header, merged = bed_rows(out / "scan.bed.gz")
    full_header, full_rows = bed_rows(full)
    assert merged_header == full_header and len(merged_header) == 1
    assert merged == full_rows and len(merged) > 100
    # Sorted like `sort -k1,1 -k2,2n`, and tabix finds the windows over a position.
    keys = [(r.split("\t")[0], int(r.split("\t")[1])) for r in merged]
    assert keys == sorted(keys)
    with pysam.TabixFile(str(out / "scan.bed.gz")) as tabix:
        contig = merged[0].split("\t")[0]
        hits = list(tabix.fetch(contig, 1000, 1001))
    assert hits == [r for r in merged if r.split("\t")[0] == contig
                    and int(r.split("\t")[1]) <= 1000 < int(r.split("\t")[2])]


def test_top_hits_are_the_best_scoring_windows(run):
    out = run / CONFIG["outdir"]
    header, rows = bed_rows(out / "scan.bed.gz")
    columns = header[0].lstrip("#").split("\t")
    label = CONFIG["top_hits"]["label"]
    p = columns.index(f"p_{label}")
    best = sorted(rows, key=lambda r: -float(r.split("\t")[p]))[: CONFIG["top_hits"]["count"]]
    _, top = bed_rows(out / "top_hits.bed")
    assert len(top) == CONFIG["top_hits"]["count"]
    assert sorted(top) == sorted("\t".join(r.split("\t")[:6]) for r in best)


def test_the_attribution_track_covers_each_top_hit_base_by_base(run):
    out = run / CONFIG["outdir"]
    _, top = bed_rows(out / "top_hits.bed")
    lines = (out / "top_hits.attributions.bedgraph").read_text().splitlines()
    data = [l.split("\t") for l in lines if not l.startswith(("track", "#", "browser"))]
    covered = {(f[0], pos) for f in data for pos in range(int(f[1]), int(f[2]))}
    wanted = {(f.split("\t")[0], pos) for f in top for pos in range(int(f.split("\t")[1]), int(f.split("\t")[2]))}
    assert covered == wanted
    assert all(float(f[3]) == float(f[3]) for f in data)  # numbers, no NaN
