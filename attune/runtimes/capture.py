"""Capture: one output stream of a process, kept up to a byte limit in constant memory."""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

from attune.runtimes.livefeed import LiveFeed

CHUNK_BYTES = 1024 * 1024
"""The most one read takes from a pipe."""

SMALL_BYTES = 256 * 1024
"""Output up to this size is kept in a plain ``bytearray`` (a mapping costs ~15 µs a run)."""

_SCRATCH_BYTES = 64 * 1024  # a pipe's default capacity: more never arrives in one read
_NOTICE_ROOM = 256
_NEWLINE = ord("\n")


@dataclass(frozen=True)
class Captured:
    """A stream's kept output, decoded, with the truncation notice (if any) at its end."""

    text: str
    dropped_bytes: int
    notice: str

    @property
    def truncated(self) -> bool:
        """True when output past the limit was dropped."""
        return self.dropped_bytes > 0


class Capture:
    """Reads one stream, keeping ``limit_bytes`` of it and counting (and dropping) the rest.

    Output up to ``SMALL_BYTES`` lives in a ``bytearray``; past that it moves once into an
    anonymous mapping of exactly ``limit_bytes`` (plus room for the notice), whose pages cost
    memory only once written and which reads fill without intermediate ``bytes`` objects. So
    a flood holds the limit and no more, and a small output pays no mapping.
    """

    def __init__(self, name: str, limit_bytes: int, feed: LiveFeed | None = None) -> None:
        self.name = name
        self.feed = feed
        self.limit_bytes = limit_bytes
        self.size = 0
        self.dropped_bytes = 0
        self._small = bytearray()
        self._buffer: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._scratch: bytearray | None = None

    def read(self, fd: int) -> bool:
        """Read what ``fd`` has ready; False at end of stream."""
        room = self.limit_bytes - self.size
        if room <= 0:
            if self._scratch is None:
                self._scratch = bytearray(_SCRATCH_BYTES)
            count = os.readv(fd, [self._scratch])
            self.dropped_bytes += count
            if count and self.feed is not None:
                self.feed.dropped(self.name)
        elif self._view is not None:
            count = os.readv(fd, [self._view[self.size : self.size + min(room, CHUNK_BYTES)]])
            self.size += count
            if count and self.feed is not None:
                self.feed.kept(self.name, self._view[self.size - count : self.size])
        else:
            chunk = os.read(fd, min(room, CHUNK_BYTES))
            count = len(chunk)
            self.size += count
            if self.size <= SMALL_BYTES:
                self._small += chunk
            else:
                self._map(chunk)
            if count and self.feed is not None:
                self.feed.kept(self.name, chunk)
        return count > 0

    def finish(self) -> Captured:
        """The decoded output (NUL bytes and invalid UTF-8 replaced by U+FFFD); frees the buffer."""
        if not self.size:
            return Captured("", 0, "")
        notice = self._notice()
        # Decoding straight from the buffer (notice included) spares a copy of the output.
        if self._view is not None:
            self._view[self.size : self.size + len(notice)] = notice.encode("ascii")
            text = str(self._view[: self.size + len(notice)], "utf-8", "replace")
        else:
            self._small += notice.encode("ascii")
            text = str(self._small, "utf-8", "replace")
        self.close()
        if "\0" in text:
            text = text.replace("\0", "\ufffd")
        return Captured(text, self.dropped_bytes, notice)

    def close(self) -> None:
        """Free the buffer (idempotent)."""
        self._small = bytearray()
        self._scratch = None
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None

    def _notice(self) -> str:
        if not self.dropped_bytes:
            return ""
        last = self._view[self.size - 1] if self._view is not None else self._small[-1]
        newline = "" if last == _NEWLINE else "\n"
        return (
            f"{newline}[attune: {self.name} truncated at {self.limit_bytes} bytes,"
            f" {self.dropped_bytes} more bytes dropped]\n"
        )

    def _map(self, chunk: bytes) -> None:
        """Move the output into a mapping, now that it is larger than ``SMALL_BYTES``."""
        self._buffer = mmap.mmap(-1, self.limit_bytes + _NOTICE_ROOM)
        self._view = memoryview(self._buffer)
        kept = len(self._small)
        self._view[:kept] = self._small
        self._view[kept : self.size] = chunk
        self._small = bytearray()
