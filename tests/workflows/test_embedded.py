"""Workflows on the embedded default (SQLite, ``memory://``, the in-process worker and beat
thread), driven from a Python caller in its own process as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from attune.store.db import Database
from tests.cluster import attune_cli, embedded_environment
from tests.workflows.pack import PACK, write_wf_pack
from tests.workflows.runs import (
    activations,
    child_of,
    children,
    duplicates,
    most_at_once,
    task_states,
)

pytestmark = pytest.mark.slow

CALLER = """
import json, sys
import attune
records = []
for ref, params in json.loads(sys.argv[1]):
    record = attune.execute(ref, params).wait(120)
    records.append({"id": record.id, "status": record.status.value, "result": record.result,
                    "error": record.error})
print(json.dumps(records))
"""

RACE = """
import sys, threading, time
from datetime import UTC, datetime
from sqlalchemy import func, select, update
import attune
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE as E
from attune.workflows.engine import advance
settings = Settings.from_env()
database = Database.from_url(settings.database_url)
handle = attune.execute("wf.race", {"dir": sys.argv[1]})
mine = E.c.parent_id == handle.id
count = select(func.count()).select_from(E).where(mine)
def made():
    with database.session_scope() as session:
        return session.scalar(count)
deadline = time.monotonic() + 60
while made() < 20:
    assert time.monotonic() < deadline, "20 children"
    time.sleep(0.05)
with database.session_scope() as session:
    session.execute(update(E).where(mine, E.c.status.in_(["scheduled", "running"])).values(
        status="succeeded", finished_at=datetime.now(UTC), result={}))
barrier = threading.Barrier(50)
sent = []
def racer():
    barrier.wait()
    sent.append(advance(database, settings, handle.id).sent)
threads = [threading.Thread(target=racer) for _ in range(50)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
open(sys.argv[1] + "/release", "w").close()
record = handle.wait(60)
print(handle.id, record.status.value, len(sent), sum(sent))
"""

RUNS: list[tuple[str, dict[str, Any]]] = [
    ("examples.release", {"version": "2"}),
    ("examples.release", {"version": "3", "lint_exit_code": 1}),
    ("examples.patch_fleet", {"hosts": ["a", "b", "c", "d", "e"]}),
    ("wf.sequence", {"start": 1}),
    ("wf.fan", {"numbers": [5, 3, 9, 1, 7, 2, 8, 4, 6, 0, 11, 10]}),
    ("wf.join_unreachable", {}),
    ("wf.escape", {}),
    ("wf.outer", {"x": 2}),
    ("wf.shaped", {"count": "12"}),
    ("wf.shaped", {"count": "twelve"}),
]


@dataclass(frozen=True)
class Embedded:
    """A working directory on the embedded default, the wf pack loaded."""

    workdir: Path
    env: dict[str, str]
    database: Database

    def call(self, script: str, *args: str) -> str:
        """Run ``script`` as a Python caller in its own process; the last line it printed."""
        caller = subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert caller.returncode == 0, caller.stderr[-3000:]
        return caller.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    workdir = tmp_path_factory.mktemp("embedded-workflows")
    env = embedded_environment(workdir)
    write_wf_pack(Path(env["ATTUNE_PACKS_DIR"]))
    loaded = attune_cli(env, "packs", "load", "--pack-name", PACK)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    database = Database.from_url(env["ATTUNE_DATABASE_URL"])
    try:
        yield Embedded(workdir, env, database)
    finally:
        database.dispose()


@pytest.fixture(scope="module")
def embedded(place: Embedded) -> tuple[Database, list[Any]]:
    """The records of :data:`RUNS`, run one after the other by one caller process."""
    return place.database, json.loads(place.call(CALLER, json.dumps(RUNS)))


def test_the_examples_branch_join_and_fan_out(embedded: tuple[Database, list[Any]]) -> None:
    database, (release, lint_failed, fleet, *_) = embedded

    assert (release["status"], release["result"]["lint_ok"]) == ("succeeded", True)
    assert release["result"]["words"] == 2
    assert (lint_failed["status"], lint_failed["result"]["lint_ok"]) == ("succeeded", False)
    assert task_states(database, lint_failed["id"])["lint"] == "failed"
    assert len(child_of(database, lint_failed["id"], "publish")) == 1  # the join ran once
    assert fleet["status"] == "succeeded"
    assert fleet["result"]["patched"] == ["a", "b", "c", "d", "e"]
    patched = child_of(database, fleet["id"], "patch")
    assert len(patched) == 5
    assert most_at_once(patched) <= 3


def test_a_sequence_a_fan_out_and_a_nested_run(embedded: tuple[Database, list[Any]]) -> None:
    database, records = embedded
    sequence, fan, outer = records[3], records[4], records[7]

    assert sequence["status"] == "succeeded", sequence["error"]
    assert (sequence["result"]["n"], sequence["result"]["m"]) == (2, 4)
    numbers = RUNS[4][1]["numbers"]
    assert fan["status"] == "succeeded", fan["error"]
    assert fan["result"] == {"items": numbers, "squares": [n * n for n in numbers]}
    fanned = children(database, fan["id"])
    assert sorted(c.wf_item or 0 for c in fanned) == list(range(len(numbers)))
    assert duplicates(database, fan["id"]) == {}
    assert most_at_once(fanned) <= 5
    assert outer["status"] == "succeeded", outer["error"]
    assert outer["result"] == {"inner_y": 20, "nested": {"y": 20}}


def test_failures_name_the_task(embedded: tuple[Database, list[Any]]) -> None:
    _database, records = embedded
    unreachable, escape = records[5], records[6]

    assert unreachable["status"] == "failed"
    assert [e["task"] for e in unreachable["result"]["errors"]] == ["merge"]
    assert "missing: bad" in unreachable["error"]
    assert escape["status"] == "failed"
    assert escape["error"].startswith("task speak: tasks[0].input: ")
    assert "__class__" in escape["error"]


def test_the_output_is_checked_against_the_action_output_schema(
    embedded: tuple[Database, list[Any]],
) -> None:
    _database, records = embedded
    matching, mismatching = records[8], records[9]

    assert matching["status"] == "succeeded", matching["error"]
    assert matching["result"] == {"count": "12"}
    assert mismatching["status"] == "failed"
    (error,) = mismatching["result"]["errors"]
    assert error["task"] == "output"
    assert "output schema: output.count: 'twelve' does not match" in error["error"]


def test_fifty_concurrent_advances_on_sqlite_start_nothing_twice(
    place: Embedded, tmp_path: Path
) -> None:
    run_id, status, advances, sent = place.call(RACE, str(tmp_path)).split()

    assert (status, advances) == ("succeeded", "50")
    assert int(sent) <= 1  # the embedded beat thread may have been first
    parent = int(run_id)
    assert [child.task for child in activations(place.database, parent)] == ["first", "after"]
    assert len(children(place.database, parent)) == 21
    assert duplicates(place.database, parent) == {}
