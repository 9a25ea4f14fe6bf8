"""Benchmark: load a generated pack of 1,000 actions on SQLite and PostgreSQL.

Goals (issue 3): a first load in at most 1 s, an unchanged reload in at most 0.3 s writing no
row. Each load runs in a fresh process, as ``attune packs load`` would, so no cache of an earlier
load helps it; the figure is the time of ``load_packs`` alone (discover, parse, validate, upsert),
after the interpreter and its imports are up. Prints the median of a few rounds and its ratio to
the goal (below 1 meets it). Exits non-zero when a load fails or the reload writes a row.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

ACTIONS = 1000
ROUNDS = 5
FIRST_LOAD_GOAL_S = 1.0
RELOAD_GOAL_S = 0.3
PG_SERVER = ("127.0.0.1", 5432)


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
    """(In a child process) load the packs once and print seconds, rows written and the report."""
    from attune.packs.loader import load_packs
    from attune.store.db import Database
    from tests.write_counter import counting_writes

    database = Database.from_url(url)
    with counting_writes(database.engine) as writes:
        started = time.perf_counter()
        result = load_packs(database, Path(packs_dir))
        elapsed_s = time.perf_counter() - started
    database.dispose()
    errors = [str(error) for error in result.errors]
    reports = [report.__dict__ | {"pack": str(report.pack)} for report in result.reports]
    print(
        json.dumps(
            {"seconds": elapsed_s, "rows": writes.total_rows, "reports": reports, "errors": errors}
        )
    )


def load_in_child(url: str, packs_dir: Path) -> dict[str, Any]:
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


def bench(name: str, url: str, packs_dir: Path) -> bool:
    """Run ROUNDS of (empty tables, first load, reload) on ``url``; print; True if correct."""
    from attune.store.db import Database
    from tests.conftest import clear

    firsts: list[float] = []
    reloads: list[float] = []
    rows_written: list[int] = []
    for _ in range(ROUNDS):
        database = Database.from_url(url)
        clear(database)
        database.dispose()
        first = load_in_child(url, packs_dir)
        reload = load_in_child(url, packs_dir)
        firsts.append(first["seconds"])
        reloads.append(reload["seconds"])
        rows_written.append(reload["rows"])
        (report,) = reload["reports"]
        assert report["unchanged"] == ACTIONS, report
    first_s, reload_s = statistics.median(firsts), statistics.median(reloads)
    print(
        f"{name:<11} first load {first_s:6.3f} s  ({first_s / FIRST_LOAD_GOAL_S:4.2f}× the "
        f"{FIRST_LOAD_GOAL_S:g} s goal)   unchanged reload {reload_s:6.3f} s  "
        f"({reload_s / RELOAD_GOAL_S:4.2f}× the {RELOAD_GOAL_S:g} s goal), "
        f"rows written on reload: {max(rows_written)}"
    )
    return max(rows_written) == 0


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

    print(f"pack load: {ACTIONS} actions, median of {ROUNDS} rounds, each load in a fresh process")
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
