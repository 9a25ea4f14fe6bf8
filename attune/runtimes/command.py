"""Command: the command line and environment of an action's process, for each runtime."""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from attune.errors import RuntimeLaunchError
from attune.runtimes.invocation import Invocation
from attune.store.models import RunnerType


@dataclass(frozen=True)
class Command:
    """The argv and the complete (cleaned) environment of an action's process."""

    argv: tuple[str, ...]
    env: Mapping[str, str]


def command(invocation: Invocation, parameter_file: Path | None) -> Command:
    """The command for ``invocation``; raises :class:`RuntimeLaunchError` naming the file."""
    entry_point = invocation.entry_point
    if not invocation.pack_dir.is_dir():
        raise RuntimeLaunchError(f"pack directory {invocation.pack_dir} does not exist")
    if not entry_point.is_file():
        raise RuntimeLaunchError(f"entry point {entry_point} does not exist or is not a file")
    env = dict(invocation.base_env)
    env.update(
        ATTUNE_EXECUTION_ID=str(invocation.execution_id),
        ATTUNE_ACTION=invocation.action_ref,
        ATTUNE_PACK=invocation.pack_ref,
        ATTUNE_PARAMETER_DELIVERY=str(invocation.parameter_delivery),
        ATTUNE_PARAMETER_FORMAT=str(invocation.parameter_format),
    )
    if parameter_file is not None:
        env["ATTUNE_PARAMETER_FILE"] = str(parameter_file)
    runtime = _RUNTIMES.get(invocation.runtime)
    if runtime is None:
        raise RuntimeLaunchError(f"unknown runtime {invocation.runtime!r} for {entry_point}")
    argv = runtime(invocation, env)
    return Command(argv, env)


def _shell(invocation: Invocation, env: dict[str, str]) -> tuple[str, ...]:
    script = str(invocation.entry_point)
    return (*shell_for(script, env.get("PATH", os.defpath)), script)


POSIX_SH = "/bin/sh"
_POSIX_SHEBANGS = (("/bin/sh",), ("/usr/bin/sh",), ("/usr/bin/env", "sh"))


def shell_for(script: str, path: str) -> tuple[str, ...]:
    """The shell (and its options) that runs the shell action ``script``: POSIX sh when the
    script's first line asks for it (``#!/bin/sh``, ``#!/usr/bin/env sh``, options kept), else
    bash found on ``path``. On Debian sh is dash, which starts in about half bash's time."""
    stat = os.stat(script)
    return _shell_named(script, stat.st_mtime_ns, stat.st_size, path)


@functools.lru_cache(maxsize=256)
def _shell_named(script: str, _mtime_ns: int, _size: int, path: str) -> tuple[str, ...]:
    """:func:`shell_for` of one version of ``script`` (its mtime and size key the cache)."""
    with open(script, "rb") as file:
        first = file.readline(256)
    words = first[2:].decode("utf-8", "replace").split() if first.startswith(b"#!") else []
    for shebang in _POSIX_SHEBANGS:
        if tuple(words[: len(shebang)]) == shebang:
            return (POSIX_SH, *words[len(shebang) :])
    return (_shell_binary(path),)


def _python(invocation: Invocation, env: dict[str, str]) -> tuple[str, ...]:
    interpreter = invocation.python or _default_python(invocation.pack_dir)
    lib = str(invocation.pack_dir / "lib")
    inherited = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{lib}{os.pathsep}{inherited}" if inherited else lib
    return (interpreter, str(invocation.entry_point))


def _default_python(pack_dir: Path) -> str:
    """A hand-made ``<pack>/.venv`` (unmanaged), else the worker's interpreter."""
    venv_python = pack_dir / ".venv" / "bin" / "python"
    # The venv's own path (not its target) is what makes Python pick up the venv.
    return str(venv_python) if os.path.lexists(venv_python) else _worker_python()


def _native(invocation: Invocation, env: dict[str, str]) -> tuple[str, ...]:
    if not os.access(invocation.entry_point, os.X_OK):
        raise RuntimeLaunchError(
            f"entry point {invocation.entry_point} is not executable (native actions need chmod +x)"
        )
    return (str(invocation.entry_point),)


_RUNTIMES: dict[RunnerType, Callable[[Invocation, dict[str, str]], tuple[str, ...]]] = {
    RunnerType.SHELL: _shell,
    RunnerType.PYTHON: _python,
    RunnerType.NATIVE: _native,
}


@functools.lru_cache(maxsize=8)
def _shell_binary(path: str) -> str:
    """bash found on ``path`` (an absolute path spares exec a search), else ``/bin/sh``."""
    found = shutil.which("bash", path=path)
    return os.path.abspath(found) if found else POSIX_SH


@functools.lru_cache(maxsize=1)
def _worker_python() -> str:
    """This worker's interpreter resolved to its real binary (a version-manager shim is slow)."""
    if not sys.executable:
        raise RuntimeLaunchError("the worker's Python interpreter is unknown (sys.executable)")
    return os.path.realpath(sys.executable)
