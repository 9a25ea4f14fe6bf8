"""Building and using pack environments through the runner, on both databases, with real
installer and action processes (no Celery in between), offline from a local wheelhouse."""

from __future__ import annotations

import importlib.util
import platform
import socket
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from attune.environments import builder
from attune.environments.builder import is_ready
from attune.executions import env_records, environments
from attune.executions.env_records import backoff_s
from attune.executions.runner import CancelWatcher, run_execution
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Execution, ExecutionEnvironment, PackEnvironment
from tests.environments.conftest import IMPORTER, env_pack, env_settings, load, loaded_env_pack
from tests.processes import wait_until
from tests.rows import execution_row
from tests.wheelhouse import build_wheel

WAIT_FOR_GO = """\
import json, os, sys, time
here = os.path.dirname(__file__)
execution = os.environ["ATTUNE_EXECUTION_ID"]
open(os.path.join(here, f"started-{execution}"), "w").close()
deadline = time.monotonic() + 60
while os.path.exists(os.path.join(here, f"hold-{execution}")) and time.monotonic() < deadline:
    time.sleep(0.02)
import demo_lib
print(json.dumps({"version": demo_lib.VERSION, "python": sys.executable}))
"""


def scheduled(database: Database, ref: str) -> int:
    with database.session_scope() as session:
        execution = Execution(action_ref=ref, parameters={}, status="scheduled")
        session.add(execution)
        session.flush()
        return execution.id


def run(database: Database, settings: Settings, ref: str) -> int:
    execution_id = scheduled(database, ref)
    run_execution(database, settings, "w1", execution_id, CancelWatcher(lambda: database))
    return execution_id


def use_of(database: Database, execution_id: int) -> ExecutionEnvironment:
    with database.session_scope() as session:
        use = env_records.execution_use(session, execution_id)
        assert use is not None
        session.expunge(use)
        return use


def env_rows(database: Database, pack: str) -> list[PackEnvironment]:
    with database.session_scope() as session:
        rows = list(session.scalars(select(PackEnvironment).where(PackEnvironment.pack == pack)))
        session.expunge_all()
        return rows


def unique(request: pytest.FixtureRequest) -> str:
    """A comment line no other test (nor database) has: a key of this test's own."""
    return f"# {request.node.name}\n"


@pytest.fixture
def packs_dir(tmp_path: Path) -> Path:
    return tmp_path / "packs"


def test_a_python_action_imports_a_library_only_its_environment_has(
    database: Database,
    packs_dir: Path,
    envs_dir: Path,
    wheelhouse: Path,
    request: pytest.FixtureRequest,
) -> None:
    settings = loaded_env_pack(
        database, (packs_dir, envs_dir, wheelhouse), "imports", "demo-lib==1.0\n" + unique(request)
    )

    first = run(database, settings, "imports.show")
    second = run(database, settings, "imports.show")

    assert importlib.util.find_spec("demo_lib") is None  # the worker's Python lacks it
    for execution_id in (first, second):
        row = execution_row(database, execution_id)
        assert row.status == "succeeded", row.error
        assert row.result["version"] == "1.0"
        assert row.result["python"].startswith(str(envs_dir / "imports"))
    assert (use_of(database, first).waited, use_of(database, first).built) == (True, True)
    assert (use_of(database, second).waited, use_of(database, second).built) == (False, False)
    assert use_of(database, first).key == use_of(database, second).key
    (environment,) = env_rows(database, "imports")
    assert environment.status == "ready"
    assert environment.host == socket.gethostname()
    assert environment.key == use_of(database, first).key
    assert environment.python == platform.python_version()
    assert environment.installer.startswith("uv ")
    assert environment.size_bytes
    assert environment.size_bytes > 0
    assert environment.built_at is not None


def test_two_packs_need_two_versions_of_one_library(
    database: Database, packs_dir: Path, envs_dir: Path, wheelhouse: Path
) -> None:
    env_pack(packs_dir, "old", "demo-lib==1.0\n")
    env_pack(packs_dir, "new", "demo-lib==2.0\n")
    load(database, packs_dir, "old", "new")
    settings = env_settings(packs_dir, envs_dir, wheelhouse)

    old, new = run(database, settings, "old.show"), run(database, settings, "new.show")

    assert execution_row(database, old).result["version"] == "1.0"
    assert execution_row(database, new).result["version"] == "2.0"
    assert use_of(database, old).key != use_of(database, new).key


