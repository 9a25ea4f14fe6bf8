"""Single advances, no worker process needed: one that takes in several outcomes at once ends
its run (with no worker serving the tasks' runtime, each child is recorded ``failed`` and taken
in within the same pass); one offered to take a task on claims it in its own transaction, only
when the task is of a queue the offering worker consumes, and records the next one already
claimed; a step records its task against the action as last read in the process, reading it
again only once it changed; a task's end given to its run's advance is stored under the
lock, in the lock's own statement on PostgreSQL."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from attune.executions.claims import claim_in, record_in
from attune.executions.handoff import TakeOn
from attune.executions.results import store_of
from attune.liveness.registry import Registration, register
from attune.packs.loader import load_packs
from attune.rules import finished
from attune.runtimes import Outcome, RunResult
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import (
    ENFORCEMENT_TABLE,
    EXECUTION_TABLE,
    TRIGGER_EVENT_TABLE,
    WORKFLOW_RUN_TABLE,
    ExecutionStatus,
)
from attune.store.sqltypes import db_now
from attune.workflows.engine import advance
from attune.workflows.start import start
from tests.pack_builder import (
    action,
    header,
    rule,
    workflow_action,
    write_pack,
    write_rules,
    write_workflows,
)
from tests.workflows.test_advance_cost import statements

_E = EXECUTION_TABLE.c
FAN = {
    "version": 1,
    "tasks": [
        {
            "name": "each",
            "action": "flows.hello",
            "with": {"items": "{{ [1, 2, 3] }}", "concurrency": 3, "fail_fast": False},
        }
    ],
}


def started_fan(database: Database, tmp_path: Path) -> tuple[int, ExecutionStatus]:
    """Load pack ``flows`` (its fan-out of flows.hello) and start a run of it as a worker "w"
    that has just claimed its parent would: the parent's id and the status it ended with."""
    actions = {"hello": action("flows.hello"), "fan": workflow_action("flows.fan")}
    pack = write_pack(tmp_path, "flows", actions, header("flows"))
    write_workflows(pack, {"fan": FAN})
    assert load_packs(database, tmp_path).ok
    with database.session_scope() as session:
        parent = session.execute(
            insert(EXECUTION_TABLE)
            .values(action_ref="flows.fan", status=ExecutionStatus.RUNNING.value, worker="w")
            .returning(_E.id)
        ).scalar_one()
    status, _ = start(database, Settings(database_url=str(database.engine.url)), parent, "w")
    return parent, status


def test_a_fan_out_whose_children_all_end_in_one_pass_ends_its_run(
    database: Database, tmp_path: Path
) -> None:
    parent, status = started_fan(database, tmp_path)

    assert status is ExecutionStatus.FAILED  # all three children failed: no worker serves them
    with database.session_scope() as session:
        children = session.execute(
            select(_E.status, _E.wf_consumed, _E.wf_item).where(_E.parent_id == parent)
        ).all()
        phase = session.scalar(
            select(WORKFLOW_RUN_TABLE.c.phase).where(WORKFLOW_RUN_TABLE.c.execution_id == parent)
        )
        result = session.scalar(select(_E.result).where(_E.id == parent))
    assert sorted(children) == [("failed", True, n) for n in range(3)]
    assert phase == "done"
    assert [error["item"] for error in result["errors"]] == [0, 1, 2]


