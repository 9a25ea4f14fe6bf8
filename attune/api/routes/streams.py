"""Server-sent events: ``/stream`` (transitions) and ``/executions/{id}/output/stream``.

Both are async and hold no database connection while streaming: the first reads the event
hub, the second the live output backend, with short SQL reads at the start, now and then while
the live output is quiet, and at the end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException

from attune.api.deps import AsyncReaderDep, DatabaseDep, Reader, SettingsDep
from attune.api.events import Event, Subscription, hub
from attune.api.problems import responses
from attune.executions import liveoutput, records
from attune.executions.liveoutput import Batch, LiveOutput
from attune.executions.outcome import Outcome, outcome_async
from attune.store.asyncreader import AsyncReader
from attune.store.db import Database
from attune.store.models import ExecutionStatus

router = APIRouter(tags=["streams"], responses=responses(401, 403))

RETRY_MS = 2000
"""How long a client waits before reconnecting (SSE ``retry:``)."""
PING_S = 15
"""How often a quiet stream sends a keep-alive comment."""
QUIET_S = 1.0
"""How long the output stream waits for live output before it looks at the execution in SQL."""
PIECE_CHARS = 64 * 1024
"""Stored output is streamed in events of at most this many characters."""
UNAVAILABLE = "live output unavailable"
"""The event sent for a running execution whose output cannot be followed live."""
EVENT_KINDS = ("execution", "worker")
_SSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "A stream of events"}
}


@router.get(
    "/stream",
    operation_id="stream_events",
    summary="Follow execution transitions and worker status changes",
    response_class=EventSourceResponse,
    responses={**_SSE, **responses(422)},
)
async def stream_events(
    _: Reader,
    events: Annotated[str, Query(description="Comma-separated: execution, worker")] = (
        "execution,worker"
    ),
    execution_id: int | None = None,
    action: str | None = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """Every transition as it happens; ``reset`` when this subscriber missed events."""
    kinds = {kind.strip() for kind in events.split(",") if kind.strip()}
    if not kinds or not kinds <= set(EVENT_KINDS):
        raise HTTPException(422, f"events={events!r}: expected a list of {', '.join(EVENT_KINDS)}")

    def wanted(event: Event) -> bool:
        if event.kind not in kinds:
            return False
        if event.kind != "execution":
            return execution_id is None and action is None
        data = event.data
        return (execution_id is None or data["id"] == execution_id) and (
            action is None or data["action_ref"] == action
        )

    subscription = hub.subscribe(wanted, last_event_id)

    async def sent() -> AsyncIterator[ServerSentEvent]:
        try:
            yield ServerSentEvent(comment="attune events", retry=RETRY_MS)
            while True:
                for event in await subscription.next(PING_S):
                    text = event.text
                    yield ServerSentEvent(data=text, event=event.kind, id=hub.event_id(event))
        finally:
            hub.unsubscribe(subscription)

    return EventSourceResponse(sent(), ping=PING_S)


@router.get(
    "/executions/{execution_id}/output/stream",
    operation_id="stream_execution_output",
    summary="Follow an execution's stdout and stderr while it runs",
    tags=["executions"],
    response_class=EventSourceResponse,
    responses={**_SSE, **responses(404)},
)
async def stream_output(
    execution_id: int,
    _: Reader,
    database: DatabaseDep,
    reader: AsyncReaderDep,
    settings: SettingsDep,
) -> EventSourceResponse:
    """``stdout``/``stderr`` ``{offset, text}``, then ``truncated`` if capped, then ``end``."""
    since = hub.position()  # the follower hears every transition from before this read on
    outcome = await outcome_async(database, reader, execution_id)
    live = liveoutput.backend(settings)
    follower = _Follower(database, reader, live, execution_id, outcome, since)
    return EventSourceResponse(follower.events(), ping=PING_S)


class _Follower:
    """One output stream: live chunks first, then the stored output past what was sent."""

    def __init__(
        self,
        database: Database,
        reader: AsyncReader | None,
        live: LiveOutput | None,
        execution_id: int,
        outcome: Outcome,
        since: str,
    ) -> None:
        self.database = database
        self.reader = reader  # on PostgreSQL: the looks at SQL need no thread
        self.live = live
        self.execution_id = execution_id
        self.outcome = outcome
        self.since = since
        self.sent = {"stdout": 0, "stderr": 0}

    async def events(self) -> AsyncIterator[ServerSentEvent | bytes]:
        """The stream's events, to its ``end``."""
        yield ServerSentEvent(comment="attune output", retry=RETRY_MS)
        if not self.outcome.is_terminal:
            async for event in self._live():
                yield event
        for joined in _joined(self._ending()):
            yield joined

    def _ending(self) -> Iterator[ServerSentEvent]:
        """The events after the live ones: the stored output not sent yet, then ``truncated``
        if capped, then ``end``."""
        outcome = self.outcome
        for stream, stored in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
            for start in range(self.sent[stream], len(stored), PIECE_CHARS):
                yield self._text(stream, start, stored[start : start + PIECE_CHARS])
        for stream, truncated in (
            ("stdout", outcome.stdout_truncated),
            ("stderr", outcome.stderr_truncated),
        ):
            if truncated:
                yield ServerSentEvent(data=json.dumps({"stream": stream}), event="truncated")
        end = {"status": outcome.status.value, "exit_code": outcome.exit_code}
        yield ServerSentEvent(data=json.dumps(end), event="end")

    async def _live(self) -> AsyncIterator[ServerSentEvent]:
        """Live chunks until the execution is terminal (then ``outcome`` is its final state).

        A quiet wait also ends at the execution's own transition event, then SQL is read: an
        action that ended before it published anything live
        (:data:`attune.settings.Settings.live_output_after_s`) ends its stream at once, not a
        quiet period later. The subscription replays the transitions since the outcome was
        read, so one between that read and this subscription is heard too."""
        moved = hub.subscribe(self._moved, self.since)
        try:
            async for event in self._follow(moved):
                yield event
        finally:
            hub.unsubscribe(moved)

    def _moved(self, event: Event) -> bool:
        return event.kind == "execution" and event.data.get("id") == self.execution_id

    async def _follow(self, moved: Subscription) -> AsyncIterator[ServerSentEvent]:
        cursor, told = "0", False
        status = self.outcome.status
        reading: asyncio.Future[Batch] | None = None  # a live read kept across transitions
        try:
            while not status.is_terminal:
                heard: list[Event] = []
                if self.live is None or told:
                    batch = None
                    heard = await moved.next(QUIET_S)
                else:
                    if reading is None:
                        reading = asyncio.ensure_future(
                            self.live.read(self.execution_id, cursor, QUIET_S)
                        )
                    first = await _first_of(reading, moved.next(QUIET_S))
                    batch = first if isinstance(first, Batch) else None
                    heard = [] if isinstance(first, Batch) else first
                    if batch is not None:
                        reading, cursor = None, batch.cursor
                    for chunk in () if batch is None else batch.chunks:
                        if chunk.kind == "end":
                            self.outcome = await outcome_async(*self._key)
                            return
                        if chunk.kind in self.sent:
                            event = self._new(chunk)
                            if event is not None:
                                yield event
                    if batch is not None and batch.chunks:
                        continue
                # Even after a terminal event, SQL decides: SQLite's triggers tell before the
                # commit. A move to another live status needs no look: its end will be heard.
                moves = [event.data.get("status") for event in heard]
                if any(moved_to in _TERMINAL for moved_to in moves):
                    self.outcome = await outcome_async(*self._key)  # likely the last look
                    status = self.outcome.status
                    if status.is_terminal:
                        return
                elif moves and all(moved_to in _LIVE for moved_to in moves):
                    status = ExecutionStatus(str(moves[-1]))
                else:
                    status = await records.status_of_async(*self._key)
                unavailable = self.live is None or (batch is not None and not batch.available)
                if unavailable and not told and status is ExecutionStatus.RUNNING:
                    told = True
                    detail = {"reason": _why(self.live), "status": status.value}
                    yield ServerSentEvent(data=json.dumps(detail), event=UNAVAILABLE)
            self.outcome = await outcome_async(*self._key)
        finally:
            if reading is not None:  # left to end by itself, within QUIET_S: canceled, its
                reading.add_done_callback(_dropped)  # Redis connection would be closed

    def _new(self, chunk: liveoutput.Chunk) -> ServerSentEvent | None:
        """The part of ``chunk`` not sent yet (deduplicated by offset), if any."""
        seen = self.sent[chunk.kind]
        if chunk.offset + len(chunk.text) <= seen:
            return None
        skip = max(0, seen - chunk.offset)
        return self._text(chunk.kind, chunk.offset + skip, chunk.text[skip:])

    def _text(self, stream: str, offset: int, text: str) -> ServerSentEvent:
        self.sent[stream] = offset + len(text)
        return ServerSentEvent(data=json.dumps({"offset": offset, "text": text}), event=stream)

    @property
    def _key(self) -> tuple[Database, AsyncReader | None, int]:
        return self.database, self.reader, self.execution_id


