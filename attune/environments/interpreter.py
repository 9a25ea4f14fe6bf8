"""Interpreter: the Python a pack's environment is built from, and a pack's ``python:`` range."""

from __future__ import annotations

import functools
import os
import platform
import sys
import sysconfig
from dataclasses import asdict, dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from attune.errors import PackEnvironmentError


@dataclass(frozen=True)
class Interpreter:
    """What identifies an interpreter for building environments (all of it goes into the key)."""

    path: str
    version: str
    implementation: str
    platform: str
    abi: str

    def identity(self) -> dict[str, str]:
        """The fields as a plain mapping, for the key and the ready marker."""
        return asdict(self)


@functools.cache
def worker_interpreter() -> Interpreter:
    """The worker's own base interpreter (outside any virtualenv the worker runs in), resolved."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    if not base:
        raise PackEnvironmentError("the worker's Python interpreter is unknown (sys.executable)")
    return Interpreter(
        path=os.path.realpath(base),
        version=platform.python_version(),
        implementation=sys.implementation.name,
        platform=sysconfig.get_platform(),
        abi=str(sysconfig.get_config_var("SOABI") or ""),
    )


def range_problem(text: str) -> str | None:
    """Why ``text`` is not a PEP 440 version specifier such as ``>=3.11,<3.14``, or None."""
    try:
        specifiers = SpecifierSet(text)
    except InvalidSpecifier:
        return f"{text!r} is not a version range such as '>=3.11,<3.14'"
    if not str(specifiers):
        return "must not be empty"
    return None


def require_python(pack: str, python_range: str | None, interpreter: Interpreter) -> None:
    """Raise :class:`PackEnvironmentError` when the interpreter is outside the pack's range."""
    if python_range and not SpecifierSet(python_range).contains(
        interpreter.version, prereleases=True
    ):
        raise PackEnvironmentError(
            f"pack {pack!r} needs Python {python_range}; this worker runs {interpreter.version}"
        )
