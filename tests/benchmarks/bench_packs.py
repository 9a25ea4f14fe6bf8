"""Benchmark: load a generated pack of 1,000 actions on SQLite and PostgreSQL, against parsing
the same files with bare ``yaml.CSafeLoader``, all in one run.

Goals (issue 11): an unchanged reload at most 0.25 × the baseline, a first load at most 1.5 ×.
The baseline is a fresh ``python -c`` process that imports yaml and parses the pack.yaml and the
1,000 action files with ``yaml.CSafeLoader``. Every attune load runs in a fresh process too, as
``attune packs load`` would, so no cache of an earlier load helps it. Two pairs of figures:

- work: ``load_packs`` alone (discover, read, hash, parse, validate, upsert) timed inside its
  process, against the baseline's parse timed inside its own (both after their imports, the
  ones attune makes lazily included);
- process: the whole ``attune packs load`` command (interpreter start, imports, the load,
  the report), against the whole baseline process.

Each figure is a median of a few rounds, as wall time and as CPU time of the measured process
(on a shared machine the CPU ratio is the steadier; on PostgreSQL it leaves out the server's
own work, which the wall time includes). The goals are judged on the work figures. Exits
non-zero when a load fails, or the reload writes a row or parses a file.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

ACTIONS = 1000
ROUNDS = 5
RELOAD_GOAL = 0.25
FIRST_LOAD_GOAL = 1.5
PG_SERVER = ("127.0.0.1", 5432)
ATTUNE = str(Path(sys.executable).with_name("attune"))

BASELINE = """
import os, sys, time
import yaml
started, started_cpu = time.perf_counter(), time.process_time()
pack_dir = sys.argv[1]
paths = [os.path.join(pack_dir, "pack.yaml")]
actions_dir = os.path.join(pack_dir, "actions")
names = sorted(n for n in os.listdir(actions_dir) if n.endswith(".yaml"))
paths += [os.path.join(actions_dir, name) for name in names]
for path in paths:
    with open(path, "rb") as file:
        yaml.load(file.read(), Loader=yaml.CSafeLoader)
print(time.perf_counter() - started, time.process_time() - started_cpu, len(paths))
"""
"""The bare baseline: parse every YAML file of the pack with libyaml, nothing else."""


def generate(packs_dir: Path) -> None:
    """Write pack ``bench``: ACTIONS actions, each with its own script and varied parameters."""
    from tests.pack_builder import action, write_pack

    runners = ("shell", "python", "native")
    documents = {}
    for i in range(ACTIONS):
        parameters = {
            "message": {
                "type": "string",
                "description": f"What action {i} says.",
                "default": f"hi {i}",
            },
            "count": {
                "type": "integer",
                "minimum": 1,
                "maximum": 10 + i % 90,
                "default": 1 + i % 10,
            },
            "mode": {"type": "string", "enum": ["fast", "slow", f"mode_{i % 7}"], "required": True},
            "token": {"type": "string", "secret": True, "minLength": 8 + i % 5},
        }
        if i % 3 == 0:
            parameters["options"] = {
                "type": "object",
                "properties": {"retries": {"type": "integer", "minimum": 0}},
                "default": {"retries": i % 4},
            }
        documents[f"action_{i}"] = action(
            f"bench.action_{i}",
            description=f"Generated action number {i}.",
            runner_type=runners[i % 3],
            tags=["bench", f"group_{i % 10}"],
            parameters=parameters,
            output_format=("text", "json", "yaml", "jsonl")[i % 4],
            timeout=30 + i,
        )
    write_pack(packs_dir, "bench", documents)


def measure(url: str, packs_dir: str) -> None:
    """(In a child process) load the packs once; print seconds, rows written, files parsed and
    the report."""
    # Imported by the reader when it first parses; imports are no part of the work figure (as
    # the baseline's ``import yaml`` is not), the process figure counts them all.
    import attune.executions.param_definitions  # noqa: F401
    from attune.packs import reader
    from attune.packs.loader import load_packs
    from attune.store.db import Database
    from tests.write_counter import counting_writes

    parsed = 0
    real = reader.mapping_of

    def counting(data: bytes, source: str) -> dict[str, Any]:
        nonlocal parsed
        parsed += 1
        return real(data, source)

    reader.mapping_of = counting
    database = Database.from_url(url)
    with counting_writes(database.engine) as writes:
        started, started_cpu = time.perf_counter(), time.process_time()
        result = load_packs(database, Path(packs_dir))
        elapsed_s, cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
    database.dispose()
    errors = [str(error) for error in result.errors]
    reports = [asdict(report) | {"pack": str(report.pack)} for report in result.reports]
    figures = {"seconds": (elapsed_s, cpu_s), "rows": writes.total_rows, "parsed": parsed}
    print(json.dumps(figures | {"reports": reports, "errors": errors}))


def load_in_child(url: str, packs_dir: Path) -> dict[str, Any]:
    """The figures of one ``load_packs`` in a fresh process."""
    done = subprocess.run(
        [sys.executable, __file__, "--measure", url, str(packs_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, Any] = json.loads(done.stdout)
    if figures["errors"]:
        raise SystemExit(f"the load failed: {figures['errors']}")
    return figures


Seconds = tuple[float, float]
"""A figure as (wall seconds, CPU seconds of the measured process)."""


def command_s(argv: list[str], env: dict[str, str] | None = None) -> tuple[Seconds, str]:
    """Wall and CPU seconds of a whole process, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
    wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return (wall_s, cpu_s), done.stdout


