"""Which live output backend each deployment gets, and the settings that choose it."""

from __future__ import annotations

import re

import pytest

from attune.errors import SettingsError
from attune.executions.liveoutput import MemoryLive, RedisLive, backend
from attune.settings import Settings


def _backend(**env: str) -> object:
    return backend(Settings.from_env(env))


def test_each_broker_gets_its_backend() -> None:
    assert isinstance(_backend(), MemoryLive)  # the embedded default: an in-process ring
    on_redis = _backend(ATTUNE_BROKER_URL="redis://127.0.0.1:6379/3")
    assert isinstance(on_redis, RedisLive)
    assert on_redis.url == "redis://127.0.0.1:6379/3"
    assert _backend(ATTUNE_BROKER_URL="amqp://guest@127.0.0.1//") is None
    beside_rabbit = _backend(
        ATTUNE_BROKER_URL="amqp://guest@127.0.0.1//", ATTUNE_LIVE_OUTPUT="redis://127.0.0.1/4"
    )
    assert isinstance(beside_rabbit, RedisLive)
    assert beside_rabbit.url == "redis://127.0.0.1/4"
    assert _backend(ATTUNE_BROKER_URL="redis://127.0.0.1/3", ATTUNE_LIVE_OUTPUT="off") is None


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(SettingsError, match="ATTUNE_LIVE_OUTPUT='kafka://x'"):
        Settings.from_env({"ATTUNE_LIVE_OUTPUT": "kafka://x"})
    with pytest.raises(SettingsError, match=re.escape("ATTUNE_API_URL='127.0.0.1:8000'")):
        Settings.from_env({"ATTUNE_API_URL": "127.0.0.1:8000"})
    assert Settings.from_env({"ATTUNE_API_URL": "https://api.example/"}).api_url == (
        "https://api.example"
    )
