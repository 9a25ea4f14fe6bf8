"""Benchmark: workflows against the plain executions they are made of, side by side in one run.

On PostgreSQL + Redis, two workers ``-c 4`` serving shell and workflow, an echo action
``bench.plain`` and two workflows of it:
- a 20-task sequence (``bench.seq20``): its wall time vs 20 ``execute(...).wait()`` round trips of
  ``bench.plain``, interleaved (goal: median ratio <= 1.25);
- a fan-out of 1,000 items at concurrency 50 (``bench.fan``): its throughput vs draining 1,000
  plain executions on the same workers, each from the first request to the last end
  (goal: ratio >= 0.8);
- the workers' advance time per item (``attune_workflow_advance_seconds``, scraped from each
  worker's metrics port) at 1,000 items vs at 10 (goal: ratio <= 1.2).
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: make `tests` importable
from tests.benchmarks.fleet import deployment, stop, until, workers  # noqa: E402

BROKER_URL = "redis://127.0.0.1:6379/12"
ROUNDS = int(os.environ.get("BENCH_WORKFLOW_ROUNDS", "30"))
ITEMS = int(os.environ.get("BENCH_WORKFLOW_ITEMS", "1000"))
NODES = ("bench-w1@localhost", "bench-w2@localhost")
METRICS_PORTS = (19411, 19412)


def _pack(packs_dir: Path) -> None:
    from tests.pack_builder import action, write_pack, write_yaml

    plain = action("bench.plain", entry_point="plain.sh", parameters={})
    workflow = {"runner_type": "workflow", "parameters": {"count": {"type": "integer"}}}
    pack = write_pack(
        packs_dir,
        "bench",
        {
            "plain": plain,
            "seq20": {**plain, **workflow, "ref": "bench.seq20", "entry_point": "flows/seq.yaml"},
            "fan": {**plain, **workflow, "ref": "bench.fan", "entry_point": "flows/fan.yaml"},
        },
    )
    flows = pack / "actions" / "flows"
    flows.mkdir()
    names = [f"t{n:02d}" for n in range(1, 21)]
    steps = [
        {"name": name, "action": "bench.plain", "next": [{"do": [after]}]}
        for name, after in itertools.pairwise(names)
    ]
    write_yaml(
        flows / "seq.yaml",
        {"version": 1, "tasks": [*steps, {"name": names[-1], "action": "bench.plain"}]},
    )
    fan_out = {"items": "{{ range(input.count) | list }}", "concurrency": 50}
    write_yaml(
        flows / "fan.yaml",
        {"version": 1, "tasks": [{"name": "each", "action": "bench.plain", "with": fan_out}]},
    )


def main() -> None:
    """Run each comparison and print medians, rates and ratios."""
    with deployment(f"attune_bench_workflows_{os.getpid()}", BROKER_URL, _pack) as env:
        fleet = workers(env, NODES, 4, lambda n: {"ATTUNE_METRICS_PORT": str(METRICS_PORTS[n])})
        try:
            _measure()
        finally:
            stop(fleet)


def _measure() -> None:
    import attune
    from attune.errors import AttuneError

    def ready() -> bool:
        try:
            return attune.execute("bench.fan", {"count": 2}).wait(10).succeeded
        except AttuneError:
            return False

    until(ready, 90, "the workers registering")
    for _ in range(10):
        attune.execute("bench.plain").wait(10)

    def one_sequence() -> None:
        start = time.perf_counter()
        record = attune.execute("bench.seq20").wait(120)
        sequence.append(time.perf_counter() - start)
        assert record.succeeded, record

    def twenty_trips() -> None:
        start = time.perf_counter()
        for _ in range(20):
            assert attune.execute("bench.plain").wait(10).succeeded
        trips.append(time.perf_counter() - start)

    # The two take turns, and which goes first alternates: a drift of the machine's speed
    # within a round weighs on both alike.
    sequence: list[float] = []
    trips: list[float] = []
    for round_number in range(ROUNDS):
        for step in (one_sequence, twenty_trips)[:: 1 if round_number % 2 else -1]:
            step()
    ours, theirs = statistics.median(sequence), statistics.median(trips)
    print(
        f"20-task sequence (median of {ROUNDS}, interleaved): {ours * 1e3:.0f} ms; "
        f"20 round trips {theirs * 1e3:.0f} ms; ratio {ours / theirs:.2f} (goal <= 1.25)"
    )
    small = _advance_per_item(10)
    fan_s, large = _fan_out(ITEMS)
    drain_s = _drain(ITEMS)
    print(
        f"fan-out of {ITEMS} at concurrency 50: {ITEMS / fan_s:.0f}/s; plain drain of {ITEMS}: "
        f"{ITEMS / drain_s:.0f}/s; ratio {drain_s / fan_s:.2f} (goal >= 0.8)"
    )
    print(
        f"advance time per item: {large * 1e3:.2f} ms at {ITEMS} items, {small * 1e3:.2f} ms "
        f"at 10; ratio {large / small:.2f} (goal <= 1.2)"
    )


def _advance_totals() -> tuple[float, float]:
    """The workers' summed advance seconds and advance count."""
    total, count = 0.0, 0.0
    for port in METRICS_PORTS:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            page = reply.read().decode()
        for name, value in re.findall(
            r"^attune_workflow_advance_seconds_(sum|count) (\S+)$", page, re.M
        ):
            if name == "sum":
                total += float(value)
            else:
                count += float(value)
    return total, count


def _fan_out(items: int) -> tuple[float, float]:
    """Wall time of a fan-out of ``items``, and the advance seconds it cost per item."""
    import attune

    before, _ = _advance_totals()
    start = time.perf_counter()
    record = attune.execute("bench.fan", {"count": items}).wait(600)
    elapsed = time.perf_counter() - start
    assert record.succeeded, record
    time.sleep(0.5)  # the last advances' observations reach the metrics files
    after, _ = _advance_totals()
    return elapsed, (after - before) / items


def _advance_per_item(items: int, rounds: int = 10) -> float:
    """Median advance seconds per item of ``rounds`` fan-outs of ``items``."""
    return statistics.median(_fan_out(items)[1] for _ in range(rounds))


def _drain(count: int) -> float:
    """Seconds from the first of ``count`` plain requests to the last one's end."""
    import attune

    start = time.perf_counter()
    handles = [attune.execute("bench.plain") for _ in range(count)]
    for handle in handles:
        assert handle.wait(600).succeeded
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
