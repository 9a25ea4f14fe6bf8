"""Supervision: one thread per worker process that watches the executions the process runs.

Every ``CANCEL_POLL_S`` it reads their rows: an execution asked to cancel, or no longer
``running`` for this worker (the sweep abandoned it while the worker was frozen or cut off),
has its cancel event set, so the runtime kills its process group; and the group of an action
that has run for one interval is recorded in its row (pgid, leader start time, host), so a later
process of this worker can kill it if it is left behind (:mod:`attune.liveness.orphans`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select, update

from attune.runtimes.reaper import ProcessGroup, host_identity
from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE, ExecutionStatus

log = logging.getLogger(__name__)

_EXECUTION = EXECUTION_TABLE.c

_WATCHED = select(_EXECUTION.id, _EXECUTION.status, _EXECUTION.worker)
_RECORD_GROUP = (
    update(EXECUTION_TABLE)
    .where(
        _EXECUTION.id == bindparam("execution_id"),
        _EXECUTION.worker == bindparam("held_by"),
        _EXECUTION.status == ExecutionStatus.RUNNING.value,
    )
    .values(
        pgid=bindparam("pgid"),
        pgid_start_ticks=bindparam("pgid_start_ticks"),
        pgid_host=bindparam("pgid_host"),
    )
    .returning(_EXECUTION.id)
)

CANCEL_POLL_S = 0.5
"""How often a worker process looks at the executions it runs: canceled? still its own?"""


@dataclass
class Supervised:
    """One execution this process runs: its cancel event and, once started, its process group.

    ``lost`` is set when the execution stopped being this worker's (the sweep abandoned it):
    its action is then stopped as a cancel would stop it, and the execution stays abandoned.
    """

    execution_id: int
    worker: str
    cancel: threading.Event = field(default_factory=threading.Event)
    group: ProcessGroup | None = None
    recorded: bool = False
    lost: bool = False

    def started(self, group: ProcessGroup) -> None:
        """The action's process started in ``group`` (called by the runtime)."""
        self.group = group


class CancelWatcher:
    """One thread per process that watches the executions it runs, every ``interval_s``.

    It sets the cancel event of an execution asked to cancel, and of one no longer ``running``
    for this worker (abandoned by the sweep while the worker was frozen or cut off); and it
    records the process group of an action that has run for one interval (shorter ones never
    cost a write), so a later process of this worker can kill it if it is left behind.
    """

    def __init__(self, database: Callable[[], Database], interval_s: float = CANCEL_POLL_S):
        self._database = database
        self._interval_s = interval_s
        self._watched: dict[int, Supervised] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    @contextmanager
    def watch(self, execution_id: int, worker: str) -> Iterator[Supervised]:
        """The execution's supervision (its cancel event set when it is to stop), while the
        block runs."""
        supervised = Supervised(execution_id, worker)
        with self._lock:
            self._watched[execution_id] = supervised
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._loop, name="attune-cancel-watcher", daemon=True
                )
                self._thread.start()
        try:
            yield supervised
        finally:
            with self._lock:
                self._watched.pop(execution_id, None)

    def _loop(self) -> None:
        idle = threading.Event()
        failing = False
        while not idle.wait(self._interval_s):
            with self._lock:
                watched = dict(self._watched)
            if not watched:
                continue
            try:
                self._tick(watched)
                failing = False
            except Exception as exc:  # a database hiccup must not end the watcher
                if not failing:
                    log.warning("cancel watcher cannot read the database: %s", exc)
                failing = True

    def _tick(self, watched: dict[int, Supervised]) -> None:
        with self._database().session_scope() as session:
            rows = session.execute(_WATCHED.where(_EXECUTION.id.in_(watched))).all()
        for row in rows:
            supervised = watched[row.id]
            with self._lock:
                if row.id not in self._watched:
                    continue  # it ended meanwhile, and its runner stored the result
            if row.status == ExecutionStatus.RUNNING and row.worker == supervised.worker:
                if supervised.group is not None and not supervised.recorded:
                    supervised.recorded = self._record(supervised, supervised.group)
                continue
            if row.status != ExecutionStatus.CANCELING and not supervised.lost:
                supervised.lost = True
                log.warning(
                    "execution %s is %s, no longer running on %s: stopping its action",
                    row.id,
                    row.status,
                    supervised.worker,
                )
            supervised.cancel.set()

    def _record(self, supervised: Supervised, group: ProcessGroup) -> bool:
        values = {
            "execution_id": supervised.execution_id,
            "held_by": supervised.worker,
            "pgid": group.pgid,
            "pgid_start_ticks": group.start_ticks,
            "pgid_host": host_identity(),
        }
        return bool(self._database().run(_RECORD_GROUP, values))
