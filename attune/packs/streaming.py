"""A new pack's actions written while the rest of its files are still being read (PostgreSQL).

The first load of a large pack used to wait, at its end, for the server to insert all of its
actions (for a thousand, about a sixth of the load). :class:`ActionStream` is the
:class:`~attune.packs.reader.PackSink` of such a load: a writer thread takes the header and
each valid action as :func:`~attune.packs.reader.read_pack` accepts them and inserts the
actions a chunk at a time while the reader parses the next files, so the server's work overlaps
the parse. All of it happens in the pack's one transaction, on the writer's connection: the
pack row first, its actions as they come, then :func:`~attune.packs.upsert.upsert_pack` with
what was streamed. A problem found later, or a failed insert, rolls it all back: a pack with a
problem writes nothing, as before.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any

from sqlalchemy.orm import Session

from attune.packs.specs import ActionSpec, PackSpec
from attune.packs.upsert import PackReport, Streamed, insert_actions, insert_pack, upsert_pack
from attune.store.db import Database

CHUNK = 100
"""Actions per INSERT: small enough that the server keeps pace with the reader, large enough
that each statement's round trip is spread over many rows."""

_Message = dict[str, Any] | ActionSpec | PackSpec | None
"""The header's columns, an action, the whole pack (write the rest and commit), or None (roll
back)."""


class ActionStream:
    """Writes a new pack while it is read (see the module): feed it as a
    :class:`~attune.packs.reader.PackSink`, then :meth:`finish` or :meth:`abandon` it."""

    def __init__(self, database: Database, ref: str) -> None:
        self._database = database
        self._inbox: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self._outcome: Future[PackReport] = Future()
        self._thread = threading.Thread(target=self._write, name=f"attune-load-{ref}", daemon=True)
        self._thread.start()

    def header(self, columns: dict[str, Any]) -> None:
        """Insert the pack row (its columns are set again, all of them, at the end)."""
        self._inbox.put(columns)

    def action(self, spec: ActionSpec) -> None:
        """Insert the action, with the next chunk."""
        self._inbox.put(spec)

    def finish(self, spec: PackSpec) -> PackReport:
        """Write the rest of ``spec`` and commit; its report, or the writer's error."""
        self._inbox.put(spec)
        return self._outcome.result()

    def abandon(self) -> None:
        """Roll back whatever was written and wait for the writer to end."""
        self._inbox.put(None)
        self._thread.join()

    def _write(self) -> None:
        try:
            with self._database.session_scope() as session:
                report = self._stream(session)
        except Exception as error:  # for finish() to raise; abandon() does not ask
            self._outcome.set_exception(error)
        else:
            if report is not None:  # None: abandoned, and nobody waits for an outcome
                self._outcome.set_result(report)

    def _stream(self, session: Session) -> PackReport | None:
        """Write what comes until the pack (its report) or None (rolled back: no report)."""
        pack_id: int | None = None
        pending: list[ActionSpec] = []
        refs: set[str] = set()
        while True:
            message = self._inbox.get()
            if message is None:
                session.rollback()
                return None
            if isinstance(message, PackSpec):
                if pack_id is None:  # no header came: nothing was streamed
                    return upsert_pack(session, message)
                refs.update(_insert(session, pack_id, pending))
                return upsert_pack(session, message, Streamed(pack_id, frozenset(refs)))
            if isinstance(message, ActionSpec):
                pending.append(message)
            else:
                # Without its hash: the final UPDATE sets it, and a hash an UPDATE leaves as it
                # was reads as a hand edit (the table's source_edited trigger clears it).
                columns = {key: value for key, value in message.items() if key != "source_hash"}
                pack_id = insert_pack(session, columns)
            if pack_id is not None and len(pending) >= CHUNK:
                refs.update(_insert(session, pack_id, pending))
                pending = []


def _insert(session: Session, pack_id: int, actions: list[ActionSpec]) -> list[str]:
    """Insert ``actions`` (if any) into pack ``pack_id``; their refs."""
    if actions:
        insert_actions(session, pack_id, actions)
    return [action.ref for action in actions]
