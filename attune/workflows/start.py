"""Starting a workflow run: the parent execution a worker claimed becomes a run.

In one transaction the parent is let go by the worker that claimed it (``worker = NULL``: it
runs on no worker, so no sweep abandons it), its ``vars`` are rendered, its ``workflow_run``
row and its start tasks are recorded; then :func:`attune.workflows.engine.advance` starts them.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from attune.errors import AttuneError
from attune.executions import records
from attune.executions.handoff import Taken, TakeOn
from attune.executions.secretbox import SecretBox
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import (
    ACTION_TABLE,
    EXECUTION_TABLE,
    ExecutionStatus,
    RunPhase,
    WorkflowRun,
)
from attune.store.sqltypes import db_now
from attune.workflows import activations, engine
from attune.workflows.context import Redactor, TaskResults, json_size
from attune.workflows.reader import stored
from attune.workflows.spec import MAX_VARS_BYTES, WorkflowSpec
from attune.workflows.state import Pass

log = logging.getLogger(__name__)
_E = EXECUTION_TABLE.c
_A = ACTION_TABLE.c


def start(
    database: Database,
    settings: Settings,
    execution_id: int,
    worker_name: str,
    take_on: TakeOn | None = None,
) -> tuple[ExecutionStatus, Taken | None]:
    """Turn claimed execution ``execution_id`` into a running workflow; the status it is in,
    and the start task claimed for the caller's process to run (``take_on``).

    A database error is raised (the caller tries again: nothing was written); anything else
    that goes wrong fails the parent, so it never stays ``running`` on this worker.
    """
    try:
        return _start(database, settings, execution_id, worker_name, take_on)
    except (OperationalError, InterfaceError):
        raise
    except Exception as problem:
        log.exception("could not start workflow %s", execution_id)
        reason = f"the workflow could not start: {type(problem).__name__}: {problem}"
        records.transition(
            database, execution_id, ExecutionStatus.FAILED, held_by=worker_name, error=reason
        )
        return records.status_of(database, execution_id), None


def _start(
    database: Database,
    settings: Settings,
    execution_id: int,
    worker_name: str,
    take_on: TakeOn | None,
) -> tuple[ExecutionStatus, Taken | None]:
    with database.session_scope() as session:
        parent = session.execute(
            update(EXECUTION_TABLE)
            .where(
                _E.id == execution_id,
                _E.status == ExecutionStatus.RUNNING.value,
                _E.worker == worker_name,
            )
            .values(worker=None)
            .returning(_E.action_ref, _E.parameters, _E.secrets, _E.parent_id)
        ).first()
        if parent is None:
            return _status(session, execution_id), None
        document = session.scalar(select(_A.workflow).where(_A.ref == parent.action_ref))
        depth = 1
        if parent.parent_id is not None:
            outer = session.get(WorkflowRun, parent.parent_id)
            depth = 1 if outer is None else outer.depth + 1
        now: datetime = session.execute(select(db_now())).scalar_one()
        run = WorkflowRun(
            execution_id=execution_id,
            spec=document or {},
            vars={},
            phase=RunPhase.RUNNING.value,
            errors=[],
            depth=depth,
            activations=0,
            counts={},
            version=0,
        )
        session.add(run)
        secrets = SecretBox.for_settings(settings).decrypt(parent.secrets) if parent.secrets else {}
        try:
            spec = _spec_of(parent.action_ref, document)
            step = Pass(
                session=session,
                settings=settings,
                run=run,
                spec=spec,
                now=now,
                parameters={**parent.parameters, **secrets},
                redact=Redactor(secrets),
                tasks=TaskResults(session, execution_id, tuple(spec.tasks)),
            )
            run.vars = _vars(step)
        except AttuneError as problem:
            run.phase = RunPhase.DONE.value
            session.execute(
                update(EXECUTION_TABLE)
                .where(_E.id == execution_id)
                .values(
                    status=ExecutionStatus.FAILED.value,
                    error=str(problem),
                    result={"errors": [{"task": None, "error": str(problem)}]},
                    finished_at=now,
                )
            )
            return ExecutionStatus.FAILED, None
        if spec.timeout_s is not None:
            run.deadline_at = now + timedelta(seconds=spec.timeout_s)
        run.wake_at = now  # due at once: the beat's net advances it if the first advance is lost
        session.flush()
        for name in spec.start:
            activations.activate(step, name, None)
    taken = engine.advance(database, settings, execution_id, take_on=take_on).taken
    if taken is not None:  # a start task runs here next: no read may fail and lose it
        return ExecutionStatus.RUNNING, taken
    return records.status_of(database, execution_id), None


def _spec_of(action_ref: str, document: dict[str, Any] | None) -> WorkflowSpec:
    if document is None:
        raise AttuneError(f"{action_ref} is no longer a workflow; load its pack")
    return stored(document["file"])


def _vars(step: Pass) -> dict[str, Any]:
    """The run's ``vars``, rendered in order (each may use those before it)."""
    rendered: dict[str, Any] = {}
    for name, template in step.spec.vars:
        step.run.vars = rendered
        rendered = {**rendered, name: step.redact(template.render(step.context(), f"vars.{name}"))}
    if json_size(rendered) > MAX_VARS_BYTES:
        raise AttuneError(f"vars: over {MAX_VARS_BYTES} bytes as JSON")
    return rendered


def _status(session: Any, execution_id: int) -> ExecutionStatus:
    return ExecutionStatus(session.scalar(select(_E.status).where(_E.id == execution_id)))
