"""Reaper: a tiny process that kills a worker process's action groups when that process dies.

Each worker process that runs actions starts one reaper (once, not per action) and keeps the
write end of a pipe to it; the reaper holds the read end and nothing else. Before an action runs
its process runs ``+pgid start_ticks grace_s``, after its group is killed and reaped ``-pgid``:
one small write each. When the worker process dies, by any means, SIGKILL included, the kernel
closes its end of the pipe, the reaper reads end-of-file and stops every group still listed
(SIGTERM, the grace, SIGKILL). End-of-file needs no signal to be delivered, no thread to be alive
and no code to run in the dying process, so it holds where ``PR_SET_PDEATHSIG`` towards the action
itself would not (it signals the direct child only, and fires when the forking *thread* ends).

Run as a script (``python -I -S reaper.py``), this module is the reaper process: it imports only
the standard library, so it starts in milliseconds and holds no copy of the worker's memory.

A pid is not an identity: a group is named by its leader's pid *and* start time (clock ticks
since boot, from ``/proc/<pid>/stat``), so a number reused by an unrelated process is never
signalled.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

POLL_S = 0.05
"""How often a stop looks whether the groups it signalled are gone."""

_PR_SET_PDEATHSIG = 1
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessGroup:
    """An action's process group: its leader's pid (the group id) and the leader's start time."""

    pgid: int
    start_ticks: int

    def owned(self) -> bool:
        """True while ``pgid`` still names this group (not a reused number)."""
        ticks = start_ticks(self.pgid)
        # With its leader gone the number stays reserved as long as a member lives, so a
        # leaderless group of that id is still this one.
        return ticks is None or ticks == self.start_ticks

    def signal(self, signum: int) -> bool:
        """Send ``signum`` to the whole group if it is still this one; True if it was sent."""
        if not self.owned():
            return False
        try:
            os.killpg(self.pgid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def alive(self) -> bool:
        """True while a process of the group exists (a zombie leader counts)."""
        return self.owned() and self.signal(0)


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return int(fields[19])  # field 22 of proc(5); fields[0] is field 3, after "(comm)"


def group_of(pid: int) -> ProcessGroup:
    """The group a new session leader ``pid`` (not yet reaped) leads."""
    return ProcessGroup(pid, start_ticks(pid) or 0)


@functools.cache
def host_identity() -> str:
    """This host and boot: the host name and the kernel's boot id (pids mean nothing elsewhere)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            boot_id = boot.read().strip()
    except OSError:
        boot_id = "unknown-boot"
    return f"{socket.gethostname()} {boot_id}"


def stop_groups(groups: Iterable[ProcessGroup], grace_s: float) -> list[ProcessGroup]:
    """SIGTERM each group, SIGKILL what is left after ``grace_s``; returns those signalled."""
    signalled = [group for group in groups if group.signal(signal.SIGTERM)]
    for group in signalled:
        group.signal(signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
    deadline = time.monotonic() + grace_s
    alive = signalled
    while alive and time.monotonic() < deadline:
        time.sleep(POLL_S)
        alive = [group for group in alive if group.alive()]
    for group in alive:
        group.signal(signal.SIGKILL)
    return signalled


def stop_groups_soon(groups: Iterable[ProcessGroup], grace_s: float) -> None:
    """:func:`stop_groups` in a daemon thread: SIGTERM now, SIGKILL after the grace."""
    groups = list(groups)
    if groups:
        threading.Thread(
            target=stop_groups, args=(groups, grace_s), name="attune-stop-groups", daemon=True
        ).start()


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when ``parent_pid`` (the thread that forked it) ends.

    For a prefork pool process: its parent forks it from the event loop's thread, the main one.
    If the parent is already gone, this process ends now. A no-op where prctl is missing.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        armed = False
    if armed and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)


class Reaper:
    """This process's handle on its reaper, started on first use (again after a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = 0  # the pid of the process the reaper watches
        self._fd = -1
        self._process: subprocess.Popen[bytes] | None = None
        self._failing = False
        self._live: dict[int, str] = {}  # pgid → its "+" line, for a reaper started anew

    def start(self) -> None:
        """Start this process's reaper unless it runs already (telling it the live groups)."""
        with self._lock:
            if self._owner == os.getpid() and self._process and self._process.poll() is None:
                return
            if self._owner != os.getpid():
                self._process = None  # a parent's reaper: not ours to reap or to write to
                self._live.clear()
            elif self._process is not None:
                self._process.wait()
            if self._fd >= 0:
                os.close(self._fd)
            self._owner, self._fd = os.getpid(), -1
            read_end, write_end = os.pipe()
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-I", "-S", __file__],
                    stdin=read_end,
                    stdout=subprocess.DEVNULL,
                    start_new_session=True,  # a signal to the worker's group spares it
                )
            except BaseException:
                os.close(write_end)
                raise
            finally:
                os.close(read_end)
            os.set_blocking(write_end, False)  # a stuck reaper must never block an action
            self._fd = write_end
            if self._live:
                os.write(write_end, "".join(self._live.values()).encode())

    def track(self, pid: int, grace_s: float) -> ProcessGroup:
        """Tell the reaper about the group ``pid`` leads; returns that group."""
        group = group_of(pid)
        line = f"+{group.pgid} {group.start_ticks} {grace_s:g}\n"
        self._live[group.pgid] = line
        self._send(line)
        return group

    def untrack(self, group: ProcessGroup) -> None:
        """Tell the reaper the group is over (killed and its leader reaped)."""
        self._live.pop(group.pgid, None)
        self._send(f"-{group.pgid}\n")

    def _send(self, line: str) -> None:
        try:
            if self._owner != os.getpid() or self._fd < 0:
                self.start()
            os.write(self._fd, line.encode())
        except (OSError, subprocess.SubprocessError) as exc:  # the action runs on, unguarded
            if not self._failing:
                log.warning("the reaper is unavailable (%s); starting a new one", exc)
            self._failing = True
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self.start()  # a new reaper is told every live group, this one included
                self._failing = False
        else:
            self._failing = False


reaper = Reaper()
"""This process's reaper."""


def _reap() -> None:
    """The reaper process: keep the list from stdin; at end-of-file stop every listed group."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: dict[int, tuple[ProcessGroup, float]] = {}
    pending = b""
    while chunk := os.read(0, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            fields = line[1:].split()
            if line.startswith(b"+") and len(fields) == 3:
                group = ProcessGroup(int(fields[0]), int(fields[1]))
                groups[group.pgid] = (group, float(fields[2]))
            elif line.startswith(b"-") and fields:
                groups.pop(int(fields[0]), None)
    if groups:
        grace_s = max(grace for _group, grace in groups.values())
        stopped = stop_groups([group for group, _grace in groups.values()], grace_s)
        for group in stopped:
            print(
                f"attune reaper: its worker process died; stopped group {group.pgid}",
                file=sys.stderr,
            )


if __name__ == "__main__":
    _reap()
