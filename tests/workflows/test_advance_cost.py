"""What one advance spends, with real workers on PostgreSQL + Redis: the outcomes of a fan-out
that one pass takes in start their replacements in one INSERT (not one per outcome), and a
worker whose item ended while another advance holds the run asks once, outside any
transaction, and leaves the item to that advance."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

import attune
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import ExecutionStatus
from attune.workflows import locking
from attune.workflows.engine import advance
from tests.cluster import Cluster
from tests.processes import wait_until
from tests.workflows.runs import children, duplicates

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
_OPEN = "status IN ('scheduled', 'running') AND NOT wf_consumed"


@contextmanager
def statements(database: Database) -> Iterator[list[str]]:
    """The SQL statements this process's sessions send while the block runs."""
    sent: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(database.engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(database.engine, "before_cursor_execute", seen)


def open_children(database: Database, parent_id: int) -> int:
    with database.engine.connect() as connection:
        found = connection.execute(
            text(f"SELECT count(*) FROM execution WHERE parent_id = :id AND {_OPEN}"),
            {"id": parent_id},
        ).scalar_one()
        return int(found)


def end_open_children(database: Database, parent_id: int) -> int:
    """End the run's children that have not ended (their processes hold on, late)."""
    with database.engine.begin() as connection:
        return connection.execute(
            text(
                "UPDATE execution SET status = 'succeeded', finished_at = now(), result = '{}'"
                f" WHERE parent_id = :id AND {_OPEN}"
            ),
            {"id": parent_id},
        ).rowcount


def test_the_items_a_pass_frees_start_in_one_insert(deployment: Cluster, tmp_path: Path) -> None:
    # Given a fan-out of 20 held items at concurrency 4
    handle = attune.execute("wf.refill", {"dir": str(tmp_path)})
    database, settings = deployment.database, Settings.from_env()
    refills: list[int] = []
    for _ in range(4):
        wait_until(lambda: open_children(database, handle.id) == 4, 30, "4 items in flight")
        # When its 4 items in flight end together and one advance takes them in
        assert end_open_children(database, handle.id) == 4
        with statements(database) as sent:
            outcome = advance(database, settings, handle.id)
        if outcome.sent == 0:
            continue  # beat's safety net was first; the next 4 are ours
        # Then it started the next 4 in one statement
        assert outcome.sent == 4
        refills.append(sum(1 for sql in sent if sql.startswith("INSERT INTO execution")))
    (tmp_path / "release").touch()
    record = handle.wait(60)
    assert record.status is ExecutionStatus.SUCCEEDED, record.error
    assert refills, "beat's net took every batch in"
    assert all(count == 1 for count in refills), refills
    assert len(children(database, handle.id)) == 20
    assert duplicates(database, handle.id) == {}


def test_an_item_ended_while_another_advance_holds_the_run_costs_one_probe(
    deployment: Cluster, tmp_path: Path
) -> None:
    # Given a fan-out whose items are held, and one of them ended
    handle = attune.execute("wf.refill", {"dir": str(tmp_path)})
    database, settings = deployment.database, Settings.from_env()
    wait_until(lambda: open_children(database, handle.id) == 4, 30, "4 items in flight")
    assert locking.held_elsewhere(database, handle.id) is False
    with database.session_scope() as holder:
        # When an advance holds the run and the item's worker advances it unless busy
        locked = locking.lock(holder, handle.id, unless_busy=False)
        assert locked is not None
        assert locked[1].holding is True
        assert locking.held_elsewhere(database, handle.id) is True
        end_open_children(database, handle.id)
        with statements(database) as sent:
            outcome = advance(database, settings, handle.id, unless_busy=True)
        # Then it asked once outside any session and took nothing in
        assert [sql for sql in sent if "workflow_run" in sql] == []
        assert outcome.sent == 0
        assert not outcome.finished
        holder.rollback()
    with database.engine.begin() as other:
        # A row lock without the advisory one (not an advance's): the attempt is made
        other.execute(
            text("SELECT 1 FROM workflow_run WHERE execution_id = :id FOR UPDATE"),
            {"id": handle.id},
        )
        with statements(database) as sent:
            outcome = advance(database, settings, handle.id, unless_busy=True)
        locks = [sql.split()[0] for sql in sent if "workflow_run" in sql]
        assert locks == ["UPDATE"]  # the SKIP LOCKED attempt, which finds it busy
        assert outcome.sent == 0
    # And the ended items are taken in (here, or by beat's net first), the run going on
    advance(database, settings, handle.id)
    wait_until(lambda: len(children(database, handle.id)) == 8, 30, "the next 4 items")
    (tmp_path / "release").touch()
    assert handle.wait(60).status is ExecutionStatus.SUCCEEDED
    assert duplicates(database, handle.id) == {}
