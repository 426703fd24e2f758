"""Unit tests for nudger/pacing.py: windows, durations, closed days, holidays, DST and expiry."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from nudger.pacing import (
    Duration,
    Policy,
    allowed_now,
    next_slot,
    parse_duration,
    parse_window,
    parse_windows,
    to_local,
)

AMS = ZoneInfo("Europe/Amsterdam")
FAR = datetime(2030, 1, 1, tzinfo=AMS)


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=AMS)


@pytest.fixture
def policy() -> Policy:
    """The shipped defaults: 08:00-20:00, closed on Sunday, Dutch public holidays."""
    return Policy(zone=AMS, hours=parse_windows("08:00-20:00"))


# --- parse_window --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "days", "start", "end"),
    [
        ("ma-vr 18:00-20:00", {0, 1, 2, 3, 4}, time(18), time(20)),
        ("za 10:00-12:00", {5}, time(10), time(12)),
        ("mon,wed 09:00-11:00", {0, 2}, time(9), time(11)),
        ("vr-ma 09:00-17:00", {4, 5, 6, 0}, time(9), time(17)),
        ("maandag,donderdag 9:30-11:00", {0, 3}, time(9, 30), time(11)),
        ("Mon-Fri 08:00-12:00", {0, 1, 2, 3, 4}, time(8), time(12)),
        ("ma-vr 18:00 - 20:00", {0, 1, 2, 3, 4}, time(18), time(20)),
        ("zo 20:00-24:00", {6}, time(20), time.max),
        ("10:00-12:00", set(range(7)), time(10), time(12)),
    ],
)
def test_parse_window(text, days, start, end):
    w = parse_window(text)
    assert w.days == frozenset(days)
    assert (w.start, w.end) == (start, end)


def test_window_prints_back_in_dutch():
    assert str(parse_window("mon-fri 18:00-20:00")) == "ma,di,wo,do,vr 18:00-20:00"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("ma-vr", "has no hours like 18:00-20:00"),
        ("ma-xx 10:00-12:00", "`xx` is not a day name"),
        ("ma 20:00-18:00", "ends before it starts"),
        ("ma 22:00-02:00", "cannot run past midnight"),
        ("ma 25:00-26:00", "is not a time of day"),
        ("ma,,di 10:00-12:00", "empty day"),
    ],
)
def test_bad_window_says_what_is_wrong_and_how_to_write_it(text, says):
    with pytest.raises(ValueError) as info:
        parse_window(text)
    message = str(info.value)
    assert says in message
    assert f"`{' '.join(text.split())}`" in message or not text  # it quotes what was written
    assert "18:00-20:00" in message or "write two windows" in message  # and says how to write it


def test_parse_windows_several_in_one_string_or_a_list():
    assert len(parse_windows("ma-vr 18:00-20:00; za 10:00-12:00")) == 2
    assert len(parse_windows(["ma-vr 18:00-20:00", "za 10:00-12:00"])) == 2
    assert parse_windows(None) == ()
    assert parse_windows("") == ()


# --- parse_duration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2 days", Duration(2, "days")),
        ("1 day", Duration(1, "days")),
        ("2 dagen", Duration(2, "days")),
        ("12 hours", Duration(12, "hours")),
        ("12 uur", Duration(12, "hours")),
        ("3 working days", Duration(3, "working_days")),
        ("3 werkdagen", Duration(3, "working_days")),
        ("  10 Working  Days ", Duration(10, "working_days")),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["soon", "2 weeks", "days", "-1 days", "2.5 days"])
def test_bad_duration_shows_an_example(text):
    with pytest.raises(ValueError, match="3 working days"):
        parse_duration(text)


# --- next_slot -----------------------------------------------------------------------------------


def test_planned_just_before_the_end_of_the_hours_goes_then(policy):
    # Thursday 26 November 2026, 19:58; the hours end at 20:00
    slot = next_slot(at(2026, 11, 26, 19, 58), FAR, policy)
    assert slot.at == at(2026, 11, 26, 19, 58)
    assert allowed_now(at(2026, 11, 26, 19, 58), policy)


def test_claimed_after_the_hours_moves_to_the_next_morning(policy):
    assert not allowed_now(at(2026, 11, 26, 20, 1), policy)
    assert not allowed_now(at(2026, 11, 26, 20, 0), policy)  # the end is exclusive
    slot = next_slot(at(2026, 11, 26, 20, 1), FAR, policy)
    assert slot.at == at(2026, 11, 27, 8, 0)


def test_early_morning_waits_for_the_hours(policy):
    assert next_slot(at(2026, 11, 26, 6, 30), FAR, policy).at == at(2026, 11, 26, 8, 0)


def test_sunday_is_skipped(policy):
    # Saturday evening after the hours: Sunday is closed, so Monday 08:00
    slot = next_slot(at(2026, 11, 28, 20, 30), FAR, policy)
    assert slot.at == at(2026, 11, 30, 8, 0)
    assert "zondag" in slot.reason
    assert not allowed_now(at(2026, 11, 29, 12, 0), policy)


def test_easter_monday_is_skipped(policy):
    # Easter 2027 is 28 March (also the spring DST change): Saturday 27 March after the hours,
    # Sunday closed, Monday 29 March is Easter Monday, so Tuesday 08:00
    assert "public holiday" in (policy.closed_reason(date(2027, 3, 29)) or "")
    slot = next_slot(at(2027, 3, 27, 20, 30), FAR, policy)
    assert slot.at == at(2027, 3, 30, 8, 0)
    assert not allowed_now(at(2027, 3, 29, 10, 0), policy)
    # and in 2026 Easter Monday is 6 April
    assert next_slot(at(2026, 4, 6, 9, 0), FAR, policy).at == at(2026, 4, 7, 8, 0)


def test_christmas_is_skipped(policy):
    # Christmas Eve after the hours: 25 and 26 December are holidays, 27 is a Sunday
    slot = next_slot(at(2026, 12, 24, 20, 30), FAR, policy)
    assert slot.at == at(2026, 12, 28, 8, 0)
    assert "2026-12-25" in slot.reason


def test_new_years_day_is_a_holiday(policy):
    assert policy.holiday(date(2027, 1, 1))
    assert policy.holiday(date(2027, 1, 4)) is None
    assert not allowed_now(at(2027, 1, 1, 12, 0), policy)


def test_kings_day_is_a_holiday(policy):
    assert not allowed_now(at(2027, 4, 27, 12, 0), policy)


def test_closed_dates_from_config_are_skipped():
    policy = Policy(zone=AMS, hours=parse_windows("08:00-20:00"), closed_dates=frozenset({date(2026, 12, 24)}))
    slot = next_slot(at(2026, 12, 24, 9, 0), FAR, policy)
    assert slot.at == at(2026, 12, 28, 8, 0)
    assert "closed date" in slot.reason


def test_tenant_window_narrows_the_hours(policy):
    windows = [parse_windows("ma-vr 18:00-20:00")]
    slot = next_slot(at(2026, 11, 26, 10, 0), FAR, policy, windows)
    assert slot.at == at(2026, 11, 26, 18, 0)
    assert not allowed_now(at(2026, 11, 26, 17, 0), policy, windows)
    assert allowed_now(at(2026, 11, 26, 18, 30), policy, windows)
    # Friday evening after the window: the weekend has no window, Monday 18:00
    assert next_slot(at(2026, 11, 27, 20, 5), FAR, policy, windows).at == at(2026, 11, 30, 18, 0)


def test_rule_and_tenant_windows_must_both_allow(policy):
    windows = [parse_windows("10:00-12:00"), parse_windows("ma-vr 11:00-19:00")]
    assert next_slot(at(2026, 11, 26, 9, 0), FAR, policy, windows).at == at(2026, 11, 26, 11, 0)


def test_windows_that_do_not_overlap_give_no_slot(policy):
    windows = [parse_windows("10:00-12:00"), parse_windows("ma-vr 18:00-20:00")]
    slot = next_slot(at(2026, 11, 26, 9, 0), at(2026, 12, 10), policy, windows)
    assert slot.at is None
    assert slot.reason


def test_window_outside_the_organisation_hours_is_cut_off(policy):
    windows = [parse_windows("ma-vr 19:00-22:00")]
    assert next_slot(at(2026, 11, 26, 20, 30), FAR, policy, windows).at == at(2026, 11, 27, 19, 0)


def test_pause_blocks_until_the_day_after(policy):
    slot = next_slot(at(2026, 11, 30, 10, 0), FAR, policy, blocked_until=date(2026, 12, 2))
    assert slot.at == at(2026, 12, 3, 8, 0)


def test_pause_in_the_past_does_not_matter(policy):
    slot = next_slot(at(2026, 11, 30, 10, 0), FAR, policy, blocked_until=date(2026, 11, 1))
    assert slot.at == at(2026, 11, 30, 10, 0)


def test_pause_that_outlasts_the_expiry_gives_a_reason(policy):
    slot = next_slot(at(2026, 11, 30, 10, 0), at(2026, 12, 2), policy, blocked_until=date(2026, 12, 5))
    assert slot.at is None
    assert "paused until 2026-12-05" in slot.reason


def test_no_slot_before_expiry_says_why(policy):
    # Saturday after the hours, expiring at the end of Sunday
    slot = next_slot(at(2026, 11, 28, 20, 30), at(2026, 11, 30, 0, 0), policy)
    assert slot.at is None
    assert "no allowed time before it expires" in slot.reason
    assert "zondag is a closed day" in slot.reason


def test_slot_at_expiry_is_not_allowed(policy):
    # expires at 08:00 Friday, exactly when the hours open: that moment is too late
    assert next_slot(at(2026, 11, 26, 20, 30), at(2026, 11, 27, 8, 0), policy).at is None
    assert next_slot(at(2026, 11, 26, 20, 30), at(2026, 11, 27, 8, 1), policy).at == at(2026, 11, 27, 8, 0)


# --- daylight saving time ------------------------------------------------------------------------


@pytest.fixture
def open_every_day() -> Policy:
    return Policy(zone=AMS, hours=parse_windows("08:00-20:00"), closed_weekdays=frozenset(), holiday_country="")


def test_spring_forward_day_opens_at_0800_summer_time(open_every_day):
    # 28 March 2027: clocks go from 02:00 to 03:00; 08:00 local is 06:00 UTC
    slot = next_slot(at(2027, 3, 27, 21, 0), FAR, open_every_day)
    assert slot.at is not None
    assert slot.at.astimezone(AMS).replace(tzinfo=None) == datetime(2027, 3, 28, 8, 0)
    assert slot.at.astimezone(UTC) == datetime(2027, 3, 28, 6, 0, tzinfo=UTC)


def test_fall_back_day_opens_at_0800_winter_time(open_every_day):
    # 25 October 2026: clocks go from 03:00 back to 02:00; 08:00 local is 07:00 UTC
    slot = next_slot(at(2026, 10, 24, 21, 0), FAR, open_every_day)
    assert slot.at is not None
    assert slot.at.astimezone(UTC) == datetime(2026, 10, 25, 7, 0, tzinfo=UTC)


def test_a_wall_time_inside_the_spring_gap_moves_after_it():
    moment = to_local(date(2027, 3, 28), time(2, 30), AMS)
    assert moment.astimezone(UTC) == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
    assert moment.astimezone(AMS).hour == 3


def test_midnight_on_dst_days():
    assert to_local(date(2027, 3, 28), time(0), AMS).utcoffset() == timedelta(hours=1)
    assert to_local(date(2027, 3, 29), time(0), AMS).utcoffset() == timedelta(hours=2)
    assert to_local(date(2026, 10, 26), time(0), AMS).utcoffset() == timedelta(hours=1)


def test_window_starting_inside_the_spring_gap_opens_after_the_gap():
    # 28 March 2027: 02:00-03:00 does not exist; a 02:00-04:00 window opens at 03:00 summer time
    policy = Policy(zone=AMS, hours=(), closed_weekdays=frozenset(), holiday_country="")
    windows = [parse_windows("02:00-04:00")]
    slot = next_slot(at(2027, 3, 27, 23, 0), FAR, policy, windows)
    assert slot.at is not None
    assert slot.at.astimezone(UTC) == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    assert allowed_now(slot.at, policy, windows)  # the planned moment is one the dispatcher accepts


# --- durations and working days -------------------------------------------------------------------


def test_days_run_to_the_end_of_the_last_day(policy):
    assert parse_duration("2 days").after(at(2026, 11, 26, 10, 0), policy) == at(2026, 11, 29, 0, 0)


def test_hours_are_real_hours(policy):
    assert parse_duration("12 hours").after(at(2026, 11, 26, 10, 0), policy) == at(2026, 11, 26, 22, 0)


def test_days_over_the_autumn_dst_change_end_at_local_midnight(policy):
    end = parse_duration("2 days").after(at(2026, 10, 24, 10, 0), policy)
    assert end == at(2026, 10, 27, 0, 0)
    assert end.utcoffset() == timedelta(hours=1)


def test_three_working_days_over_christmas(policy):
    # from Thursday 24 December 2026: 25 and 26 are holidays, 27 Sunday; 28, 29, 30 are the working days
    assert policy.add_working_days(date(2026, 12, 24), 3) == date(2026, 12, 30)
    assert parse_duration("3 working days").after(at(2026, 12, 24, 10, 0), policy) == at(2026, 12, 31, 0, 0)


def test_saturday_is_not_a_working_day_even_when_open(policy):
    # Friday + 1 working day is Monday, although Saturday is not a closed day
    assert policy.add_working_days(date(2026, 11, 27), 1) == date(2026, 11, 30)


def test_working_days_skip_new_year(policy):
    # Wednesday 30 December 2026 + 2 working days: 31 December, (1 January holiday), 4 January
    assert policy.add_working_days(date(2026, 12, 30), 2) == date(2027, 1, 4)
