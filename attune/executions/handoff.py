"""Hand-off: the process that frees a gate's slot claims and runs the gate's head itself.

Sending the head a message and waiting for a worker to take it leaves the slot empty for a
broker round trip per execution: a drain of a gated action ran at a fraction of the ungated
rate. So the pool process whose gated execution ends claims the gate's head for its own
worker in the transaction that ends it (:class:`HandingOn`): the slot passes from one to the
other with no moment free, so whoever sees a free slot may trust it is free. It is the same
gated claim as a message's (FIFO, the limit exact, nothing runs twice). The process sends the
head a message as before when it may not run it (:class:`Handoff` says no, the head is another
worker's, the chain has run for :data:`CHAIN_FOR_S`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from attune.executions import dispatch, gates, releases
from attune.executions.results import Finishing
from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE, ExecutionStatus
from attune.store.sqltypes import db_now

_E = EXECUTION_TABLE.c

CHAIN_FOR_S = 60.0
"""How long one task's process goes on running heads itself before it hands the next to the
broker: the task's message stays unacknowledged meanwhile (RabbitMQ closes a channel whose
delivery is left unacknowledged for its ``consumer_timeout``, 30 min by default)."""

TRIES = 3
"""Heads a process tries to claim in a row after its commit: another process may claim each
first (a head refused and still the head has no slot)."""


class Handoff(Protocol):
    """The worker's side: whether this process may run a head itself, and what it runs."""

    def allowed(self) -> bool:
        """True if this process may claim and run a head (not shutting down, a pool process
        its main process can see)."""

    def running(self, execution_id: int | None) -> None:
        """This process now runs ``execution_id`` beyond its task's own (None: no longer)."""


Gate = tuple[str, str, int]
"""A gate: its action's ref, its key and its limit."""
Claim = Callable[[Database, int, str], tuple[Any, Any]]
"""The runner's claim: the claimed row and its action's, or (None, None)."""

_HEAD = (
    select(_E.id, _E.target_worker)
    .where(
        _E.action_ref == bindparam("action_ref"),
        _E.gate_key == bindparam("gate_key"),
        _E.status == ExecutionStatus.SCHEDULED.value,
        _E.eligible_at <= db_now(),
    )
    .order_by(_E.eligible_at, _E.id)
    .limit(1)
)


@dataclass
class HandingOn:
    """A :class:`Finishing`: in the transaction that ends a gated execution, claim its gate's
    head for this worker (``then``: what else that transaction records, rules' events)."""

    worker: str
    gate: Gate
    handoff: Handoff
    columns: Sequence[Any]
    then: Finishing | None = None
    taken: tuple[int, Any] | None = None
    """The head's id and its claimed row, once the transaction committed."""
    _then_active: bool = False

    def active(self, database: Database) -> bool:
        """Always: the claim needs the transaction of its own."""
        self._then_active = self.then is not None and self.then.active(database)
        return True

    def record(self, session: Session, execution_id: int) -> Callable[[], object]:
        """Claim the head in ``session`` (and what ``then`` records)."""
        after = self.then.record(session, execution_id) if self.then and self._then_active else None
        self.taken = None
        if self.handoff.allowed():
            action_ref, gate_key, _ = self.gate
            values = {"action_ref": action_ref, "gate_key": gate_key}
            head = session.execute(_HEAD, values).first()
            if head is not None and head.target_worker in (None, self.worker):
                self.handoff.running(head.id)  # before the commit: a death after it is seen
                claimed = gates.admit_in(session, head.id, self.worker, self.columns)
                if claimed is None:
                    self.handoff.running(None)
                else:
                    self.taken = head.id, claimed
        return after or _nothing


def _nothing() -> None:
    """Nothing to do after the commit."""


def handing_on(
    worker: str,
    gate: Gate | None,
    handoff: Handoff | None,
    chain_started: float,
    columns: Sequence[Any],
    then: Finishing | None,
) -> HandingOn | None:
    """The hand-off of a gated execution's slot, if this process may take it on."""
    if gate is None or handoff is None or time.monotonic() - chain_started >= CHAIN_FOR_S:
        return None
    return HandingOn(worker, gate, handoff, columns, then)


def take_head(
    database: Database,
    worker: str,
    gate: Gate,
    handoff: Handoff | None,
    chain_started: float,
    claim: Claim,
) -> tuple[int, Any, Any] | None:
    """After a gated execution ended or a gate's message found its execution taken: claim the
    gate's head for ``worker`` (``claim``), outside any transaction.

    Returns the head's id, its claimed row and its action's, for the caller to run (recorded
    with ``handoff`` as running here); else None, once the head's message is sent if it is owed.
    """
    if handoff is not None and time.monotonic() - chain_started < CHAIN_FOR_S:
        action_ref, gate_key, _ = gate
        refused = None
        for _ in range(TRIES):
            if not handoff.allowed():
                break
            heads = database.run(_HEAD, {"action_ref": action_ref, "gate_key": gate_key})
            if not heads:
                return None  # nobody waits: nothing to send either
            head = heads[0]
            if head.id == refused:
                return None  # no slot left for it: who frees one next hands it on
            if head.target_worker not in (None, worker):
                break  # another worker's turn: its message
            taken = _claim_head(database, worker, head.id, handoff, claim)
            if taken is not None:
                return taken
            refused = head.id
    dispatch.send(releases.release(database, *gate))
    return None


def _claim_head(
    database: Database, worker: str, head_id: int, handoff: Handoff, claim: Claim
) -> tuple[int, Any, Any] | None:
    handoff.running(head_id)  # before the claim commits: a death in between is seen
    claimed: Any = None
    try:
        claimed, action = claim(database, head_id, worker)
    finally:
        if claimed is None:
            handoff.running(None)
    return None if claimed is None else (head_id, claimed, action)
