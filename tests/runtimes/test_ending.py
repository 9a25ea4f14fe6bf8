"""How runs end: exit codes, signals, timeouts, cancel, leftover processes, stdin."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from attune.runtimes import Outcome, run
from attune.runtimes.process import Spawn, Stop, run_process
from attune.store.models import RunnerType

from .conftest import Pack, is_gone, wait_until


def test_exit_code_zero_succeeds(pack: Pack) -> None:
    result = pack.run("exit 0\n")
    assert (result.outcome, result.exit_code, result.error) == (Outcome.SUCCEEDED, 0, None)


def test_non_zero_exit_fails_naming_the_code_and_the_last_stderr_line(pack: Pack) -> None:
    body = "echo 'warming up' >&2\necho 'cannot reach host db1' >&2\necho >&2\nexit 3\n"
    result = pack.run(body)
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, 3)
    assert result.error == "exited with code 3: cannot reach host db1"


def test_non_zero_exit_without_stderr(pack: Pack) -> None:
    result = pack.run("exit 1\n")
    assert result.error == "exited with code 1"


def test_python_traceback_names_the_exception(pack: Pack) -> None:
    result = pack.run("raise ValueError('bad input')\n", RunnerType.PYTHON)
    assert result.exit_code == 1
    assert result.error == "exited with code 1: ValueError: bad input"


def test_killed_by_a_signal_names_the_signal(pack: Pack) -> None:
    result = pack.run("echo before\nkill -KILL $$\n")
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, -9)
    assert result.error == "killed by signal SIGKILL"
    assert result.stdout == "before\n"


def test_timeout_kills_the_whole_group_and_keeps_the_output(pack: Pack) -> None:
    # Given an action whose background grandchild would outlive it
    body = "sleep 60 &\necho $!\necho 'working' >&2\nwait\n"
    # When it times out
    result = pack.run(body, timeout_s=0.5)
    # Then it is reported as a timeout, with what it printed, and its grandchild is dead
    assert result.outcome is Outcome.TIMEOUT
    assert result.error == "timed out after 0.5 s"
    assert result.stderr == "working\n"
    grandchild = int(result.stdout)
    assert wait_until(lambda: is_gone(grandchild))
    assert 400 <= result.duration_ms < 5000


def test_child_ignoring_sigterm_is_killed_after_the_grace(pack: Pack) -> None:
    body = "trap '' TERM\necho ready\nwhile :; do sleep 0.05; done\n"
    started = time.monotonic()
    result = pack.run(body, timeout_s=0.3, kill_grace_s=0.3)
    elapsed_s = time.monotonic() - started
    assert result.outcome is Outcome.TIMEOUT
    assert result.stdout == "ready\n"
    assert 0.5 <= elapsed_s < 4.0


def test_child_that_closes_its_output_and_keeps_running_ends_at_the_timeout(pack: Pack) -> None:
    body = "echo bye\nexec >&- 2>&-\nsleep 60\n"
    started = time.monotonic()
    result = pack.run(body, timeout_s=0.4, kill_grace_s=0.2)
    assert (result.outcome, result.stdout) == (Outcome.TIMEOUT, "bye\n")
    assert time.monotonic() - started < 4.0


def test_leftover_grandchild_holding_the_pipes_is_killed_after_a_second(pack: Pack) -> None:
    # Given an action that exits 0 while its background child still holds stdout
    body = "sleep 60 &\necho $!\nexit 0\n"
    started = time.monotonic()
    result = pack.run(body, timeout_s=30)
    elapsed_s = time.monotonic() - started
    # Then the run ends about a second later with the action's own outcome, and the child dies
    assert (result.outcome, result.exit_code, result.error) == (Outcome.SUCCEEDED, 0, None)
    assert 0.9 <= elapsed_s < 5.0
    assert wait_until(lambda: is_gone(int(result.stdout)))


def test_leftover_background_process_without_the_pipes_dies_with_the_run(pack: Pack) -> None:
    result = pack.run("sleep 60 > /dev/null 2>&1 &\necho $!\n")
    assert result.outcome is Outcome.SUCCEEDED
    assert result.duration_ms < 900
    assert wait_until(lambda: is_gone(int(result.stdout)))


def test_child_that_never_reads_stdin_does_not_block(pack: Pack) -> None:
    # Given a parameter document far larger than a pipe holds, and an action that never reads
    parameters = {"blob": "x" * (4 * 1024 * 1024)}
    for body in ("sleep 0.2\necho done\n", "exec 0<&-\necho done\n", "echo done\n"):
        result = pack.run(body, parameters=parameters)
        assert (result.outcome, result.stdout) == (Outcome.SUCCEEDED, "done\n")


def test_large_document_is_delivered_whole(pack: Pack) -> None:
    result = pack.run("wc -c\n", parameters={"blob": "y" * (3 * 1024 * 1024)})
    assert int(result.stdout) == len('{"blob":""}\n') + 3 * 1024 * 1024


def test_cancel_kills_the_running_action(pack: Pack) -> None:
    # Given a long action that announced it started
    invocation = pack.invocation(pack.action("echo started\nexec sleep 60\n"), timeout_s=30)
    timer = threading.Timer(0.3, invocation.cancel.set)
    timer.start()
    try:
        result = run(invocation)
    finally:
        timer.cancel()
    # Then cancel ends it through the kill path, keeping its output
    assert (result.outcome, result.error, result.stdout) == (
        Outcome.CANCELED,
        "canceled",
        "started\n",
    )
    assert result.duration_ms < 5000


def test_cancel_before_start_runs_nothing(pack: Pack, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    invocation = pack.invocation(pack.action(f"touch {marker}\n"))
    invocation.cancel.set()
    result = run(invocation)
    assert (result.outcome, result.exit_code) == (Outcome.CANCELED, None)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("script", "timeout_s", "stop", "returncode"),
    [
        ("echo out; echo err >&2; exit 5", 20.0, None, 5),
        ("sleep 60", 0.3, Stop.TIMEOUT, -15),
        ("sleep 60 & echo $!", 20.0, None, 0),
    ],
)
def test_process_without_pidfd(
    tmp_path: Path, script: str, timeout_s: float, stop: Stop | None, returncode: int
) -> None:
    # Where pidfd_open is missing, waitid polling ends runs the same way
    spawn = Spawn(
        argv=("/bin/sh", "-c", script),
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        stdin=b"{}\n",
        timeout_s=timeout_s,
        kill_grace_s=0.2,
        max_output_bytes=1024,
    )
    finished = run_process(spawn, threading.Event(), use_pidfd=False)
    assert (finished.stop, finished.returncode) == (stop, returncode)
    assert finished.duration_ms < 5000
