"""When a message may go: windows, quiet hours, closed days, holidays and expiry. Pure: no clock, no store.

The planner and the dispatcher both ask this module, so a plan and a send never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

import holidays as holidays_lib

_DAYS = {
    # Dutch
    "ma": 0,
    "di": 1,
    "wo": 2,
    "do": 3,
    "vr": 4,
    "za": 5,
    "zo": 6,
    "maandag": 0,
    "dinsdag": 1,
    "woensdag": 2,
    "donderdag": 3,
    "vrijdag": 4,
    "zaterdag": 5,
    "zondag": 6,
    # English
    "mon": 0,
    "tue": 1,
    "wed": 2,
    "thu": 3,
    "fri": 4,
    "sat": 5,
    "sun": 6,
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
}
DAY_NAMES_NL = ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag")
_TIME_RANGE = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
WINDOW_EXAMPLE = "write it like `ma-vr 18:00-20:00`, `za 10:00-12:00` or `mon,wed 09:00-11:00`"


@dataclass(frozen=True)
class Window:
    """Wall-clock hours on some days of the week (0 = Monday)."""

    days: frozenset[int]
    start: time
    end: time

    def __str__(self) -> str:
        names = ",".join(DAY_NAMES_NL[d][:2] for d in sorted(self.days))
        return f"{names} {self.start:%H:%M}-{self.end:%H:%M}"


def _parse_day(token: str) -> int:
    day = _DAYS.get(token.strip().lower().rstrip("."))
    if day is None:
        raise ValueError(f"`{token.strip()}` is not a day name (use ma di wo do vr za zo, or mon..sun)")
    return day


def _parse_days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ValueError("an empty day between commas")
        if "-" in item:
            a, b = item.split("-", 1)
            first, last = _parse_day(a), _parse_day(b)
            d = first
            while True:
                days.add(d)
                if d == last:
                    break
                d = (d + 1) % 7
        else:
            days.add(_parse_day(item))
    return frozenset(days)


def _parse_time(h: str, m: str) -> time:
    hour, minute = int(h), int(m)
    if hour == 24 and minute == 0:
        return time.max
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise ValueError(f"{h}:{m} is not a time of day")
    return time(hour, minute)


def parse_window(text: str) -> Window:
    """Parse one window such as `ma-vr 18:00-20:00`; raise ValueError that says how to write it."""
    text = " ".join(str(text).split())
    if not text:
        raise ValueError(f"the window is empty: {WINDOW_EXAMPLE}")
    parts = text.rsplit(" ", 1)
    days_text, hours_text = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
    m = _TIME_RANGE.match(hours_text)
    if not m:
        # "ma-vr 18:00 - 20:00": spaces around the dash
        m2 = re.match(r"^(.*?)\s*(\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2})$", text)
        if not m2:
            raise ValueError(f"`{text}` has no hours like 18:00-20:00: {WINDOW_EXAMPLE}")
        days_text, hours_text = m2.group(1), m2.group(2)
        m = _TIME_RANGE.match(hours_text)
        assert m
    try:
        start, end = _parse_time(m.group(1), m.group(2)), _parse_time(m.group(3), m.group(4))
        days = _parse_days(days_text) if days_text.strip() else frozenset(range(7))
    except ValueError as exc:
        raise ValueError(f"`{text}`: {exc}: {WINDOW_EXAMPLE}") from None
    if end <= start:
        raise ValueError(
            f"`{text}` ends before it starts: a window cannot run past midnight; write two windows instead"
        )
    return Window(days, start, end)


def parse_windows(spec: str | Sequence[str] | None) -> tuple[Window, ...]:
    """Parse a window setting: one string (windows separated by `;`) or a list of strings."""
    if spec is None or spec == "" or spec == []:
        return ()
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[Window] = []
    for item in items:
        for piece in str(item).split(";"):
            if piece.strip():
                out.append(parse_window(piece))
    return tuple(out)


@dataclass(frozen=True)
class Duration:
    """A span such as `2 days`, `12 hours` or `3 working days`."""

    amount: int
    unit: str  # "days" | "hours" | "working_days"

    def after(self, start: datetime, policy: Policy) -> datetime:
        if self.unit == "hours":
            return start + timedelta(hours=self.amount)
        local = start.astimezone(policy.zone).date()
        if self.unit == "days":
            end_day = local + timedelta(days=self.amount)
        else:
            end_day = policy.add_working_days(local, self.amount)
        # the span ends at the end of that day
        return policy.local_midnight(end_day + timedelta(days=1))


_DURATION = re.compile(r"^\s*(\d+)\s*([a-z ]+?)\s*$")
_UNITS = {
    "day": "days",
    "days": "days",
    "dag": "days",
    "dagen": "days",
    "hour": "hours",
    "hours": "hours",
    "uur": "hours",
    "uren": "hours",
    "working day": "working_days",
    "working days": "working_days",
    "werkdag": "working_days",
    "werkdagen": "working_days",
}


def parse_duration(text: str) -> Duration:
    m = _DURATION.match(str(text).lower())
    unit = _UNITS.get(" ".join(m.group(2).split())) if m else None
    if not m or unit is None:
        raise ValueError(
            f"`{text}` is not a duration: write for example `2 days`, `12 hours` or `3 working days` "
            "(Dutch: `2 dagen`, `12 uur`, `3 werkdagen`)"
        )
    return Duration(int(m.group(1)), unit)


@dataclass
class Policy:
    """The organisation's rules for when any message may go."""

    zone: ZoneInfo
    hours: tuple[Window, ...]
    closed_weekdays: frozenset[int] = frozenset({6})
    holiday_country: str = "NL"
    closed_dates: frozenset[date] = frozenset()
    _holiday_cache: dict[int, dict[date, str]] = field(default_factory=dict, repr=False)

    @cached_property
    def _holidays(self) -> holidays_lib.HolidayBase | None:
        if not self.holiday_country:
            return None
        return holidays_lib.country_holidays(self.holiday_country)

    def holiday(self, day: date) -> str | None:
        cal = self._holidays
        return cal.get(day) if cal is not None else None

    def closed_reason(self, day: date) -> str | None:
        """Why no message may go on `day`, or None when the day is open."""
        if day.weekday() in self.closed_weekdays:
            return f"{DAY_NAMES_NL[day.weekday()]} is a closed day"
        name = self.holiday(day)
        if name:
            return f"{day.isoformat()} is a public holiday ({name})"
        if day in self.closed_dates:
            return f"{day.isoformat()} is a closed date in config.yaml"
        return None

    def add_working_days(self, day: date, n: int) -> date:
        d = day
        left = n
        while left > 0:
            d += timedelta(days=1)
            if self.closed_reason(d) is None and d.weekday() < 5:
                left -= 1
        return d

    def local_midnight(self, day: date) -> datetime:
        return to_local(day, time(0, 0), self.zone)

    def intervals(self, day: date, extra: Iterable[tuple[Window, ...]] = ()) -> list[tuple[time, time]]:
        """The allowed wall-clock intervals on `day`: organisation hours ∩ each extra window set."""
        if self.closed_reason(day) is not None:
            return []
        current = _day_intervals(self.hours, day.weekday()) if self.hours else [(time(0), time.max)]
        for windows in extra:
            if windows:
                current = _intersect(current, _day_intervals(windows, day.weekday()))
        return current


