"""Metrics in one process: the counters and the worker gauge read from the database."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest

from attune import metrics
from attune.liveness import announcements
from attune.liveness import registry as workers
from attune.liveness.registry import Registration
from attune.liveness.reports import Deactivation
from attune.liveness.sweeper import record_run
from attune.store.db import Database
from attune.store.models import SWEEP_RUN
from tests import exposition


def samples(database: Database | None) -> dict[str, float]:
    return exposition.samples(generate_latest(metrics.registry(database)).decode())


def test_announcements_and_record_execution_move_the_counters() -> None:
    before = samples(None)

    announcements.announce_deactivation(
        Deactivation("w1", datetime(2026, 1, 1, tzinfo=UTC), abandoned=2, cause="gone")
    )
    announcements.announce_reactivation("w1")
    metrics.record_execution("succeeded", 1.5)
    metrics.record_execution("failed", None)

    after = samples(None)
    delta = {name: after[name] - before.get(name, 0.0) for name in after}
    assert delta["attune_worker_deactivations_total"] == 1
    assert delta["attune_worker_reactivations_total"] == 1
    assert delta["attune_executions_abandoned_total"] == 2
    assert delta['attune_executions_total{status="succeeded"}'] == 1
    assert delta['attune_executions_total{status="failed"}'] == 1
    assert delta["attune_execution_duration_seconds_count"] == 1
    assert delta['attune_execution_duration_seconds_bucket{le="2.5"}'] == 1
    assert delta['attune_execution_duration_seconds_bucket{le="1.0"}'] == 0


def test_the_worker_gauge_reads_the_table_at_scrape_time(database: Database) -> None:
    assert samples(database)['attune_workers{status="active"}'] == 0
    with database.session_scope() as session:
        for name in ("a", "b"):
            workers.register(session, Registration(name, ("shell",), (), "h", 1))

    found = samples(database)

    assert found['attune_workers{status="active"}'] == 2
    assert found['attune_workers{status="inactive"}'] == 0


def test_the_worker_gauge_is_silent_when_the_database_is_down() -> None:
    unreachable = Database.from_url("postgresql+psycopg://nobody@127.0.0.1:1/none")

    found = samples(unreachable)

    assert not any(name.startswith("attune_workers{") for name in found)
    assert "attune_last_sweep_timestamp_seconds" not in found
    assert "attune_worker_deactivations_total" in found
    unreachable.dispose()


def test_the_last_sweep_gauge_carries_the_time_of_the_last_sweep(database: Database) -> None:
    never = samples(database)["attune_last_sweep_timestamp_seconds"]
    swept_at = datetime(2026, 12, 1, 9, 30, 15, 250000, tzinfo=UTC)
    with database.session_scope() as session:
        record_run(session, SWEEP_RUN, now=swept_at)

    found = samples(database)

    assert never == 0
    assert found["attune_last_sweep_timestamp_seconds"] == swept_at.timestamp()
