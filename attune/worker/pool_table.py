"""The pool table: what a prefork worker's pool processes run beyond their tasks' executions.

A pool process that frees a gate's slot claims and runs the gate's next head itself
(:mod:`attune.executions.handoff`). Its task's message names only the first execution, so the
main process reads here which execution a dead pool process was running and abandons it too.
The table is anonymous shared memory the main process maps before the pool forks: a flag, set
when the worker shuts down (a warm shutdown then waits only for what already runs), and one
slot per pool process index, ``(pid, execution id)``, written by that process alone.
"""

from __future__ import annotations

import mmap
import os
import struct

from billiard.process import current_process

_FLAG = struct.Struct("=q")
_SLOT = struct.Struct("=qq")


class PoolTable:
    """The table shared by a worker's main process and its pool processes (a :class:`Handoff`)."""

    def __init__(self, slots: int = 256) -> None:
        self._slots = slots
        self._table: mmap.mmap | None = None

    def share(self) -> None:
        """In the main process, before the pool forks: map the table its processes inherit."""
        if self._table is None:
            self._table = mmap.mmap(-1, _FLAG.size + self._slots * _SLOT.size)

    def stop(self) -> None:
        """The worker shuts down: no pool process takes another head."""
        if self._table is not None:
            _FLAG.pack_into(self._table, 0, 1)

    def allowed(self) -> bool:
        """In a pool process: True while it may run a gate's head itself."""
        table = self._table
        return table is not None and not _FLAG.unpack_from(table, 0)[0] and self._slot() is not None

    def running(self, execution_id: int | None) -> None:
        """In a pool process: it now runs ``execution_id`` beyond its task's (None: no longer)."""
        slot = self._slot()
        if self._table is not None and slot is not None:
            owner = 0 if execution_id is None else os.getpid()
            _SLOT.pack_into(self._table, slot, owner, execution_id or 0)

    def running_in(self, pid: int) -> int | None:
        """In the main process: the execution pool process ``pid`` ran beyond its task's."""
        if self._table is None:
            return None
        for index in range(self._slots):
            owner, execution_id = _SLOT.unpack_from(self._table, _FLAG.size + index * _SLOT.size)
            if owner == pid and execution_id:
                return int(execution_id)
        return None

    def _slot(self) -> int | None:
        """This pool process's slot offset (None outside a pool process, or past the table)."""
        index = getattr(current_process(), "index", None)
        if not isinstance(index, int) or not 0 <= index < self._slots:
            return None
        return _FLAG.size + index * _SLOT.size


pool_table = PoolTable()
"""This worker's table (mapped by the liveness bootstep of a prefork worker)."""
