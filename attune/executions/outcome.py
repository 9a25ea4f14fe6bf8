"""Outcome: an execution's status and stored output, the part of its record an output stream
reads (when it opens, and again when the execution ends).

Read as text on PostgreSQL (:meth:`AsyncReader.texts <attune.store.asyncreader.AsyncReader.texts>`:
six columns decoded here cost the server about a quarter of a whole record's read through
psycopg's types, and the read at the end stands between the execution's end and the
stream's ``end`` event).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select

from attune.errors import ExecutionNotFoundError
from attune.store import asyncreader
from attune.store.asyncreader import AsyncReader
from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE, ExecutionStatus

_E = EXECUTION_TABLE.c
_OUTCOME = select(
    _E.status,
    _E.exit_code,
    _E.stdout,
    _E.stderr,
    _E.stdout_truncated,
    _E.stderr_truncated,
).where(_E.id == bindparam("execution_id"))


@dataclass(frozen=True)
class Outcome:
    """An execution's status, exit code and stored output (final once it is terminal)."""

    status: ExecutionStatus
    exit_code: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool

    @property
    def is_terminal(self) -> bool:
        """True once the execution can no longer change."""
        return self.status.is_terminal


async def outcome_async(
    database: Database, reader: AsyncReader | None, execution_id: int
) -> Outcome:
    """The execution's :class:`Outcome` from an event loop: as text on the ``reader``
    (PostgreSQL), else in a worker thread; :class:`ExecutionNotFoundError` when there is none."""
    values = {"execution_id": execution_id}
    if reader is None:
        for status, *rest in await asyncreader.run(database, None, _OUTCOME, values):
            return Outcome(ExecutionStatus(status), *rest)
        raise ExecutionNotFoundError(execution_id)
    for status, exit_code, stdout, stderr, stdout_cut, stderr_cut in await reader.texts(
        _OUTCOME, values
    ):
        return Outcome(
            ExecutionStatus(_text(status)),
            None if exit_code is None else int(exit_code),
            _text(stdout),
            _text(stderr),
            stdout_cut == b"t",
            stderr_cut == b"t",
        )
    raise ExecutionNotFoundError(execution_id)


def _text(value: bytes | None) -> str:
    """A NOT NULL text column's value (the reader's connections speak UTF-8)."""
    return "" if value is None else value.decode()
