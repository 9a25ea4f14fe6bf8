"""Dispatch: the task messages the policies send (retries, gate heads), through a sender hook.

Nothing below :mod:`attune.worker` imports Celery, so the worker layer installs the sender
(:func:`use`) and the runner, the sweep and the scheduler only say what to send. Messages are
hints: a lost one is sent again by the sweep, a doubled one is refused by the claim.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_COUNTDOWN_S = 600.0
"""Longest delay sent as a broker countdown; a later retry is sent by the sweep when due
(far below Redis's one-hour visibility timeout, past which an ETA message is redelivered)."""


EXECUTE_TASK = "attune.execute_action"
"""The task that runs one execution."""
ADVANCE_TASK = "attune.advance_workflow"
"""The task that advances one workflow run (:func:`attune.workflows.engine.advance`)."""
WORKFLOW_QUEUE = "attune.workflow"
"""The queue of workflow runs and their advances (the ``workflow`` runtime's)."""


@dataclass(frozen=True)
class Dispatch:
    """Send ``task(execution_id)`` to ``queue``, ``countdown_s`` from now."""

    execution_id: int
    queue: str
    countdown_s: float = 0.0
    task: str = EXECUTE_TASK


def advance(workflow_id: int, countdown_s: float = 0.0) -> Dispatch:
    """The message that has a worker advance workflow run ``workflow_id``."""
    return Dispatch(workflow_id, WORKFLOW_QUEUE, countdown_s, ADVANCE_TASK)


Sender = Callable[[Dispatch], None]
"""Publishes one task message (installed by :mod:`attune.worker.app`)."""

_senders: list[Sender] = []


def use(sender: Sender) -> None:
    """Send through ``sender`` from now on."""
    _senders[:] = [sender]


def send(dispatches: Iterable[Dispatch]) -> int:
    """Publish each message; returns how many went out. A refusal is logged, not raised:
    the execution stays ``scheduled`` in SQL and the sweep sends it again."""
    sent = 0
    for dispatch in dispatches:
        if dispatch.countdown_s > MAX_COUNTDOWN_S:
            continue  # the sweep sends it when it is due
        if not _senders:
            log.warning("no task sender installed; execution %s waits for the sweep", dispatch)
            continue
        try:
            _senders[0](dispatch)
            sent += 1
        except Exception as exc:  # kombu and redis raise several families; all mean "not sent"
            log.warning("could not send execution %s: %s", dispatch.execution_id, exc)
    return sent
