"""Execution-finished events on the paths that end executions outside the runner's own
terminal transition (on both databases): the sweep's abandoned and timed-out executions, by the
set, a cancel before the start, an attempt ended by ``end_attempt``. One event each, with its
enforcement, in the transaction that ended it; none while no rule listens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from attune.executions import claims, endings, records, retries
from attune.executions.routing import Routed, Unroutable
from attune.executions.scheduler import schedule
from attune.liveness import registry as workers
from attune.liveness import sweep as sweeps
from attune.liveness.heartbeat import Heartbeat
from attune.liveness.orphans import settle_predecessor
from attune.liveness.registry import Registration
from attune.liveness.reports import SweepReport
from attune.packs.loader import load_packs
from attune.rules import enforcement, finished
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Enforcement, Execution, ExecutionStatus, TriggerEvent, Worker
from attune.store.sqltypes import db_ago
from attune.worker.dispatch import RuleFinishing
from tests.pack_builder import action, rule, write_pack, write_rules

SETTINGS = Settings(heartbeat_interval_s=30, heartbeat_staleness_multiplier=3)
REJECT = {"limit": 1, "on_limit": "reject"}
ON_FINISHED = rule(
    trigger={"type": "core.execution_finished", "params": {"action": "core.*"}},
    action={"ref": "demo.hello", "parameters": {"who": "{{ trigger.status }}"}},
)


@pytest.fixture(autouse=True)
def rules_looked_up_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test loads its own rules into a database of the same URL: no cached answer."""
    monkeypatch.setattr(finished, "RULES_SEEN_FOR_S", 0.0)


def load(database: Database, packs_dir: Path, **rules: dict[str, Any]) -> None:
    write_rules(packs_dir, rules)
    result = load_packs(database, packs_dir)
    assert result.ok, result.errors


def add(
    database: Database, status: str, worker: str | None = None, action_ref: str = "core.sleep"
) -> int:
    with database.session_scope() as session:
        execution = Execution(action_ref=action_ref, worker=worker, status=status)
        session.add(execution)
        session.flush()
        return execution.id


def dead_worker_with(database: Database, name: str, count: int) -> list[int]:
    with database.session_scope() as session:
        workers.register(session, Registration(name, ("shell",), (), "h", 1))
        session.execute(update(Worker).values(last_heartbeat=db_ago(1000)))
    return [add(database, "running", name) for _ in range(count)]


def finished_events(database: Database) -> dict[int, TriggerEvent]:
    with database.session_scope() as session:
        query = select(TriggerEvent).where(TriggerEvent.type == "core.execution_finished")
        rows = list(session.scalars(query))
    return {row.payload["execution_id"]: row for row in rows}


def enforced(database: Database) -> list[Enforcement]:
    with database.session_scope() as session:
        return list(session.scalars(select(Enforcement).order_by(Enforcement.id)))


def sweep_enforcing(database: Database, settings: Settings) -> SweepReport:
    with database.session_scope() as session:
        report = sweeps.sweep(session, settings, events=True)
        enforcement.enforce_recorded(session, settings, report.events)
    return report


def test_a_sweep_records_one_event_per_execution_it_ended_with_its_enforcement(
    database: Database, tmp_path: Path
) -> None:
    load(database, tmp_path, on_finished=ON_FINISHED)
    abandoned = dead_worker_with(database, "gone", 3)
    unpicked = add(database, "scheduled")
    with database.session_scope() as session:
        session.execute(
            update(Execution).where(Execution.id == unpicked).values(eligible_at=db_ago(600))
        )
    settings = Settings(heartbeat_interval_s=30, scheduled_timeout_s=60)

    report = sweep_enforcing(database, settings)
    again = sweep_enforcing(database, settings)

    assert report.abandoned == 3
    assert report.failed_scheduled == 1
    assert again.events == ()
    recorded = finished_events(database)
    assert sorted(recorded) == sorted([*abandoned, unpicked])
    assert sorted(report.events) == sorted(event.id for event in recorded.values())
    assert {recorded[n].payload["status"] for n in abandoned} == {"abandoned"}
    payload = recorded[unpicked].payload
    assert payload == {
        "execution_id": unpicked,
        "action_ref": "core.sleep",
        "status": "failed",
        "exit_code": None,
        "parameters": {},
        "result": None,
        "depth": 0,
    }
    assert recorded[unpicked].dedup_key == f"exec:{unpicked}:failed"
    rows = enforced(database)
    assert sorted(row.event_id for row in rows) == sorted(report.events)
    assert all(row.status == "scheduled" and row.execution_id for row in rows)
    assert sorted(row.parameters["who"] for row in rows) == ["abandoned"] * 3 + ["failed"]


