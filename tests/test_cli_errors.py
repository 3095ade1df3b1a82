"""Global CLI behaviour: version, bad global options, unknown options, missing files, tracebacks."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
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
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == "hyena-glt: error: No such option: --no-such-option (see 'hyena-glt tokenize -h')\n"


def test_parser_errors_are_one_line(tmp_path):
    missing = runner.invoke(app, ["train", "x.csv"])
    assert missing.exit_code == 2
    assert missing.stderr == "hyena-glt: error: Missing option '--output' / '-o'. (see 'hyena-glt train -h')\n"
    bad = runner.invoke(app, ["train", "x.csv", "-o", str(tmp_path / "m"), "--batch-size", "abc"])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("hyena-glt: error: Invalid value for '--batch-size'")


def test_top_level_option_errors_are_one_line(data_dir):
    for args, problem in ((["-@", "abc"], "Invalid value for '--threads' / '-@'"), (["--seed", "x"], "Invalid value for '--seed'"),
                          (["--bogus"], "No such option: --bogus")):
        result = runner.invoke(app, [*args, "tokenize", str(data_dir / "ex1.fa")])
        assert result.exit_code == 2 and result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"hyena-glt: error: {problem}") and result.stderr.endswith("(see 'hyena-glt -h')\n")
    alone = runner.invoke(app, [])  # no subcommand: the help, as before
    assert "Usage: hyena-glt" in alone.stdout + alone.stderr


def test_verbose_says_what_was_chosen(data_dir, tmp_path):
    """-v adds what the run chose (threads, device and precision, the model, batch sizes) to the default logs;
    -q leaves errors only."""
    args = ["classify", str(data_dir / "MT-human.fa"), "--region", "MT_human:1-140", "-o", str(tmp_path / "x.tsv")]
    default = runner.invoke(app, ["-@", "1", *args])
    verbose = runner.invoke(app, ["-@", "1", "-v", *args])
    quiet = runner.invoke(app, ["-@", "1", "-q", "-v", *args])
    assert default.exit_code == verbose.exit_code == quiet.exit_code == 0, verbose.stderr
    extra = [line for line in verbose.stderr.splitlines() if line not in default.stderr.splitlines()]
    assert extra[0] == f"hyena-glt: hyena-glt {__version__}, 1 CPU thread(s), seed 0"
    assert "hyena-glt: device cpu, precision fp32 (auto)" in extra
    assert any(line.startswith("hyena-glt: model: classification, 202,242 parameters, window 70") for line in extra)
    assert quiet.stderr == ""


def run_bad(*args: str, input: str | None = None) -> str:
    """Run a command that must fail with exit 2, one line on stderr and nothing on stdout; return the line."""
    result = runner.invoke(app, ["-@", "1", *args], input=input)
    assert result.exit_code == 2, result.stderr
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    return result.stderr.removeprefix("hyena-glt: error: ").rstrip("\n")


def test_outputs_are_checked_before_any_work(tmp_path, data_dir):
    fasta = tmp_path / "x.tsv"
    fasta.write_text((data_dir / "ex1.fa").read_text())
    assert run_bad("classify", str(fasta), "-o", str(fasta)) == f"output {fasta} is also an input: it would be overwritten"
    assert fasta.read_text() == (data_dir / "ex1.fa").read_text()
    assert run_bad("tokenize", str(data_dir / "ex1.fa"), "-o", str(tmp_path)) == f"cannot write {tmp_path}: it is a folder"
    assert run_bad("embed", str(data_dir / "ex1.fa"), "-o", str(tmp_path / "no" / "e.npz")) == \
        f"cannot write {tmp_path / 'no' / 'e.npz'}: folder {tmp_path / 'no'} does not exist"
    assert run_bad("classify", "-", "-", input=">a\nACGT\n") == "'-' (stdin) is given more than once"
    (tmp_path / "file").write_text("")
    assert run_bad("train", str(data_dir / "gue" / "mouse_2" / "dev.csv"), "-o", str(tmp_path / "file" / "m")) == \
        f"cannot make folder {tmp_path / 'file' / 'm'}: {tmp_path / 'file'} is a file"
    assert run_bad("interpret", str(data_dir / "ex1.fa"), "--plot", str(tmp_path / "file"), "-o", str(tmp_path / "a.npz")) \
        == f"cannot write to folder {tmp_path / 'file'}: a file of that name exists"
    assert run_bad("tokenize", str(data_dir / "ex1.fa"), "--patcher", "static:4", "-o", str(tmp_path / "p.bed"),
                   "--plot", str(tmp_path / "p.txt")).startswith(f"cannot tell the output format of '{tmp_path / 'p.txt'}'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "x.tsv"]  # nothing written, no temporary files


def test_benchmark_options_are_checked_before_the_sweep(tmp_path):
    assert run_bad("benchmark", "--timeout", "0") == "--timeout must be positive (got 0.0)"
    assert run_bad("benchmark", "--quick", "--lengths", "1k") == "--quick sets its own sweep: drop --lengths (or drop --quick)"
    assert run_bad("benchmark", "--task", "foo").startswith("unknown --task 'foo' (use one of: classification,")
    assert run_bad("benchmark", "-o", str(tmp_path / "b.xlsx")).startswith("cannot tell the output format")
    assert run_bad("benchmark", "--lengths", "64", "-o", str(tmp_path / "b.tsv"), "--plot", str(tmp_path / "no" / "p.png")) \
        == f"cannot write {tmp_path / 'no' / 'p.png'}: folder {tmp_path / 'no'} does not exist"
    assert list(tmp_path.iterdir()) == []


def test_bad_numbers_and_files(tmp_path, data_dir):
    csv = str(data_dir / "gue" / "mouse_2" / "dev.csv")
    assert run_bad("train", csv, "-o", str(tmp_path / "m"), "--lr", "nan") == "--lr must be a positive number (got nan)"
    assert run_bad("train", csv, "-o", str(tmp_path / "m"), "--warmup", "-1") == "--warmup must be a number >= 0 (got -1.0)"
    binary = tmp_path / "regions.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    assert run_bad("classify", str(data_dir / "MT-human.fa"), "--regions", str(binary)) == \
        f"{binary}: line 1: not text (is this really a BED regions file?)"
    assert run_bad("classify", str(data_dir / "MT-human.fa"), "--regions", str(tmp_path)) == \
        f"{tmp_path}: is a folder, not a BED file (BED regions)"
    assert not (tmp_path / "m").exists()


def test_window_options_that_would_be_ignored_are_refused(tmp_path, data_dir):
    """An explicit --window/--stride that an output cannot honour is an error, as in tokenize, not ignored."""
    reads, fasta = str(data_dir / "ce_reads.fastq"), str(data_dir / "MT-human.fa")
    assert run_bad("classify", reads, "--window", "50", "-o", str(tmp_path / "w.tsv")) == (
        "--window/--stride apply to window scans (BED output, -o out.bed); TSV output has one row per record, read whole")
    assert run_bad("embed", fasta, "--window", "0", "--stride", "10", "-o", str(tmp_path / "e.npz")) == \
        "--stride needs windows; --window 0 embeds whole records"
    assert run_bad("interpret", fasta, "--stride", "10", "-o", str(tmp_path / "i.tsv")) == "--stride needs --window"
    assert list(tmp_path.iterdir()) == []


def test_global_option_after_the_subcommand_and_streams_that_cannot_be(tmp_path, data_dir):
    fasta = str(data_dir / "MT-human.fa")
    assert run_bad("classify", "-@", "2", fasta) == (
        "-@ is a global option: give it before the subcommand (hyena-glt -@ ... classify ...) (see 'hyena-glt classify -h')")
    assert run_bad("train", str(data_dir / "gue" / "mouse_2" / "dev.csv"), "-o", "-") == \
        "-o -: a trained model is a folder, not a stream (give -o FOLDER)"
    assert run_bad("tokenize", fasta, "--patcher", "static:4", "--stats", "-") == \
        "--stats - and the BED would share stdout: write one of them to a file"
    assert not Path("-").exists()


def test_stale_fasta_index_is_named(tmp_path, data_dir):
    fasta = tmp_path / "ex1.fa"
    fasta.write_text((data_dir / "ex1.fa").read_text().replace("CACTAGTGG", "CACTAGTGGAAAAAAAAAAAAAAA", 1))
    (tmp_path / "ex1.fa.fai").write_text((data_dir / "ex1.fa.fai").read_text())  # the index of the old file
    message = run_bad("tokenize", str(fasta), "-r", "seq2:1-100")
    assert message == (f"{fasta}: the .fai index does not match the FASTA (was the file changed after indexing, "
                       f"or is it another file's? rebuild it: samtools faidx {fasta})")


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


def test_binary_garbage_is_described_readably_by_every_subcommand(tmp_path):
    # Not 40 raw bytes (U+FFFD characters and \x0e escapes): the first bytes in hex, on one line.
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes([0x73, 0xF3, 0xB1, 0x91, 0x31, 0xF3, 0x0E, 0x81, 0x9D, 0x0A, 0xFF]) * 50)
    expected = (f"{garbage}: unknown format (not FASTA, FASTQ, SAM, BAM, CRAM, a CSV/TSV table with a 'sequence' "
                "column, or plain sequence, one per line; binary data: 73 f3 b1 91 31 f3 0e 81 ...)")
    for command, output in (("tokenize", "x.tsv"), ("classify", "x.tsv"), ("embed", "x.npz"), ("interpret", "x.tsv")):
        assert run_bad(command, str(garbage), "-o", str(tmp_path / output)) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.bin"]


def test_malformed_sam_is_not_called_truncated(tmp_path):
    bad = tmp_path / "bad.sam"
    bad.write_text("@SQ\tSN:x\tLN:10\nbad\tline\n")
    assert run_bad("classify", str(bad), "-o", str(tmp_path / "bs.tsv")) == \
        f"{bad}: malformed SAM record at line 2 (after record 0)"
    assert not (tmp_path / "bs.tsv").exists()


def test_two_outputs_on_one_path_are_refused(tmp_path, data_dir):
    # tokenize -o and --stats on one file: the stats would silently replace the patch BED
    out = tmp_path / "q.bed"
    for extra in (["--stats", str(out)], ["--stats", str(tmp_path / "." / "q.bed")]):
        message = run_bad("tokenize", str(data_dir / "ex1.fa"), "--patcher", "static:4", "-o", str(out), *extra)
        assert message == f"two outputs are the same file ({out}): give each output its own path"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("stdout", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "hyena_glt_cli", "-@", "1", *args], stderr=subprocess.PIPE, text=True,
                          cwd=Path(__file__).resolve().parent.parent, **kwargs)


def test_a_full_disk_or_closed_stdout_is_one_line(data_dir):
    fasta = str(data_dir / "ex1.fa")
    if Path("/dev/full").exists():
        with open("/dev/full", "w") as full:
            result = _cli("tokenize", fasta, stdout=full)
        assert result.returncode == 1
        assert result.stderr == "hyena-glt: error: cannot write the output: No space left on device\n"
    closed = _cli("tokenize", fasta, stdout=subprocess.DEVNULL, close_fds=True,
                  preexec_fn=lambda: __import__("os").close(1))
    assert closed.returncode == 2 and closed.stderr == "hyena-glt: error: stdout is closed: give -o FILE\n"


def test_format_against_the_extension_is_warned_and_dev_null_is_an_output(tmp_path, data_dir):
    out = tmp_path / "x.bed.gz"
    result = runner.invoke(app, ["-@", "1", "tokenize", str(data_dir / "ex1.fa"), "-o", str(out), "--format", "tsv"])
    assert result.exit_code == 0
    assert f"hyena-glt: writing TSV to {out}: --format tsv overrides its extension\n" in result.stderr
    assert gzip.open(out, "rt").read().startswith("id\t")
    devnull = runner.invoke(app, ["-@", "1", "embed", str(data_dir / "ex1.fa"), "--window", "70", "-o", "/dev/null"])
    assert devnull.exit_code == 0 and "to /dev/null" in devnull.stderr and Path("/dev/null").is_char_device()


def test_an_unfinished_training_run_points_at_its_checkpoint(tmp_path, data_dir):
    import shutil

    from hyena_glt.pretrained import default_model_dir

    run = tmp_path / "run"
    shutil.copytree(default_model_dir(), run / "checkpoints" / "last")
    message = run_bad("classify", str(data_dir / "ex1.fa"), "-m", str(run), "-o", str(tmp_path / "x.tsv"))
    assert message == (f"{run}: no finished model here (the training run stopped early?): resume it "
                       f"(--resume with -o {run}), or use its last checkpoint, --model {run / 'checkpoints' / 'last'}")
    # the library names its own parameters
    from hyena_glt.errors import ModelError
    from hyena_glt.inference import load_model

    with pytest.raises(ModelError) as err:
        load_model(run)
    assert str(err.value).endswith(f"resume it (resume=True with output_dir='{run}'), or use its last checkpoint, "
                                   f"model='{run / 'checkpoints' / 'last'}'")


def test_library_messages_name_parameters_and_the_cli_names_its_flags(data_dir, tmp_path):
    from hyena_glt.errors import UsageError, option, option_style
    from hyena_glt.inference import Predictor
    from hyena_glt_cli.common import flag

    assert [option("max_n"), option("task", "lm"), option("rc_average", False)] == \
        ["max_n", "task='lm'", "rc_average=False"]
    with pytest.raises(RuntimeError), option_style(flag):
        assert [option("max_n"), option("task", "lm"), option("rc_average", False), option("labels"),
                option("resume", True)] == ["--max-n", "--task lm", "--no-rc-average", "--label", "--resume"]
        raise RuntimeError
    assert option("max_n") == "max_n"  # the style ends with its block, even on an error
    with pytest.raises(UsageError, match=r"^window must be at least 1 \(got 0\)$"):
        Predictor.from_pretrained(None, window=0)
    assert run_bad("classify", "--window", "0", str(data_dir / "ex1.fa")) == "--window must be at least 1 (got 0)"
    # the same Python process, after the CLI ran: the library's style again
    with pytest.raises(UsageError, match=r"^stride must be at least 1 \(got 0\)$"):
        Predictor.from_pretrained(None, stride=0)


def test_every_option_a_library_message_names_is_a_flag_of_the_cli():
    """A message that tells a user to give `--lables` would be worse than none: every parameter name the
    library passes to `option` must come out as a flag some command has."""
    import re

    import typer

    import hyena_glt
    from hyena_glt_cli.common import flag

    group = typer.main.get_command(app)
    flags = {opt for param in group.params for opt in param.opts + param.secondary_opts}
    for command in group.commands.values():
        flags |= {opt for param in command.params for opt in param.opts + param.secondary_opts}
    names = set()
    for path in Path(hyena_glt.__file__).parent.rglob("*.py"):
        text = path.read_text()
        names |= set(re.findall(r"""\boption\(["']([a-z_]+)["']""", text))
        names |= set(re.findall(r"""(?:named_by=|_check_class_names\([^,]+, )["']([a-z_]+)["']""", text))
    # TrainOptions.check names these through a loop variable
    names |= {"epochs", "batch_size", "grad_accum", "warmup", "weight_decay", "grad_clip", "curriculum_start",
              "eval_every", "checkpoint_every", "patience", "entropy_model", "target_patch_length", "model"}
    assert len(names) > 50
    assert sorted(name for name in names if flag(name) not in flags) == []
    assert flag("rc_average", False) in flags and flag("rc_augment", True) in flags


@pytest.mark.parametrize("args, problem", [
    (["interpret", "{fq}", "--steps", "7", "-o", "{out}.tsv"],
     "--steps does not apply to --method saliency (only to integrated-gradients)"),
    (["interpret", "{fq}", "--method", "ism", "--baseline", "zeros", "-o", "{out}.tsv"],
     "--baseline does not apply to --method ism (only to integrated-gradients, deeplift, deepshap)"),
    (["interpret", "{fq}", "--method", "integrated-gradients", "--baselines", "3", "-o", "{out}.tsv"],
     "--baselines averages shuffled baselines: it needs --baseline shuffle (got uniform)"),
    (["interpret", "{fq}", "--max-indel", "5", "-o", "{out}.tsv"], "--max-indel only applies with --variants"),
    (["embed", "{fq}", "-o", "{out}.npz.gz"], "{out}.npz.gz: .npz output is a zip archive, not gzip: name it {out}.npz"),
    (["tokenize", "{fq}", "-t", "kmer:3", "--patcher", "entropy", "--entropy-model", "dna-lm-tiny", "-o", "{out}.bed"],
     "--patcher entropy reads units with its entropy model's tokenizer ('nucleotide'): drop -t kmer:3"),
    (["train", "{fq}", "--task", "lm", "--set", "d_model=64", "--d-model", "32", "-o", "{out}"],
     "--set d_model=64 and --d-model 32 both set d_model: give one"),
])
def test_options_the_run_would_ignore_or_misname_are_refused(data_dir, tmp_path, args, problem):
    """An option that does not apply (or an output name that would mislabel the file) is an error, not
    silently ignored."""
    out = str(tmp_path / "out")
    fill = {"fq": str(data_dir / "lambda_reads_1.fq"), "out": out}
    result = runner.invoke(app, ["-@", "1", *(a.format(**fill) for a in args)])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.splitlines()[-1] == "hyena-glt: error: " + problem.format(**fill)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["train", "classify"])
def test_a_table_naming_a_column_twice_is_refused(tmp_path, command):
    table = tmp_path / "t.csv"
    table.write_text("sequence,label,Label\nACGTACGT,a,x\nGGGGCCCC,b,y\n")
    out = tmp_path / ("m" if command == "train" else "p.tsv")
    result = runner.invoke(app, ["-@", "1", command, str(table), "-o", str(out)])
    assert result.exit_code == 2
    assert result.stderr == f"hyena-glt: error: {table}: line 1: column 'Label' appears twice in the header\n"
    assert not out.exists()
