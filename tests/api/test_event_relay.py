"""The execution event trigger notifies only while an API process relays (PostgreSQL): no
relay, no notification and no commit-time queue lock; a fresh relay row, every transition."""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import delete, func, select, text, update

from attune.api import eventfeed
from attune.api.eventfeed import EventFeed
from attune.api.events import EventHub
from attune.store.db import Database
from attune.store.models import EventRelay, Execution, ExecutionStatus
from tests.processes import wait_until
from tests.rows import add_execution

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def no_relays_left(pg_database: Database) -> Iterator[None]:
    """The tests' relay rows go with them (clearing the database leaves a live server's)."""
    yield
    with pg_database.session_scope() as session:
        session.execute(delete(EventRelay))


@pytest.fixture
def listener(pg_database: Database) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    url = pg_database.engine.url.set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as connection:
        connection.execute("LISTEN attune_execution_event")
        yield connection


def _move(database: Database, execution_id: int, status: ExecutionStatus) -> None:
    with database.session_scope() as session:
        session.execute(
            update(Execution).where(Execution.id == execution_id).values(status=status.value)
        )


def _relay_seen(database: Database, name: str, seconds_ago: int) -> None:
    with database.session_scope() as session:
        session.execute(
            text(
                "INSERT INTO event_relay (name, seen_at)"
                " VALUES (:name, now() - make_interval(secs => :ago))"
            ),
            {"name": name, "ago": seconds_ago},
        )


