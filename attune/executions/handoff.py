"""Hand-off: the process that frees a gate's slot claims and runs the gate's head itself.

Sending the head a message and waiting for a worker to take it leaves the slot empty for a
broker round trip per execution: a drain of a gated action ran at a fraction of the ungated
rate. So the pool process whose gated execution ends claims the gate's head for its own
worker in the transaction that ends it (:class:`HandingOn`): the slot passes from one to the
other with no moment free, so whoever sees a free slot may trust it is free. It is the same
gated claim as a message's (FIFO, the limit exact, nothing runs twice). The process sends the
head a message as before when it may not run it (:class:`Handoff` says no, the head is another
worker's, the chain has run for :data:`CHAIN_FOR_S`).

A workflow's task passes on the same way (:class:`TakeOn`): the process that advances the run
after its task ended claims the next task for itself in the advance's transaction, when it is
of a queue this worker consumes (a task's one child, not a fan-out's items), and runs it
instead of sending it, sparing the broker hop and the claim of each step of a sequence
(a child of an action known here is recorded claimed: one statement).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import BigInteger, Boolean, String, Text, bindparam, column, func, select
from sqlalchemy.orm import Session

from attune.executions import dispatch, gates, releases
from attune.executions.dispatch import EXECUTE_TASK, Dispatch
from attune.executions.queues import runtime_queue
from attune.executions.records import Finishing
from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE, ExecutionStatus
from attune.store.sqltypes import db_now

_E = EXECUTION_TABLE.c

CHAIN_FOR_S = 60.0
"""How long one task's process goes on running heads itself before it hands the next to the
broker: the task's message stays unacknowledged meanwhile (RabbitMQ closes a channel whose
delivery is left unacknowledged for its ``consumer_timeout``, 30 min by default)."""


class Handoff(Protocol):
    """The worker's side: whether this process may run a head itself, and what it runs."""

    def allowed(self) -> bool:
        """True if this process may claim and run a head (not shutting down, a pool process
        its main process can see)."""

    def running(self, execution_id: int | None) -> None:
        """This process now runs ``execution_id`` beyond its task's own (None: no longer)."""


Gate = tuple[str, str, int]
"""A gate: its action's ref, its key and its limit."""

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

    def active(
        self, database: Database, action_ref: str | None = None, status: str | None = None
    ) -> bool:
        """Always: the claim needs the transaction of its own."""
        self._then_active = self.then is not None and self.then.active(database, action_ref, status)
        return True

    def record(self, session: Session, execution_id: int) -> Callable[[], object]:
        """Claim the head in ``session`` (and what ``then`` records)."""
        after = self.then.record(session, execution_id) if self.then and self._then_active else None
        self.taken = _claim_head_in(session, self.gate, self.worker, self.columns, transfer=True)
        if self.taken is not None:  # before the commit: a death once it is made is seen
            self.handoff.running(self.taken[0])
        return after or _nothing

    def enforce(self, session: Session, event_ids: Sequence[int]) -> Callable[[], object]:
        """What ``then`` enforces of events recorded by the set (nothing of its own)."""
        return self.then.enforce(session, event_ids) if self.then else _nothing


_CLAIMED_HEAD = (column("id", BigInteger()), *gates.CLAIMED_GATED[:-2])
_CLAIM_HEAD = select(*_CLAIMED_HEAD).select_from(
    func.attune_claim_head(
        bindparam("action_ref", type_=String()),
        bindparam("gate_key", type_=String()),
        bindparam("worker", type_=Text()),
        bindparam("transfer", type_=Boolean()),
    )
)