def test_a_sweep_records_nothing_while_no_rule_listens(database: Database, tmp_path: Path) -> None:
    load(database, tmp_path)
    dead_worker_with(database, "gone", 2)

    report = sweep_enforcing(database, SETTINGS)

    assert report.abandoned == 2
    assert report.events == ()
    assert finished_events(database) == {}


def test_only_executions_a_rule_s_trigger_params_select_record_an_event(
    database: Database, tmp_path: Path
) -> None:
    """Given rules watching ``core.s*`` ending abandoned or failed, and ``demo.?ello`` ending
    succeeded: the sweep's set and the runner's one-by-one transitions record an event for
    exactly the executions those params select, and none for the others."""
    load(
        database,
        tmp_path,
        sleepers=rule(
            "demo.sleepers",
            trigger={
                "type": "core.execution_finished",
                "params": {"action": "core.s*", "status": ["abandoned", "failed"]},
            },
            action={"ref": "demo.hello", "parameters": {}},
        ),
        hellos=rule(
            "demo.hellos",
            trigger={
                "type": "core.execution_finished",
                "params": {"action": "demo.?ello", "status": ["succeeded"]},
            },
            action={"ref": "demo.hello", "parameters": {}},
        ),
    )
    with database.session_scope() as session:
        workers.register(session, Registration("gone", ("shell",), (), "h", 1))
        workers.register(session, Registration("w1", ("shell",), (), "h", 1))
        session.execute(
            update(Worker).where(Worker.name == "gone").values(last_heartbeat=db_ago(1000))
        )
    swept_sleep = add(database, "running", "gone")
    swept_echo = add(database, "running", "gone", "core.echo")
    swept_hello = add(database, "running", "gone", "demo.hello")
    hello_ok = add(database, "running", "w1", "demo.hello")
    hello_failed = add(database, "running", "w1", "demo.hello")
    hallo_ok = add(database, "running", "w1", "demo.hallo_x")
    sleep_ok = add(database, "running", "w1")
    finishing = RuleFinishing(SETTINGS)

    sweep_enforcing(database, SETTINGS)
    for execution_id, target, action_ref in (
        (hello_ok, ExecutionStatus.SUCCEEDED, "demo.hello"),
        (hello_failed, ExecutionStatus.FAILED, "demo.hello"),
        (hallo_ok, ExecutionStatus.SUCCEEDED, None),
        (sleep_ok, ExecutionStatus.SUCCEEDED, "core.sleep"),
    ):
        assert records.finish(database, execution_id, target, finishing, action_ref=action_ref)

    assert sorted(finished_events(database)) == [swept_sleep, hello_ok]
    with database.session_scope() as session:
        swept = session.scalars(
            select(Execution.status).where(Execution.id.in_([swept_echo, swept_hello]))
        ).all()
    assert swept == ["abandoned", "abandoned"]  # ended by the sweep, yet unwatched


def test_an_execution_failed_as_it_is_requested_records_one_event(
    database: Database, tmp_path: Path
) -> None:
    """Given a rule watching demo's failures and no live worker: each request (the first and
    the remembered one) is recorded failed with its event; unwatched, it records none."""
    watching = rule(
        trigger={
            "type": "core.execution_finished",
            "params": {"action": "demo.*", "status": ["failed"]},
        },
        action={"ref": "demo.hello", "parameters": {"who": "{{ trigger.execution_id }}"}},
    )
    write_pack(tmp_path, "other", {"noop": action("other.noop")})
    load(database, tmp_path, on_failed=watching)
    finishing = RuleFinishing(SETTINGS)

    requested = [
        schedule(database, SETTINGS, "demo.hello", {}, finishing=finishing) for _ in range(2)
    ]
    unwatched = schedule(database, SETTINGS, "other.noop", {}, finishing=finishing)

    assert all(isinstance(routed, Unroutable) for routed in [*requested, unwatched])
    recorded = finished_events(database)
    assert sorted(recorded) == sorted(routed.execution_id for routed in requested)
    assert {event.payload["status"] for event in recorded.values()} == {"failed"}
    assert sorted(row.event_id for row in enforced(database)) == sorted(
        event.id for event in recorded.values()
    )


def test_an_action_glob_with_brackets_is_refused_at_load(
    database: Database, tmp_path: Path
) -> None:
    write_rules(
        tmp_path,
        {
            "bracketed": rule(
                trigger={"type": "core.execution_finished", "params": {"action": "core.[ab]*"}},
                action={"ref": "demo.hello", "parameters": {}},
            )
        },
    )

    result = load_packs(database, tmp_path)

    assert not result.ok
    assert "bracketed.yaml: trigger.params: action: 'core.[ab]*'" in str(result.errors)


