"""Fixtures for the runtime tests: a pack directory in ``tmp_path`` and real action processes."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from attune.runtimes import Invocation, RunResult, run
from attune.settings import Settings
from attune.store.models import OutputFormat, ParameterDelivery, ParameterFormat, RunnerType

SUFFIXES = {RunnerType.SHELL: ".sh", RunnerType.PYTHON: ".py", RunnerType.NATIVE: ""}


@dataclasses.dataclass
class Pack:
    """A pack directory of real action files, and the invocations that run them."""

    path: Path
    settings: Settings

    def action(self, body: str, runtime: RunnerType = RunnerType.SHELL, name: str = "act") -> Path:
        """Write the action file ``actions/<name>`` (executable for native actions)."""
        entry_point = self.path / "actions" / f"{name}{SUFFIXES[runtime]}"
        entry_point.write_text(body)
        if runtime is RunnerType.NATIVE:
            entry_point.chmod(0o755)
        return entry_point

    def invocation(
        self, entry_point: Path, runtime: RunnerType = RunnerType.SHELL, **fields: Any
    ) -> Invocation:
        """An invocation of ``entry_point`` with test defaults, ``fields`` overriding them."""
        defaults: dict[str, Any] = {
            "runtime": runtime,
            "entry_point": entry_point,
            "pack_dir": self.path,
            "parameters": {},
            "secret_values": (),
            "parameter_delivery": ParameterDelivery.STDIN,
            "parameter_format": ParameterFormat.JSON,
            "output_format": OutputFormat.TEXT,
            "timeout_s": 20.0,
            "max_output_bytes": self.settings.max_output_bytes,
            "kill_grace_s": 0.3,
            "execution_id": 42,
            "action_ref": "testpack.act",
            "base_env": self.settings.inherited_env,
        }
        return Invocation(**{**defaults, **fields})

    def run(self, body: str, runtime: RunnerType = RunnerType.SHELL, **fields: Any) -> RunResult:
        """Write ``body`` as the action and run it."""
        return run(self.invocation(self.action(body, runtime), runtime, **fields))


@pytest.fixture
def pack(tmp_path: Path) -> Pack:
    """An empty pack ``testpack`` with an ``actions/`` folder, run with the worker's settings."""
    path = tmp_path / "testpack"
    (path / "actions").mkdir(parents=True)
    return Pack(path, Settings.from_env())


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Whether ``condition`` became true within ``timeout_s`` (checked every 10 ms)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def is_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (gone, or a zombie waiting for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True
