"""CPU time by process during a benchmark's timed part, from /proc/<pid>/stat (Linux).

A worker's tree: its main process, its pool processes (their own time) and what the pool
processes ran and reaped (the actions' processes: their children's time); the PostgreSQL
backends of a database. CPU time per operation holds while other work loads the machine,
where a rate does not.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Ticks:
    """A process's own CPU time and that of its reaped children, in seconds."""

    own_s: float
    children_s: float


def ticks(pid: int) -> Ticks | None:
    """The CPU times of ``pid`` (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    # After the name: state ppid … utime (14th field of the line) stime cutime cstime
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return Ticks((utime + stime) * _TICK_S, (cutime + cstime) * _TICK_S)


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    if int(stat.read().rsplit(b")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def worker_tree(main_pid: int) -> dict[str, float]:
    """A Celery worker's CPU seconds so far: ``main``, ``pool`` (its pool processes) and
    ``actions`` (what the pool processes ran and reaped)."""
    main = ticks(main_pid) or Ticks(0.0, 0.0)
    pool = [found for found in map(ticks, children(main_pid)) if found is not None]
    return {
        "main": main.own_s,
        "pool": sum(found.own_s for found in pool),
        "actions": sum(found.children_s for found in pool),
    }


def backends(pids: Iterable[int]) -> dict[int, float]:
    """The CPU seconds so far of each PostgreSQL backend of ``pids`` still alive."""
    return {pid: found.own_s for pid in pids if (found := ticks(pid)) is not None}


def per_operation_ms(
    before: Mapping[str, float], after: Mapping[str, float], operations: int
) -> dict[str, float]:
    """Milliseconds of CPU per operation, by part."""
    return {part: (after[part] - before.get(part, 0.0)) * 1e3 / operations for part in after}


def backend_delta_s(before: Mapping[int, float], after: Mapping[int, float]) -> float:
    """CPU seconds the backends alive both times spent in between."""
    return sum(after[pid] - before[pid] for pid in after if pid in before)


def describe(cpu_ms: Mapping[str, float]) -> str:
    """``main 0.52 + pool 1.10 + … = 2.00 ms``."""
    parts = " + ".join(f"{part} {value:.2f}" for part, value in cpu_ms.items())
    return f"{parts} = {sum(cpu_ms.values()):.2f} ms"