def open_weekdays(policy: Policy, windows: Iterable[tuple[Window, ...]] = ()) -> list[int]:
    """The weekdays (0 = Monday) on which the windows leave some time inside the organisation's hours."""
    out = []
    for weekday in range(7):
        if weekday in policy.closed_weekdays:
            continue
        current = _day_intervals(policy.hours, weekday) if policy.hours else [(time(0), time.max)]
        for w in windows:
            if w:
                current = _intersect(current, _day_intervals(w, weekday))
        if current:
            out.append(weekday)
    return out


def _day_intervals(windows: Sequence[Window], weekday: int) -> list[tuple[time, time]]:
    spans = sorted((w.start, w.end) for w in windows if weekday in w.days)
    merged: list[tuple[time, time]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def _intersect(a: list[tuple[time, time]], b: list[tuple[time, time]]) -> list[tuple[time, time]]:
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            s, e = max(s1, s2), min(e1, e2)
            if s < e:
                out.append((s, e))
    return sorted(out)


def to_local(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The aware moment of wall-clock `wall` on `day`; a time skipped by DST moves to after the gap."""
    naive = datetime.combine(day, wall)
    # fold=0 reads a time inside the spring-forward gap with the offset from before the switch,
    # which lands it after the gap (02:30 -> 03:30); an autumn time that occurs twice is the first.
    return naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)


@dataclass(frozen=True)
class SlotResult:
    at: datetime | None
    reason: str = ""  # why there is no slot (or why the slot is later than asked)


def next_slot(
    earliest: datetime,
    latest: datetime,
    policy: Policy,
    windows: Iterable[tuple[Window, ...]] = (),
    *,
    blocked_until: date | None = None,
    max_days: int = 400,
) -> SlotResult:
    """The first allowed moment at or after `earliest` and before `latest`, or why there is none."""
    windows = [w for w in windows if w]
    zone = policy.zone
    day = earliest.astimezone(zone).date()
    if blocked_until is not None and day <= blocked_until:
        day = blocked_until + timedelta(days=1)
    first_reason = ""
    for _ in range(max_days):
        if to_local(day, time(0), zone) >= latest:
            break
        spans = policy.intervals(day, windows)
        if not spans and not first_reason:
            first_reason = policy.closed_reason(day) or "no window on that day"
        # compare real moments, not wall times: on DST days a wall time can be skipped or repeated
        for start, end in _moments(day, spans, zone):
            candidate = max(start, earliest)
            if candidate >= end:
                continue
            if candidate >= latest:
                return SlotResult(None, _no_slot_reason(first_reason, blocked_until))
            return SlotResult(candidate, first_reason)
        day += timedelta(days=1)
    return SlotResult(None, _no_slot_reason(first_reason, blocked_until))


def _moments(day: date, spans: list[tuple[time, time]], zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """Wall-clock spans on `day` as real moments; a span inside a spring-forward gap lands after it."""
    out = []
    for s, e in spans:
        start = to_local(day, s, zone)
        end = to_local(day, e, zone) if e != time.max else to_local(day + timedelta(days=1), time(0), zone)
        if end <= start:  # the whole span fell into the gap: it moves with its start
            end = start + (datetime.combine(day, e if e != time.max else time(23, 59)) - datetime.combine(day, s))
        out.append((start, end))
    return out


def _no_slot_reason(first_reason: str, blocked_until: date | None) -> str:
    if blocked_until is not None:
        return f"paused until {blocked_until.isoformat()} and no allowed time before it expires"
    if first_reason:
        return f"no allowed time before it expires ({first_reason})"
    return "no allowed time before it expires (the windows do not overlap the allowed hours)"


def allowed_now(now: datetime, policy: Policy, windows: Iterable[tuple[Window, ...]] = ()) -> bool:
    """True when a message may be handed to a channel at `now`."""
    day = now.astimezone(policy.zone).date()
    spans = policy.intervals(day, [w for w in windows if w])
    return any(start <= now < end for start, end in _moments(day, spans, policy.zone))


def policy_from_config(config) -> Policy:  # config: nudger.config.Config
    p = config.pacing
    closed = frozenset(_parse_day(d) for d in p.closed_days)
    return Policy(
        zone=config.zone,
        hours=parse_windows(p.hours),
        closed_weekdays=closed,
        holiday_country=p.holidays,
        closed_dates=frozenset(p.closed_dates),
    )
