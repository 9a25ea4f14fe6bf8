"""Live feed: an action's output published while it runs, redacted, capped and coalesced.

The capture loop hands every kept chunk (bytes inside the output cap) to :meth:`LiveFeed.kept`
and ticks it on each wake-up; the feed decodes UTF-8 incrementally, masks secrets, holds back
the last ``len(longest secret) - 1`` characters (a secret split across two chunks is still
masked once the rest arrives), and publishes to a :class:`LiveSink` at ``FLUSH_BYTES`` or
``FLUSH_S``, whichever comes first, and at the end. An action that prints nothing publishes
nothing; nor does one that ends within the feed's ``quiet_s`` (``ATTUNE_LIVE_OUTPUT_AFTER_S``):
what it would have published is held until then, and dropped if the process ended first, since
its stored output is there as soon as it ends. Runtimes never see the database: the sink is
whatever the worker gives them.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from attune.runtimes.output import redact, redact_cut

FLUSH_BYTES = 16 * 1024
"""Publish once this much text is waiting."""

FLUSH_S = 0.1
"""Publish text that has waited this long."""


class LiveSink(Protocol):
    """Where a live feed publishes; offsets count characters of the redacted text."""

    def publish(self, stream: str, offset: int, text: str) -> None:
        """``text`` of ``stream`` (``stdout``/``stderr``) starts at character ``offset``."""

    def truncate(self, stream: str) -> None:
        """``stream`` reached the output cap: what follows was dropped."""


class _Stream:
    """One output stream of the feed: decoder, held-back text and the next offset."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.pending = ""  # redacted, not yet published
        self.offset = 0
        self.since = 0.0  # when the oldest pending text arrived
        self.truncated = False


class LiveFeed:
    """Publishes the two output streams of one process to ``sink`` (see the module doc)."""

    def __init__(
        self,
        sink: LiveSink,
        secrets: Sequence[str],
        quiet_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._opens_at = clock() + quiet_s
        self._held: list[tuple[str, int, str]] | None = [] if quiet_s > 0 else None
        """What was due to be published before ``opens_at`` (None once open)."""
        self._secrets = tuple(secrets)
        self._hold = max((len(secret) for secret in self._secrets), default=1) - 1
        self._streams = {name: _Stream(name) for name in ("stdout", "stderr")}

    def kept(self, stream: str, chunk: bytes | memoryview) -> None:
        """Bytes of ``stream`` that the capture kept (inside the output cap)."""
        state = self._streams[stream]
        text = state.decoder.decode(chunk)
        if not text:
            return
        if "\0" in text:
            text = text.replace("\0", "\ufffd")
        if not state.pending:
            state.since = self._clock()
        state.pending = redact(state.pending + text, self._secrets)
        if len(state.pending) >= FLUSH_BYTES:
            self._flush(state, final=False)

    def dropped(self, stream: str) -> None:
        """``stream`` passed the output cap."""
        self._streams[stream].truncated = True

    def tick(self) -> None:
        """Publish text that has waited ``FLUSH_S`` (and, once the quiet start is over, what
        was held); called on each wake-up of the loop."""
        now = self._clock()
        if self._held is not None and now >= self._opens_at:
            held, self._held = self._held, None
            for stream, offset, text in held:
                self._sink.publish(stream, offset, text)
        for state in self._streams.values():
            if state.pending and now - state.since >= FLUSH_S:
                self._flush(state, final=False)

    def finish(self) -> None:
        """The process ended: publish everything left, then any truncation; nothing at all
        if it ended within the quiet start."""
        self.tick()
        if self._held is not None:
            return
        for state in self._streams.values():
            rest = state.decoder.decode(b"", final=True)
            state.pending = redact(state.pending + rest, self._secrets)
            if state.truncated and state.pending:
                # As stored: a secret the cap cut in two has its kept beginning masked.
                state.pending = redact_cut(state.pending, len(state.pending), self._secrets)
            self._flush(state, final=True)
            if state.truncated:
                self._sink.truncate(state.name)

    def _flush(self, state: _Stream, *, final: bool) -> None:
        cut = len(state.pending) if final else len(state.pending) - self._hold
        if cut <= 0:
            return
        text, state.pending = state.pending[:cut], state.pending[cut:]
        state.since = self._clock()
        if self._held is None:
            self._sink.publish(state.name, state.offset, text)
        else:
            self._held.append((state.name, state.offset, text))
        state.offset += len(text)
