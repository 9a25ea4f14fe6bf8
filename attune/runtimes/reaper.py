"""Reaper: a tiny process that kills a worker process's action groups when that process dies.

Each worker process that runs actions starts one reaper (once, not per action). The two share
a table of the process's live action groups in shared memory (a ``memfd``): before an action
runs its process writes the group into a slot, after the group is killed and reaped it clears
the slot — a memory write each, no system call, nothing the reaper wakes up for. The reaper
only blocks reading a pipe whose write end the worker process alone holds. When that process
dies, by any means, SIGKILL included, the kernel closes its end: the reaper reads end-of-file,
reads the table, and stops every group still in it (SIGTERM, the grace, SIGKILL). End-of-file
needs no signal delivered, no thread alive and no code run in the dying process, so it holds
where ``PR_SET_PDEATHSIG`` on the action itself would not (it signals the direct child only, not
the group, and fires when the forking *thread* ends).

Run as a script (``python -I -S reaper.py FD``), this module is the reaper process: it imports
only the standard library, so it starts in milliseconds and holds no copy of the worker.

A pid is not an identity: a group is named by its leader's pid *and* start time (clock ticks
since boot, from ``/proc/<pid>/stat``), so a number reused by an unrelated process is never
signalled.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import mmap
import os
import signal
import socket
import struct
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
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        fields = os.read(fd, 4096).rpartition(b")")[2].split()
    except OSError:
        return None
    finally:
        os.close(fd)
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


SLOTS = 1024
"""How many action groups one worker process's table holds at once."""

_SLOT = struct.Struct("qqd")  # pgid (0: a free slot), leader start ticks, grace in seconds


class Reaper:
    """This process's handle on its reaper and their shared table, started on first use (and
    again in a forked child, which must not write to its parent's table)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = 0  # the pid of the process the reaper watches
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe = -1  # the write end: never written, closed by the kernel when we die
        self._table_fd = -1
        self._table: mmap.mmap | None = None
        self._free: list[int] = []
        self._slots: dict[int, int] = {}  # pgid → its slot

    def start(self) -> None:
        """Start this process's reaper unless it runs already (a new one keeps the table)."""
        with self._lock:
            if self._owner != os.getpid():
                self._new_table()
            elif self._process is not None and self._process.poll() is None:
                return
            if self._pipe >= 0:
                os.close(self._pipe)
                self._pipe = -1
            read_end, write_end = os.pipe()
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-I", "-S", __file__, str(self._table_fd)],
                    stdin=read_end,
                    stdout=subprocess.DEVNULL,
                    pass_fds=(self._table_fd,),
                    start_new_session=True,  # a signal to the worker's group spares it
                )
            except BaseException:
                os.close(write_end)
                raise
            finally:
                os.close(read_end)
            self._pipe = write_end

    def track(self, pid: int, grace_s: float) -> ProcessGroup:
        """Put the group ``pid`` leads in the table (the reaper kills it if we die first)."""
        group = group_of(pid)
        if self._owner != os.getpid() or self._process is None or self._process.poll() is not None:
            try:
                self.start()
            except (OSError, subprocess.SubprocessError) as exc:  # the action runs, unguarded
                log.warning("cannot start the reaper: %s", exc)
        if self._table is not None and self._free:
            slot = self._free.pop()
            self._slots[group.pgid] = slot
            _SLOT.pack_into(self._table, slot * _SLOT.size, group.pgid, group.start_ticks, grace_s)
        return group

    def untrack(self, group: ProcessGroup) -> None:
        """Take the group out of the table: it was killed and its leader reaped."""
        slot = self._slots.pop(group.pgid, None)
        if slot is not None and self._table is not None:
            _SLOT.pack_into(self._table, slot * _SLOT.size, 0, 0, 0.0)
            self._free.append(slot)

    def _new_table(self) -> None:
        """A table of this process's own; what a parent left open here is closed, not reused."""
        self._process = None  # a parent's reaper: not ours to reap
        for fd in (self._pipe, self._table_fd):
            if fd >= 0:
                os.close(fd)
        self._pipe = -1
        self._table_fd = os.memfd_create("attune-reaper", os.MFD_CLOEXEC)
        os.ftruncate(self._table_fd, SLOTS * _SLOT.size)
        self._table = mmap.mmap(self._table_fd, SLOTS * _SLOT.size)
        self._free, self._slots = list(range(SLOTS)), {}
        self._owner = os.getpid()


reaper = Reaper()
"""This process's reaper."""


def _reap(table_fd: int) -> None:
    """The reaper process: wait for end-of-file on stdin, then stop every group in the table."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while os.read(0, 4096):
        pass
    with mmap.mmap(table_fd, SLOTS * _SLOT.size, access=mmap.ACCESS_READ) as table:
        slots = [_SLOT.unpack_from(table, slot * _SLOT.size) for slot in range(SLOTS)]
    listed = [(ProcessGroup(pgid, ticks), grace) for pgid, ticks, grace in slots if pgid > 0]
    if listed:
        grace_s = max(grace for _group, grace in listed)
        for group in stop_groups([group for group, _grace in listed], grace_s):
            log.warning("attune reaper: its worker process died; stopped group %d", group.pgid)


if __name__ == "__main__":
    _reap(int(sys.argv[1]))