def test_a_large_result_is_cut_in_the_event_as_the_runner_cuts_it(
    database: Database, tmp_path: Path
) -> None:
    load(database, tmp_path, on_finished=ON_FINISHED)
    [execution_id] = dead_worker_with(database, "gone", 1)
    big = {"text": "x" * (endings.MAX_RESULT_CHARS + 10)}
    with database.session_scope() as session:
        session.execute(update(Execution).values(result=big))

    sweep_enforcing(database, SETTINGS)

    cut = finished_events(database)[execution_id].payload["result"]
    assert isinstance(cut, str)
    assert len(cut) == endings.MAX_RESULT_CHARS
    assert cut.startswith('{"text": "xxx') or cut.startswith('{"text":"xxx')


def test_a_cancel_before_the_start_records_one_event(database: Database, tmp_path: Path) -> None:
    load(database, tmp_path, on_finished=ON_FINISHED)
    execution_id = add(database, "scheduled")
    finishing = RuleFinishing(SETTINGS)

    status = records.request_cancel(database, execution_id, finishing)
    later = records.transition(database, execution_id, ExecutionStatus.CANCELED)

    assert status is ExecutionStatus.CANCELED
    assert not later
    event = finished_events(database)[execution_id]
    assert event.payload["status"] == "canceled"
    [enforcement] = enforced(database)
    assert enforcement.event_id == event.id
    assert enforcement.parameters["who"] == "canceled"


def test_an_attempt_ended_by_end_attempt_records_one_event(
    database: Database, tmp_path: Path
) -> None:
    load(database, tmp_path, on_finished=ON_FINISHED)
    execution_id = add(database, "running", "w1")
    finishing = RuleFinishing(SETTINGS)

    ended = retries.end_attempt(
        database, SETTINGS, execution_id, ExecutionStatus.ABANDONED, finishing, held_by="w1"
    )
    again = retries.end_attempt(
        database, SETTINGS, execution_id, ExecutionStatus.ABANDONED, finishing, held_by="w1"
    )

    assert ended is not None
    assert again is None
    assert finished_events(database)[execution_id].payload["status"] == "abandoned"
    assert len(enforced(database)) == 1


def test_the_runner_and_the_sweep_write_the_same_payload(
    database: Database, tmp_path: Path
) -> None:
    load(database, tmp_path, on_finished=ON_FINISHED)
    [by_sweep] = dead_worker_with(database, "gone", 1)
    by_runner = add(database, "running", "w1")
    values = {"result": {"n": 1}, "exit_code": 3, "parameters": {"seconds": 2}}
    with database.session_scope() as session:
        session.execute(
            update(Execution).where(Execution.id.in_([by_sweep, by_runner])).values(**values)
        )

    sweep_enforcing(database, SETTINGS)
    records.finish(
        database, by_runner, ExecutionStatus.ABANDONED, RuleFinishing(SETTINGS), error="x"
    )

    recorded = finished_events(database)
    expected = {**values, "status": "abandoned", "action_ref": "core.sleep", "depth": 0}
    assert recorded[by_sweep].payload == {**expected, "execution_id": by_sweep}
    assert recorded[by_runner].payload == {**expected, "execution_id": by_runner}
    assert recorded[by_sweep].source == recorded[by_runner].source == "execution"


def test_a_worker_shutting_down_records_one_event_per_execution_it_abandons(
    database: Database, tmp_path: Path
) -> None:
    load(database, tmp_path, on_finished=ON_FINISHED)
    registration = Registration("w1", ("shell",), (), "h", 1)
    heartbeat = Heartbeat(database, registration, interval_s=60)
    heartbeat.start()
    held = [add(database, "running", "w1"), add(database, "canceling", "w1")]

    deactivation = heartbeat.deactivate("shut down", RuleFinishing(SETTINGS))

    assert deactivation is not None
    assert deactivation.abandoned == 2
    recorded = finished_events(database)
    assert sorted(recorded) == sorted(held)
    assert {event.payload["status"] for event in recorded.values()} == {"abandoned"}
    assert len(enforced(database)) == 2


def test_a_restarted_worker_records_one_event_per_execution_its_predecessor_held(
    database: Database, tmp_path: Path
) -> None:
    load(database, tmp_path, on_finished=ON_FINISHED)
    with database.session_scope() as session:
        workers.register(session, Registration("w1", ("shell",), (), "h", 1))
    held = add(database, "running", "w1")

    settle_predecessor(database, "w1", 0.2, RuleFinishing(SETTINGS))
    settle_predecessor(database, "w1", 0.2, RuleFinishing(SETTINGS))

    [event] = finished_events(database).values()
    assert event.payload["execution_id"] == held
    assert event.payload["status"] == "abandoned"
    [enforcement] = enforced(database)
    assert enforcement.event_id == event.id


