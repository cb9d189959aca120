"""Budget periods: calendar days, ISO weeks (Monday first) and months in the tenant's time zone.

A period is named by its start (local midnight) so counters, alerts and reports agree on where it
begins and ends whatever the server's zone; the next period starts at the next local midnight, so
a daylight-saving change makes a day 23 or 25 hours long, as the tenant's calendar says.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cached_property, lru_cache

PERIODS = ("day", "week", "month")


@dataclass(frozen=True)
class Window:
    period: str
    start: datetime  # aware, in the tenant's zone
    end: datetime  # exclusive

    @cached_property
    def label(self) -> str:
        """A compact, sortable name for counters: 20261123 (day), 2026W48 (week), 202611 (month)."""
        if self.period == "day":
            return self.start.strftime("%Y%m%d")
        if self.period == "week":
            year, week, _ = self.start.isocalendar()
            return f"{year}W{week:02d}"
        return self.start.strftime("%Y%m")

    def seconds_left(self, now: datetime) -> float:
        return max(0.0, (self.end - now).total_seconds())


@lru_cache(maxsize=256)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def _midnight(day: date, zone: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


# The last window computed per (period, zone): every call of a budgeted key asks for the one it is in.
_recent: dict[tuple[str, str], Window] = {}


def window(period: str, tz_name: str, at: datetime) -> Window:
    """The period of kind `period` that contains the aware instant `at`, in zone `tz_name`."""
    recent = _recent.get((period, tz_name))
    if recent is not None and at.tzinfo is not None and recent.start <= at < recent.end:
        return recent
    found = _window(period, tz_name, at)
    if len(_recent) > 1000:
        _recent.clear()
    _recent[(period, tz_name)] = found
    return found


def _window(period: str, tz_name: str, at: datetime) -> Window:
    zone = _zone(tz_name)
    local = at.astimezone(zone).date()
    if period == "day":
        first, following = local, local + timedelta(days=1)
    elif period == "week":
        first = local - timedelta(days=local.weekday())
        following = first + timedelta(days=7)
    elif period == "month":
        first = local.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown budget period {period!r}")
    return Window(period=period, start=_midnight(first, zone), end=_midnight(following, zone))
