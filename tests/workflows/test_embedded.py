"""Workflows on the embedded default (SQLite, ``memory://``, the in-process worker and beat
thread), driven from a Python caller in its own process as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from attune.store.db import Database
from tests.cluster import attune_cli, embedded_environment
from tests.workflows.pack import PACK, write_wf_pack
from tests.workflows.runs import child_of, children, duplicates, most_at_once, task_states

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

RUNS: list[tuple[str, dict[str, Any]]] = [
    ("examples.release", {"version": "2"}),
    ("examples.release", {"version": "3", "lint_exit_code": 1}),
    ("examples.patch_fleet", {"hosts": ["a", "b", "c", "d", "e"]}),
    ("wf.sequence", {"start": 1}),
    ("wf.fan", {"numbers": [5, 3, 9, 1, 7, 2, 8, 4, 6, 0, 11, 10]}),
    ("wf.join_unreachable", {}),
    ("wf.escape", {}),
    ("wf.outer", {"x": 2}),
]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, list[Any]]]:
    """The records of :data:`RUNS`, run one after the other by one caller process."""
    workdir = tmp_path_factory.mktemp("embedded-workflows")
    env = embedded_environment(workdir)
    write_wf_pack(Path(env["ATTUNE_PACKS_DIR"]))
    loaded = attune_cli(env, "packs", "load", "--pack-name", PACK)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    caller = subprocess.run(
        [sys.executable, "-c", CALLER, json.dumps(RUNS)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert caller.returncode == 0, caller.stderr[-3000:]
    database = Database.from_url(env["ATTUNE_DATABASE_URL"])
    try:
        yield database, json.loads(caller.stdout.strip().splitlines()[-1])
    finally:
        database.dispose()


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
