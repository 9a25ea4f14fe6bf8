"""The scheduler on both databases: validation, routing, secrets, and what gets stored."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import delete, func, select, update

from attune.errors import ActionNotFoundError, ParameterError, SecretKeyError
from attune.executions.routing import Routed, Unroutable
from attune.executions.scheduler import schedule
from attune.executions.secretbox import SecretBox
from attune.liveness.registry import Registration, register
from attune.packs.loader import load_packs
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Action, Execution, Worker
from attune.store.sqltypes import db_now
from tests.rows import execution_row

ROOT = Path(__file__).resolve().parent.parent
KEY = Fernet.generate_key().decode()


@pytest.fixture
def loaded(database: Database, tmp_path: Path) -> Database:
    packs_dir = tmp_path / "packs"
    packs_dir.mkdir()
    (packs_dir / "core").symlink_to(ROOT / "packs" / "core")
    (packs_dir / "testing").symlink_to(ROOT / "tests" / "packs" / "testing")
    result = load_packs(database, packs_dir)
    assert result.ok, result.errors
    return database


def settings_for(database: Database, **env: str) -> Settings:
    url = database.engine.url.render_as_string(hide_password=False)
    return Settings.from_env({"ATTUNE_DATABASE_URL": url, **env})


def add_worker(database: Database, name: str, runtimes: tuple[str, ...]) -> None:
    with database.session_scope() as session:
        register(session, Registration(name, runtimes, (), "host", os.getpid()))


def count(database: Database) -> int:
    with database.session_scope() as session:
        return session.scalar(select(func.count()).select_from(Execution)) or 0


def test_with_a_live_worker_the_row_is_scheduled_for_the_runtime_queue(
    loaded: Database,
) -> None:
    add_worker(loaded, "w1", ("shell",))

    routed = schedule(loaded, settings_for(loaded), "core.noop", {})

    assert isinstance(routed, Routed)
    assert routed.queue == "attune.shell"
    row = execution_row(loaded, routed.execution_id)
    assert row.status == "scheduled"
    assert row.parameters == {"message": "", "exit_code": 0}


def test_a_named_worker_gets_its_own_queue(loaded: Database) -> None:
    add_worker(loaded, "w1", ("shell",))

    routed = schedule(loaded, settings_for(loaded), "core.noop", {}, worker="w1")

    assert routed == Routed(routed.execution_id, "attune.worker.w1")


@pytest.mark.parametrize(
    ("worker", "reason"),
    [
        (None, "no active worker serves runtime 'shell'"),
        ("w9", "worker 'w9' is not registered"),
        ("py", "worker 'py' does not serve runtime 'shell'"),
    ],
)
def test_without_a_fitting_worker_the_row_is_stored_failed_with_the_reason(
    loaded: Database, worker: str | None, reason: str
) -> None:
    add_worker(loaded, "py", ("python",))

    routed = schedule(loaded, settings_for(loaded), "core.noop", {}, worker=worker)

    assert routed == Unroutable(routed.execution_id, reason)
    row = execution_row(loaded, routed.execution_id)
    assert (row.status, row.error) == ("failed", reason)
    assert row.finished_at is not None


def test_a_stale_worker_does_not_count(loaded: Database) -> None:
    add_worker(loaded, "w1", ("shell",))
    with loaded.session_scope() as session:
        now = session.scalar(select(db_now()))
        assert now is not None
        session.execute(update(Worker).values(last_heartbeat=now - timedelta(seconds=90)))

    routed = schedule(loaded, settings_for(loaded), "core.noop", {})

    assert routed == Unroutable(routed.execution_id, "no active worker serves runtime 'shell'")


@pytest.mark.parametrize(
    ("ref", "values", "error"),
    [
        ("core.nope", {}, ActionNotFoundError),
        ("core.noop", {"exit_code": 300}, ParameterError),
        ("core.noop", {"bogus": 1}, ParameterError),
        ("core.sleep", {}, ParameterError),
    ],
)
def test_refused_requests_store_nothing(
    loaded: Database, ref: str, values: dict[str, object], error: type[Exception]
) -> None:
    add_worker(loaded, "w1", ("shell",))

    with pytest.raises(error):
        schedule(loaded, settings_for(loaded), ref, values)

    assert count(loaded) == 0


def test_a_non_positive_timeout_is_refused(loaded: Database) -> None:
    add_worker(loaded, "w1", ("shell",))

    with pytest.raises(ParameterError, match="timeout_s"):
        schedule(loaded, settings_for(loaded), "core.noop", {}, timeout_s=0)


def test_secrets_are_masked_and_stored_encrypted(loaded: Database) -> None:
    add_worker(loaded, "w1", ("shell",))
    settings = settings_for(loaded, ATTUNE_SECRET_KEY=KEY)

    routed = schedule(loaded, settings, "testing.secret_echo", {"token": "hunter2"})

    row = execution_row(loaded, routed.execution_id)
    assert row.parameters == {"token": "********", "note": "plain"}
    assert row.secrets is not None
    assert "hunter2" not in row.secrets
    assert SecretBox(KEY).decrypt(row.secrets) == {"token": "hunter2"}


def test_secrets_without_a_key_are_refused_on_postgresql(pg_database: Database) -> None:
    result = load_packs(pg_database, ROOT / "tests" / "packs")
    assert result.ok, result.errors
    add_worker(pg_database, "w1", ("shell",))

    settings = settings_for(pg_database)
    with pytest.raises(SecretKeyError, match="ATTUNE_SECRET_KEY"):
        schedule(pg_database, settings, "testing.secret_echo", {"token": "x"})

    assert count(pg_database) == 0


def test_the_embedded_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings.from_env({"ATTUNE_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"})

    first = SecretBox.for_settings(settings).encrypt({"k": "v"})
    again = SecretBox.for_settings(settings)

    assert again.decrypt(first) == {"k": "v"}
    assert (tmp_path / "attune.key").stat().st_mode & 0o777 == 0o600


def test_a_wrong_key_cannot_decrypt(tmp_path: Path) -> None:
    token = SecretBox(KEY).encrypt({"k": "v"})

    with pytest.raises(SecretKeyError, match="cannot be decrypted"):
        SecretBox(Fernet.generate_key()).decrypt(token)
    with pytest.raises(SecretKeyError, match="not a Fernet key"):
        SecretBox("short")


# A process remembers each action it scheduled; later requests are validated against that and
# recorded in one statement that inserts nothing once the action changed, so a fresh read decides.


def change_action(database: Database, ref: str, **values: object) -> None:
    with database.session_scope() as session:
        session.execute(update(Action).where(Action.ref == ref).values(**values))


def test_a_repeated_request_is_recorded_like_the_first(loaded: Database) -> None:
    add_worker(loaded, "w1", ("shell",))
    settings = settings_for(loaded)
    first = schedule(loaded, settings, "core.noop", {"exit_code": 3})

    again = schedule(loaded, settings, "core.noop", {"exit_code": 4})

    assert again == Routed(again.execution_id, "attune.shell")
    assert again.execution_id != first.execution_id
    row = execution_row(loaded, again.execution_id)
    assert (row.status, row.parameters, row.error) == (
        "scheduled",
        {"message": "", "exit_code": 4},
        None,
    )
    assert (row.stdout, row.stdout_truncated, row.finished_at) == ("", False, None)


def test_a_repeated_request_without_a_live_worker_is_stored_failed(loaded: Database) -> None:
    add_worker(loaded, "w1", ("shell",))
    settings = settings_for(loaded)
    schedule(loaded, settings, "core.noop", {})
    with loaded.session_scope() as session:
        session.execute(update(Worker).values(status="inactive"))

    routed = schedule(loaded, settings, "core.noop", {})

    assert routed == Unroutable(routed.execution_id, "no active worker serves runtime 'shell'")
    row = execution_row(loaded, routed.execution_id)
    assert (row.status, row.error) == ("failed", "no active worker serves runtime 'shell'")
    assert row.finished_at is not None


def test_a_changed_schema_is_judged_as_it_is_now(loaded: Database) -> None:
    add_worker(loaded, "w1", ("shell",))
    settings = settings_for(loaded)
    schedule(loaded, settings, "core.noop", {})
    schema = {"colour": {"type": "string", "required": True}}
    change_action(loaded, "core.noop", parameters=schema, updated_at=db_now())
    before = count(loaded)

    with pytest.raises(ParameterError, match="exit_code"):
        schedule(loaded, settings, "core.noop", {"exit_code": 1})
    routed = schedule(loaded, settings, "core.noop", {"colour": "red"})

    assert count(loaded) == before + 1
    assert execution_row(loaded, routed.execution_id).parameters == {"colour": "red"}


@pytest.mark.parametrize("touched", [True, False])
def test_an_action_disabled_since_is_refused(loaded: Database, touched: bool) -> None:
    add_worker(loaded, "w1", ("shell",))
    settings = settings_for(loaded)
    schedule(loaded, settings, "core.noop", {})
    change_action(
        loaded, "core.noop", enabled=False, **({"updated_at": db_now()} if touched else {})
    )
    before = count(loaded)

    with pytest.raises(ActionNotFoundError, match="disabled"):
        schedule(loaded, settings, "core.noop", {})

    assert count(loaded) == before


def test_an_action_removed_since_is_refused(loaded: Database) -> None:
    add_worker(loaded, "w1", ("shell",))
    settings = settings_for(loaded)
    schedule(loaded, settings, "core.noop", {})
    with loaded.session_scope() as session:
        session.execute(delete(Execution))
        session.execute(delete(Action).where(Action.ref == "core.noop"))

    with pytest.raises(ActionNotFoundError):
        schedule(loaded, settings, "core.noop", {})

    assert count(loaded) == 0
