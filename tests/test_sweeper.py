"""The sweeper, watched: every sweep recorded on the database clock, and its status, on both
databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select

from attune.liveness.sweep import sweep
from attune.liveness.sweeper import record_run, sweep_and_record, sweeper_status
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import SWEEP_RUN, PeriodicRun
from attune.store.sqltypes import db_now

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SETTINGS = Settings(sweep_interval_s=10)


def recorded(database: Database) -> list[tuple[str, datetime]]:
    with database.session_scope() as session:
        return [(row.name, row.last_run_at) for row in session.scalars(select(PeriodicRun))]


def test_a_sweep_is_recorded_on_the_database_clock(database: Database) -> None:
    with database.session_scope() as session:
        before = session.scalar(select(db_now()))

    sweep_and_record(database, SETTINGS)

    with database.session_scope() as session:
        after = session.scalar(select(db_now()))
    ((name, at),) = recorded(database)
    assert name == SWEEP_RUN
    assert before is not None
    assert after is not None
    assert before <= at <= after


def test_a_record_never_moves_back_in_time(database: Database) -> None:
    with database.session_scope() as session:
        record_run(session, SWEEP_RUN, now=T0 + timedelta(seconds=5))
    with database.session_scope() as session:
        record_run(session, SWEEP_RUN, now=T0)  # a sweep that began earlier commits later
    assert recorded(database) == [(SWEEP_RUN, T0 + timedelta(seconds=5))]

    with database.session_scope() as session:
        record_run(session, SWEEP_RUN, now=T0 + timedelta(seconds=9))
    assert recorded(database) == [(SWEEP_RUN, T0 + timedelta(seconds=9))]


def test_no_sweep_ever_is_overdue(database: Database) -> None:
    with database.session_scope() as session:
        status = sweeper_status(session, SETTINGS)

    assert (status.last_sweep_at, status.last_sweep_age_s, status.overdue) == (None, None, True)
    assert status.to_json() == {
        "last_sweep_at": None,
        "last_sweep_age_s": None,
        "sweep_interval_s": 10.0,
        "overdue": True,
    }


@pytest.mark.parametrize(("age_s", "overdue"), [(0, False), (30, False), (30.001, True)])
def test_overdue_means_no_sweep_within_three_intervals(
    database: Database, age_s: float, overdue: bool
) -> None:
    with database.session_scope() as session:
        record_run(session, SWEEP_RUN, now=T0)

    with database.session_scope() as session:
        status = sweeper_status(session, SETTINGS, now=T0 + timedelta(seconds=age_s))

    assert status.last_sweep_at == T0
    assert status.last_sweep_age_s == pytest.approx(age_s)
    assert status.overdue is overdue
    assert status.to_json()["last_sweep_at"] == "2026-12-01T09:00:00+00:00"


def test_an_idle_sweep_on_postgresql_sends_three_statements(pg_database: Database) -> None:
    # The trigger quieted, the sweep itself, then the trigger back on in the statement that
    # asks which overdue work there is: none of the four reads of overdue work runs for none.
    sent: list[str] = []
    event.listen(pg_database.engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
    with pg_database.session_scope() as session:
        report = sweep(session, Settings(resend_after_s=30))

    assert report.dispatches == ()
    assert len(sent) == 3, sent
