"""Timer schedules: the instants a timer rule ticks at, computed from its params alone.

Every process computes the same ticks: intervals are multiples of the interval since the Unix
epoch, cron follows the wall clock of its IANA zone (cronsim, Debian cron's DST rules: a time
skipped by a spring-forward fires once right after the gap, a repeated time fires once), and a
date timer has one tick.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from cronsim import CronSim, CronSimError

UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
"""Seconds per ``unit`` of an interval timer."""

MAX_COUNTED_TICKS = 100_000
"""Past this many due ticks a pass stops counting (a cron timer idle for years)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@functools.cache
def _available_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone_problems(name: str) -> list[str]:
    """Why ``name`` is not an IANA timezone, if it is not."""
    if name in _available_timezones():
        return []
    return [f"timezone: {name!r} is not an IANA timezone (such as UTC or Europe/Paris)"]


def cron_problems(expression: str, timezone: str) -> list[str]:
    """Why a cron timer's expression or timezone cannot be used, if they cannot."""
    problems = timezone_problems(timezone)
    try:
        _cron_expression(expression)
    except ValueError as error:
        problems.append(f"expression: {expression!r}: {error}")
    return problems


def fire_at_problems(fire_at: str, timezone: str) -> list[str]:
    """Why a date timer's ``fire_at`` or timezone cannot be used, if they cannot."""
    problems = timezone_problems(timezone)
    if problems:
        return problems
    try:
        _instant(fire_at, timezone)
    except ValueError as error:
        problems.append(f"fire_at: {fire_at!r} is not an ISO 8601 date and time: {error}")
    return problems


def _cron_expression(expression: str) -> str:
    """The 5-field expression; a 6-field one is accepted only with seconds ``0`` first."""
    fields = expression.split()
    if len(fields) == 6:
        if fields[0] != "0":
            raise ValueError("a 6-field expression must have seconds 0 (use an interval timer)")
        fields = fields[1:]
    if len(fields) != 5:
        raise ValueError(f"needs 5 fields (minute hour day month weekday), got {len(fields)}")
    text = " ".join(fields)
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as error:
        raise ValueError(str(error)) from None
    return text


def _instant(fire_at: str, timezone: str) -> datetime:
    moment = datetime.fromisoformat(fire_at)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class Schedule:
    """The ticks of one timer rule."""

    kind: str
    interval_s: int = 0
    expression: str = ""
    timezone: str = "UTC"
    fire_at: datetime | None = None

    def after(self, moment: datetime) -> Iterator[datetime]:
        """The ticks strictly after ``moment``, in order, as UTC datetimes."""
        if self.kind == "interval":
            elapsed = (moment - _EPOCH) // timedelta(seconds=self.interval_s)
            tick = _EPOCH + timedelta(seconds=self.interval_s * (elapsed + 1))
            step = timedelta(seconds=self.interval_s)
            while True:
                yield tick
                tick += step
        elif self.kind == "cron":
            zone = zoneinfo.ZoneInfo(self.timezone)
            for local in CronSim(self.expression, moment.astimezone(zone)):
                yield local.astimezone(UTC)
        elif self.fire_at is not None and self.fire_at > moment:
            yield self.fire_at

    def next_after(self, moment: datetime) -> datetime | None:
        """The first tick after ``moment`` (None: the timer never fires again)."""
        return next(self.after(moment), None)

    def due(self, last: datetime, now: datetime) -> list[datetime]:
        """The ticks in ``(last, now]`` (at most :data:`MAX_COUNTED_TICKS`), in order."""
        ticks = []
        for tick in islice(self.after(last), MAX_COUNTED_TICKS):
            if tick > now:
                break
            ticks.append(tick)
        return ticks

    def local(self, moment: datetime) -> datetime:
        """``moment`` in the schedule's timezone."""
        return moment.astimezone(zoneinfo.ZoneInfo(self.timezone))


def schedule_of(trigger_type: str, params: Mapping[str, Any]) -> Schedule:
    """The schedule of a timer rule's validated trigger params."""
    timezone = str(params.get("timezone", "UTC"))
    if trigger_type == "core.intervaltimer":
        seconds = int(params["interval"]) * UNIT_SECONDS[params.get("unit", "seconds")]
        return Schedule("interval", interval_s=seconds)
    if trigger_type == "core.crontimer":
        expression = _cron_expression(params["expression"])
        return Schedule("cron", expression=expression, timezone=timezone)
    return Schedule("date", timezone=timezone, fire_at=_instant(params["fire_at"], timezone))
