"""Settings.from_env: defaults, every variable, every kind of bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from attune.errors import SettingsError
from attune.setting_values import RUNTIMES
from attune.settings import Settings


def test_defaults_match_the_documented_values() -> None:
    settings = Settings.from_env({})

    assert settings.database_url == "sqlite:///attune.db"
    assert settings.broker_url == "memory://"
    assert settings.packs_dir == Path("packs")
    assert settings.heartbeat_interval_s == 30
    assert settings.heartbeat_staleness_multiplier == 3
    assert settings.staleness_threshold_s == 90
    assert settings.sweep_interval_s == 60
    assert settings.scheduled_timeout_s == 3600
    assert settings.default_timeout_s == 600
    assert settings.kill_grace_s == 5
    assert settings.max_output_bytes == 10_485_760
    assert settings.worker_name is None
    assert settings.worker_runtimes == RUNTIMES
    assert settings.secret_key is None
    assert settings.max_trigger_depth == 8
    assert settings.redis_transport == "attune"
    assert settings.worker_queue_expires_s == 60
    assert settings.is_embedded


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "ATTUNE_DATABASE_URL": "postgresql+psycopg://u:p@db/attune",
            "ATTUNE_BROKER_URL": "redis://localhost:6379/0",
            "ATTUNE_PACKS_DIR": "/srv/packs",
            "ATTUNE_HEARTBEAT_INTERVAL_S": "0.2",
            "ATTUNE_HEARTBEAT_STALENESS_MULTIPLIER": "3",
            "ATTUNE_SWEEP_INTERVAL_S": "0.3",
            "ATTUNE_SCHEDULED_TIMEOUT_S": "0",
            "ATTUNE_DEFAULT_TIMEOUT_S": "12",
            "ATTUNE_KILL_GRACE_S": "0.5",
            "ATTUNE_MAX_OUTPUT_BYTES": "1024",
            "ATTUNE_WORKER_NAME": "w1",
            "ATTUNE_WORKER_RUNTIMES": "shell, python",
            "ATTUNE_PASSTHROUGH_ENV": "HTTP_PROXY,NO_PROXY",
            "ATTUNE_SECRET_KEY": "k",
            "ATTUNE_METRICS_PORT": "9808",
            "ATTUNE_RETENTION_DAYS": "30",
            "ATTUNE_MAX_TRIGGER_DEPTH": "3",
            "ATTUNE_REDIS_TRANSPORT": "kombu",
            "ATTUNE_WORKER_QUEUE_EXPIRES_S": "1.5",
            "ATTUNE_LIVE_OUTPUT_AFTER_S": "0",
        }
    )

    assert settings.database_url == "postgresql+psycopg://u:p@db/attune"
    assert settings.broker_url == "redis://localhost:6379/0"
    assert not settings.is_embedded
    assert settings.packs_dir == Path("/srv/packs")
    assert settings.staleness_threshold_s == pytest.approx(0.6)
    assert settings.sweep_interval_s == pytest.approx(0.3)
    assert settings.scheduled_timeout_s == 0
    assert settings.default_timeout_s == 12
    assert settings.kill_grace_s == 0.5
    assert settings.live_output_after_s == 0
    assert settings.max_output_bytes == 1024
    assert settings.worker_name == "w1"
    assert settings.worker_runtimes == ("shell", "python")
    assert settings.passthrough_env == ("HTTP_PROXY", "NO_PROXY")
    assert settings.secret_key == "k"
    assert settings.metrics_port == 9808
    assert settings.retention_days == 30
    assert settings.max_trigger_depth == 3
    assert settings.redis_transport == "kombu"
    assert settings.worker_queue_expires_s == 1.5


def test_inherited_environment_keeps_only_the_allowed_names() -> None:
    settings = Settings.from_env(
        {
            "PATH": "/usr/bin",
            "HOME": "/root",
            "LC_ALL": "C.UTF-8",
            "HTTP_PROXY": "http://proxy",
            "ATTUNE_PASSTHROUGH_ENV": "HTTP_PROXY",
            "ATTUNE_DATABASE_URL": "postgresql://u:secret@db/attune",
            "AWS_SECRET_ACCESS_KEY": "nope",
        }
    )

    assert dict(settings.inherited_env) == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LC_ALL": "C.UTF-8",
        "HTTP_PROXY": "http://proxy",
    }


def test_secret_key_is_not_in_the_repr() -> None:
    assert "s3cret" not in repr(Settings.from_env({"ATTUNE_SECRET_KEY": "s3cret"}))


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("ATTUNE_HEARTBEAT_INTERVAL_S", "abc", "not a number"),
        ("ATTUNE_HEARTBEAT_INTERVAL_S", "0", "greater than 0"),
        ("ATTUNE_HEARTBEAT_INTERVAL_S", "-1", "greater than 0"),
        ("ATTUNE_HEARTBEAT_INTERVAL_S", "nan", "finite"),
        ("ATTUNE_HEARTBEAT_STALENESS_MULTIPLIER", "0.5", "at least 1"),
        ("ATTUNE_HEARTBEAT_STALENESS_MULTIPLIER", "x", "not a number"),
        ("ATTUNE_SWEEP_INTERVAL_S", "0", "greater than 0"),
        ("ATTUNE_SCHEDULED_TIMEOUT_S", "-5", "0 or more"),
        ("ATTUNE_DEFAULT_TIMEOUT_S", "0", "greater than 0"),
        ("ATTUNE_KILL_GRACE_S", "-1", "0 or more"),
        ("ATTUNE_LIVE_OUTPUT_AFTER_S", "-0.1", "0 or more"),
        ("ATTUNE_MAX_OUTPUT_BYTES", "1.5", "not an integer"),
        ("ATTUNE_MAX_OUTPUT_BYTES", "0", "greater than 0"),
        ("ATTUNE_WORKER_RUNTIMES", "shell,ruby", "ruby"),
        ("ATTUNE_WORKER_RUNTIMES", ",", "no runtime"),
        ("ATTUNE_DATABASE_URL", "not a url", "database URL"),
        ("ATTUNE_DATABASE_URL", "mysql://db/attune", "sqlite and postgresql"),
        ("ATTUNE_BROKER_URL", "localhost:6379", "broker URL"),
        ("ATTUNE_BROKER_URL", "redis://host:port/0", "broker URL"),
        ("ATTUNE_METRICS_PORT", "70000", "TCP port"),
        ("ATTUNE_PASSTHROUGH_ENV", "A-B", "environment variable name"),
        ("ATTUNE_RETENTION_DAYS", "0", "greater than 0"),
        ("ATTUNE_MAX_TRIGGER_DEPTH", "0", "greater than 0"),
        ("ATTUNE_REDIS_TRANSPORT", "hiredis", "attune, kombu"),
        ("ATTUNE_WORKER_QUEUE_EXPIRES_S", "0", "greater than 0"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_value(
    variable: str, value: str, reason: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})

    message = str(caught.value)
    assert variable in message
    assert repr(value) in message
    assert reason in message
