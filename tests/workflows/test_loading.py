"""Malformed workflows are refused at ``packs load``: every problem names the workflow file and
the field, and the pack writes nothing (SQLite: validation needs no server)."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from attune.packs.loader import load_packs
from attune.store.db import Database
from tests.cluster import attune_cli
from tests.pack_builder import action, header, workflow_action, write_pack, write_workflows
from tests.test_pack_validation import rows

Document = dict[str, Any]
FLOW = "packs/bad/actions/workflows/flow.yaml"
ACTION_FILE = "packs/bad/actions/flow.yaml"


def valid() -> Document:
    """``first`` then ``second``, both of the pack's shell action ``bad.hello``."""
    return {
        "version": 1,
        "tasks": [
            {
                "name": "first",
                "action": "bad.hello",
                "next": [{"when": "{{ succeeded() }}", "do": ["second"]}],
            },
            {"name": "second", "action": "bad.hello", "input": {"who": "{{ input.who }}"}},
        ],
        "output": {"who": "{{ input.who }}"},
    }


def broken(change: Callable[[Document], object]) -> Document:
    document = copy.deepcopy(valid())
    change(document)
    return document


def task(n: int, **values: Any) -> Callable[[Document], object]:
    return lambda document: document["tasks"][n].update(values)


def second_input(who: str) -> Callable[[Document], object]:
    return task(1, input={"who": who})


CASES: dict[str, tuple[Document, str, str]] = {
    # id: (the workflow file, the field named, what the message says)
    "unknown-key": (broken(lambda d: d.update(outptu={})), "outptu", "unknown key"),
    "task-unknown-key": (broken(task(0, acton="x")), "tasks[0].acton", "unknown key"),
    "bad-task-name": (broken(task(1, name="Second")), "tasks[1].name", "must match"),
    "reserved-task-name": (broken(task(1, name="noop")), "tasks[1].name", "reserved"),
    "duplicate-name": (broken(task(1, name="first")), "tasks[1].name", "already a task's name"),
    "do-target-missing": (
        broken(task(0, next=[{"do": ["third"]}])),
        "tasks[0].next[0].do",
        "'third' is not a task",
    ),
    "join-above-inbound": (
        broken(task(1, join=2)),
        "tasks[1].join",
        "waits for 2 arrivals but only 1 task(s) lead here (first)",
    ),
    "expression-syntax": (
        broken(second_input("{{ input.who + }}")),
        "tasks[1].input.who",
        "template does not parse",
    ),
    "when-syntax": (
        broken(task(0, next=[{"when": "{{ succeeded( }}", "do": ["second"]}])),
        "tasks[0].next[0].when",
        "template does not parse",
    ),
    "unknown-name": (
        broken(second_input("{{ secrets.who }}")),
        "tasks[1].input.who",
        "unknown name secrets",
    ),
    "result-in-output": (
        broken(lambda d: d.update(output={"x": "{{ result }}"})),
        "output.x",
        "unknown name result",
    ),
    "concurrency-zero": (
        broken(task(1, **{"with": {"items": "{{ [1, 2] }}", "concurrency": 0}})),
        "tasks[1].with.concurrency",
        "must be a whole number 1 to 1000",
    ),
    "version-2": (broken(lambda d: d.update(version=2)), "version", "must be 1, got 2"),
    "no-start-task": (
        broken(task(1, next=[{"do": ["first"]}])),
        "tasks",
        "no task to start with",
    ),
    "retry-abandoned-not-idempotent": (
        broken(task(0, retry={"on": ["abandoned"], "max_attempts": 2})),
        "tasks[0].retry.on",
        "bad.hello is not idempotent",
    ),
}


@pytest.fixture
def packs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``packs/`` in a fresh working directory, holding pack ``bad`` (flow still to write)."""
    monkeypatch.chdir(tmp_path)
    packs = Path("packs")
    flow = workflow_action("bad.flow", {"who": {"type": "string", "default": "x"}})
    write_pack(packs, "bad", {"hello": action("bad.hello"), "flow": flow}, header("bad"))
    return packs


def test_the_valid_workflow_of_these_tests_loads(
    packs_dir: Path, sqlite_database: Database
) -> None:
    write_workflows(packs_dir / "bad", {"flow": valid()})

    result = load_packs(sqlite_database, packs_dir)

    assert result.errors == ()
    assert rows(sqlite_database) == (1, 2)


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_workflow_is_refused_naming_file_and_field_and_writes_nothing(
    case: str, packs_dir: Path, sqlite_database: Database
) -> None:
    document, field, needle = CASES[case]
    write_workflows(packs_dir / "bad", {"flow": document})

    result = load_packs(sqlite_database, packs_dir)

    assert result.reports == ()
    (error,) = result.errors
    assert error.pack == "bad"
    assert any(
        problem.startswith(f"{FLOW}: {field}: ") and needle in problem for problem in error.problems
    ), error.problems
    assert rows(sqlite_database) == (0, 0)


def test_a_workflow_action_with_its_own_retry_is_refused(
    packs_dir: Path, sqlite_database: Database
) -> None:
    write_workflows(packs_dir / "bad", {"flow": valid()})
    retry = {"on": ["failed"], "max_attempts": 2}
    flow = {**workflow_action("bad.flow"), "retry": retry}
    write_pack(packs_dir, "bad", {"hello": action("bad.hello"), "flow": flow})

    result = load_packs(sqlite_database, packs_dir)

    (error,) = result.errors
    assert any(p.startswith(f"{ACTION_FILE}: retry: ") for p in error.problems), error.problems
    assert rows(sqlite_database) == (0, 0)


def test_an_output_schema_that_is_no_schema_is_refused_and_one_on_a_plain_action_too(
    packs_dir: Path, sqlite_database: Database
) -> None:
    write_workflows(packs_dir / "bad", {"flow": valid()})
    flow = {**workflow_action("bad.flow"), "output": {"type": "thing"}}
    hello = {**action("bad.hello"), "output": {"type": "object"}}
    write_pack(packs_dir, "bad", {"hello": hello, "flow": flow})

    result = load_packs(sqlite_database, packs_dir)

    (error,) = result.errors
    assert any(p.startswith(f"{ACTION_FILE}: output: not a JSON Schema") for p in error.problems)
    plain = "packs/bad/actions/hello.yaml: output: only a workflow action has an output schema"
    assert any(p.startswith(plain) for p in error.problems), error.problems
    assert rows(sqlite_database) == (0, 0)


def test_packs_load_exits_non_zero_naming_the_file_and_field(
    packs_dir: Path, sqlite_url: str, sqlite_database: Database
) -> None:
    write_workflows(packs_dir / "bad", {"flow": CASES["join-above-inbound"][0]})
    env = {key: value for key, value in os.environ.items() if not key.startswith("ATTUNE_")}
    env.update(ATTUNE_DATABASE_URL=sqlite_url, ATTUNE_PACKS_DIR=str(packs_dir.resolve()))

    loaded = attune_cli(env, "packs", "load", "--pack-name", "bad")

    assert loaded.returncode != 0
    assert "flow.yaml: tasks[1].join: waits for 2 arrivals" in loaded.stdout + loaded.stderr
    assert rows(sqlite_database) == (0, 0)
