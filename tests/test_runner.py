"""The runner on both databases, with real action processes (no Celery in between)."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, update
from sqlalchemy.exc import OperationalError

from attune.executions import claims
from attune.executions.runner import run_execution
from attune.executions.supervision import CancelWatcher
from attune.packs.loader import load_packs
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Action, Execution, ExecutionStatus
from tests.processes import wait_until
from tests.rows import execution_row

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({"PATH": os.environ["PATH"], "ATTUNE_PACKS_DIR": str(ROOT / "packs")})


@pytest.fixture
def loaded(database: Database) -> Database:
    result = load_packs(database, ROOT / "packs")
    assert result.ok, result.errors
    return database


def scheduled(database: Database, ref: str, parameters: dict[str, object]) -> int:
    with database.session_scope() as session:
        execution = Execution(action_ref=ref, parameters=parameters, status="scheduled")
        session.add(execution)
        session.flush()
        return execution.id


def set_status(database: Database, execution_id: int, status: str, **values: object) -> None:
    with database.session_scope() as session:
        session.execute(
            update(Execution).where(Execution.id == execution_id).values(status=status, **values)
        )


def in_thread(
    loaded: Database, settings: Settings, execution_id: int, watcher: CancelWatcher
) -> tuple[threading.Thread, list[ExecutionStatus | None]]:
    outcome: list[ExecutionStatus | None] = []
    thread = threading.Thread(
        target=lambda: outcome.append(run_execution(loaded, settings, "w1", execution_id, watcher))
    )
    thread.start()
    return thread, outcome


def test_a_scheduled_execution_runs_and_its_result_is_stored(
    loaded: Database, settings: Settings
) -> None:
    execution_id = scheduled(loaded, "core.echo", {"message": "hi"})

    status = run_execution(loaded, settings, "w1", execution_id, CancelWatcher(lambda: loaded))

    row = execution_row(loaded, execution_id)
    assert status is ExecutionStatus.SUCCEEDED
    assert (row.status, row.worker, row.stdout, row.exit_code) == ("succeeded", "w1", "hi\n", 0)
    assert row.started_at is not None
    assert row.finished_at is not None
    assert row.duration_ms is not None


def test_an_execution_runs_at_most_once(loaded: Database, settings: Settings) -> None:
    execution_id = scheduled(loaded, "core.echo", {"message": "hi"})
    watcher = CancelWatcher(lambda: loaded)

    first = run_execution(loaded, settings, "w1", execution_id, watcher)
    second = run_execution(loaded, settings, "w2", execution_id, watcher)

    assert first is ExecutionStatus.SUCCEEDED
    assert second is None
    assert execution_row(loaded, execution_id).worker == "w1"


def test_a_claim_whose_answer_was_lost_runs_the_execution_once(
    loaded: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a database whose first claim commits and then loses its answer, as in a restart
    runs = tmp_path / "runs"
    execution_id = scheduled(loaded, "core.local", {"cmd": f"echo ran >> {runs}; echo hi"})
    real_run = Database.run
    lost: list[Any] = []

    def answer_lost(database: Database, statement: Any, values: Mapping[str, Any]) -> list[Any]:
        rows = real_run(database, statement, values)
        if not lost and statement in (claims._CLAIM, claims._CLAIM_JOINED):
            lost.append(values["token"])
            raise OperationalError("UPDATE execution ...", {}, Exception("server closed"))
        return rows

    monkeypatch.setattr(Database, "run", answer_lost)
    watcher = CancelWatcher(lambda: loaded)

    # When the worker claims it (and repeats the claim), and a redelivery claims it again
    status = run_execution(loaded, settings, "w1", execution_id, watcher)
    again = run_execution(loaded, settings, "w1", execution_id, watcher)

    # Then the repeated claim found its own row: the action ran once and its result is stored
    assert lost
    assert execution_row(loaded, execution_id).claim_token == lost[0]
    assert (status, again) == (ExecutionStatus.SUCCEEDED, None)
    assert runs.read_text() == "ran\n"
    row = execution_row(loaded, execution_id)
    assert (row.status, row.worker, row.stdout) == ("succeeded", "w1", "hi\n")


def test_another_claim_of_a_running_execution_is_refused(loaded: Database) -> None:
    execution_id = scheduled(loaded, "core.echo", {"message": "hi"})
    assert claims.claim(loaded, execution_id, "w1", 7)[0] is not None
    assert claims.claim(loaded, execution_id, "w1", 7)[0] is not None  # the same claim again
    assert claims.claim(loaded, execution_id, "w1", 8) == (None, None)  # a redelivery's
    assert claims.claim(loaded, execution_id, "w2", 8) == (None, None)
    assert execution_row(loaded, execution_id).worker == "w1"


def test_a_canceled_execution_never_starts(loaded: Database, settings: Settings) -> None:
    execution_id = scheduled(loaded, "core.echo", {"message": "hi"})
    set_status(loaded, execution_id, "canceled")

    status = run_execution(loaded, settings, "w1", execution_id, CancelWatcher(lambda: loaded))

    row = execution_row(loaded, execution_id)
    assert status is None
    assert (row.status, row.worker, row.stdout) == ("canceled", None, "")


def test_canceling_stops_the_running_process(loaded: Database, settings: Settings) -> None:
    execution_id = scheduled(loaded, "core.sleep", {"seconds": 60})
    thread, outcome = in_thread(
        loaded, settings, execution_id, CancelWatcher(lambda: loaded, interval_s=0.05)
    )
    wait_until(lambda: execution_row(loaded, execution_id).status == "running", 10, "running")

    set_status(loaded, execution_id, "canceling")
    thread.join(10)

    assert not thread.is_alive()
    assert outcome == [ExecutionStatus.CANCELED]
    assert execution_row(loaded, execution_id).status == "canceled"


def test_a_result_that_arrives_after_the_sweep_is_kept_but_stays_abandoned(
    loaded: Database, settings: Settings, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    execution_id = scheduled(
        loaded, "core.local", {"cmd": f"while [ ! -e {gate} ]; do sleep 0.02; done; echo done"}
    )
    # A watcher that never looks: the action ends before its worker sees it abandoned.
    blind = CancelWatcher(lambda: loaded, interval_s=3600)
    thread, outcome = in_thread(loaded, settings, execution_id, blind)
    wait_until(lambda: execution_row(loaded, execution_id).status == "running", 10, "running")

    set_status(loaded, execution_id, "abandoned", error="worker w1 stopped heartbeating")
    gate.touch()
    thread.join(10)

    row = execution_row(loaded, execution_id)
    assert outcome == [ExecutionStatus.ABANDONED]
    assert row.status == "abandoned"
    assert row.stdout == "done\n"
    assert row.error is not None
    assert row.error.startswith("worker w1 stopped heartbeating")
    assert "arrived late" in row.error


def test_an_action_abandoned_while_it_runs_is_stopped_and_stays_abandoned(
    loaded: Database, settings: Settings, tmp_path: Path
) -> None:
    # Given a running action whose process group the watcher recorded
    pid_file = tmp_path / "pid"
    execution_id = scheduled(loaded, "core.local", {"cmd": f"echo $$ > {pid_file}; sleep 60"})
    watcher = CancelWatcher(lambda: loaded, interval_s=0.05)
    thread, outcome = in_thread(loaded, settings, execution_id, watcher)
    wait_until(lambda: execution_row(loaded, execution_id).pgid is not None, 10, "recorded")
    row = execution_row(loaded, execution_id)
    assert row.pgid == int(pid_file.read_text())
    assert row.pgid_start_ticks is not None
    assert row.pgid_host is not None

    # When the sweep abandons the execution
    set_status(loaded, execution_id, "abandoned", error="worker w1 stopped heartbeating")
    thread.join(10)

    # Then the worker stops the action, and the execution stays abandoned, its record cleared
    row = execution_row(loaded, execution_id)
    assert not thread.is_alive()
    assert outcome == [ExecutionStatus.ABANDONED]
    assert row.status == "abandoned"
    assert row.error == (
        "worker w1 stopped heartbeating; its worker stopped the action once it saw it abandoned"
    )
    assert (row.pgid, row.pgid_start_ticks, row.pgid_host) == (None, None, None)
    assert not os.path.exists(f"/proc/{int(pid_file.read_text())}")


def test_an_action_removed_after_scheduling_fails_the_execution(
    loaded: Database, settings: Settings
) -> None:
    execution_id = scheduled(loaded, "core.echo", {"message": "hi"})
    with loaded.session_scope() as session:
        session.execute(delete(Action).where(Action.ref == "core.echo"))

    status = run_execution(loaded, settings, "w1", execution_id, CancelWatcher(lambda: loaded))

    row = execution_row(loaded, execution_id)
    assert status is ExecutionStatus.FAILED
    assert row.error is not None
    assert "no longer exists" in row.error
