"""Benchmark: attune's runtimes against a bare ``subprocess.run``, side by side in one run.

- a trivial shell action vs ``subprocess.run(["bash", script], capture_output=True)`` and a
  trivial native action vs ``subprocess.run([binary], capture_output=True)``: medians and their
  ratio (goal: <= 1.15 for both);
- a 1 GiB stdout flood under the default 10 MiB cap, run in a fresh interpreter: its peak RSS
  growth (goal: <= 32 MiB) and drain rate in MB/s, next to ``cat`` of the same stream into
  ``/dev/null``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from attune.runtimes import Invocation, Outcome, run  # noqa: E402
from attune.settings import Settings  # noqa: E402
from attune.store.models import (  # noqa: E402
    OutputFormat,
    ParameterDelivery,
    ParameterFormat,
    RunnerType,
)

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "300"))
FLOOD_BYTES = 1024 * 1024 * 1024
FLOODS = {
    # NUL bytes decode to U+FFFD, two bytes a character: the costliest text to keep.
    "NUL bytes": f"head -c {FLOOD_BYTES} /dev/zero",
    "ASCII text": f"yes | head -c {FLOOD_BYTES}",
}

_FLOOD_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.benchmarks.bench_runtimes import flood_invocation, peak_rss_kib
from attune.runtimes import run
pack = Path(sys.argv[2])
run(flood_invocation(pack, "true"))
before = peak_rss_kib()
result = run(flood_invocation(pack, sys.argv[3]))
after = peak_rss_kib()
assert result.stdout_truncated, result
print(after - before, result.duration_ms, result.stdout_dropped_bytes)
"""


def invocation(runtime: RunnerType, entry_point: Path, pack: Path) -> Invocation:
    """An invocation of ``entry_point`` with the worker's default settings."""
    settings = Settings.from_env()
    return Invocation(
        runtime=runtime,
        entry_point=entry_point,
        pack_dir=pack,
        parameters={"name": "bench"},
        secret_values=(),
        parameter_delivery=ParameterDelivery.STDIN,
        parameter_format=ParameterFormat.JSON,
        output_format=OutputFormat.TEXT,
        timeout_s=settings.default_timeout_s,
        max_output_bytes=settings.max_output_bytes,
        kill_grace_s=settings.kill_grace_s,
        execution_id=1,
        action_ref="bench.action",
        base_env=settings.inherited_env,
    )


def flood_invocation(pack: Path, command: str) -> Invocation:
    """A shell action running ``command``, with the default output cap."""
    script = pack / "actions" / "flood.sh"
    script.write_text(f"{command}\n")
    return invocation(RunnerType.SHELL, script, pack)


def peak_rss_kib() -> int:
    """This process's peak resident set size so far (VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _side_by_side(attune: Callable[[], object], bare: Callable[[], object]) -> tuple[float, float]:
    """Median seconds of each, alternating so both see the same machine."""
    for _ in range(20):
        attune()
        bare()
    attune_s: list[float] = []
    bare_s: list[float] = []
    for _ in range(ROUNDS):
        for call, samples in ((attune, attune_s), (bare, bare_s)):
            started = time.perf_counter()
            call()
            samples.append(time.perf_counter() - started)
    return _median_ms(attune_s), _median_ms(bare_s)


def _native_binary(directory: Path) -> tuple[Path, str]:
    """A trivial native executable: compiled C when a compiler is here, else a ``sh`` script."""
    binary = directory / "hello"
    compiler = shutil.which("cc")
    if compiler:
        source = directory / "hello.c"
        source.write_text('#include <stdio.h>\nint main(void){puts("ok");return 0;}\n')
        subprocess.run([compiler, "-O2", "-o", str(binary), str(source)], check=True)
        return binary, "compiled C"
    binary.write_text("#!/bin/sh\necho ok\n")
    binary.chmod(0o755)
    return binary, "#!/bin/sh script"


def _overhead(pack: Path) -> None:
    script = pack / "actions" / "hello.sh"
    script.write_text("echo ok\n")
    shell = invocation(RunnerType.SHELL, script, pack)
    binary, kind = _native_binary(pack / "actions")
    native = invocation(RunnerType.NATIVE, binary, pack)
    for name, action, bare_argv in (
        ("shell", shell, ["bash", str(script)]),
        (f"native ({kind})", native, [str(binary)]),
    ):
        result = run(action)
        if result.outcome != Outcome.SUCCEEDED:
            raise SystemExit(f"benchmark: the {name} action failed: {result.error}")
        attune_ms, bare_ms = _side_by_side(
            lambda action=action: run(action),
            lambda argv=bare_argv: subprocess.run(argv, capture_output=True),
        )
        print(
            f"trivial {name:<22} attune {attune_ms:6.3f} ms   subprocess.run {bare_ms:6.3f} ms"
            f"   ratio {attune_ms / bare_ms:.3f} (goal <= 1.15)"
        )


def _flood(pack: Path, name: str, command: str) -> None:
    child = subprocess.run(
        [sys.executable, "-c", _FLOOD_CHILD, str(ROOT), str(pack), command],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise SystemExit(f"benchmark: the flood failed:\n{child.stderr}")
    growth_kib, duration_ms, dropped = (int(part) for part in child.stdout.split())
    started = time.perf_counter()
    subprocess.run(["bash", "-c", f"{command} | cat > /dev/null"], check=True)
    cat_s = time.perf_counter() - started
    mb = FLOOD_BYTES / 1e6
    print(
        f"1 GiB flood of {name:<10} ({command}), cap 10 MiB, {dropped} bytes dropped:"
        f" peak RSS growth {growth_kib / 1024:.1f} MiB (goal <= 32 MiB);"
        f" drain {mb / (duration_ms / 1000):,.0f} MB/s vs cat > /dev/null {mb / cat_s:,.0f} MB/s"
    )


def main() -> None:
    """Run both comparisons and print medians, ratios, RSS growth and drain rates."""
    with tempfile.TemporaryDirectory(prefix="attune-bench-") as directory:
        pack = Path(directory) / "bench"
        (pack / "actions").mkdir(parents=True)
        _overhead(pack)
        for name, command in FLOODS.items():
            _flood(pack, name, command)


if __name__ == "__main__":
    main()
