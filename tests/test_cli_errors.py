"""Global CLI behaviour: version, bad global options, unknown options, missing files, tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from hyena_glt import __version__
from hyena_glt_cli.main import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"hyena-glt {__version__}\n"


def test_negative_threads_is_a_usage_error(data_dir):
    result = runner.invoke(app, ["--threads", "-1", "tokenize", str(data_dir / "ex1.fa")])
    assert result.exit_code == 2
    assert result.stderr == "hyena-glt: error: --threads must be at least 1 (got -1)\n"
    assert result.stdout == ""


def test_unknown_option_exits_2(data_dir):
    result = runner.invoke(app, ["tokenize", str(data_dir / "ex1.fa"), "--no-such-option"])
    assert result.exit_code == 2 and "No such option" in result.stderr and result.stdout == ""


def test_missing_input_file_names_it(tmp_path):
    result = runner.invoke(app, ["tokenize", str(tmp_path / "missing.fa"), "-o", str(tmp_path / "out.tsv")])
    assert result.exit_code == 2
    assert result.stderr == f"hyena-glt: error: {tmp_path / 'missing.fa'}: no such file\n"
    assert not (tmp_path / "out.tsv").exists()


def test_traceback_only_with_verbose(tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">x\nAC!T\n")
    quiet = runner.invoke(app, ["tokenize", str(bad)])
    assert quiet.exit_code == 2 and "Traceback" not in quiet.stderr
    verbose = runner.invoke(app, ["-v", "tokenize", str(bad)])
    assert verbose.exit_code == 2 and "Traceback" in verbose.stderr
    assert verbose.stderr.rstrip().endswith("invalid character '!' at position 3 (not in the nucleotide alphabet)")


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "hyena_glt_cli", "--version"], capture_output=True, text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0 and result.stdout == f"hyena-glt {__version__}\n"
