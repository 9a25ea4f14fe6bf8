"""Fixtures of the environment tests: a wheelhouse built offline, shared environments, settings.

Environments are slow to build, so one ``ATTUNE_ENVS_DIR`` serves the whole run: tests that need
a build of their own give their pack a requirements file no other test has (a comment line
makes another key).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from attune.packs.loader import load_packs
from attune.settings import Settings
from attune.store.db import Database
from tests.pack_builder import action, write_pack
from tests.wheelhouse import build_wheel

IMPORTER = """\
import json
import demo_lib
print(json.dumps({"version": demo_lib.VERSION, "python": __import__("sys").executable}))
"""
"""A python action that imports ``demo_lib``, which only its pack's environment has."""


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of ``demo-lib`` 1.0 and 2.0, built by ``pip wheel`` from projects written here."""
    directory = tmp_path_factory.mktemp("wheels") / "wheelhouse"
    for version in ("1.0", "2.0"):
        build_wheel(directory, "demo-lib", version, f"VERSION = {version!r}\n")
    return directory


@pytest.fixture(scope="session")
def envs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ATTUNE_ENVS_DIR for the run: equal requirements share one environment."""
    return tmp_path_factory.mktemp("envs")


def env_settings(packs_dir: Path, envs_dir: Path, wheelhouse: Path, **extra: str) -> Settings:
    """Settings of an offline host whose only package source is ``wheelhouse`` (uv unless
    ``ATTUNE_ENV_INSTALLER`` says otherwise)."""
    env: Mapping[str, str] = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/"),
        "ATTUNE_PACKS_DIR": str(packs_dir),
        "ATTUNE_ENVS_DIR": str(envs_dir),
        "ATTUNE_ENV_OFFLINE": "1",
        "ATTUNE_ENV_FIND_LINKS": str(wheelhouse),
        "ATTUNE_ENV_INSTALLER": "uv",
        **extra,
    }
    return Settings.from_env(env)


def env_pack(
    packs_dir: Path,
    ref: str,
    requirements: str,
    *,
    python: str | None = None,
    script: str = IMPORTER,
) -> Path:
    """Write pack ``ref`` with a ``requirements.txt`` and one python action ``<ref>.show``."""
    pack_yaml = {"ref": ref, "label": ref, "description": "env test", "version": "1.0.0"}
    if python is not None:
        pack_yaml["python"] = python
    document = action(f"{ref}.show", runner_type="python", entry_point="show.py", parameters={})
    document["output_format"] = "json"
    pack_dir = write_pack(packs_dir, ref, {"show": document}, pack_yaml)
    (pack_dir / "actions" / "show.py").write_text(script)
    (pack_dir / "requirements.txt").write_text(requirements)
    return pack_dir


def load(database: Database, packs_dir: Path, *names: str) -> None:
    """Load the packs ``names``; fail the test on any problem."""
    result = load_packs(database, packs_dir, names)
    assert result.ok, result.errors


def loaded_env_pack(
    database: Database,
    dirs: tuple[Path, Path, Path],
    ref: str,
    requirements: str,
    **options: str,
) -> Settings:
    """Write and load pack ``ref`` (see :func:`env_pack`); ``dirs`` are the packs directory,
    ATTUNE_ENVS_DIR and the wheelhouse. The settings of an offline host that runs it."""
    packs_dir, envs_dir, wheelhouse = dirs
    env_pack(packs_dir, ref, requirements, **options)
    load(database, packs_dir, ref)
    return env_settings(packs_dir, envs_dir, wheelhouse)
