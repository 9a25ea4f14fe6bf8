"""The completion hub on PostgreSQL: what a notification leaves for a waiter, and when a
waiter may trust it instead of reading the database."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import create_engine, make_url, text, update

from attune.client import ExecutionHandle
from attune.executions import completion
from attune.executions.completion import NOTIFY_CHANNEL, CompletionHub, hub
from attune.liveness import registry
from attune.liveness import sweep as sweeps
from attune.liveness.registry import Registration
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Execution, ExecutionStatus, Worker
from attune.store.sqltypes import db_ago
from attune.worker.app import resources
from tests.conftest import PG_ADMIN_URL, require_server
from tests.processes import wait_until
from tests.rows import add_execution


def notify(database: Database, payload: str) -> None:
    with database.engine.connect() as connection:
        connection.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {
                "channel": NOTIFY_CHANNEL,
                "payload": payload,
            },
        )
        connection.commit()


def finished_execution(database: Database) -> int:
    with database.session_scope() as session:
        execution = Execution(action_ref="core.echo", parameters={}, status="succeeded")
        session.add(execution)
        session.flush()
        return execution.id


@pytest.fixture
def listening(pg_database: Database) -> Iterator[CompletionHub]:
    own = CompletionHub()
    assert own.epoch is None
    assert own.listen_postgres(pg_database.engine.url) == 1
    yield own
    own.stop()
    assert own.epoch is None


def test_an_awaited_record_is_kept_and_others_are_not(
    listening: CompletionHub, pg_database: Database
) -> None:
    assert listening.await_record(7) is True
    assert listening.await_record(7) is False
    seen = listening.version

    notify(pg_database, '{"id": 8, "status": "succeeded"}')
    notify(pg_database, '{"id": 7, "status": "failed"}')

    wait_until(lambda: listening.finished_record(7) is not None, 5, "the record of 7")
    assert listening.finished_record(7) == {"id": 7, "status": "failed"}
    assert listening.finished_record(8) is None
    assert listening.version >= seen + 2


def test_an_id_alone_means_finished_read_the_record(
    listening: CompletionHub, pg_database: Database
) -> None:
    listening.await_record(41)

    notify(pg_database, "41")

    wait_until(lambda: listening.finished_record(41) is not None, 5, "the notice of 41")
    assert listening.finished_record(41) == {}


def test_ids_in_an_array_mean_finished_read_the_records(
    listening: CompletionHub, pg_database: Database
) -> None:
    listening.await_record(41)
    listening.await_record(43)

    notify(pg_database, "[40,41,42]")

    wait_until(lambda: listening.finished_record(41) is not None, 5, "the notice of 41")
    assert listening.finished_record(41) == {}
    assert listening.finished_record(43) is None


def test_the_sweep_announces_what_it_settled_in_arrays_of_ids(
    pg_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a dead worker holding three executions, one left unpicked too long, two ids per
    # notification, and a listener on both execution channels
    with pg_database.session_scope() as session:
        registry.register(session, Registration("dead", ("shell",), ("attune.shell",), "h", 1))
        session.execute(update(Worker).values(last_heartbeat=db_ago(3600)))
    held = sorted(add_execution(pg_database, "dead") for _ in range(3))
    unpicked = add_execution(pg_database, None, ExecutionStatus.SCHEDULED)
    with pg_database.session_scope() as session:
        session.execute(
            update(Execution).where(Execution.id == unpicked).values(eligible_at=db_ago(7200))
        )
    monkeypatch.setattr(completion, "IDS_PER_NOTIFICATION", 2)
    url = pg_database.engine.url.set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        listener.execute("LISTEN attune_execution_event")
        listener.execute("INSERT INTO event_relay (name) VALUES ('this test')")  # a relay

        # When the sweep settles them, then one of them is moved on by a later transaction
        with pg_database.session_scope() as session:
            report = sweeps.sweep(session, Settings(scheduled_timeout_s=3600))
        assert (report.abandoned, report.failed_scheduled) == (3, 1)
        with pg_database.session_scope() as session:
            session.execute(
                update(Execution).where(Execution.id == held[0]).values(status="failed")
            )
        notes = list(listener.notifies(timeout=2, stop_after=9))
        listener.execute("DELETE FROM event_relay WHERE name = 'this test'")

    # Then the sweep's are two arrays of ids; the stream still has an event per row
    done = [note.payload for note in notes if note.channel == NOTIFY_CHANNEL]
    assert len(done) == 3
    assert sorted(json.loads(done[0]) + json.loads(done[1])) == sorted([*held, unpicked])
    assert json.loads(done[2])["id"] == held[0]  # the row trigger, on again after the sweep
    events = [json.loads(note.payload) for note in notes if note.channel != NOTIFY_CHANNEL]
    assert sorted(event["id"] for event in events if event["status"] == "abandoned") == held
    failed = [event["id"] for event in events if event["status"] == "failed"]
    assert sorted(failed) == sorted([unpicked, held[0]])


def test_a_lost_connection_changes_the_epoch(
    listening: CompletionHub, pg_database: Database
) -> None:
    with pg_database.engine.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN %' AND datname = current_database()"
            )
        )

    wait_until(lambda: listening.epoch not in (None, 1), 10, "a new connection")
    assert listening.epoch == 2


@pytest.fixture
def configured(pg_database: Database) -> Iterator[Database]:
    url = pg_database.engine.url.render_as_string(hide_password=False)
    resources.configure(Settings.from_env({"ATTUNE_DATABASE_URL": url}))
    try:
        yield resources.database
    finally:
        hub.stop()  # it listens to this test's database: later tests start their own
        resources.configure(Settings.from_env())


def test_a_handle_without_an_epoch_reads_at_once(configured: Database) -> None:
    execution_id = finished_execution(configured)

    record = ExecutionHandle(execution_id).wait(timeout_s=0.04)  # less than the safety net

    assert record.status == "succeeded"


def test_a_trusted_wait_still_ends_when_a_notification_was_never_sent(
    configured: Database,
) -> None:
    # Given an execution that finished without a notification, awaited as execute() does
    execution_id = finished_execution(configured)
    epoch = hub.listen_postgres(configured.engine.url)
    assert epoch is not None
    handle = ExecutionHandle(execution_id, epoch)
    hub.await_record(execution_id)

    # When the caller waits: the safety net reads the row after its first pause
    record = handle.wait(timeout_s=5)

    assert record.status == "succeeded"
    assert hub.finished_record(execution_id) is None  # forgotten once returned


def test_a_trusted_wait_wakes_on_the_notification(configured: Database) -> None:
    execution_id = finished_execution(configured)
    epoch = hub.listen_postgres(configured.engine.url)
    handle = ExecutionHandle(execution_id, epoch)
    hub.await_record(execution_id)
    fields = {
        **{name: None for name in ("worker", "exit_code", "result", "error", "started_at")},
        **{"finished_at": None, "duration_ms": 1, "stderr": ""},
        "id": execution_id,
        "action_ref": "core.echo",
        "status": "succeeded",
        "parameters": {},
        "stdout": "from the notification",
        "stdout_truncated": False,
        "stderr_truncated": False,
        "requested_at": "2026-11-28T12:00:00+00:00",
    }
    payload = json.dumps(fields)
    threading.Timer(0.01, notify, (configured, payload)).start()

    record = handle.wait(timeout_s=5)

    assert record.stdout == "from the notification"  # not what the row holds


def test_a_hub_with_nothing_awaited_stops_listening_until_asked_again(
    pg_database: Database,
) -> None:
    idle = CompletionHub(idle_s=0.05)
    try:
        assert idle.listen_postgres(pg_database.engine.url) == 1
        wait_until(lambda: idle.epoch is None, 5, "the idle hub to stop listening")
        idle.await_record(5)  # awaiting alone does not make it listen again
        notify(pg_database, '{"id": 5, "status": "succeeded"}')

        assert idle.listen_postgres(pg_database.engine.url) == 2
        idle.await_record(6)
        notify(pg_database, '{"id": 6, "status": "failed"}')

        wait_until(lambda: idle.finished_record(6) is not None, 5, "the record of 6")
        assert idle.finished_record(5) is None  # sent while it was not listening
    finally:
        idle.stop()
    assert idle.epoch is None


def test_a_hub_keeps_listening_while_something_is_awaited(pg_database: Database) -> None:
    busy = CompletionHub(idle_s=0.05)
    try:
        assert busy.listen_postgres(pg_database.engine.url) == 1
        busy.await_record(9)
        time.sleep(0.3)  # six idle periods

        notify(pg_database, '{"id": 9, "status": "succeeded"}')

        wait_until(lambda: busy.finished_record(9) is not None, 5, "the record of 9")
        assert busy.epoch == 1
    finally:
        busy.stop()


def test_a_parked_hub_whose_database_is_gone_does_not_hold_its_caller() -> None:
    require_server("PostgreSQL", "127.0.0.1", 5432)
    name = f"attune_test_gone_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{PG_ADMIN_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(f"{PG_ADMIN_URL}/{name}")
    idle = CompletionHub(idle_s=0.05)
    try:
        assert idle.listen_postgres(url) == 1
        wait_until(lambda: idle.epoch is None, 5, "the idle hub to stop listening")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        started = time.monotonic()

        epoch = idle.listen_postgres(url, ready_timeout_s=30)

        assert epoch is None  # it cannot listen: the caller goes on and reads the database
        assert time.monotonic() - started < 10  # without waiting out the ready timeout
    finally:
        idle.stop()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
