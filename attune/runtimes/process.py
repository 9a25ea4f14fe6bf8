"""Process: spawn an action in its own process group, feed stdin, capture output, stop it.

Everything runs in the calling thread: one ``poll`` over the output pipes, the stdin pipe and a
pidfd of the child (so its exit wakes the loop at once), woken every ``CANCEL_POLL_S`` to look at
the cancel event.
"""

from __future__ import annotations

import contextlib
import enum
import math
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from attune.runtimes.capture import Capture, Captured
from attune.runtimes.livefeed import LiveFeed
from attune.runtimes.reaper import ProcessGroup, reaper

CANCEL_POLL_S = 0.05
"""How often the loop looks at the cancel event (and, where there is no pidfd, at the child)."""

LINGER_S = 1.0
"""How long the output pipes may stay open after the action's own process exited."""

_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR
_WRITABLE = select.POLLOUT | select.POLLHUP | select.POLLERR


class Stop(enum.StrEnum):
    """Why the runtime stopped a process before it ended by itself."""

    TIMEOUT = "timeout"
    CANCELED = "canceled"


@dataclass(frozen=True)
class Spawn:
    """What to start and how: command line, directory, environment, stdin and limits."""

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    stdin: bytes | None
    timeout_s: float
    kill_grace_s: float
    max_output_bytes: int
    feed: LiveFeed | None = None


@dataclass(frozen=True)
class Finished:
    """A process that ended: its return code (``-N`` for signal N), output, and any stop."""

    returncode: int
    stdout: Captured
    stderr: Captured
    stop: Stop | None
    duration_ms: int


def run_process(
    spawn: Spawn,
    cancel: threading.Event,
    use_pidfd: bool = True,
    on_start: Callable[[ProcessGroup], None] | None = None,
) -> Finished:
    """Run ``spawn`` to its end; raises ``OSError``/``SubprocessError`` if it cannot start.

    The process's group is listed with this process's reaper while it runs (so it dies with
    this process) and handed to ``on_start`` once started. ``use_pidfd=False`` watches the
    child by polling ``waitid`` instead, as on kernels without ``pidfd_open`` (before Linux
    5.3, or where a seccomp profile forbids it).
    """
    started = time.monotonic()
    # Pipes of our own, not PIPE: Popen would wrap each end in a file object we never use.
    stdout, stderr = os.pipe(), os.pipe()
    stdin = os.pipe() if spawn.stdin is not None else None
    try:
        process = subprocess.Popen(
            spawn.argv,
            stdin=subprocess.DEVNULL if stdin is None else stdin[0],
            stdout=stdout[1],
            stderr=stderr[1],
            cwd=spawn.cwd,
            env=spawn.env,
            start_new_session=True,
        )
    except BaseException:
        for read_end, _write_end in (stdout, stderr, stdin or (-1, -1)):
            _close(read_end)
        raise
    finally:
        for child_end in (stdout[1], stderr[1], -1 if stdin is None else stdin[0]):
            _close(child_end)
    group = reaper.track(process.pid, spawn.kill_grace_s)
    stdin_fd = None if stdin is None else stdin[1]
    watch = _Watch(process, spawn, cancel, (stdout[0], stderr[0], stdin_fd), use_pidfd)
    try:
        if on_start is not None:
            on_start(group)
        stop = watch.run()
    finally:
        watch.close()
        reaper.untrack(group)
    if spawn.feed is not None:
        spawn.feed.finish()
    return Finished(
        returncode=process.returncode,
        stdout=watch.stdout.finish(),
        stderr=watch.stderr.finish(),
        stop=stop,
        duration_ms=round((time.monotonic() - started) * 1000),
    )


