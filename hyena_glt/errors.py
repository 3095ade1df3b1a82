"""Typed exceptions. The CLI turns each into one line on stderr and an exit code.

A message reads ``FILE: record ID: problem``; every part but the problem is optional.

Messages name an option through ``option(name, value)``: as a Python parameter (``window``, ``task='lm'``) in
the library, and as a flag (``--window``, ``--task lm``) while the CLI runs a command (``option_style``).
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Any, Callable, Iterator


def python_option(name: str, *value: Any) -> str:
    """``window``, ``task='lm'``: how the library names its parameters."""
    return f"{name}={value[0]!r}" if value else name


_option_style: ContextVar[Callable[..., str]] = ContextVar("hyena_glt_option_style", default=python_option)


def option(name: str, *value: Any) -> str:
    """The option ``name`` (set to ``value``, if given) as a message should name it: a Python parameter, or a
    flag of the command-line tool while it runs (see ``option_style``)."""
    return _option_style.get()(name, *value)


@contextlib.contextmanager
def option_style(style: Callable[..., str]) -> Iterator[None]:
    """Messages raised or logged inside name options with ``style(name, *value)`` (the CLI: flags)."""
    token = _option_style.set(style)
    try:
        yield
    finally:
        _option_style.reset(token)


class HyenaGLTError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with (1: runtime failure); ``kind`` is how it labels the
    message (``hyena-glt: error: ...``), empty for an outcome that is no error (a requested stop)."""

    exit_code = 1
    kind = "error"

    def __init__(self, problem: str, *, path: str | None = None, record: str | int | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.record = record
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.path is not None:
            parts.append("stdin" if self.path == "-" else self.path)
        if self.record is not None:
            rec = self.record
            parts.append(f"record {rec}" if isinstance(rec, int) else f"record {rec!r}")
        parts.append(self.problem)
        return ": ".join(parts)


class InputError(HyenaGLTError):
    """The user's input data is wrong: unreadable format, bad record, bad region, bad label file."""

    exit_code = 2


class UsageError(HyenaGLTError):
    """The options asked for something impossible (unknown device, bad shard spec, bad config)."""

    exit_code = 2


class ModelError(HyenaGLTError):
    """A model directory is missing, corrupt, unsafe, or does not fit the task."""

    exit_code = 2


class DeviceError(UsageError):
    """An explicitly requested device or precision is not available on this machine."""