def _claim_head_in(
    session: Session, gate: Gate, worker: str, columns: Sequence[Any], *, transfer: bool
) -> tuple[int, Any] | None:
    """Claim the gate's head for ``worker`` in ``session``: its id and claimed row, or None
    (nobody waits, no slot is free, or the head is another worker's). ``transfer``: the
    session's transaction ends one of the gate's executions, whose slot the head takes."""
    action_ref, gate_key, _ = gate
    values: dict[str, Any] = {"action_ref": action_ref, "gate_key": gate_key, "worker": worker}
    if session.get_bind().dialect.name != "sqlite":  # one round trip
        values["transfer"] = transfer
        claimed = session.execute(_CLAIM_HEAD, values).first()
        return None if claimed is None else (claimed.id, claimed)
    head = session.execute(_HEAD, values).first()  # SQLite's single writer serializes it
    if head is None or head.target_worker not in (None, worker):
        return None
    values.update(execution_id=head.id, token=None)
    claimed = session.execute(gates.admission(tuple(columns)), values).first()
    return None if claimed is None else (head.id, claimed)


def _nothing() -> None:
    """Nothing to do after the commit."""


Taken = tuple[int, Any, Any]
"""A claimed execution: its id, its claimed row and its action's row."""
RunOne = Callable[[Taken, Finishing | None], tuple[ExecutionStatus, Taken | None]]
"""The runner's run of a claimed execution, with what its terminal transaction records: the
status it ended in, and the execution claimed for this process to run next (a workflow's)."""
ClaimIn = Callable[[Session, int], Taken | None]
"""The runner's claim of a scheduled execution for this worker in the caller's transaction."""
RecordIn = Callable[[Session, Mapping[str, Any], datetime, Mapping[str, Any]], Taken | None]
"""The runner's record of a request already claimed for this worker, in the caller's
transaction (:func:`attune.executions.claims.record_in`); None when its action changed."""


@dataclass(frozen=True)
class TakeOn:
    """A pool process's offer to run a workflow's next task itself: in the advance's
    transaction, claim one child it records for this worker (instead of its message)."""

    handoff: Handoff
    queues: frozenset[str]
    """The queues this worker consumes: a child sent elsewhere is left to its message."""
    claim: ClaimIn
    record: RecordIn | None = None
    """Records a child known here claimed (:meth:`recorded`), not ``scheduled`` then claimed."""

    def recorded(self, session: Session, prepared: Any, extra: Mapping[str, Any]) -> Taken | None:
        """Record the child ``prepared`` (``batch.prepare(trusting=True)``) claimed for this
        process in ``session``, as :meth:`take` claims one; None, nothing written, unless it is
        of a queue here, ungated and its action unchanged since ``prepared.known``."""
        queue = runtime_queue(prepared.runner_type)
        if self.record is None or queue not in self.queues or prepared.row["gate_key"] is not None:
            return None
        taken = self.record(session, prepared.row, prepared.known, extra)
        if taken is not None:
            self.handoff.running(taken[0])
        return taken

    def take(
        self, session: Session, dispatches: list[Dispatch], among: Collection[int]
    ) -> Taken | None:
        """Claim the first child of ``dispatches`` (one of ``among``) this worker may run now,
        in ``session``, and drop its message; None (all messages kept) if none may be.
        Recorded running here before the commit, so a death once it is made is seen (and the
        child abandoned)."""
        for sent in dispatches:
            if sent.task != EXECUTE_TASK or sent.countdown_s or sent.queue not in self.queues:
                continue
            if sent.execution_id not in among:
                continue
            taken = self.claim(session, sent.execution_id)  # the scheduled → running CAS
            if taken is None:
                continue  # gated or not yet due: its message claims it
            self.handoff.running(taken[0])
            dispatches.remove(sent)
            return taken
        return None


