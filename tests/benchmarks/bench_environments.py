"""Benchmark: per-pack Python environments, attune beside its baselines in one run.

- a python action whose pack's environment is ready — attune's whole environment step (the
  pack's declaration read from the database, the requirements hashed into the key, the ready
  check, the use recorded, the environment held in use) plus the runtime — vs a bare
  ``subprocess.run`` of ``<env>/bin/python`` on the same script: medians and their ratio
  (goal: <= 1.1), on SQLite and, when it is reachable, PostgreSQL; and the median of the
  environment step alone (the ratio's part that is attune's, free of the machine's noise);
- building an environment of one small wheel from a local wheelhouse, offline: uv and
  venv + pip side by side (median of a few builds each, each a new key), and their ratio.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from attune.environments.builder import ensure  # noqa: E402
from attune.executions.environments import environment_of, spec_for  # noqa: E402
from attune.runtimes import Outcome, run  # noqa: E402
from attune.settings import Settings  # noqa: E402
from attune.store.db import Database  # noqa: E402
from attune.store.models import Execution, RunnerType  # noqa: E402
from tests.benchmarks.bench_packs import drop_postgres, postgres_url  # noqa: E402
from tests.benchmarks.bench_runtimes import invocation  # noqa: E402
from tests.conftest import migrate  # noqa: E402
from tests.environments.conftest import env_pack, load  # noqa: E402
from tests.wheelhouse import build_wheel  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "200"))
BUILDS = int(os.environ.get("BENCH_BUILDS", "5"))
SCRIPT = "import demo_lib\nprint(demo_lib.VERSION)\n"


def settings_for(scratch: Path, installer: str) -> Settings:
    """An offline host whose only package source is the scratch wheelhouse."""
    return Settings.from_env(
        {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/"),
            "ATTUNE_PACKS_DIR": str(scratch / "packs"),
            "ATTUNE_ENVS_DIR": str(scratch / "envs"),
            "ATTUNE_ENV_OFFLINE": "1",
            "ATTUNE_ENV_FIND_LINKS": str(scratch / "wheelhouse"),
            "ATTUNE_ENV_INSTALLER": installer,
        }
    )


def executions(database: Database, count: int) -> list[int]:
    """``count`` execution rows for the uses to be recorded against."""
    with database.session_scope() as session:
        rows = [Execution(action_ref="bench.show", status="running") for _ in range(count)]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def ready_env(name: str, url: str, scratch: Path) -> None:
    """A python action in a ready environment vs ``subprocess.run`` of its interpreter."""
    database = Database.from_url(url)
    settings = settings_for(scratch, "uv")
    load(database, scratch / "packs", "bench")
    pack_dir = scratch / "packs" / "bench"
    spec = spec_for(settings, "bench", pack_dir, None)
    python = ensure(spec, threading.Event()).python
    script = pack_dir / "actions" / "show.py"
    ids = iter(executions(database, ROUNDS + 20))
    base = invocation(RunnerType.PYTHON, script, pack_dir)

    def attune() -> None:
        action = dataclasses.replace(base, execution_id=next(ids))
        with environment_of(database, settings, action) as ready:
            result = run(ready)
        if result.outcome is not Outcome.SUCCEEDED or result.stdout != "1.0\n":
            raise SystemExit(f"benchmark: the action failed: {result.error}")

    def bare() -> None:
        subprocess.run([str(python), str(script)], input=b"{}", capture_output=True, check=True)

    def step() -> None:
        with environment_of(database, settings, dataclasses.replace(base, execution_id=next(ids))):
            pass

    attune_ms, bare_ms = side_by_side(attune, bare)
    ids = iter(executions(database, ROUNDS))
    step_ms = statistics.median(timed(step) for _ in range(ROUNDS)) * 1000
    print(
        f"python action, ready environment ({name:<10}) attune {attune_ms:6.2f} ms   "
        f"subprocess.run {bare_ms:6.2f} ms   ratio {attune_ms / bare_ms:.3f} (goal <= 1.1); "
        f"the environment step alone {step_ms:.2f} ms"
    )
    database.dispose()


def timed(call: object) -> float:
    """Seconds one call takes."""
    started = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - started


def side_by_side(attune: object, bare: object) -> tuple[float, float]:
    """Median milliseconds of each, alternating so both see the same machine."""
    calls = {"attune": attune, "bare": bare}
    samples: dict[str, list[float]] = {"attune": [], "bare": []}
    for round_number in range(ROUNDS + 20):
        for key, call in calls.items():
            seconds = timed(call)
            if round_number >= 20:  # the first rounds warm caches up
                samples[key].append(seconds)
    return statistics.median(samples["attune"]) * 1000, statistics.median(samples["bare"]) * 1000


def builds(scratch: Path) -> None:
    """uv and venv + pip building one small wheel's environment, alternating, each a new key."""
    timings: dict[str, list[float]] = {"uv": [], "pip": []}
    pack_dir = scratch / "packs" / "bench"
    for number in range(BUILDS):
        for installer, samples in timings.items():
            (pack_dir / "requirements.txt").write_text(f"demo-lib==1.0\n# build {number}\n")
            spec = spec_for(settings_for(scratch, installer), "bench", pack_dir, None)
            started = time.perf_counter()
            ensure(spec, threading.Event())
            samples.append(time.perf_counter() - started)
    uv_s, pip_s = (statistics.median(timings[name]) for name in ("uv", "pip"))
    print(
        f"build of one small wheel's environment, offline, median of {BUILDS}: "
        f"uv {uv_s * 1000:7.0f} ms   venv + pip {pip_s * 1000:7.0f} ms   "
        f"pip / uv {pip_s / uv_s:.1f}x"
    )


def main() -> None:
    """Measure both and print medians and ratios."""
    with tempfile.TemporaryDirectory(prefix="attune-bench-envs-") as directory:
        scratch = Path(directory)
        build_wheel(scratch / "wheelhouse", "demo-lib", "1.0", "VERSION = '1.0'\n")
        env_pack(scratch / "packs", "bench", "demo-lib==1.0\n", script=SCRIPT)
        sqlite_url = f"sqlite:///{scratch}/bench.db"
        migrate(sqlite_url)
        ready_env("SQLite", sqlite_url, scratch)
        created = postgres_url()
        if created is None:
            print("PostgreSQL is not reachable: its ready-environment figure is skipped")
        else:
            try:
                ready_env("PostgreSQL", created[1], scratch)
            finally:
                drop_postgres(created[0])
        builds(scratch)


if __name__ == "__main__":
    main()
