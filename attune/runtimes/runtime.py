"""The runtime: one :class:`Invocation` in, one :class:`RunResult` out, whatever happens."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from attune.errors import RuntimeLaunchError
from attune.runtimes.capture import Captured
from attune.runtimes.command import command
from attune.runtimes.document import render
from attune.runtimes.invocation import Invocation, Outcome, RunResult
from attune.runtimes.livefeed import LiveFeed
from attune.runtimes.output import parse, redact, redact_cut, secrets_to_redact
from attune.runtimes.process import Finished, Spawn, Stop, run_process
from attune.store.models import ParameterDelivery


def run(invocation: Invocation) -> RunResult:
    """Run the action; problems of the action itself come back as a FAILED result, never raised.

    Secret values are redacted from everything the result holds.
    """
    secrets = secrets_to_redact(invocation.secret_values)
    if invocation.cancel.is_set():
        return _unstarted(Outcome.CANCELED, "canceled before it started")
    started = time.monotonic()
    parameter_file: Path | None = None
    try:
        document = render(invocation.parameters, invocation.parameter_format)
        if invocation.parameter_delivery == ParameterDelivery.FILE:
            parameter_file = _write_parameter_file(document, invocation)
        launch = command(invocation, parameter_file)
        finished = run_process(
            Spawn(
                argv=launch.argv,
                cwd=invocation.pack_dir,
                env=launch.env,
                stdin=None if parameter_file else document,
                timeout_s=invocation.timeout_s,
                kill_grace_s=invocation.kill_grace_s,
                max_output_bytes=invocation.max_output_bytes,
                feed=None
                if invocation.live is None
                else LiveFeed(invocation.live, secrets, invocation.live_after_s),
            ),
            invocation.cancel,
            on_start=invocation.on_start,
        )
    except RuntimeLaunchError as exc:
        return _unstarted(Outcome.FAILED, redact(str(exc), secrets), started)
    except (OSError, subprocess.SubprocessError) as exc:
        error = f"cannot start {invocation.entry_point} ({invocation.runtime}): {_reason(exc)}"
        return _unstarted(Outcome.FAILED, redact(error, secrets), started)
    finally:
        if parameter_file is not None:
            parameter_file.unlink(missing_ok=True)
    return _result(finished, invocation, secrets)


def _result(finished: Finished, invocation: Invocation, secrets: Sequence[str]) -> RunResult:
    stderr = _redacted(finished.stderr, finished.stderr.text, secrets)
    outcome, error = _ending(finished, invocation.timeout_s, stderr)
    stdout, result = finished.stdout.text, None
    if outcome is Outcome.SUCCEEDED and not finished.stdout.truncated:
        parsed = parse(stdout, invocation.output_format, secrets)
        stdout, result = parsed.stdout, parsed.result
    return RunResult(
        outcome=outcome,
        exit_code=finished.returncode,
        stdout=_redacted(finished.stdout, stdout, secrets),
        stderr=stderr,
        result=result,
        error=None if error is None else redact(error, secrets),
        stdout_truncated=finished.stdout.truncated,
        stderr_truncated=finished.stderr.truncated,
        stdout_dropped_bytes=finished.stdout.dropped_bytes,
        stderr_dropped_bytes=finished.stderr.dropped_bytes,
        duration_ms=finished.duration_ms,
    )


def _redacted(captured: Captured, text: str, secrets: Sequence[str]) -> str:
    """``text`` (what is kept of ``captured``) with the secrets masked, cut ones included."""
    if captured.truncated and secrets:
        text = redact_cut(text, len(text) - len(captured.notice), secrets)
    return redact(text, secrets)


def _reason(exc: OSError | subprocess.SubprocessError) -> str:
    """Why exec failed, naming the file at fault when it is not the entry point itself."""
    if not isinstance(exc, OSError) or not exc.strerror:
        return str(exc)
    if exc.errno == errno.ENOENT and exc.filename and os.path.exists(exc.filename):
        return f"{exc.strerror} (is the interpreter on its #! line missing?)"
    return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror


def _ending(finished: Finished, timeout_s: float, stderr: str) -> tuple[Outcome, str | None]:
    """The outcome and error message of a finished process (``stderr``: its kept, redacted
    stderr, whose last line a failure quotes)."""
    if finished.stop is Stop.TIMEOUT:
        return Outcome.TIMEOUT, f"timed out after {timeout_s:g} s"
    if finished.stop is Stop.CANCELED:
        return Outcome.CANCELED, "canceled"
    code = finished.returncode
    if code == 0:
        return Outcome.SUCCEEDED, None
    if code < 0:
        return Outcome.FAILED, f"killed by signal {_signal_name(-code)}"
    last = _last_line(stderr, finished.stderr.notice)
    return Outcome.FAILED, f"exited with code {code}" + (f": {last}" if last else "")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _last_line(text: str, notice: str, max_chars: int = 500) -> str:
    """The last non-blank line of a stream's kept output ``text`` (before its ``notice``)."""
    end = len(text) - len(notice)
    while end > 0:
        start = text.rfind("\n", 0, end) + 1
        line = text[start : min(end, start + max_chars)].strip()
        if line:
            return line + ("…" if end - start > max_chars else "")
        end = start - 1
    return ""


def _write_parameter_file(document: bytes, invocation: Invocation) -> Path:
    """The document in a new mode-0400 file in the worker's TMPDIR (the caller removes it)."""
    fd, name = tempfile.mkstemp(
        prefix=f"attune-{invocation.execution_id}-",
        suffix=f".{invocation.parameter_format}",
        dir=invocation.base_env.get("TMPDIR") or None,
    )
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(document)
            os.fchmod(file.fileno(), 0o400)
    except OSError:
        os.unlink(name)
        raise
    return Path(name)


def _unstarted(outcome: Outcome, error: str, started: float | None = None) -> RunResult:
    duration_ms = 0 if started is None else round((time.monotonic() - started) * 1000)
    return RunResult.not_started(outcome, error, duration_ms)
