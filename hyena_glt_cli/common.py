"""Pieces every subcommand shares: settings, logging, option types, output format choice, progress."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Iterable, Iterator, Optional, TypeVar

import typer

from hyena_glt.errors import UsageError

T = TypeVar("T")
log = logging.getLogger("hyena_glt")


@dataclass
class Settings:
    verbose: int = 0
    quiet: bool = False
    threads: Optional[int] = None
    seed: int = 0


_current = Settings()


def settings() -> Settings:
    """The global options of the running command (defaults when called outside the CLI)."""
    return _current


def set_settings(value: Settings) -> None:
    global _current
    _current = value


# library parameters whose flag is not `--` and their name with hyphens
_FLAGS = {"labels": "--label", "label_columns": "--label-column", "regions": "--region", "regions_bed": "--regions",
          "stats_path": "--stats", "output_dir": "-o", "extra_metadata": "--meta",
          "n_baselines": "--baselines"}


def flag(name: str, *value) -> str:
    """A library parameter as the flag that sets it: ``flag('max_n')`` is ``--max-n``, ``flag('task', 'lm')``
    ``--task lm``, ``flag('rc_average', False)`` ``--no-rc-average``. While a command runs, the library's
    messages name options so (``hyena_glt.errors.option_style``)."""
    option = _FLAGS.get(name) or "--" + name.replace("_", "-")
    if not value or value[0] is True:
        return option
    return f"--no-{option[2:]}" if value[0] is False else f"{option} {value[0]}"


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Logs go to stderr only, prefixed `hyena-glt:`; stdout carries data."""
    from hyena_glt.runtime import VERBOSE

    level = logging.ERROR if quiet else [logging.INFO, VERBOSE, logging.DEBUG][min(verbose, 2)]
    logger = logging.getLogger("hyena_glt")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("hyena-glt: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def progress(items: Iterable[T], description: str, total: Optional[int] = None) -> Iterator[T]:
    """A rich progress bar on stderr, shown only when stderr is a terminal and not --quiet."""
    if settings().quiet or not sys.stderr.isatty():
        yield from items
        return
    from rich.progress import Progress
    from rich.console import Console

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def output_format(output: str, fmt: Optional[str], allowed: tuple[str, ...], default: str,
                  has_format_option: bool = True) -> str:
    """The output format: --format if given, else from the output's extension, else ``default``.

    ``.gz`` after the extension is allowed (``.bed.gz``); the returned name has no ``.gz``.
    """
    suffixes = [s.lower().lstrip(".") for s in Path(output).suffixes] if output not in ("-", "") else []
    gzipped = bool(suffixes) and suffixes[-1] == "gz"
    if gzipped:
        suffixes = suffixes[:-1]
    implied = suffixes[-1] if suffixes else None
    implied = "bedgraph" if implied == "bg" and "bedgraph" in allowed else implied
    if fmt:
        fmt = fmt.lower().lstrip(".")
        if fmt not in allowed:
            raise UsageError(f"unknown --format '{fmt}' (use one of: {', '.join(allowed)})")
        if implied in allowed and implied != fmt:  # allowed, as samtools -O, but rarely what was meant
            log.warning("writing %s to %s: --format %s overrides its extension", fmt.upper(), output, fmt)
        return _not_gzipped_npz(fmt, gzipped, output)
    if output in ("-", "", os.devnull):
        return default
    if implied in allowed:
        return _not_gzipped_npz(implied, gzipped, output)
    raise UsageError(
        f"cannot tell the output format of '{output}' from its extension (use one of: "
        f"{', '.join('.' + a + ('.gz' if a == 'vcf' else '') for a in allowed)}{', or --format' if has_format_option else ''})"
    )


def _not_gzipped_npz(fmt: str, gzipped: bool, output: str) -> str:
    if fmt == "npz" and gzipped:  # np.savez writes a zip archive: a .gz name would make zcat fail on it
        raise UsageError(f"{output}: .npz output is a zip archive, not gzip: name it {output[:-3]}")
    return fmt


def given(ctx, *names: str) -> list[str]:
    """The flags among ``names`` (parameter names) that the command line gave, as the user typed them."""
    return [flag(name) for name in names if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"]


def check_files(inputs: Iterable[object], outputs: Iterable[object] = (), folders: Iterable[object] = ()) -> None:
    """Checks made before any work, so a mistake costs no compute and leaves nothing behind: every output
    file can be written (not a folder; its folder exists and is writable), every output folder can be made,
    no output is also an input (it would be overwritten), and stdin ('-') is read at most once. None entries
    (options not given) are skipped."""
    from hyena_glt.io.writers import check_destination

    ins = [str(p) for p in inputs if p is not None]
    if ins.count("-") > 1:
        raise UsageError("'-' (stdin) is given more than once")
    existing = [p for p in ins if p != "-" and os.path.isfile(p)]
    # Two outputs on one path: the second written would silently replace the first.
    written = [str(p) for p in [*outputs, *folders] if p is not None and str(p) != "-"]
    seen: dict[str, str] = {}
    for out in written:
        real = os.path.realpath(out)
        if real in seen:
            both = seen[real] if seen[real] == out else f"{seen[real]} and {out}"
            raise UsageError(f"two outputs are the same file ({both}): give each output its own path")
        seen[real] = out
    for out in (str(p) for p in outputs if p is not None):
        if out == "-":
            continue
        check_destination(out)
        if os.path.isfile(out) and any(os.path.samefile(out, p) for p in existing):
            raise UsageError(f"output {out} is also an input: it would be overwritten")
    for folder in (Path(str(p)) for p in folders if p is not None):
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"cannot write to folder {folder}: a file of that name exists")
        parent = next((a for a in folder.absolute().parents if a.exists()), None)
        if parent is not None and not parent.is_dir():
            raise UsageError(f"cannot make folder {folder}: {parent} is a file")


def refuse_binary_to_terminal(output: str, what: str = ".npz") -> None:
    """Binary output to stdout is for pipes and redirections, never for a terminal (as bgzip does)."""
    if output == "-" and sys.stdout.isatty():
        raise UsageError(f"refusing to write binary {what} to a terminal: give -o FILE{what} or redirect stdout")


def parse_shard(spec: Optional[str]) -> tuple[int, int]:
    """``I/N`` (1-based, as SLURM array indices usually are) → (I-1, N); None → (0, 1)."""
    if spec is None:
        return 0, 1
    try:
        i_text, n_text = spec.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise UsageError(f"--shard must look like I/N, e.g. 1/4 (got '{spec}')") from None
    if n < 1 or not 1 <= i <= n:
        raise UsageError(f"--shard {spec}: need 1 <= I <= N")
    return i - 1, n


# Option types shared by subcommands, so every command spells them the same way.
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="Output file; '-' for stdout.")]
FormatOpt = Annotated[Optional[str], typer.Option("--format", help="Output format (default: from the -o extension).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="auto, fp32, bf16 or fp16.")]
RegionOpt = Annotated[
    Optional[list[str]],
    typer.Option("--region", "-r", help="Region of an indexed FASTA (or the reads of an indexed BAM/CRAM overlapping it), 1-based inclusive: chr1:1,000-2,000 (repeatable)."),
]
RegionsOpt = Annotated[Optional[Path], typer.Option("--regions", help="BED file of regions (0-based, half-open).")]
ReferenceOpt = Annotated[Optional[Path], typer.Option("--reference", help="Reference FASTA (for CRAM input).")]
ShardOpt = Annotated[Optional[str], typer.Option("--shard", help="Process part I of N of the input (I/N, 1-based) for array jobs.")]
# a folder, or the name of a bundled model (a string: "./x" must stay a path, not become the name "x")
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", metavar="<path|name>",
                                                 help="Model folder, or a bundled model's name (default: the bundled model).")]
InputsArg = Annotated[list[str], typer.Argument(metavar="INPUT", help="Input files (FASTA/FASTQ, gz/bgzf, SAM/BAM/CRAM, CSV/TSV/Parquet with a sequence column, plain sequence one per line) or folders of them; '-' for stdin.")]
