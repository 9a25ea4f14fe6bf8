"""Settings: every ``ATTUNE_*`` environment variable, read once into one frozen object.

Each variable's text is parsed and checked by :mod:`attune.setting_values`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from attune import setting_values
from attune.setting_values import RUNTIMES

INHERITED_ENV: tuple[str, ...] = ("PATH", "HOME", "LANG", "TZ", "TMPDIR")
"""Variables of the worker's environment that an action's process inherits (plus ``LC_*``)."""

INSTALLER_ENV: tuple[str, ...] = (
    *(f"{proxy}_PROXY" for proxy in ("HTTP", "HTTPS", "ALL", "NO")),
    *(f"{proxy}_proxy" for proxy in ("http", "https", "all", "no")),
    *("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"),
)
"""Proxy and CA variables an environment installer inherits besides :data:`INHERITED_ENV`."""

_T = TypeVar("_T")


def _default_envs_dir() -> Path:
    home = os.path.expanduser("~")
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(home, ".local", "state")
    return Path(state) / "attune" / "envs"


@dataclass(frozen=True)
class EnvSettings:
    """How per-pack Python environments are built on this host (the ``ATTUNE_ENV*`` variables)."""

    envs_dir: Path = field(default_factory=_default_envs_dir)
    timeout_s: float = 600.0
    installer: str = "auto"
    offline: bool = False
    find_links: tuple[str, ...] = ()
    index_url: str | None = None
    installer_env: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Settings:
    """attune's configuration; build it with :meth:`Settings.from_env`."""

    database_url: str = "sqlite:///attune.db"
    broker_url: str = "memory://"
    redis_transport: str = "attune"
    worker_queue_expires_s: float = 60.0
    packs_dir: Path = Path("packs")
    heartbeat_interval_s: float = 30.0
    heartbeat_staleness_multiplier: float = 3.0
    sweep_interval_s: float = 60.0
    scheduled_timeout_s: float = 3600.0
    resend_after_s: float = 300.0
    default_timeout_s: float = 600.0
    kill_grace_s: float = 5.0
    max_output_bytes: int = 10 * 1024 * 1024
    worker_name: str | None = None
    worker_runtimes: tuple[str, ...] = RUNTIMES
    passthrough_env: tuple[str, ...] = ()
    secret_key: str | None = field(default=None, repr=False)
    metrics_port: int | None = None
    retention_days: float | None = None
    max_trigger_depth: int = 8
    live_output: str = "auto"
    live_output_after_s: float = 0.25
    api_url: str = "http://127.0.0.1:8000"
    api_key: str | None = field(default=None, repr=False)
    inherited_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    envs: EnvSettings = field(default_factory=EnvSettings)

    @property
    def staleness_threshold_s(self) -> float:
        """Age at which a heartbeat is stale: the one place interval × multiplier is derived."""
        return self.heartbeat_interval_s * self.heartbeat_staleness_multiplier

    @property
    def is_embedded(self) -> bool:
        """True on Celery's in-memory transport, where the worker runs inside the caller."""
        return urlsplit(self.broker_url).scheme == "memory"

    def secret_from_env(self, variable: str) -> str | None:
        """The value of ``variable`` in the environment these settings were read from (a
        webhook rule names its secret's variable in ``secret_env``); None when unset or empty."""
        return self.environ.get(variable) or None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every ``ATTUNE_*`` variable (from ``os.environ`` unless ``environ`` is given)."""
        env = os.environ if environ is None else environ
        defaults = cls()

        def get(name: str, parse: Callable[[str, str], _T], default: _T) -> _T:
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                return default
            return parse(name, raw.strip())

        passthrough: tuple[str, ...] = get("ATTUNE_PASSTHROUGH_ENV", setting_values.names, ())
        inherited = {
            key: value
            for key, value in env.items()
            if key in INHERITED_ENV or key.startswith("LC_") or key in passthrough
        }
        return cls(
            database_url=get(
                "ATTUNE_DATABASE_URL", setting_values.database_url, defaults.database_url
            ),
            broker_url=get("ATTUNE_BROKER_URL", setting_values.broker_url, defaults.broker_url),
            redis_transport=get(
                "ATTUNE_REDIS_TRANSPORT", setting_values.redis_transport, defaults.redis_transport
            ),
            worker_queue_expires_s=get(
                "ATTUNE_WORKER_QUEUE_EXPIRES_S",
                setting_values.positive,
                defaults.worker_queue_expires_s,
            ),
            packs_dir=get("ATTUNE_PACKS_DIR", lambda _n, v: Path(v), defaults.packs_dir),
            heartbeat_interval_s=get(
                "ATTUNE_HEARTBEAT_INTERVAL_S",
                setting_values.positive,
                defaults.heartbeat_interval_s,
            ),
            heartbeat_staleness_multiplier=get(
                "ATTUNE_HEARTBEAT_STALENESS_MULTIPLIER",
                setting_values.multiplier,
                defaults.heartbeat_staleness_multiplier,
            ),
            sweep_interval_s=get(
                "ATTUNE_SWEEP_INTERVAL_S", setting_values.positive, defaults.sweep_interval_s
            ),
            scheduled_timeout_s=get(
                "ATTUNE_SCHEDULED_TIMEOUT_S",
                setting_values.non_negative,
                defaults.scheduled_timeout_s,
            ),
            resend_after_s=get(
                "ATTUNE_RESEND_AFTER_S", setting_values.non_negative, defaults.resend_after_s
            ),
            default_timeout_s=get(
                "ATTUNE_DEFAULT_TIMEOUT_S", setting_values.positive, defaults.default_timeout_s
            ),
            kill_grace_s=get(
                "ATTUNE_KILL_GRACE_S", setting_values.non_negative, defaults.kill_grace_s
            ),
            max_output_bytes=get(
                "ATTUNE_MAX_OUTPUT_BYTES", setting_values.positive_int, defaults.max_output_bytes
            ),
            worker_name=get("ATTUNE_WORKER_NAME", lambda _n, v: v, None),
            worker_runtimes=get(
                "ATTUNE_WORKER_RUNTIMES", setting_values.runtimes, defaults.worker_runtimes
            ),
            passthrough_env=passthrough,
            secret_key=get("ATTUNE_SECRET_KEY", lambda _n, v: v, None),
            metrics_port=get("ATTUNE_METRICS_PORT", setting_values.port, None),
            retention_days=get("ATTUNE_RETENTION_DAYS", setting_values.positive_or_none, None),
            max_trigger_depth=get(
                "ATTUNE_MAX_TRIGGER_DEPTH", setting_values.positive_int, defaults.max_trigger_depth
            ),
            live_output=get("ATTUNE_LIVE_OUTPUT", setting_values.live_output, defaults.live_output),
            live_output_after_s=get(
                "ATTUNE_LIVE_OUTPUT_AFTER_S",
                setting_values.non_negative,
                defaults.live_output_after_s,
            ),
            api_url=get("ATTUNE_API_URL", setting_values.http_url, defaults.api_url),
            api_key=get("ATTUNE_API_KEY", lambda _n, v: v, None),
            inherited_env=inherited,
            environ=dict(env),
            envs=EnvSettings(
                envs_dir=get("ATTUNE_ENVS_DIR", lambda _n, v: Path(v), defaults.envs.envs_dir),
                timeout_s=get(
                    "ATTUNE_ENV_TIMEOUT_S", setting_values.positive, defaults.envs.timeout_s
                ),
                installer=get(
                    "ATTUNE_ENV_INSTALLER", setting_values.installer, defaults.envs.installer
                ),
                offline=get("ATTUNE_ENV_OFFLINE", setting_values.flag, False),
                find_links=get("ATTUNE_ENV_FIND_LINKS", setting_values.locations, ()),
                index_url=get("ATTUNE_ENV_INDEX_URL", lambda _n, v: v, None),
                installer_env={
                    key: value
                    for key, value in env.items()
                    if key in INSTALLER_ENV or key in inherited
                },
            ),
        )