@dataclass(frozen=True)
class Chain:
    """What one task's process runs: its execution, then the heads its slots pass on to it."""

    database: Database
    worker: str
    handoff: Handoff | None
    columns: Sequence[Any]
    with_action: Callable[[Database, Any], tuple[Any, Any]]
    """A gated claim's row and its action's."""
    started: float = field(default_factory=time.monotonic)

    def run(self, taken: Taken, run_one: RunOne, finishing: Finishing | None) -> ExecutionStatus:
        """Run a claimed execution; then, while a gated one's slot passes on to this process,
        its gate's heads, and the workflow tasks its ends passed on. The status the first
        ended in."""
        first: ExecutionStatus | None = None
        try:
            while True:
                gate = _gate_of(taken[1])
                passing = self._handing_on(gate, taken[1], finishing)
                status, following = run_one(taken, passing or finishing)
                first = status if first is None else first
                if following is not None:  # a workflow's next task, claimed for this process
                    taken = following
                    continue
                if gate is None:
                    return first
                found = None if passing is None else passing.taken
                if found is None:  # not passed on in its transaction: an idle gate, a
                    # retry's end, a late result
                    found = take_head(
                        self.database, self.worker, gate, self.handoff, self.started, self.columns
                    )
                if found is None:
                    return first
                taken = (found[0], *self.with_action(self.database, found[1]))
        finally:
            if self.handoff is not None:
                self.handoff.running(None)

    def taking_on(self, queues: frozenset[str], claim: ClaimIn, record: RecordIn) -> TakeOn | None:
        """The offer to run a workflow's next task here, if this process may go on."""
        if self.handoff is None or time.monotonic() - self.started >= CHAIN_FOR_S:
            return None
        return TakeOn(self.handoff, queues, claim, record) if self.handoff.allowed() else None

    def after_refused(
        self, execution_id: int, run_one: RunOne, finishing: Finishing | None
    ) -> None:
        """A gate's message is sent when the gate has room: if not for its execution (taken
        meanwhile, or not yet the head), then for the gate's head."""
        gate = None if self.handoff is None else releases.gate_of(self.database, execution_id)
        if gate is None:
            return
        found = take_head(
            self.database, self.worker, gate, self.handoff, self.started, self.columns, ramp=True
        )
        if found is not None:
            self.run((found[0], *self.with_action(self.database, found[1])), run_one, finishing)

    def _handing_on(
        self, gate: Gate | None, claimed: Any, then: Finishing | None
    ) -> HandingOn | None:
        """The hand-off of a gated execution's slot in its terminal transaction, if this
        process may take it on and the gate was crowded when it was claimed.

        A message's gated claim on PostgreSQL says how crowded (``busy_before``,
        ``waiting_behind``): with room left and nobody waiting, later requests are sent as they
        come, and its end hands on after the commit, sparing an idle gate the transaction."""
        if gate is None or self.handoff is None or time.monotonic() - self.started >= CHAIN_FOR_S:
            return None
        limit = gate[2]
        busy, waiting = (
            getattr(claimed, "busy_before", limit),
            getattr(claimed, "waiting_behind", 1),
        )
        if busy + 1 < limit and waiting == 0:
            return None
        return HandingOn(self.worker, gate, self.handoff, self.columns, then)


def _gate_of(claimed: Any) -> Gate | None:
    """The gate of a claimed execution, None if it has none."""
    if claimed.gate_key is None:
        return None
    return claimed.action_ref, claimed.gate_key, claimed.gate_limit


def take_head(
    database: Database,
    worker: str,
    gate: Gate,
    handoff: Handoff | None,
    started: float,
    columns: Sequence[Any],
    *,
    ramp: bool = False,
) -> tuple[int, Any] | None:
    """Outside a terminal transaction: claim the gate's head for ``worker`` (recorded with
    ``handoff`` as running here before it commits), its id and claimed row; else None, once
    the head's message is sent if it is owed. ``ramp`` (on a message's behalf): with the head
    claimed and slots left, the next head is sent too, as a message's own claim would."""
    if handoff is not None and time.monotonic() - started < CHAIN_FOR_S and handoff.allowed():
        action_ref, gate_key, _ = gate
        if not database.run(_HEAD, {"action_ref": action_ref, "gate_key": gate_key}):
            return None  # nobody waits: nothing to send either
        with database.session_scope() as session:
            taken = _claim_head_in(session, gate, worker, columns, transfer=False)
            if taken is not None:  # before the commit: a death once it is made is seen
                handoff.running(taken[0])
        if taken is not None:
            if ramp:
                dispatch.send(releases.release(database, *gate, fresh=False))
            return taken
    dispatch.send(releases.release(database, *gate))  # no slot, or another worker's head
    return None
