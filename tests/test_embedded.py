"""The embedded default from the outside: SQLite, `memory://`, an in-process Celery worker.

Everything runs in subprocesses, the way users meet it: `make demo`, `attune run`, and a
Python caller with no setup beyond a migrated database and loaded packs.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import ROOT, attune_cli, embedded_environment
from tests.processes import FAST_LIVENESS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A working directory with a migrated SQLite database and the packs loaded."""
    workdir = tmp_path_factory.mktemp("embedded")
    return embedded_environment(workdir, ATTUNE_KILL_GRACE_S="1")


def python_caller(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as a Python caller of attune would, in its own process."""
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_make_demo_runs_three_actions_end_to_end() -> None:
    result = subprocess.run(
        ["make", "demo"], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "core.echo  succeeded" in result.stdout
    assert "Hello from attune" in result.stdout
    assert "examples.list_example  succeeded" in result.stdout
    assert '"value": "item_3"' in result.stdout
    assert "examples.text_stats  succeeded" in result.stdout
    assert '"words": 6' in result.stdout


def test_run_prints_the_execution_and_leaves_the_worker_inactive(
    embedded_env: dict[str, str],
) -> None:
    result = attune_cli(embedded_env, "run", "core.echo", "message=123")
    workers = attune_cli(embedded_env, "workers", "list", "--json")

    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout
    assert "123" in result.stdout
    assert workers.returncode == 0, workers.stderr
    assert {worker["status"] for worker in json.loads(workers.stdout)} == {"inactive"}


def test_run_json_converts_values_by_schema_type(embedded_env: dict[str, str]) -> None:
    result = attune_cli(embedded_env, "run", "examples.list_example", "count=3", "--json")

    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["status"] == "succeeded"
    assert [item["value"] for item in record["result"]] == ["item_1", "item_2", "item_3"]
    assert record["stdout"] == ""


def test_a_failed_execution_exits_non_zero(embedded_env: dict[str, str]) -> None:
    result = attune_cli(embedded_env, "run", "core.noop", "exit_code=3")

    assert result.returncode == 1
    assert "failed" in result.stdout


def test_no_wait_is_refused_on_the_embedded_default(embedded_env: dict[str, str]) -> None:
    result = attune_cli(embedded_env, "run", "core.echo", "message=x", "--no-wait")

    assert result.returncode == 2
    assert "memory://" in result.stderr


def test_invalid_parameters_are_refused_before_anything_is_stored(
    embedded_env: dict[str, str],
) -> None:
    before = attune_cli(embedded_env, "executions", "list", "--json")
    result = attune_cli(embedded_env, "run", "core.noop", "exit_code=abc")
    after = attune_cli(embedded_env, "executions", "list", "--json")

    assert result.returncode == 1
    assert "exit_code" in result.stderr
    assert len(json.loads(after.stdout)) == len(json.loads(before.stdout))


def test_a_python_caller_needs_no_setup(embedded_env: dict[str, str], tmp_path: Path) -> None:
    script = (
        "import attune\n"
        "record = attune.execute('testing.secret_echo', {'token': 'hunter2'}).wait(60)\n"
        "print(record.status.value, record.parameters['token'], record.stdout.strip())\n"
    )
    result = python_caller(script, embedded_env, tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "succeeded ******** note=plain token=********"
    key_file = Path(embedded_env["ATTUNE_DATABASE_URL"].removeprefix("sqlite:///")).with_name(
        "attune.key"
    )
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_refused_broker_message_fails_the_execution(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    script = (
        "import os\n"
        "import attune\n"
        "from attune.worker.app import resources\n"
        "from attune.errors import EnqueueError\n"
        "from attune.liveness.registry import Registration, register\n"
        "with resources.database.session_scope() as session:\n"
        "    register(session, Registration('w1', ('shell',), (), 'host', os.getpid()))\n"
        "try:\n"
        "    attune.execute('examples.list_example', {'count': 1})\n"
        "except EnqueueError as exc:\n"
        "    record = attune.get_execution(exc.execution_id)\n"
        "    print(record.status.value, record.error)\n"
        "    # examples.on_failure listens: the failure has its execution-finished event\n"
        "    from sqlalchemy import func, select\n"
        "    from attune.store.models import TriggerEvent as E\n"
        "    with resources.database.session_scope() as session:\n"
        "        key = E.dedup_key == f'exec:{exc.execution_id}:failed'\n"
        "        print(session.scalar(select(func.count()).where(key)))\n"
    )
    env = {**embedded_env, "ATTUNE_BROKER_URL": "redis://127.0.0.1:1/0"}
    result = python_caller(script, env, tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("failed the broker refused the message")
    assert result.stdout.splitlines()[-1] == "1"


def test_the_embedded_worker_sweeps_in_a_thread_of_its_own_process(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    # Given an embedded worker already up, then a worker that registers and never heartbeats
    script = (
        "import time\n"
        "import attune\n"
        "from attune.liveness.registry import Registration, register\n"
        "from attune.liveness.sweeper import sweeper_status\n"
        "from attune.store.models import Execution\n"
        "from attune.worker.app import resources\n"
        "assert attune.execute('core.echo', {'message': 'up'}).wait(60).succeeded\n"
        "database = resources.database\n"
        "with database.session_scope() as session:\n"
        "    register(session, Registration('ghost', ('shell',), (), 'elsewhere', 1))\n"
        "    held = Execution(action_ref='core.sleep', worker='ghost', status='running')\n"
        "    session.add(held)\n"
        "    session.flush()\n"
        "deadline = time.monotonic() + 30\n"
        "while attune.get_execution(held.id).status != 'abandoned':\n"
        "    assert time.monotonic() < deadline, 'not swept within 30 s'\n"
        "    time.sleep(0.05)\n"
        "with database.session_scope() as session:\n"
        "    print(attune.get_execution(held.id).error)\n"
        "    print('overdue', sweeper_status(session, resources.settings).overdue)\n"
    )
    env = {**embedded_env, **FAST_LIVENESS}

    # When the process waits, doing nothing else
    result = python_caller(script, env, tmp_path)

    # Then its beat thread swept the stale worker, and the sweep was recorded
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("worker ghost stopped heartbeating; last heartbeat 20")
    assert lines[1] == "overdue False"
    listed = attune_cli(embedded_env, "workers", "list", "--json")
    assert {w["name"]: w["status"] for w in json.loads(listed.stdout)}["ghost"] == "inactive"
