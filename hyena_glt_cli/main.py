"""`hyena-glt`: the Typer app, global options, and the mapping of errors to exit codes.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad input. Errors are one line on stderr,
``hyena-glt: error: FILE: record ID: problem``; a traceback only with ``-v``.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import traceback
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from hyena_glt import __version__
from hyena_glt.errors import HyenaGLTError, option_style

from .common import Settings, configure_logging, flag, set_settings


class _ErrorMappingGroup(TyperGroup):
    """Runs a subcommand and turns library errors into one-line messages and exit codes."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        """The top-level options' errors (``hyena-glt -@ abc ...``) are one line too."""
        try:
            return super().parse_args(ctx, args)
        except Exception as err:
            if type(err).__name__ == "NoArgsIsHelpError" or not hasattr(err, "format_message"):
                raise  # `hyena-glt` alone prints the help
            _report(ctx, f"{err.format_message()} (see '{ctx.command_path} -h')")
            ctx.exit(getattr(err, "exit_code", 2))

    def invoke(self, ctx: typer.Context):
        try:
            with option_style(flag):  # the library's messages name this tool's flags
                return super().invoke(ctx)
        except HyenaGLTError as err:
            _report(ctx, str(err), err.kind)
            ctx.exit(err.exit_code)
        except BrokenPipeError:
            # `hyena-glt ... | head -1`: the reader went away; leave quietly.
            _silence_stdout()
            ctx.exit(0)
        except KeyboardInterrupt:
            typer.echo("hyena-glt: interrupted", err=True)
            ctx.exit(130)
        except (typer.Exit, typer.Abort):
            raise
        except MemoryError:
            _report(ctx, "out of memory (try a smaller --batch-size or --window)")
            ctx.exit(1)
        except OSError as err:
            if err.errno not in _WRITE_ERRNOS:
                _report(ctx, f"internal error: {type(err).__name__}: {err} (run with -v for a traceback)")
                ctx.exit(1)
            # disk full, quota, I/O error: the system's problem, not a bug; say where when it is known
            _report(ctx, f"cannot write {err.filename or 'the output'}: {err.strerror}")
            _silence_stdout()  # the exit's flush of what is left would fail again
            ctx.exit(1)
        except AttributeError as err:
            if sys.stdout is not None and sys.stdin is not None:
                _report(ctx, f"internal error: {type(err).__name__}: {err} (run with -v for a traceback)")
                ctx.exit(1)
            # `hyena-glt ... >&-` or `<&-`: Python leaves sys.stdout/sys.stdin None
            _report(ctx, "stdout is closed: give -o FILE" if sys.stdout is None
                    else "stdin is closed: give an input file")
            ctx.exit(2)
        except Exception as err:  # noqa: BLE001 - the last line of defence for users
            if hasattr(err, "format_message") and hasattr(err, "exit_code"):
                # the command-line parser's own errors (missing option, bad value): one line too, with a hint
                where = getattr(getattr(err, "ctx", None), "command_path", None) or ctx.command_path
                message = err.format_message()
                option = message.split()[3].rstrip(".") if message.startswith("No such option: ") else None
                if option in _GLOBAL_OPTIONS:
                    message = (f"{option} is a global option: give it before the subcommand "
                               f"(hyena-glt {option} ... {ctx.invoked_subcommand or 'SUBCOMMAND'} ...)")
                _report(ctx, f"{message} (see '{where} -h')")
                ctx.exit(err.exit_code)
            from hyena_glt.runtime import OOM_MESSAGES

            if any(s in str(err).lower() for s in OOM_MESSAGES):
                _report(ctx, "out of memory (try a smaller --batch-size or --window)")
                ctx.exit(1)
            _report(ctx, f"internal error: {type(err).__name__}: {err} (run with -v for a traceback)")
            ctx.exit(1)


_GLOBAL_OPTIONS = {"-@", "--threads", "--seed", "-v", "--verbose", "-q", "--quiet"}
# write failures that are the system's, not the program's: disk full, over quota, I/O error
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG}


def _report(ctx: typer.Context, message: str, kind: str = "error") -> None:
    settings = ctx.obj if isinstance(ctx.obj, Settings) else None
    if settings is not None and settings.verbose:
        traceback.print_exc()
    message = " ".join(message.split())  # one line, always
    typer.echo(f"hyena-glt: {kind + ': ' if kind else ''}{message}", err=True)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


app = typer.Typer(
    name="hyena-glt",
    cls=_ErrorMappingGroup,
    help="Hyena-GLT: long-convolution genomic sequence models with BLT-style dynamic patching.\n\n"
    "Example: hyena-glt classify genome.fa -o promoters.bed",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hyena-glt {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="-v: also what the run chose (threads, device, precision, model, batches); -vv: debug. Tracebacks on error.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr; no progress bars.")] = False,
    threads: Annotated[
        Optional[int],
        typer.Option("--threads", "-@", help="CPU threads (default, or 0: $SLURM_CPUS_PER_TASK, else all cores)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (training, shuffles, sampling).")] = 0,
) -> None:
    from hyena_glt import runtime

    configure_logging(verbose=verbose, quiet=quiet)
    ctx.obj = Settings(verbose=verbose, quiet=quiet, threads=None, seed=seed)
    set_settings(ctx.obj)
    try:
        ctx.obj.threads = runtime.set_threads(threads)
    except HyenaGLTError as err:
        _report(ctx, str(err))
        ctx.exit(err.exit_code)
    logging.getLogger("hyena_glt").log(runtime.VERBOSE, "hyena-glt %s, %d CPU thread(s), seed %d", __version__,
                                       ctx.obj.threads, seed)
    runtime.seed_everything(seed)
    runtime.tune_allocator(huge_pages=ctx.invoked_subcommand in ("classify", "embed", "interpret", "benchmark"))


def _register() -> None:
    from .commands import benchmark, classify, embed, interpret, tokenize, train

    for module in (tokenize, train, embed, classify, interpret, benchmark):
        module.register(app)


_register()


def main() -> None:
    logging.captureWarnings(True)
    app(prog_name="hyena-glt")


if __name__ == "__main__":
    main()