def test_a_task_failed_for_want_of_a_worker_records_its_execution_finished_event(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a rule watching flows.hello failing, each child recorded failed at once (no worker
    serves it) records its event, enforced in the run's pass (the follow-up fails too)."""
    monkeypatch.setattr(finished, "RULES_SEEN_FOR_S", 0.0)
    watching = rule(
        ref="demo.on_failed",
        trigger={"type": "core.execution_finished", "params": {"action": "flows.hello"}},
        action={"ref": "demo.hello"},
    )
    write_rules(tmp_path, {"on_failed": watching})
    parent, status = started_fan(database, tmp_path)

    assert status is ExecutionStatus.FAILED
    with database.session_scope() as session:
        ids = session.scalars(select(_E.id).where(_E.parent_id == parent)).all()
        events = session.scalars(
            select(TRIGGER_EVENT_TABLE.c.payload).where(
                TRIGGER_EVENT_TABLE.c.type == "core.execution_finished"
            )
        ).all()
        follow_ups = session.scalars(
            select(ENFORCEMENT_TABLE.c.rule_ref).where(
                ENFORCEMENT_TABLE.c.execution_id.is_not(None)
            )
        ).all()
    assert sorted(event["execution_id"] for event in events) == sorted(ids)
    assert follow_ups == ["demo.on_failed"] * 3


SEQUENCE = {
    "version": 1,
    "tasks": [
        {"name": "first", "action": "flows.hello", "next": [{"do": ["second"]}]},
        {"name": "second", "action": "flows.hello"},
    ],
}


SPLIT = {
    "version": 1,
    "tasks": [
        {"name": "first", "action": "flows.hello", "next": [{"do": ["second", "third"]}]},
        {"name": "second", "action": "flows.hello"},
        {"name": "third", "action": "flows.hello"},
    ],
}


def shell_run(database: Database, tmp_path: Path, flows: dict[str, Any], flow: str) -> int:
    """Load pack ``flows`` (``flows.hello`` and the workflows ``flows``), register a live worker
    "w" serving shell, and record a run of ``flows.<flow>`` claimed by "w": the parent's id."""
    actions = {"hello": action("flows.hello")}
    actions.update({name: workflow_action(f"flows.{name}") for name in flows})
    pack = write_pack(tmp_path, "flows", actions, header("flows"))
    write_workflows(pack, flows)
    assert load_packs(database, tmp_path).ok
    with database.session_scope() as session:
        register(session, Registration("w", ("shell",), ("attune.shell",), "here", os.getpid()))
        parent: int = session.execute(
            insert(EXECUTION_TABLE)
            .values(action_ref=f"flows.{flow}", status=ExecutionStatus.RUNNING.value, worker="w")
            .returning(_E.id)
        ).scalar_one()
    return parent


class Recorder:
    """A :class:`Handoff` that records what its process is told it runs."""

    def __init__(self) -> None:
        self.ran: list[int | None] = []

    def allowed(self) -> bool:
        """Always."""
        return True

    def running(self, execution_id: int | None) -> None:
        """Record ``execution_id``."""
        self.ran.append(execution_id)


@pytest.mark.parametrize(
    ("flow", "queue", "takes"),
    [
        ("seq", "attune.shell", True),
        ("seq", "attune.python", False),
        ("fan", "attune.shell", False),
    ],
    ids=["its-runtime", "another-runtime", "fan-out-items"],
)
def test_an_advance_offered_a_take_on_claims_one_task_of_its_workers_queue(
    database: Database, tmp_path: Path, flow: str, queue: str, takes: bool
) -> None:
    # Given a live worker "w" serving shell, a two-task sequence and a fan-out of a shell action
    parent = shell_run(database, tmp_path, {"seq": SEQUENCE, "fan": FAN}, flow)
    recorder = Recorder()
    take_on = TakeOn(recorder, frozenset({queue}), functools.partial(claim_in, "w"))

    # When the run starts with the offer
    status, taken = start(
        database, Settings(database_url=str(database.engine.url)), parent, "w", take_on
    )

    # Then its first task is claimed for the process in the transaction that recorded it (its
    # message unsent); of another worker's queue, or a fan-out's items, stay scheduled
    assert status is ExecutionStatus.RUNNING
    with database.session_scope() as session:
        rows = session.execute(
            select(_E.id, _E.status, _E.worker, _E.requested_at, _E.started_at)
            .where(_E.parent_id == parent)
            .order_by(_E.id)
        ).all()
    if takes:
        (child,) = rows
        assert taken is not None
        assert (taken[0], taken[2].runner_type) == (child.id, "shell")
        assert (child.status, child.worker) == ("running", "w")
        if not database.is_sqlite:  # one transaction: PostgreSQL's clock is its start
            assert child.started_at == child.requested_at
        assert recorder.ran == [child.id]
    else:
        assert taken is None
        assert [(row.status, row.worker) for row in rows] == [("scheduled", None)] * len(rows)
        assert len(rows) == (3 if flow == "fan" else 1)
        assert recorder.ran == []


@pytest.mark.parametrize("changed", [False, True], ids=["action-unchanged", "action-reloaded"])
def test_a_step_records_its_task_against_the_action_as_last_read_until_it_changes(
    database: Database, tmp_path: Path, changed: bool
) -> None:
    # Given a live worker "w" serving shell and a run of a two-task sequence, its first task
    # recorded (the action read then)
    parent = shell_run(database, tmp_path, {"seq": SEQUENCE}, "seq")
    settings = Settings(database_url=str(database.engine.url))
    start(database, settings, parent, "w")
    if changed:  # its pack reloaded meanwhile with another default
        who = {"type": "string", "default": "reloaded"}
        reloaded = {"hello": action("flows.hello", parameters={"who": who})}
        write_pack(tmp_path, "flows", {**reloaded, "seq": workflow_action("flows.seq")})
        assert load_packs(database, tmp_path).ok

    # When the first task ends and the run advances
    with database.session_scope() as session:
        session.execute(
            update(EXECUTION_TABLE)
            .where(_E.parent_id == parent)
            .values(status=ExecutionStatus.SUCCEEDED.value, finished_at=db_now(), result={})
        )
    with statements(database) as sent:
        advance(database, settings, parent)

    # Then the second task is recorded against the action as it is now, read only if changed
    reads = [sql for sql in sent if sql.startswith("SELECT") and "FROM action" in sql]
    assert len(reads) == (1 if changed else 0), reads
    with database.session_scope() as session:
        second = session.execute(
            select(_E.status, _E.parameters).where(_E.parent_id == parent).order_by(_E.id)
        ).all()[-1]
    assert second.status == ExecutionStatus.SCHEDULED
    assert second.parameters["who"] == ("reloaded" if changed else "world")


@pytest.mark.parametrize("flow", ["seq", "split"])
def test_an_advance_offered_a_take_on_records_the_next_task_claimed_in_one_statement(
    database: Database, tmp_path: Path, flow: str
) -> None:
    # Given a live worker "w" serving shell and a run whose first task, taken on by the process
    # that started the run, leads to one task (seq) or two (split)
    parent = shell_run(database, tmp_path, {flow: SPLIT if flow == "split" else SEQUENCE}, flow)
    recorder = Recorder()
    claim, record = (functools.partial(way, "w", token=7) for way in (claim_in, record_in))
    take_on = TakeOn(recorder, frozenset({"attune.shell"}), claim, record)
    settings = Settings(database_url=str(database.engine.url))
    _, first = start(database, settings, parent, "w", take_on)
    assert first is not None

    # When it ends and that process advances the run, offering to take the next one on
    with database.session_scope() as session:
        session.execute(
            update(EXECUTION_TABLE)
            .where(_E.id == first[0])
            .values(status=ExecutionStatus.SUCCEEDED.value, finished_at=db_now(), result={})
        )
    with statements(database) as sent:
        taken = advance(database, settings, parent, take_on=take_on).taken

    # Then one next task is recorded already claimed for it (no claim after), its action as
    # last read; another is recorded scheduled, for its message
    assert taken is not None
    assert taken[2].runner_type == "shell"
    assert not [sql for sql in sent if sql.startswith("UPDATE execution SET status")]
    assert sum("INSERT INTO execution" in sql for sql in sent) == (2 if flow == "split" else 1)
    with database.session_scope() as session:
        rows = session.execute(
            select(_E.id, _E.status, _E.worker, _E.claim_token, _E.started_at, _E.wf_task_id)
            .where(_E.parent_id == parent, _E.id != first[0])
            .order_by(_E.id)
        ).all()
    second = rows[0]
    assert second.id == taken[0] == recorder.ran[-1]
    assert (second.status, second.worker, second.claim_token) == ("running", "w", 7)
    assert second.started_at is not None
    assert second.wf_task_id is not None
    assert [(row.status, row.worker) for row in rows[1:]] == (
        [("scheduled", None)] if flow == "split" else []
    )


def test_a_task_end_given_to_its_run_advance_is_stored_under_the_lock_in_one_statement(
    database: Database, tmp_path: Path
) -> None:
    # Given a run of a two-task sequence whose first task runs on worker "w"
    parent = shell_run(database, tmp_path, {"seq": SEQUENCE}, "seq")
    settings = Settings(database_url=str(database.engine.url))
    take_on = TakeOn(Recorder(), frozenset({"attune.shell"}), functools.partial(claim_in, "w"))
    taken = start(database, settings, parent, "w", take_on)[1]
    assert taken is not None

    # When its worker gives its end to the run's advance
    ended = RunResult(Outcome.SUCCEEDED, 0, "{}", "", {}, None, False, False, 0, 0, 5)
    with statements(database) as sent:
        outcome = advance(database, settings, parent, storing=store_of(taken[0], ended))

    # Then the end is stored with the pass, in the lock's own statement on PostgreSQL
    assert outcome.stored
    stores = [n for n, sql in enumerate(sent) if "UPDATE execution SET status" in sql]
    assert stores == [1 if database.is_sqlite else 0], sent[:2]
    assert "workflow_run" in sent[0]
    with database.session_scope() as session:
        rows = session.execute(
            select(_E.status, _E.wf_consumed).where(_E.parent_id == parent).order_by(_E.id)
        ).all()
    assert [tuple(row) for row in rows] == [("succeeded", True), ("scheduled", False)]