def test_transitions_notify_only_while_a_relay_was_seen_within_its_ttl(
    pg_database: Database, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    execution_id = add_execution(pg_database, None, ExecutionStatus.SCHEDULED)

    _move(pg_database, execution_id, ExecutionStatus.RUNNING)  # no relay at all
    quiet = list(listener.notifies(timeout=0.5))
    _relay_seen(pg_database, "stale", seconds_ago=120)
    _move(pg_database, execution_id, ExecutionStatus.CANCELING)  # only a stale one
    still_quiet = list(listener.notifies(timeout=0.5))
    _relay_seen(pg_database, "fresh", seconds_ago=5)
    _move(pg_database, execution_id, ExecutionStatus.CANCELED)
    heard = list(listener.notifies(timeout=2, stop_after=1))

    assert quiet == []
    assert still_quiet == []
    assert len(heard) == 1
    assert '"status" : "canceled"' in heard[0].payload


def test_an_event_feed_keeps_its_relay_row_while_it_listens(
    pg_database: Database, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    feed = EventFeed(EventHub(), pg_database)

    def relays() -> list[str]:
        with pg_database.session_scope() as session:
            return list(session.scalars(select(EventRelay.name)))

    feed.start()
    try:
        assert len(relays()) == 1  # registered before start returns
        execution_id = add_execution(pg_database, None, ExecutionStatus.SCHEDULED)
        heard = list(listener.notifies(timeout=2, stop_after=1))
    finally:
        feed.stop()

    assert len(heard) == 1
    assert f'"id" : {execution_id}' in heard[0].payload
    assert relays() == []


class GapHub(EventHub):
    """A hub that records the gaps its source reports."""

    def __init__(self) -> None:
        super().__init__()
        self.gaps: list[str] = []

    def gap(self, reason: str) -> None:
        self.gaps.append(reason)
        super().gap(reason)


def test_a_relay_row_deleted_under_a_feed_comes_back_with_a_reset(
    pg_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a feed refreshing every 0.2 s, when its row is deleted (the triggers go silent),
    then its next refresh puts it back and resets the subscribers, who refetch."""
    monkeypatch.setattr(eventfeed, "RELAY_REFRESH_S", 0.2)
    hub = GapHub()
    feed = EventFeed(hub, pg_database)
    feed.start()
    try:
        with pg_database.session_scope() as session:
            session.execute(delete(EventRelay))
        wait_until(lambda: hub.gaps != [], 10, "a reset after the lapse")
        with pg_database.session_scope() as session:
            back = session.scalar(select(func.count()).select_from(EventRelay))
    finally:
        feed.stop()

    assert back == 1
    assert hub.gaps == ["the event listener's relay lapsed"]


def _stale_worker_running(database: Database, name: str, count: int) -> list[int]:
    from attune.liveness import registry
    from attune.liveness.registry import Registration
    from attune.store.models import Worker
    from attune.store.sqltypes import db_ago

    with database.session_scope() as session:
        registry.register(session, Registration(name, ("shell",), (), "h", 1))
        session.execute(
            update(Worker).where(Worker.name == name).values(last_heartbeat=db_ago(1e4))
        )
    return [add_execution(database, name) for _ in range(count)]


def test_a_sweep_notifies_each_abandoned_transition_only_while_a_relay_listens(
    pg_database: Database, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    """Given stale workers holding running executions, a sweep with no relay sends no
    transition; with a fresh relay, one per abandoned execution, from running, as a worker's
    own transition would (the relay is looked up once per transaction, not per row)."""
    from attune.liveness import sweep as sweeps
    from attune.settings import Settings

    _stale_worker_running(pg_database, "gone1", 2)
    with pg_database.session_scope() as session:
        quiet_report = sweeps.sweep(session, Settings())
    quiet = list(listener.notifies(timeout=0.5))
    ids = _stale_worker_running(pg_database, "gone2", 3)
    _relay_seen(pg_database, "fresh", seconds_ago=5)
    with pg_database.session_scope() as session:
        report = sweeps.sweep(session, Settings())
    heard = list(listener.notifies(timeout=2, stop_after=3))

    assert quiet_report.abandoned == 2
    assert quiet == []
    assert report.abandoned == 3
    payloads = [json.loads(notification.payload) for notification in heard]
    assert sorted(p["id"] for p in payloads) == sorted(ids)
    assert {(p["status"], p["previous_status"], p["worker"]) for p in payloads} == {
        ("abandoned", "running", "gone2")
    }


def test_every_transition_of_a_transaction_notifies_while_a_relay_listens(
    pg_database: Database, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    """Given a fresh relay, a transaction moving two executions in two statements sends both
    (the first row's look at the relay serves the rest of the transaction)."""
    first = add_execution(pg_database, None, ExecutionStatus.SCHEDULED)
    second = add_execution(pg_database, None, ExecutionStatus.SCHEDULED)
    _relay_seen(pg_database, "fresh", seconds_ago=5)

    with pg_database.session_scope() as session:
        for execution_id in (first, second):
            session.execute(
                update(Execution).where(Execution.id == execution_id).values(status="running")
            )
    heard = list(listener.notifies(timeout=2, stop_after=2))

    assert sorted(json.loads(n.payload)["id"] for n in heard) == sorted([first, second])


def test_a_sweep_notifies_each_deactivation_only_while_a_relay_listens(
    pg_database: Database, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    """Given stale workers, a sweep with no relay sends no worker event for them; with a fresh
    relay, one ``deactivate`` per worker (the sweep's one look at the relay serves the worker
    trigger too); a registration outside a sweep notifies as before."""
    from attune.liveness import sweep as sweeps
    from attune.settings import Settings

    listener.execute("LISTEN attune_worker_event")
    _stale_worker_running(pg_database, "gone1", 1)
    registered = list(listener.notifies(timeout=2, stop_after=1))
    with pg_database.session_scope() as session:
        sweeps.sweep(session, Settings())
    quiet = list(listener.notifies(timeout=0.5))
    _stale_worker_running(pg_database, "gone2", 0)
    _stale_worker_running(pg_database, "gone3", 0)
    list(listener.notifies(timeout=2, stop_after=2))  # their registrations
    _relay_seen(pg_database, "fresh", seconds_ago=5)
    with pg_database.session_scope() as session:
        sweeps.sweep(session, Settings())
    heard = list(listener.notifies(timeout=2, stop_after=2))

    assert [json.loads(n.payload)["change"] for n in registered] == ["register"]
    assert quiet == []
    payloads = [json.loads(n.payload) for n in heard]
    assert sorted((p["name"], p["change"], p["status"]) for p in payloads) == [
        ("gone2", "deactivate", "inactive"),
        ("gone3", "deactivate", "inactive"),
    ]
