"""Problems of the action itself: every one ends in a FAILED result naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from attune.runtimes import Outcome, RunResult, run
from attune.store.models import ParameterFormat, RunnerType

from .conftest import SUFFIXES, Pack


def assert_failed(result: RunResult, *fragments: str) -> None:
    """A FAILED run that started no process, its error holding every fragment."""
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, None)
    assert result.error is not None
    for fragment in fragments:
        assert fragment in result.error


@pytest.mark.parametrize("runtime", list(SUFFIXES))  # the runtimes that run a process
def test_missing_entry_point(pack: Pack, runtime: RunnerType) -> None:
    missing = pack.path / "actions" / "missing"
    assert_failed(run(pack.invocation(missing, runtime)), str(missing), "does not exist")


def test_native_entry_point_must_be_executable(pack: Pack) -> None:
    entry_point = pack.action("#!/bin/sh\necho hi\n", RunnerType.NATIVE)
    entry_point.chmod(0o644)
    result = run(pack.invocation(entry_point, RunnerType.NATIVE))
    assert_failed(result, str(entry_point), "not executable")


def test_native_entry_point_with_a_bad_interpreter(pack: Pack) -> None:
    entry_point = pack.action("#!/nonexistent/interpreter\n", RunnerType.NATIVE)
    result = run(pack.invocation(entry_point, RunnerType.NATIVE))
    assert_failed(result, f"cannot start {entry_point}", "interpreter on its #! line missing")


def test_native_entry_point_that_is_no_program(pack: Pack) -> None:
    entry_point = pack.action("just some text\n", RunnerType.NATIVE)
    result = run(pack.invocation(entry_point, RunnerType.NATIVE))
    assert_failed(result, f"cannot start {entry_point}", "Exec format error")


def test_pack_venv_with_a_broken_python(pack: Pack) -> None:
    venv_bin = pack.path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to("/nonexistent/python3")
    entry_point = pack.action("print('hi')\n", RunnerType.PYTHON)
    result = run(pack.invocation(entry_point, RunnerType.PYTHON))
    assert_failed(result, str(entry_point), f"No such file or directory: {venv_bin / 'python'}")


def test_missing_pack_directory(pack: Pack, tmp_path: Path) -> None:
    entry_point = pack.action("echo hi\n")
    result = run(pack.invocation(entry_point, pack_dir=tmp_path / "gone"))
    assert_failed(result, str(tmp_path / "gone"))


def test_parameters_that_cannot_be_rendered(pack: Pack) -> None:
    entry_point = pack.action("cat\n")
    invocation = pack.invocation(
        entry_point, parameters={"x": float("nan")}, parameter_format=ParameterFormat.JSON
    )
    assert_failed(run(invocation), "cannot be rendered as json")


def test_runner_types_given_as_plain_strings_work(pack: Pack) -> None:
    # The runner passes the database's text columns; they compare equal to the enums
    entry_point = pack.action("cat\n")
    invocation = pack.invocation(
        entry_point,
        runtime="shell",
        parameter_delivery="stdin",
        parameter_format="dotenv",
        output_format="text",
        parameters={"a": 1},
    )
    result = run(invocation)
    assert (result.outcome, result.stdout) == (Outcome.SUCCEEDED, "a='1'\n")


@pytest.mark.parametrize(
    ("first_line", "shell"),
    [
        ("#!/bin/sh", "sh"),
        ("#!/usr/bin/env sh", "sh"),
        ("#!/bin/sh -e", "sh"),
        ("#!/usr/bin/env bash", "bash"),
        ("# no interpreter line", "bash"),
    ],
)
def test_a_shell_action_runs_in_bash_unless_its_first_line_asks_for_sh(
    pack: Pack, first_line: str, shell: str
) -> None:
    body = f"{first_line}\ncat /proc/$$/comm\n"
    result = pack.run(body)

    assert (result.outcome, result.stdout) == (Outcome.SUCCEEDED, f"{shell}\n")


def test_an_edited_shell_action_changes_shell(pack: Pack) -> None:
    entry_point = pack.action("#!/bin/sh\ncat /proc/$$/comm\n")
    assert run(pack.invocation(entry_point)).stdout == "sh\n"

    entry_point.write_text("#!/usr/bin/env bash\n# a longer script\ncat /proc/$$/comm\n")
    assert run(pack.invocation(entry_point)).stdout == "bash\n"


def test_options_on_the_sh_line_are_kept(pack: Pack) -> None:
    result = pack.run("#!/bin/sh -e\nfalse\necho not reached\n")

    assert (result.outcome, result.stdout) == (Outcome.FAILED, "")