def baseline(packs_dir: Path) -> tuple[Seconds, Seconds]:
    """One baseline process: the parse inside it, and the whole process."""
    whole, out = command_s([sys.executable, "-c", BASELINE, str(packs_dir / "bench")])
    wall_s, cpu_s, files = out.split()
    assert int(files) == ACTIONS + 1, files
    return (float(wall_s), float(cpu_s)), whole


def cli_load_s(url: str, packs_dir: Path) -> Seconds:
    """Wall and CPU seconds of ``attune packs load`` as a user runs it."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ATTUNE_")}
    env["ATTUNE_DATABASE_URL"] = url
    seconds, _ = command_s([ATTUNE, "packs", "load", "--packs-dir", str(packs_dir)], env)
    return seconds


def bench(name: str, url: str, packs_dir: Path) -> bool:
    """Run ROUNDS of (baseline, empty tables, first load, reload) on ``url`` for each of the
    two figures; print the medians and ratios; True if every load was correct."""
    from attune.store.db import Database
    from tests.conftest import clear

    keys = ("parse", "base_process", "first", "reload", "first_process", "reload_process")
    figures: dict[str, list[Seconds]] = {key: [] for key in keys}
    wrong: list[str] = []

    def empty() -> None:
        database = Database.from_url(url)
        clear(database)
        database.dispose()

    for _ in range(ROUNDS):
        parse, whole = baseline(packs_dir)
        figures["parse"].append(parse)
        figures["base_process"].append(whole)
        empty()
        first = load_in_child(url, packs_dir)
        reload = load_in_child(url, packs_dir)
        figures["first"].append(tuple(first["seconds"]))
        figures["reload"].append(tuple(reload["seconds"]))
        (report,) = reload["reports"]
        if report["unchanged"] != ACTIONS or reload["rows"] or reload["parsed"]:
            wrong.append(f"the reload wrote {reload['rows']} rows, parsed {reload['parsed']}")
        empty()
        figures["first_process"].append(cli_load_s(url, packs_dir))
        figures["reload_process"].append(cli_load_s(url, packs_dir))
    m = {
        key: tuple(statistics.median(figure[i] for figure in values) for i in (0, 1))
        for key, values in figures.items()
    }

    def line(what: str, reload: str, first: str, base: str, goals: bool) -> None:
        ratios = [m[reload][i] / m[base][i] for i in (0, 1)] + [
            m[first][i] / m[base][i] for i in (0, 1)
        ]
        reload_goal = f" (goal ≤ {RELOAD_GOAL:g}: {_met(ratios[0], RELOAD_GOAL)})" if goals else ""
        first_goal = (
            f" (goal ≤ {FIRST_LOAD_GOAL:g}: {_met(ratios[2], FIRST_LOAD_GOAL)})" if goals else ""
        )
        print(
            f"{name if what == 'work' else '':<11} {what:<8} unchanged reload "
            f"{m[reload][0]:6.3f} s = {ratios[0]:4.2f}× wall, {ratios[1]:4.2f}× cpu{reload_goal}"
            f"   first load {m[first][0]:6.3f} s = {ratios[2]:4.2f}× wall, "
            f"{ratios[3]:4.2f}× cpu{first_goal}   baseline {m[base][0]:6.3f} s"
        )

    line("work", "reload", "first", "parse", goals=True)
    line("process", "reload_process", "first_process", "base_process", goals=False)
    for problem in wrong:
        print(f"{'':<11} wrong: {problem}")
    return not wrong


def _met(ratio: float, goal: float) -> str:
    return "met" if ratio <= goal else "MISSED"


def postgres_url() -> tuple[str, str] | None:
    """Create this run's PostgreSQL database; None when the server is not reachable."""
    from sqlalchemy import create_engine, text

    from tests.conftest import PG_ADMIN_URL, migrate, server_available

    if not server_available(*PG_SERVER):
        return None
    name = f"attune_bench_packs_{os.getpid()}"
    admin = create_engine(f"{PG_ADMIN_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = f"{PG_ADMIN_URL}/{name}"
    migrate(url)
    return name, url


def drop_postgres(name: str) -> None:
    from sqlalchemy import create_engine, text

    from tests.conftest import PG_ADMIN_URL

    admin = create_engine(f"{PG_ADMIN_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> int:
    """Generate the pack, then bench SQLite and (when reachable) PostgreSQL."""
    if sys.argv[1:2] == ["--measure"]:
        measure(sys.argv[2], sys.argv[3])
        return 0
    from tests.conftest import migrate

    print(
        f"pack load: {ACTIONS} actions, median of {ROUNDS} rounds, each load in a fresh process; "
        "ratios to parsing the same files with yaml.CSafeLoader"
    )
    correct = True
    with tempfile.TemporaryDirectory(prefix="attune_bench_packs_") as scratch:
        packs_dir = Path(scratch) / "packs"
        generate(packs_dir)
        sqlite_url = f"sqlite:///{scratch}/bench.db"
        migrate(sqlite_url)
        correct &= bench("sqlite", sqlite_url, packs_dir)
        created = postgres_url()
        if created is None:
            print(f"postgresql  skipped: no server at {PG_SERVER[0]}:{PG_SERVER[1]}")
        else:
            name, url = created
            try:
                correct &= bench("postgresql", url, packs_dir)
            finally:
                drop_postgres(name)
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
