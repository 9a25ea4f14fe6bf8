"""The beat loop's tick logic with an injected clock, and attune's Celery scheduler on SQLite."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import select, update

from attune.liveness import registry as workers
from attune.liveness.registry import Registration
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import SWEEP_RUN, PeriodicRun, Worker
from attune.store.sqltypes import db_ago
from attune.worker.app import app
from attune.worker.beat import (
    ALIGN_MARGIN_S,
    PURGE_INTERVAL_S,
    TIMER_INTERVAL_S,
    BeatLoop,
    BeatThread,
    PeriodicPass,
    Scheduler,
    beat_passes,
)
from attune.workflows.reconcile import RECONCILE_INTERVAL_S
from tests.rows import add_execution, execution_row, worker_status


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting(runs: list[tuple[str, float]], name: str, clock: Clock) -> Callable[[], None]:
    """A pass body that records its name and the time it ran at."""
    return lambda: runs.append((name, clock.now))


def test_the_first_tick_runs_every_pass_and_sleeps_until_the_soonest_is_due() -> None:
    clock, runs = Clock(), []
    loop = BeatLoop(
        [
            PeriodicPass("sweep", 2.0, counting(runs, "sweep", clock)),
            PeriodicPass("purge", 10.0, counting(runs, "purge", clock)),
        ],
        clock,
    )

    assert loop.tick() == 2.0
    assert runs == [("sweep", 1000.0), ("purge", 1000.0)]


def test_each_pass_runs_on_its_own_interval() -> None:
    clock, runs = Clock(), []
    loop = BeatLoop(
        [
            PeriodicPass("sweep", 2.0, counting(runs, "sweep", clock)),
            PeriodicPass("purge", 5.0, counting(runs, "purge", clock)),
        ],
        clock,
    )
    sleeps = [loop.tick()]

    while clock.now < 1010.0:
        clock.now += sleeps[-1]
        sleeps.append(loop.tick())

    assert [at for name, at in runs if name == "sweep"] == [1000, 1002, 1004, 1006, 1008, 1010]
    assert [at for name, at in runs if name == "purge"] == [1000, 1005, 1010]
    assert sleeps == [2, 2, 1, 1, 2, 2, 2]


def test_an_early_tick_runs_nothing_and_sleeps_the_rest() -> None:
    clock, runs = Clock(), []
    loop = BeatLoop([PeriodicPass("sweep", 2.0, counting(runs, "sweep", clock))], clock)
    loop.tick()

    clock.now += 0.5
    assert loop.tick() == 1.5
    assert len(runs) == 1


def test_a_pass_that_fell_behind_runs_once_then_keeps_its_interval() -> None:
    clock, runs = Clock(), []
    loop = BeatLoop([PeriodicPass("sweep", 2.0, counting(runs, "sweep", clock))], clock)
    loop.tick()

    clock.now += 21.0  # a paused process: ten runs missed
    assert loop.tick() == 2.0
    clock.now += 0.1
    assert loop.tick() == pytest.approx(1.9)

    assert runs == [("sweep", 1000.0), ("sweep", 1021.0)]


@pytest.mark.parametrize(("wall_s", "run_s"), [(0.3, 0.0), (0.3, 0.2), (0.99, 0.0), (0.02, 0.1)])
def test_an_aligned_pass_runs_just_after_each_whole_interval_of_the_wall_clock(
    wall_s: float, run_s: float
) -> None:
    clock, wall = Clock(), Clock()
    wall.now = 1_700_000_000.0 + wall_s
    starts: list[float] = []

    def timers() -> None:
        starts.append(wall.now)
        clock.now += run_s
        wall.now += run_s

    loop = BeatLoop([PeriodicPass("timers", 1.0, timers, aligned=True)], clock, wall)
    for _ in range(3):
        sleep_s = loop.tick()
        clock.now += sleep_s
        wall.now += sleep_s

    # The first run is at once; each later one ALIGN_MARGIN_S after a whole second.
    assert starts[0] == pytest.approx(1_700_000_000.0 + wall_s)
    for later in starts[1:]:
        assert later % 1.0 == pytest.approx(ALIGN_MARGIN_S)
    assert starts[2] - starts[1] == pytest.approx(1.0)


@pytest.mark.parametrize(("run_s", "sleep_s"), [(1.5, 0.5), (3.0, 0.0)])
def test_passes_start_an_interval_apart_however_long_they_run(run_s: float, sleep_s: float) -> None:
    clock = Clock()
    starts: list[float] = []

    def slow() -> None:
        starts.append(clock.now)
        clock.now += run_s

    loop = BeatLoop([PeriodicPass("sweep", 2.0, slow)], clock)

    assert loop.tick() == sleep_s
    clock.now += sleep_s
    assert loop.tick() == sleep_s
    # Each run starts at its turn, or at once when the last one ran past it.
    assert starts == [1000.0, max(1002.0, 1000.0 + run_s)]


def test_a_failing_pass_is_logged_the_others_run_and_it_is_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, runs, failures = Clock(), [], []

    def failing() -> None:
        failures.append(clock.now)
        raise RuntimeError("database down")

    loop = BeatLoop(
        [
            PeriodicPass("broken", 1.0, failing),
            PeriodicPass("sweep", 1.0, counting(runs, "sweep", clock)),
        ],
        clock,
    )

    with caplog.at_level(logging.ERROR, logger="attune.worker.beat"):
        assert loop.tick() == 1.0
        clock.now += 1.0
        assert loop.tick() == 1.0

    assert failures == [1000.0, 1001.0]
    assert runs == [("sweep", 1000.0), ("sweep", 1001.0)]
    assert "beat: pass broken failed; next try in 1 s" in caplog.text
    assert "database down" in caplog.text


def test_the_passes_are_the_sweep_the_timers_and_with_retention_the_purge(
    sqlite_database: Database,
) -> None:
    plain = beat_passes(sqlite_database, Settings(sweep_interval_s=7))
    retained = beat_passes(sqlite_database, Settings(sweep_interval_s=7, retention_days=30))

    timers = ("timers", TIMER_INTERVAL_S)
    workflows = ("workflows", RECONCILE_INTERVAL_S)
    assert [(p.name, p.interval_s) for p in plain] == [("sweep", 7), timers, workflows]
    assert [(p.name, p.interval_s) for p in retained] == [
        ("sweep", 7),
        timers,
        workflows,
        ("purge", PURGE_INTERVAL_S),
    ]


def test_the_sweep_pass_settles_stale_workers_and_records_itself(database: Database) -> None:
    with database.session_scope() as session:
        workers.register(session, Registration("gone", ("shell",), (), "h", 1))
        session.execute(
            update(Worker).where(Worker.name == "gone").values(last_heartbeat=db_ago(100))
        )
    held = add_execution(database, "gone")
    sweep = beat_passes(database, Settings())[0]

    sweep.run()

    assert worker_status(database, "gone") == "inactive"
    assert execution_row(database, held).status == "abandoned"
    with database.session_scope() as session:
        assert session.scalars(select(PeriodicRun.name)).all() == [SWEEP_RUN]


def test_a_beat_thread_ticks_until_stopped() -> None:
    ran = threading.Event()
    thread = BeatThread(BeatLoop([PeriodicPass("probe", 0.01, ran.set)]))

    thread.start()
    assert ran.wait(10)
    thread.stop()
    ran.clear()

    assert not ran.wait(0.1)


def test_the_celery_scheduler_sweeps_in_its_own_process(
    sqlite_url: str, sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTUNE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ATTUNE_SWEEP_INTERVAL_S", "5")
    scheduler = Scheduler(app=app, lazy=True)
    try:
        sleep_s = scheduler.tick()
    finally:
        scheduler.close()

    assert 0 < sleep_s <= 5
    with sqlite_database.session_scope() as session:
        assert session.scalars(select(PeriodicRun.name)).all() == [SWEEP_RUN]