_TERMINAL = frozenset(status.value for status in ExecutionStatus if status.is_terminal)
_LIVE = frozenset(status.value for status in ExecutionStatus if not status.is_terminal)


async def _first_of(
    reading: asyncio.Future[Batch], moved: Awaitable[list[Event]]
) -> Batch | list[Event]:
    """The execution's transition events if they came, else the live batch (the read goes on
    meanwhile, for the next call: a read canceled would cost its Redis connection)."""
    waking = asyncio.ensure_future(moved)
    done, _ = await asyncio.wait((reading, waking), return_when=asyncio.FIRST_COMPLETED)
    if waking in done:  # the events first: a batch read meanwhile waits for the next call
        return waking.result()
    waking.cancel()
    return reading.result()


def _joined(events: Iterable[ServerSentEvent]) -> Iterator[bytes]:
    """The events encoded, several to a write of up to about :data:`PIECE_CHARS` bytes: the
    stream's last events reach the client together, not a write (and a wake-up) each."""
    pending: list[bytes] = []
    size = 0
    for event in events:
        encoded = event.encode()
        if pending and size + len(encoded) > PIECE_CHARS:
            yield b"".join(pending)
            pending, size = [], 0
        pending.append(encoded)
        size += len(encoded)
    if pending:
        yield b"".join(pending)


def _dropped(reading: asyncio.Future[Batch]) -> None:
    """Forget a live read no one awaits any more (its failure, if any, too)."""
    if not reading.cancelled():
        reading.exception()


def _why(live: Any) -> str:
    if live is None:
        return "no live output backend (ATTUNE_LIVE_OUTPUT, or a Redis broker)"
    return "this server cannot see the process running it"