def test_a_changed_requirements_file_is_a_new_environment_the_running_execution_keeps_its_own(
    database: Database, packs_dir: Path, tmp_path: Path, wheelhouse: Path
) -> None:
    envs_dir = tmp_path / "envs"  # prune removes what this test did not load
    pack_dir = env_pack(packs_dir, "changing", "demo-lib==1.0\n", script=WAIT_FOR_GO)
    actions = pack_dir / "actions"
    load(database, packs_dir, "changing")
    settings = env_settings(packs_dir, envs_dir, wheelhouse)
    running = scheduled(database, "changing.show")
    (actions / f"hold-{running}").touch()
    watcher = CancelWatcher(lambda: database)
    thread = threading.Thread(
        target=run_execution, args=(database, settings, "w1", running, watcher)
    )
    thread.start()
    wait_until(lambda: (actions / f"started-{running}").exists(), 60, "the first run to start")

    (pack_dir / "requirements.txt").write_text("demo-lib==2.0\n")
    load(database, packs_dir, "changing")
    changed = run(database, settings, "changing.show")
    removed_while_running = environments.prune(database, settings)
    (actions / f"hold-{running}").unlink()
    thread.join(60)
    removed_after = environments.prune(database, settings)

    assert execution_row(database, changed).result["version"] == "2.0"
    assert execution_row(database, running).result["version"] == "1.0"  # imported after the change
    old_key, new_key = use_of(database, running).key, use_of(database, changed).key
    assert new_key != old_key
    old_path = envs_dir.absolute() / "changing" / old_key[:16]
    assert removed_while_running == []
    assert removed_after == [old_path]
    assert is_ready(envs_dir / "changing" / new_key[:16])
    assert [row.key for row in env_rows(database, "changing")] == [new_key]


