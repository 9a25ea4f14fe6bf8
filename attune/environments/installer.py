"""Installer: uv (when importable, the ``attune[envs]`` extra) or the stdlib venv + pip.

Each gives the command lines that create an environment, install a requirements file into it
and check it. The installer never reads pip.conf or uv.toml: where packages come from is
attune's settings alone (so it is all in the environment's key).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from attune.environments.interpreter import Interpreter
from attune.errors import PackEnvironmentError
from attune.settings import EnvSettings


@dataclass(frozen=True)
class Installer:
    """One installer and its version; ``program`` is how it is started."""

    name: str
    version: str
    program: tuple[str, ...]

    def create(self, interpreter: Interpreter, target: Path) -> tuple[str, ...]:
        """Create an empty environment (no pip in it) at ``target``."""
        if self.name == "uv":
            return (
                *self.program,
                "venv",
                "--quiet",
                "--relocatable",
                "--python",
                interpreter.path,
                str(target),
            )
        return (interpreter.path, "-m", "venv", "--without-pip", str(target))

    def install(self, python: Path, requirements: Path, envs: EnvSettings) -> tuple[str, ...]:
        """Install ``requirements`` into the environment whose interpreter is ``python``."""
        index: list[str] = []
        if self.name == "uv":
            index += ["--offline"] if envs.offline else []
            index += ["--no-index"] if envs.offline and envs.find_links else []
        else:
            index += ["--no-index"] if envs.offline else []
        for location in envs.find_links:
            index += ["--find-links", location]
        if envs.index_url:
            index += ["--index-url", envs.index_url]
        if self.name == "uv":
            return (
                *self.program,
                "pip",
                "install",
                "--python",
                str(python),
                "-r",
                str(requirements),
                *index,
            )
        return (
            *self.program,
            "--python",
            str(python),
            "install",
            "--no-input",
            "--disable-pip-version-check",
            "-r",
            str(requirements),
            *index,
        )

    def check(self, python: Path) -> tuple[str, ...]:
        """Check the installed distributions' dependencies are met."""
        if self.name == "uv":
            return (*self.program, "pip", "check", "--python", str(python))
        return (*self.program, "--python", str(python), "check")

    def process_env(self, envs: EnvSettings) -> dict[str, str]:
        """The installer's environment: the worker's cleaned one, proxies and CAs, no config."""
        env = dict(envs.installer_env)
        env.update(
            PIP_CONFIG_FILE=os.devnull,
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            UV_NO_CONFIG="1",
            UV_PYTHON_DOWNLOADS="never",
            UV_CACHE_DIR=str(envs.envs_dir / ".uv-cache"),
        )
        return env

    def label(self) -> str:
        """``uv 0.13.8``, ``pip 24.2``: how messages and records name it."""
        return f"{self.name} {self.version}"


def choose(choice: str) -> Installer:
    """The installer for ``ATTUNE_ENV_INSTALLER``: ``auto`` (uv when importable, else pip),
    ``uv`` or ``pip``; raises :class:`PackEnvironmentError` when the one asked for is missing."""
    if choice == "auto":
        return _uv() or _pip()
    if choice == "uv":
        found = _uv()
        if found is None:
            raise PackEnvironmentError(
                "ATTUNE_ENV_INSTALLER=uv but uv is not installed here (pip install 'attune[envs]')"
            )
        return found
    return _pip()


@functools.cache
def _uv() -> Installer | None:
    if importlib.util.find_spec("uv") is None:
        return None
    from uv import find_uv_bin

    try:
        binary = find_uv_bin()
    except FileNotFoundError:
        return None
    return Installer("uv", importlib.metadata.version("uv"), (binary,))


@functools.cache
def _pip() -> Installer:
    try:
        version = importlib.metadata.version("pip")
    except importlib.metadata.PackageNotFoundError:
        raise PackEnvironmentError(
            "the worker's Python has no pip; install pip or uv (pip install 'attune[envs]')"
        ) from None
    return Installer("pip", version, (os.path.realpath(sys.executable), "-m", "pip"))


def public_url(url: str) -> str:
    """``url`` without user and password: what may go into a key or a record."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
