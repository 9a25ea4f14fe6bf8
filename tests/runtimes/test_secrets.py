"""Secrets: only inside the parameter document, never in argv or environment, redacted."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from attune.runtimes import Outcome, RunResult, run
from attune.store.models import MASK, OutputFormat, ParameterDelivery, RunnerType

from .conftest import SUFFIXES, Pack

SECRET = "s3cr3t-Pa55"

# Each action copies its own /proc/<pid>/cmdline, environ and parameter document to a folder
# outside its output (where redaction would hide them).
SPY = {
    RunnerType.SHELL: (
        'cat /proc/$$/cmdline > "$SPY/cmdline"\ncat /proc/$$/environ > "$SPY/environ"\n'
        'cat > "$SPY/document"\n'
    ),
    RunnerType.PYTHON: (
        "import os, sys, pathlib\nspy = pathlib.Path(os.environ['SPY'])\n"
        "for name in ('cmdline', 'environ'):\n"
        "    (spy / name).write_bytes(pathlib.Path(f'/proc/{os.getpid()}/{name}').read_bytes())\n"
        "(spy / 'document').write_text(sys.stdin.read())\n"
    ),
    RunnerType.NATIVE: (
        '#!/bin/sh\ncat /proc/$$/cmdline > "$SPY/cmdline"\ncat /proc/$$/environ > "$SPY/environ"\n'
        'cat > "$SPY/document"\n'
    ),
}


@pytest.mark.parametrize("runtime", list(SUFFIXES))  # the runtimes that run a process
def test_secret_is_in_the_document_only(pack: Pack, tmp_path: Path, runtime: RunnerType) -> None:
    # Given an action with a secret parameter, and a spy folder passed through the environment
    spy = tmp_path / "spy"
    spy.mkdir()
    base_env = {**pack.settings.inherited_env, "SPY": str(spy)}
    # When it runs
    result = pack.run(
        SPY[runtime],
        runtime,
        parameters={"user": "alice", "password": SECRET},
        secret_values=(SECRET,),
        base_env=base_env,
    )
    # Then its command line and environment never held the secret; its document did
    assert result.outcome is Outcome.SUCCEEDED, result.error
    assert SECRET.encode() not in (spy / "cmdline").read_bytes()
    environ = (spy / "environ").read_bytes()
    assert b"ATTUNE_EXECUTION_ID=42" in environ
    assert SECRET.encode() not in environ
    assert SECRET in (spy / "document").read_text()


def test_secret_is_redacted_from_stdout_stderr_result_and_error(pack: Pack) -> None:
    body = (
        'read -r doc\necho "log: password is $(echo "$doc" | sed s/.*pw.:.//)"\n'
        f'echo \'{{"token": "Bearer {SECRET}", "{SECRET}": ["{SECRET}"]}}\'\n'
        f"echo 'stderr also has {SECRET}' >&2\n"
    )
    result = pack.run(
        body,
        parameters={"pw": SECRET},
        secret_values=(SECRET,),
        output_format=OutputFormat.JSON,
    )
    assert result.result == {"token": f"Bearer {MASK}", MASK: [MASK]}
    assert SECRET not in result.stdout
    assert MASK in result.stdout
    assert result.stderr == f"stderr also has {MASK}\n"

    failed = pack.run(f"echo 'bad password {SECRET}' >&2\nexit 2\n", secret_values=(SECRET,))
    assert failed.error == f"exited with code 2: bad password {MASK}"
    assert SECRET not in failed.stderr


def test_longer_secret_containing_a_shorter_one_is_masked_whole(pack: Pack) -> None:
    result = pack.run("echo abc-abcdef\n", secret_values=("abc", "abcdef"))
    assert result.stdout == f"{MASK}-{MASK}\n"


def test_empty_secret_masks_nothing(pack: Pack) -> None:
    result = pack.run("echo visible\n", secret_values=("",))
    assert result.stdout == "visible\n"


def test_secrets_are_isolated_between_two_concurrent_runs(pack: Pack) -> None:
    # Given two executions of the same action, each with its own secret, running at once
    entry_point = pack.action('cat "$ATTUNE_PARAMETER_FILE"\nsleep 0.2\n')
    secrets = ("alpha-secret-1", "bravo-secret-2")
    results: dict[str, RunResult] = {}

    def execute(secret: str) -> None:
        invocation = pack.invocation(
            entry_point,
            parameters={"secret": secret},
            secret_values=(secret,),
            parameter_delivery=ParameterDelivery.FILE,
        )
        results[secret] = run(invocation)

    threads = [threading.Thread(target=execute, args=(secret,)) for secret in secrets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then each saw only its own secret, masked in its own output
    for secret in secrets:
        assert results[secret].stdout == f'{{"secret":"{MASK}"}}\n'
    no_secret = pack.run("cat\n", parameters={"secret": "none"})
    assert no_secret.stdout == '{"secret":"none"}\n'


def test_a_secret_cut_by_the_output_limit_is_masked_in_what_is_kept(pack: Pack) -> None:
    # 14 bytes before the secret, a 20-byte limit: the cut keeps "s3cr3t" of "s3cr3t-Pa55"
    body = f"printf '0123456789abcd{SECRET} and more'\nprintf 'log:{SECRET}!' >&2\nexit 3\n"
    result = pack.run(body, secret_values=(SECRET,), max_output_bytes=20)

    assert result.stdout.startswith(f"0123456789abcd{MASK}\n[attune: stdout truncated at 20")
    assert result.stderr.startswith(f"log:{MASK}!")  # not cut: masked whole, as ever
    for shown in (result.stdout, result.stderr, result.error or ""):
        assert SECRET[:2] not in shown

    failed = pack.run(
        f"printf 'bad:{SECRET}' >&2\nexit 3\n", secret_values=(SECRET,), max_output_bytes=8
    )
    assert failed.error == f"exited with code 3: bad:{MASK}"
    assert failed.stderr.startswith(f"bad:{MASK}\n[attune: stderr truncated at 8 bytes")


def test_a_secret_cut_inside_a_character_is_masked_too(pack: Pack) -> None:
    secret = "pässwört-99"
    result = pack.run(
        f"printf '0123456789{secret}'\n", secret_values=(secret,), max_output_bytes=12
    )
    assert result.stdout.startswith(f"0123456789{MASK}\n[attune: stdout truncated at 12 bytes")


def test_output_cut_elsewhere_is_kept_as_it_is(pack: Pack) -> None:
    result = pack.run(
        "printf '0123456789abcdefghij'\n", secret_values=(SECRET,), max_output_bytes=12
    )
    assert result.stdout.startswith("0123456789ab\n[attune: stdout truncated at 12 bytes")