def test_a_gate_rejecting_at_the_schedule_or_at_the_claim_records_one_event(
    database: Database, tmp_path: Path
) -> None:
    write_pack(tmp_path, "gating", {"hello": action("gating.hello", concurrency=REJECT)})
    on_gating = rule(
        trigger={"type": "core.execution_finished", "params": {"action": "gating.*"}},
        action={"ref": "demo.hello", "parameters": {"who": "{{ trigger.status }}"}},
    )
    load(database, tmp_path, on_finished=on_gating)
    with database.session_scope() as session:
        workers.register(session, Registration("w", ("shell",), (), "h", 1))
    finishing = RuleFinishing(SETTINGS)

    def request() -> int:
        routed = schedule(database, SETTINGS, "gating.hello", {}, finishing=finishing)
        assert isinstance(routed, Routed)
        return routed.execution_id

    first, second = request(), request()
    assert claims.claim(database, first, "w", 1, finishing)[0] is not None
    assert claims.claim(database, second, "w", 2, finishing)[0] is None
    third = request()  # the slot is held: rejected as it is recorded

    recorded = finished_events(database)
    assert sorted(recorded) == [second, third]
    assert {event.payload["status"] for event in recorded.values()} == {"canceled"}
    assert records.get(database, first).status is ExecutionStatus.RUNNING


def test_an_execution_a_rule_starts_with_no_live_worker_records_its_event(
    database: Database, tmp_path: Path
) -> None:
    """Given a webhook rule running demo.hello, no live shell worker and a rule watching demo's
    failures: the emitted event's execution is recorded failed at once, with its own
    execution-finished event enforced in the same transaction; the webhook's enforcement
    carries the follow-up, which names the failed execution."""
    from attune.rules.emission import emit

    hook = rule(
        ref="demo.on_hook",
        trigger={"type": "core.webhook", "params": {"path": "deploys"}},
        action={"ref": "demo.hello", "parameters": {"who": "hook"}},
    )
    watching = rule(
        ref="demo.on_failed",
        trigger={
            "type": "core.execution_finished",
            "params": {"action": "demo.*", "status": ["failed"]},
        },
        action={"ref": "demo.hello", "parameters": {"who": "after {{ trigger.execution_id }}"}},
    )
    load(database, tmp_path, on_hook=hook, on_failed=watching)
    payload = {"body": {}, "path": "deploys"}

    emitted = [emit(database, SETTINGS, "core.webhook", payload) for _ in range(2)]

    for one in emitted:  # the second too goes the general way: a rule watches demo failing
        [started] = one.enforcements
        assert started.execution_id is not None
        assert started.queue is None
        [follow_up] = started.follow_ups
        assert follow_up.rule_ref == "demo.on_failed"
        with database.session_scope() as session:
            ran = session.get_one(Execution, follow_up.execution_id)
            assert ran.parameters["who"] == f"after {started.execution_id}"
            assert ran.trigger_depth == 1
    recorded = finished_events(database)
    started_ids = [one.enforcements[0].execution_id for one in emitted]
    assert set(started_ids) <= set(recorded)
    assert {recorded[n].payload["status"] for n in started_ids} == {"failed"}


def test_the_follow_up_of_an_execution_failed_at_once_is_routed_with_its_starter(
    database: Database, tmp_path: Path
) -> None:
    """A rule starts a python action no live worker serves; a rule watching its failure runs a
    shell action, which a live worker serves: that follow-up is what the emit has to send."""
    from attune.rules.emission import emit

    write_pack(
        tmp_path,
        "demo",
        {"hello": action(), "py": action("demo.py", runner_type="python", entry_point="py.py")},
    )
    hook = rule(
        ref="demo.on_hook",
        trigger={"type": "core.webhook", "params": {"path": "deploys"}},
        action={"ref": "demo.py"},
    )
    watching = rule(
        ref="demo.on_failed",
        trigger={"type": "core.execution_finished", "params": {"action": "demo.py"}},
        action={"ref": "demo.hello"},
    )
    load(database, tmp_path, on_hook=hook, on_failed=watching)
    with database.session_scope() as session:
        workers.register(session, Registration("w1", ("shell",), (), "h", 1))

    [started] = emit(
        database, SETTINGS, "core.webhook", {"body": {}, "path": "deploys"}
    ).enforcements

    [follow_up] = started.follow_ups
    assert started.queue is None
    assert started.routed() == [("demo.on_failed", follow_up.execution_id, "attune.shell")]
