"""Runner: one execution on this worker, ``scheduled`` → ``running`` → terminal, result stored."""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar

from sqlalchemy import Update, bindparam, update

from attune.errors import AttuneError, PackEnvironmentError
from attune.executions import claims, dispatch, liveoutput, retries
from attune.executions.environments import environment_of
from attune.executions.handoff import Chain, Handoff, Taken, TakeOn
from attune.executions.policies import Policy
from attune.executions.queues import worker_queues
from attune.executions.records import Finishing
from attune.executions.results import OUTCOME_STATUS, recorded, store_of, store_result
from attune.executions.secretbox import SecretBox
from attune.executions.supervision import CancelWatcher, Supervised
from attune.runtimes import Invocation, Outcome, RunResult, run
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import (
    EXECUTION_TABLE,
    ExecutionStatus,
    OutputFormat,
    ParameterDelivery,
    ParameterFormat,
    RunnerType,
)
from attune.store.outage import through_outage
from attune.store.sqltypes import db_now

log = logging.getLogger(__name__)
_T = TypeVar("_T")


DB_RETRY_DELAYS_S = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Pauses between attempts when the database is unreachable while claiming or storing."""


def run_execution(
    database: Database,
    settings: Settings,
    worker_name: str,
    execution_id: int,
    watcher: CancelWatcher,
    finishing: Finishing | None = None,
    handoff: Handoff | None = None,
) -> ExecutionStatus | None:
    """Run the execution if it is still ``scheduled``; the status it ended in, else None.

    None means no row moved to ``running``: it was canceled, already run, or is a
    redelivered message, and nothing more happens. Each gated execution that ends here frees
    a slot, and this process claims and runs the gate's head next; each workflow task that
    ends here may pass its run's next task on to this process (:mod:`.handoff`).
    """
    chain = Chain(database, worker_name, handoff, claims.CLAIMED_COLUMNS, claims.with_action)
    token = secrets.randbits(62)  # the same in every attempt of this claim
    claimed, action = _retrying(
        f"claiming execution {execution_id}",
        lambda: claims.claim(database, execution_id, worker_name, token, finishing),
    )

    queues = frozenset(worker_queues(worker_name, settings.worker_runtimes))
    # One token for what this chain takes on: no execution is taken on twice in one chain.
    claiming = functools.partial(claims.claim_in, worker_name, token=token)
    recording = functools.partial(claims.record_in, worker_name, token=token)

    def run_one(taken: Taken, then: Finishing | None) -> tuple[ExecutionStatus, Taken | None]:
        # An ungated task of a workflow may pass its run's next task on to this process.
        take_on = (
            chain.taking_on(queues, claiming, recording) if taken[1].gate_key is None else None
        )
        return _run_claimed(database, settings, worker_name, *taken, watcher, then, take_on)

    if claimed is not None:
        return chain.run((execution_id, claimed, action), run_one, finishing)
    chain.after_refused(execution_id, run_one, finishing)
    return None


def _run_claimed(
    database: Database,
    settings: Settings,
    worker_name: str,
    execution_id: int,
    claimed: Any,
    action: Any,
    watcher: CancelWatcher,
    finishing: Finishing | None,
    take_on: TakeOn | None = None,
) -> tuple[ExecutionStatus, Taken | None]:
    """Run a claimed execution and store its result; the status it ended in, and the next
    task of its workflow run that the advance claimed for this process (``take_on``)."""
    if action is not None and action.runner_type == RunnerType.WORKFLOW:
        from attune.workflows.start import start  # the engine builds on this module's layer

        return _retrying(
            f"starting workflow {execution_id}",
            lambda: start(database, settings, execution_id, worker_name, take_on),
        )
    policy = Policy.from_json(claimed.policy)
    live = liveoutput.backend(settings)
    sink = None if live is None else live.sink(execution_id)
    with watcher.watch(execution_id, worker_name) as supervised, ExitStack() as held:
        try:
            invocation = _invocation(settings, execution_id, claimed, action, supervised, sink)
            # A python action of a pack with requirements gets its environment (built if
            # need be), held in use until the run ends.
            invocation = held.enter_context(environment_of(database, settings, invocation))
        except PackEnvironmentError as exc:
            outcome = Outcome.CANCELED if exc.canceled else Outcome.FAILED
            result = RunResult.not_started(outcome, str(exc))
        except AttuneError as exc:
            result = RunResult.not_started(Outcome.FAILED, str(exc))
        else:
            if policy.retry is not None:  # an attempt abandoned before this never ran code
                database.run(_SPAWNED, {"execution_id": execution_id})
            result = run(invocation)
    parent_id = getattr(claimed, "parent_id", None)  # a gated claim on PostgreSQL has none
    if parent_id is not None and _ends_in_advance(
        claimed, database, result, supervised.lost, policy, finishing, claimed.action_ref
    ):
        # A workflow's task: its end and its run's step are one transaction
        kept, taken = _advance_parent(
            database,
            settings,
            parent_id,
            take_on,
            store_of(execution_id, result),
        )
        if kept:
            status = OUTCOME_STATUS[result.outcome]
            recorded(status, result)
            if sink is not None:
                sink.end()
            return status, taken
    status = _retrying(
        f"storing the result of execution {execution_id}",
        lambda: store_result(
            database,
            settings,
            execution_id,
            result,
            supervised.lost,
            finishing,
            policy,
            claimed.action_ref,
        ),
    )
    if sink is not None:
        sink.end()
    if parent_id is None:
        return status, None
    # A workflow's task: its run moves on at once
    return status, _advance_parent(database, settings, parent_id, take_on)[1]


def _ends_in_advance(
    claimed: Any,
    database: Database,
    result: RunResult,
    lost: bool,
    policy: Policy,
    finishing: Finishing | None,
    action_ref: str,
) -> bool:
    """True if a workflow task's result may be stored in its run's advance: a plain end (not
    seen abandoned, owed no retry, recording no rule's event) of a task's one child. A
    fan-out's item is stored on its own: while one advance holds the run, the items that end
    are stored at once and that advance takes them all in (each storing its own would take
    the run's lock once per item)."""
    status = OUTCOME_STATUS[result.outcome]
    if getattr(claimed, "wf_item", None) is not None:
        return False
    if lost or retries.retried_as(policy, status, spawned=True) is not None:
        return False
    return finishing is None or not finishing.active(database, action_ref, status.value)


def _advance_parent(
    database: Database,
    settings: Settings,
    parent_id: int,
    take_on: TakeOn | None,
    storing: tuple[Update, dict[str, Any]] | None = None,
) -> tuple[bool, Taken | None]:
    """Advance the run this execution is a task of, here; on failure, by message (unless
    ``storing``: the caller then stores its result and advances again). Whether ``storing``
    was committed with it, and the next task it claimed for this process to run, if
    ``take_on`` offered to."""
    from attune.workflows.engine import advance

    try:
        advanced = advance(
            database, settings, parent_id, unless_busy=True, take_on=take_on, storing=storing
        )
    except Exception:  # the message (or the beat's net) advances it elsewhere
        if storing is not None:
            log.exception("could not store a task's end in workflow %s's advance", parent_id)
            return False, None
        log.exception("could not advance workflow %s here; sending it", parent_id)
        dispatch.send([dispatch.advance(parent_id)])
        return False, None
    return advanced.stored, advanced.taken


def _retrying(what: str, attempt: Callable[[], _T]) -> _T:
    """Retry ``attempt`` through a database outage: the result must not be lost."""
    return through_outage(what, attempt, DB_RETRY_DELAYS_S)


_SPAWNED = (
    update(EXECUTION_TABLE)
    .where(EXECUTION_TABLE.c.id == bindparam("execution_id"))
    .values(spawned_at=db_now())
)


def _invocation(
    settings: Settings,
    execution_id: int,
    claimed: Any,
    action: Any,
    supervised: Supervised,
    sink: liveoutput.Sink | None,
) -> Invocation:
    if action is None:
        raise AttuneError(f"action {claimed.action_ref!r} no longer exists; load its pack")
    secrets = SecretBox.for_settings(settings).decrypt(claimed.secrets) if claimed.secrets else {}
    pack_ref = claimed.action_ref.split(".", 1)[0]
    pack_dir = settings.packs_dir.absolute() / pack_ref  # no resolve(): a syscall per part
    return Invocation(
        runtime=RunnerType(action.runner_type),
        entry_point=pack_dir / "actions" / action.entry_point,
        pack_dir=pack_dir,
        parameters={**claimed.parameters, **secrets},
        secret_values=tuple(str(value) for value in secrets.values()),
        parameter_delivery=ParameterDelivery(action.parameter_delivery),
        parameter_format=ParameterFormat(action.parameter_format),
        output_format=OutputFormat(action.output_format),
        timeout_s=claimed.timeout_s or action.action_timeout_s or settings.default_timeout_s,
        max_output_bytes=settings.max_output_bytes,
        kill_grace_s=settings.kill_grace_s,
        execution_id=execution_id,
        action_ref=claimed.action_ref,
        base_env=settings.inherited_env,
        cancel=supervised.cancel,
        on_start=supervised.started,
        live=sink,
        live_after_s=settings.live_output_after_s,
    )
