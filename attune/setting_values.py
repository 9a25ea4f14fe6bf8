"""Setting values: the parsers that turn one ``ATTUNE_*`` variable's text into its typed value,
each raising :class:`SettingsError` that names the variable and what was wrong; and the choices
they check against."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from attune.errors import SettingsError

RUNTIMES: tuple[str, ...] = ("shell", "python", "native", "workflow")
"""The runtimes attune knows, in the order workers list them."""

REDIS_TRANSPORTS: tuple[str, ...] = ("attune", "kombu")
"""Transports a ``redis://`` broker can go through: attune's (:mod:`attune.worker.broker`) or
kombu's own."""

ENV_INSTALLERS: tuple[str, ...] = ("auto", "uv", "pip")
"""The values of ``ATTUNE_ENV_INSTALLER``: ``auto`` takes uv when importable, else pip."""


def number(name: str, raw: str) -> float:
    """The value as a finite number."""
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, raw, "not a number") from None
    if not math.isfinite(value):
        raise SettingsError(name, raw, "not a finite number")
    return value


def positive(name: str, raw: str) -> float:
    """A number greater than 0."""
    value = number(name, raw)
    if value <= 0:
        raise SettingsError(name, raw, "must be greater than 0")
    return value


def positive_or_none(name: str, raw: str) -> float | None:
    """A number greater than 0, for a setting that is off when unset."""
    return positive(name, raw)


def non_negative(name: str, raw: str) -> float:
    """A number of 0 or more."""
    value = number(name, raw)
    if value < 0:
        raise SettingsError(name, raw, "must be 0 or more")
    return value


def multiplier(name: str, raw: str) -> float:
    """A factor of at least 1."""
    value = number(name, raw)
    if value < 1:
        raise SettingsError(name, raw, "must be at least 1")
    return value


def positive_int(name: str, raw: str) -> int:
    """An integer greater than 0."""
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, raw, "not an integer") from None
    if value <= 0:
        raise SettingsError(name, raw, "must be greater than 0")
    return value


def port(name: str, raw: str) -> int:
    """A TCP port number (1..65535)."""
    value = positive_int(name, raw)
    if value > 65535:
        raise SettingsError(name, raw, "not a TCP port (1..65535)")
    return value


def names(name: str, raw: str) -> tuple[str, ...]:
    """Environment variable names separated by commas."""
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    for item in names:
        if not item.replace("_", "a").isalnum():
            raise SettingsError(name, raw, f"{item!r} is not an environment variable name")
    return names


def flag(name: str, raw: str) -> bool:
    """A flag: 1/0, true/false, yes/no or on/off (any case)."""
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(name, raw, "not a flag (1/0, true/false, yes/no, on/off)")


def installer(name: str, raw: str) -> str:
    """One of :data:`ENV_INSTALLERS`."""
    if raw not in ENV_INSTALLERS:
        raise SettingsError(name, raw, f"choose from {', '.join(ENV_INSTALLERS)}")
    return raw


def locations(_name: str, raw: str) -> tuple[str, ...]:
    """Directories or URLs separated by spaces or commas (pip's own separator is a space)."""
    return tuple(part for part in raw.replace(",", " ").split() if part)


def runtimes(name: str, raw: str) -> tuple[str, ...]:
    """Runtimes of :data:`RUNTIMES` separated by commas, each once, in the order given."""
    names = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if not names:
        raise SettingsError(name, raw, f"no runtime given; choose from {', '.join(RUNTIMES)}")
    unknown = [item for item in names if item not in RUNTIMES]
    if unknown:
        raise SettingsError(
            name, raw, f"unknown runtime {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}"
        )
    return names


def redis_transport(name: str, raw: str) -> str:
    """One of :data:`REDIS_TRANSPORTS`."""
    if raw not in REDIS_TRANSPORTS:
        raise SettingsError(name, raw, f"choose from {', '.join(REDIS_TRANSPORTS)}")
    return raw


def database_url(name: str, raw: str) -> str:
    """A SQLAlchemy URL of a SQLite or PostgreSQL database."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw)
    except ArgumentError:
        raise SettingsError(name, raw, "not a database URL (dialect+driver://…)") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise SettingsError(name, raw, "only sqlite and postgresql databases are supported")
    return raw


def broker_url(name: str, raw: str) -> str:
    """A broker URL: ``transport://…`` with a well-formed port."""
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise SettingsError(name, raw, f"not a broker URL: {exc}") from None
    if not parts.scheme or "://" not in raw:
        raise SettingsError(name, raw, "not a broker URL (transport://…)")
    return raw


def live_output(name: str, raw: str) -> str:
    """``auto``, ``off`` or a ``redis://`` (or ``rediss://``) URL."""
    if raw in ("auto", "off") or urlsplit(raw).scheme in ("redis", "rediss"):
        return raw
    raise SettingsError(name, raw, "expected auto, off or a redis:// URL")


def http_url(name: str, raw: str) -> str:
    """An ``http://`` or ``https://`` URL, without a trailing slash."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(name, raw, "not an http:// or https:// URL")
    return raw.rstrip("/")
