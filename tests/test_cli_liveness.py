"""The liveness commands: workers list/sweep, executions purge, metrics serve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, update

from attune.cli import main
from attune.liveness import registry as workers
from attune.liveness.registry import Registration
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Execution, ExecutionStatus, PeriodicRun, Worker
from attune.store.sqltypes import db_ago
from attune.worker.app import resources
from tests.processes import ROOT, free_port, wait_until


def run_cli(database: Database, *args: str, **env: str) -> Result:
    url = database.engine.url.render_as_string(hide_password=False)
    try:
        result = CliRunner().invoke(main, list(args), env={"ATTUNE_DATABASE_URL": url, **env})
    finally:
        resources.configure(Settings.from_env())
    assert result.exit_code == 0, result.output
    return result


def invoke(database: Database, *args: str) -> str:
    """What the command printed on stdout."""
    return run_cli(database, *args).stdout


def add_worker(database: Database, name: str, age_s: float) -> None:
    with database.session_scope() as session:
        workers.register(session, Registration(name, ("shell", "python"), (), "h", 1))
        session.execute(
            update(Worker).where(Worker.name == name).values(last_heartbeat=db_ago(age_s))
        )


def test_workers_list_as_a_table_and_as_json(database: Database) -> None:
    add_worker(database, "fresh", 1)
    add_worker(database, "old", 200)
    with database.session_scope() as session:
        session.add(Execution(action_ref="core.sleep", worker="fresh", status="running"))

    table = invoke(database, "workers", "list").splitlines()
    listed = json.loads(invoke(database, "workers", "list", "--json"))

    assert table[0].split() == [
        "NAME",
        "STATUS",
        "RUNTIMES",
        "HEARTBEAT",
        "AGE",
        "STALE",
        "RUNNING",
    ]
    assert table[1].split()[:3] == ["fresh", "active", "shell,python"]
    assert table[1].split()[-2:] == ["no", "1"]
    assert table[2].split()[-2:] == ["yes", "0"]
    assert [(w["name"], w["stale"], w["running"]) for w in listed] == [
        ("fresh", False, 1),
        ("old", True, 0),
    ]
    assert 199 < listed[1]["heartbeat_age_s"] < 300


def test_workers_list_ends_with_the_last_sweep_and_warns_when_none_ran(
    database: Database,
) -> None:
    add_worker(database, "fresh", 1)

    before = run_cli(database, "workers", "list")
    invoke(database, "workers", "sweep")
    after = run_cli(database, "workers", "list")
    as_json = run_cli(database, "workers", "list", "--json")

    assert before.stdout.splitlines()[-1] == "last sweep: never"
    assert "warning: no sweep within the last 3 sweep intervals (180 s" in before.stderr
    assert re.fullmatch(r"last sweep: \d+\.\d s ago", after.stdout.splitlines()[-1])
    assert after.stderr == ""
    assert [w["name"] for w in json.loads(as_json.stdout)] == ["fresh"]
    assert as_json.stderr == ""


def test_workers_sweeper_reports_the_last_sweep_and_whether_it_is_overdue(
    database: Database,
) -> None:
    never = run_cli(database, "workers", "sweeper", "--json")
    invoke(database, "workers", "sweep")
    fresh = run_cli(database, "workers", "sweeper", "--json")
    with database.session_scope() as session:
        session.execute(update(PeriodicRun).values(last_run_at=db_ago(181)))
    late = run_cli(database, "workers", "sweeper", "--json")
    text = run_cli(database, "workers", "sweeper")

    assert json.loads(never.stdout) == {
        "last_sweep_at": None,
        "last_sweep_age_s": None,
        "sweep_interval_s": 60.0,
        "overdue": True,
    }
    assert "warning: no sweep" in never.stderr
    status = json.loads(fresh.stdout)
    assert (status["overdue"], status["sweep_interval_s"]) == (False, 60.0)
    assert 0 <= status["last_sweep_age_s"] < 30
    assert datetime.fromisoformat(status["last_sweep_at"]).tzinfo is not None
    assert fresh.stderr == ""
    assert json.loads(late.stdout)["overdue"] is True
    assert 180 < json.loads(late.stdout)["last_sweep_age_s"] < 240
    assert "last sweep: 18" in late.stderr
    assert text.stdout.splitlines()[1:] == ["sweep interval: 60 s", "overdue: yes"]
    assert text.stdout.startswith("last sweep: 18")


def test_workers_sweeper_follows_the_sweep_interval(database: Database) -> None:
    invoke(database, "workers", "sweep")
    with database.session_scope() as session:
        session.execute(update(PeriodicRun).values(last_run_at=db_ago(4)))

    within = run_cli(database, "workers", "sweeper", "--json", ATTUNE_SWEEP_INTERVAL_S="2")
    beyond = run_cli(database, "workers", "sweeper", "--json", ATTUNE_SWEEP_INTERVAL_S="1")

    assert json.loads(within.stdout)["overdue"] is False
    assert json.loads(beyond.stdout)["overdue"] is True
    assert "(3 s; last sweep: 4." in beyond.stderr


def test_workers_sweep_reports_what_it_did(database: Database) -> None:
    add_worker(database, "old", 200)
    with database.session_scope() as session:
        session.add(Execution(action_ref="core.sleep", worker="old", status="running"))

    output = invoke(database, "workers", "sweep")

    assert "deactivated old: stopped heartbeating; last heartbeat 20" in output
    assert "1 worker(s) deactivated, 1 execution(s) abandoned, 0 scheduled" in output


def test_executions_purge_reports_the_count(database: Database) -> None:
    with database.session_scope() as session:
        session.add(Execution(action_ref="core.echo", status=ExecutionStatus.SUCCEEDED))
        session.add(Execution(action_ref="core.echo", status=ExecutionStatus.RUNNING))
    with database.session_scope() as session:
        session.execute(update(Execution).values(requested_at=db_ago(3 * 86400)))

    output = invoke(database, "executions", "purge", "--older-than", "2")

    assert output.strip() == "purged 1 execution(s) older than 2 day(s)"
    with database.session_scope() as session:
        assert session.scalars(select(Execution.status)).all() == ["running"]


def test_executions_purge_needs_a_positive_age() -> None:
    result = CliRunner().invoke(main, ["executions", "purge", "--older-than", "0"])

    assert result.exit_code == 2
    assert "--older-than" in result.output


@pytest.mark.postgres
def test_metrics_serve_serves_the_worker_gauge(pg_database: Database) -> None:
    add_worker(pg_database, "w1", 1)
    port = free_port()
    url = pg_database.engine.url.render_as_string(hide_password=False)
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("attune")), "metrics", "serve", "--port", str(port)],
        cwd=ROOT,
        env={"ATTUNE_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def scrape() -> str | None:
            assert server.poll() is None, server.communicate()[0].decode()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    return str(r.read().decode())
            except OSError:
                return None

        body = wait_until(scrape, 30, "the metrics endpoint")
    finally:
        server.terminate()
        server.wait(10)

    assert 'attune_workers{status="active"} 1.0' in body
    assert "attune_worker_deactivations_total 0.0" in body
    assert 'attune_executions_total{status="abandoned"} 0.0' in body