class _Watch:
    """The poll loop of one process; ``close`` always kills what is left of its group."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        spawn: Spawn,
        cancel: threading.Event,
        fds: tuple[int, int, int | None],
        use_pidfd: bool,
    ) -> None:
        stdout_fd, stderr_fd, stdin_fd = fds
        self.process = process
        self.spawn = spawn
        self.cancel = cancel
        self.stdout = Capture("stdout", spawn.max_output_bytes, spawn.feed)
        self.stderr = Capture("stderr", spawn.max_output_bytes, spawn.feed)
        self.poller = select.poll()
        self.readers: dict[int, Capture] = {stdout_fd: self.stdout, stderr_fd: self.stderr}
        for fd in self.readers:
            self.poller.register(fd, _READABLE)
        self.exited = False
        self.pidfd = _pidfd_open(process.pid) if use_pidfd else None
        if self.pidfd is not None:
            self.poller.register(self.pidfd, select.POLLIN)
        self.pending = memoryview(spawn.stdin or b"")
        self.stdin_fd = stdin_fd
        self.stdin_polled = False
        if stdin_fd is not None:
            os.set_blocking(stdin_fd, False)
            self._write_stdin()

    def run(self) -> Stop | None:
        """Loop until the process exited and its pipes closed (or lingered too long)."""
        stop: Stop | None = None
        deadline = time.monotonic() + self.spawn.timeout_s
        kill_at = math.inf
        linger_until = math.inf
        while True:
            now = time.monotonic()
            if self.spawn.feed is not None:
                self.spawn.feed.tick()
            if stop is None and (self.cancel.is_set() or now >= deadline):
                stop = Stop.CANCELED if self.cancel.is_set() else Stop.TIMEOUT
                self._signal(signal.SIGTERM)
                kill_at = now + self.spawn.kill_grace_s
            if now >= kill_at:
                self._signal(signal.SIGKILL)
                kill_at = math.inf
            if linger_until == math.inf and self._exited():
                linger_until = now + LINGER_S
            exited = linger_until < math.inf
            if exited and (not self.readers or now >= linger_until):
                return stop
            wake = min(linger_until, kill_at, deadline if stop is None else math.inf)
            wait_s = min(wake - now, CANCEL_POLL_S)
            for fd, _event in self.poller.poll(max(0, math.ceil(wait_s * 1000))):
                if fd in self.readers:
                    if not self.readers[fd].read(fd):
                        self.poller.unregister(fd)
                        del self.readers[fd]
                        os.close(fd)
                elif fd == self.stdin_fd:
                    self._write_stdin()
                elif fd == self.pidfd:
                    self.poller.unregister(fd)
                    self.exited = True

    def close(self) -> None:
        """Kill what is left of the group, reap the process and close every descriptor."""
        # The leader is not reaped yet, so its pid (the group id) cannot have been reused.
        self._signal(signal.SIGKILL)
        self.process.wait()
        self._close_stdin()
        for fd in (*self.readers, -1 if self.pidfd is None else self.pidfd):
            _close(fd)
        self.readers.clear()

    def _exited(self) -> bool:
        """True once the process exited; it stays unreaped (a zombie) until ``close``."""
        if self.exited or self.pidfd is not None:
            return self.exited
        try:
            found = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            self.exited = found is not None
        except ChildProcessError:
            self.exited = True
        return self.exited

    def _signal(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def _write_stdin(self) -> None:
        assert self.stdin_fd is not None
        try:
            while self.pending:
                written = os.write(self.stdin_fd, self.pending)
                self.pending = self.pending[written:]
        except BlockingIOError:
            if not self.stdin_polled:
                self.poller.register(self.stdin_fd, _WRITABLE)
                self.stdin_polled = True
            return
        except OSError:
            pass  # the child closed its stdin or exited: the rest of the document is not wanted
        self._close_stdin()

    def _close_stdin(self) -> None:
        if self.stdin_fd is None:
            return
        if self.stdin_polled:
            self.poller.unregister(self.stdin_fd)
        _close(self.stdin_fd)
        self.stdin_fd = None
        self.pending.release()


def _close(fd: int) -> None:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)


def _pidfd_open(pid: int) -> int | None:
    """A descriptor that turns readable when ``pid`` exits, or None where the kernel has none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
