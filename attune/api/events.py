"""The event hub of ``/stream``: a ring of recent transitions and a bounded queue per subscriber.

Sources (:mod:`attune.api.eventfeed`) publish from any thread. Every event gets the SSE id
``<epoch>.<seq>``: the epoch names this hub (this process), the sequence counts its events.
A subscriber whose queue overflows loses what it had pending and gets one ``reset`` instead,
never a silent gap; so does one resuming with a ``Last-Event-ID`` the ring no longer covers.
A gap in a source (its database connection lost) is a ``reset`` in the ring itself.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

RING_EVENTS = 10_000
"""How many recent events the hub keeps for subscribers resuming with ``Last-Event-ID``."""
QUEUE_EVENTS = 1_000
"""How many events one subscriber may have pending before it is reset."""
RESET = "reset"
"""The event that tells a subscriber it missed events: refetch through REST."""


@dataclass(frozen=True)
class Event:
    """One event: its sequence number in the hub, its kind and its JSON data."""

    seq: int
    kind: str
    data: Mapping[str, Any]

    @functools.cached_property
    def text(self) -> str:
        """``data`` as JSON, encoded once for all the subscribers it goes to."""
        return json.dumps(self.data)


Filter = Callable[[Event], bool]
"""Which events a subscriber wants (``reset`` always reaches it)."""


def wake(subscriptions: Iterable[Subscription]) -> None:
    """Wake the subscribers that have new events: one call into each event loop, from any
    thread, whatever the number of subscribers on it."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Event]] = {}
    for subscription in subscriptions:
        by_loop.setdefault(subscription.loop, []).append(subscription.ready)
    for loop, ready in by_loop.items():
        loop.call_soon_threadsafe(_set_all, ready)


def _set_all(ready: list[asyncio.Event]) -> None:
    for each in ready:
        each.set()


@dataclass(eq=False)
class Subscription:
    """One subscriber's queue; :meth:`next` is awaited on the subscriber's event loop."""

    wanted: Filter
    limit: int
    loop: asyncio.AbstractEventLoop
    _pending: deque[Event] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, event: Event) -> bool:
        """Queue ``event`` if wanted; on overflow drop everything pending for one ``reset``.
        True when the queue was empty: the subscriber must then be woken (:func:`wake`)."""
        if event.kind != RESET and not self.wanted(event):
            return False
        with self._lock:
            if len(self._pending) >= self.limit:
                self._pending.clear()
                event = Event(event.seq, RESET, {"reason": "this subscriber fell behind"})
            was_empty = not self._pending
            self._pending.append(event)
        return was_empty

    async def next(self, timeout_s: float) -> list[Event]:
        """The events pending, waiting up to ``timeout_s`` for one (else an empty list)."""
        if not self._pending:
            try:
                await asyncio.wait_for(self.ready.wait(), timeout_s)
            except TimeoutError:
                return []
        with self._lock:
            self.ready.clear()
            events = list(self._pending)
            self._pending.clear()
        return events


class EventHub:
    """The ring, the sequence and the subscribers of one process."""

    def __init__(self, ring_events: int = RING_EVENTS, queue_events: int = QUEUE_EVENTS) -> None:
        self.epoch = str(time.time_ns() // 1_000_000)
        self.queue_events = queue_events
        self._lock = threading.Lock()
        self._seq = 0
        self._ring: deque[Event] = deque(maxlen=ring_events)
        self._subscribers: set[Subscription] = set()

    def event_id(self, event: Event) -> str:
        """The SSE id of ``event``."""
        return f"{self.epoch}.{event.seq}"

    def position(self) -> str:
        """The SSE id of the latest event: a subscription given it later is first replayed
        every event that came since (what a read made in between may not have seen)."""
        with self._lock:
            return f"{self.epoch}.{self._seq}"

    def publish(self, kind: str, data: Mapping[str, Any]) -> None:
        """Add an event to the ring and offer it to every subscriber (any thread)."""
        with self._lock:
            self._seq += 1
            event = Event(self._seq, kind, data)
            self._ring.append(event)
            subscribers = list(self._subscribers)
        wake([subscription for subscription in subscribers if subscription.offer(event)])

    def gap(self, reason: str) -> None:
        """A source may have missed events: every subscriber, and every replay across it, resets."""
        self.publish(RESET, {"reason": reason})

    def subscribe(self, wanted: Filter, last_event_id: str | None) -> Subscription:
        """A new subscription; with ``last_event_id``, the events since queued first (or reset)."""
        subscription = Subscription(wanted, self.queue_events, asyncio.get_running_loop())
        with self._lock:
            self._subscribers.add(subscription)
            if last_event_id is not None:
                missed = self._since(last_event_id)
                if missed is None:
                    reason = f"Last-Event-ID {last_event_id} is not in this server's ring"
                    missed = [Event(self._seq, RESET, {"reason": reason})]
                offered = [subscription.offer(event) for event in missed]
                if any(offered):
                    wake([subscription])
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop offering events to ``subscription``."""
        with self._lock:
            self._subscribers.discard(subscription)

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    def _since(self, last_event_id: str) -> list[Event] | None:
        """The ring's events after ``last_event_id``; None if the ring does not cover it."""
        epoch, _dot, raw_seq = last_event_id.partition(".")
        if epoch != self.epoch or not raw_seq.isdigit() or int(raw_seq) > self._seq:
            return None
        seen = int(raw_seq)
        oldest = self._ring[0].seq if self._ring else self._seq + 1
        if seen < oldest - 1:
            return None
        # The ring's sequence numbers run on by one to the latest: the events after ``seen``
        # are its last ones, taken from the right (a stream's usual replay is none or a few,
        # and scanning a full ring of 10,000 cost every stream about 0.3 ms under the lock).
        missed = list(itertools.islice(reversed(self._ring), self._seq - seen))
        missed.reverse()
        return missed


hub = EventHub()
"""This process's hub."""