def test_a_missing_requirement_fails_clearly_and_fast_and_recovers_after_prepare_force(
    database: Database,
    packs_dir: Path,
    envs_dir: Path,
    wheelhouse: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    late_wheels = tmp_path / "late-wheels"
    late_wheels.mkdir()
    script = IMPORTER.replace("demo_lib", "late_lib")
    env_pack(packs_dir, "late", "late-lib==1.0\n" + unique(request), script=script)
    load(database, packs_dir, "late")
    settings = env_settings(
        packs_dir, envs_dir, wheelhouse, ATTUNE_ENV_FIND_LINKS=f"{wheelhouse} {late_wheels}"
    )

    failed = run(database, settings, "late.show")
    again = run(database, settings, "late.show")
    build_wheel(late_wheels, "late-lib", "1.0", "VERSION = 'late'\n")
    still_backing_off = run(database, settings, "late.show")
    (prepared,) = environments.prepare(database, settings, ["late"], force=True)
    recovered = run(database, settings, "late.show")

    first = execution_row(database, failed)
    assert first.status == "failed"
    key = use_of(database, failed).key
    assert (
        f"python environment for pack 'late' could not be built on host {socket.gethostname()}"
        in first.error
    )
    assert f"(key {key[:16]}, uv " in first.error
    assert f"Python {platform.python_version()})" in first.error
    assert "installing requirements.txt exited with code" in first.error
    assert "late-lib" in first.error  # the installer's own words
    assert use_of(database, failed).built is True
    for fast in (again, still_backing_off):
        row = execution_row(database, fast)
        assert row.status == "failed"
        assert row.error.startswith(first.error)
        assert "failing fast after 1 failed build(s) on this host" in row.error
        assert use_of(database, fast).built is False
    assert prepared.error is None
    assert prepared.built
    assert execution_row(database, recovered).status == "succeeded"
    assert execution_row(database, recovered).result["version"] == "late"
    (environment,) = env_rows(database, "late")
    assert (environment.status, environment.failures, environment.retry_at) == ("ready", 0, None)


def test_a_failed_build_is_recorded_with_its_backoff(
    database: Database,
    packs_dir: Path,
    envs_dir: Path,
    wheelhouse: Path,
    request: pytest.FixtureRequest,
) -> None:
    settings = loaded_env_pack(
        database, (packs_dir, envs_dir, wheelhouse), "missing", "not-there==1.0\n" + unique(request)
    )

    (result,) = environments.prepare(database, settings, ["missing"])
    (again,) = environments.prepare(database, settings, ["missing"], force=True)

    assert result.error
    assert "not-there" in result.error
    assert again.error
    assert "failing fast" not in again.error
    (environment,) = env_rows(database, "missing")
    assert environment.status == "failed"
    assert environment.failures == 2
    assert environment.retry_at is not None
    assert environment.error == again.error


def test_the_backoff_doubles_from_a_minute_to_fifteen() -> None:
    assert [backoff_s(n) for n in range(1, 7)] == [60, 120, 240, 480, 900, 900]


def test_a_python_range_that_excludes_the_worker_fails_naming_both_versions(
    database: Database, packs_dir: Path, envs_dir: Path, wheelhouse: Path
) -> None:
    env_pack(packs_dir, "future", "demo-lib==1.0\n", python=">=3.99")
    load(database, packs_dir, "future")

    execution_id = run(database, env_settings(packs_dir, envs_dir, wheelhouse), "future.show")

    row = execution_row(database, execution_id)
    assert row.status == "failed"
    assert row.error == (
        f"pack 'future' needs Python >=3.99; this worker runs {platform.python_version()}"
    )
    assert not (envs_dir / "future").exists()


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_both_installers_build_a_working_environment(
    sqlite_database: Database,
    packs_dir: Path,
    envs_dir: Path,
    wheelhouse: Path,
    installer: str,
    request: pytest.FixtureRequest,
) -> None:
    env_pack(packs_dir, "both", "demo-lib==2.0\n" + unique(request))
    load(sqlite_database, packs_dir, "both")
    settings = env_settings(packs_dir, envs_dir, wheelhouse, ATTUNE_ENV_INSTALLER=installer)

    execution_id = run(sqlite_database, settings, "both.show")

    row = execution_row(sqlite_database, execution_id)
    assert row.status == "succeeded", row.error
    assert row.result["version"] == "2.0"
    (environment,) = env_rows(sqlite_database, "both")
    assert environment.installer.startswith(f"{installer} ")


def test_ten_concurrent_first_executions_build_once(
    pg_database: Database,
    packs_dir: Path,
    envs_dir: Path,
    wheelhouse: Path,
    request: pytest.FixtureRequest,
) -> None:
    settings = loaded_env_pack(
        pg_database, (packs_dir, envs_dir, wheelhouse), "crowd", "demo-lib==1.0\n" + unique(request)
    )
    ids = [scheduled(pg_database, "crowd.show") for _ in range(10)]
    watcher = CancelWatcher(lambda: pg_database)
    threads = [
        threading.Thread(target=run_execution, args=(pg_database, settings, "w1", i, watcher))
        for i in ids
    ]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert [execution_row(pg_database, i).status for i in ids] == ["succeeded"] * 10
    uses = [use_of(pg_database, i) for i in ids]
    assert sum(use.built for use in uses) == 1
    assert len({use.key for use in uses}) == 1


def test_prepare_force_rebuilds_beside_a_running_execution_which_keeps_its_files(
    sqlite_database: Database, packs_dir: Path, tmp_path: Path, wheelhouse: Path
) -> None:
    envs_dir = tmp_path / "envs"
    settings = loaded_env_pack(
        sqlite_database, (packs_dir, envs_dir, wheelhouse), "forced", "demo-lib==1.0\n"
    )
    (first,) = environments.prepare(sqlite_database, settings, ["forced"])
    assert first.path is not None
    marker_before = (first.path / ".attune-ready").read_text()

    with builder.in_use(first.path):  # an execution runs in it
        (forced,) = environments.prepare(sqlite_database, settings, ["forced"], force=True)
        aside = list((envs_dir / "forced").glob("*.old-*"))
        removed_while_used = environments.prune(sqlite_database, settings)
        kept = [(path / "bin" / "python").exists() for path in aside]
    removed_after = environments.prune(sqlite_database, settings)

    assert forced.built
    assert forced.path == first.path
    assert (first.path / ".attune-ready").read_text() != marker_before
    assert len(aside) == 1
    assert kept == [True]  # the running execution's files stay while it runs
    assert removed_while_used == []
    assert removed_after == aside
    assert is_ready(first.path)
