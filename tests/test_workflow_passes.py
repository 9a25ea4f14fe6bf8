"""One advance that takes in several outcomes at once ends its run (no worker needed: with none
serving the tasks' runtime, each child is recorded ``failed`` and taken in within the same pass)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import insert, select

from attune.packs.loader import load_packs
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE, WORKFLOW_RUN_TABLE, ExecutionStatus
from attune.workflows.start import start
from tests.pack_builder import action, header, workflow_action, write_pack, write_workflows

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


def test_a_fan_out_whose_children_all_end_in_one_pass_ends_its_run(
    database: Database, tmp_path: Path
) -> None:
    actions = {"hello": action("flows.hello"), "fan": workflow_action("flows.fan")}
    pack = write_pack(tmp_path, "flows", actions, header("flows"))
    write_workflows(pack, {"fan": FAN})
    assert load_packs(database, tmp_path).ok
    with database.session_scope() as session:  # a parent some worker "w" has just claimed
        parent = session.execute(
            insert(EXECUTION_TABLE)
            .values(action_ref="flows.fan", status=ExecutionStatus.RUNNING.value, worker="w")
            .returning(_E.id)
        ).scalar_one()

    status = start(database, Settings(database_url=str(database.engine.url)), parent, "w")

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
