"""Unit tests for nudger/planner.py: occurrences, idempotency keys, expiry, slots and skips. No clock, no store."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from nudger.config import load_config
from nudger.facts import Facts, Payment, TenantRecord
from nudger.pacing import Policy, parse_windows
from nudger.planner import EventFact, PlanContext, PlannedNudge, apply_caps, plan
from nudger.rulebook import Rulebook, load_rulebook

AMS = ZoneInfo("Europe/Amsterdam")
RENT = Decimal("600")

OFFICERS = """\
fatima:
  name: Fatima el Amrani
  phone: "+31 20 555 0101"
  backup: jan
jan:
  name: Jan de Boer
  backup: fatima
sanne:
  name: Sanne Visser
  absent: [2026-11-23 .. 2026-12-04]
  backup: fatima
"""

RULES = """\
- id: rent-reminder
  kind: reminder
  trigger: {before: rent_due, days: 2}
  when: late_count_6m >= 2 and arrears == 0
  channels: [sms]
  text: "Hoi {{ tenant.first_name }}, op {{ rent_due | date }} is de huur aan de beurt. Lukt dat?"
- id: installment-reminder
  kind: reminder
  trigger: {before: installment_due, days: 1}
  channels: [sms]
  text: "Hoi {{ tenant.first_name }}, morgen is de termijn van {{ installment | money }}. Lukt dat?"
- id: streak
  kind: appreciation
  trigger: {on: on_time_streak, count: 3}
  channels: [sms]
  text: "Hoi {{ tenant.first_name }}, al {{ event.count }} maanden op tijd. Dank u wel."
- id: december-call
  kind: task
  trigger: {yearly: "11-15"}
  when: late_in(1, today.year)
  channels: [call]
  expires: 10 working days
  text: "Bel {{ tenant.name }}: de huur van januari was dit jaar laat."
- id: campaign
  kind: campaign
  trigger: {cron: "0 10 * * *"}
  channels: [sms]
  expires: 12 hours
  text: "Hoi {{ tenant.first_name }}, heeft u vragen over de huur? Bel me gerust."
- id: one-off
  kind: campaign
  trigger: {at: "2026-12-01T10:00"}
  channels: [sms]
  text: "Hoi {{ tenant.first_name }}, heeft u vragen over de huur? Bel me gerust."
- id: arrears-check-in
  kind: check-in
  trigger: {after: arrears_since, days: 14}
  channels: [sms]
  text: "Hoi {{ tenant.first_name }}, hoe gaat het? Zullen we even bellen?"
"""


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Rulebook:
    root = tmp_path_factory.mktemp("planner")
    (root / "config.yaml").write_text("timezone: Europe/Amsterdam\nrules: rules\n", encoding="utf-8")
    (root / "rules").mkdir()
    (root / "rules" / "officers.yaml").write_text(OFFICERS, encoding="utf-8")
    (root / "rules" / "rules.yaml").write_text(RULES, encoding="utf-8")
    return load_rulebook(load_config(Path(root / "config.yaml")))


POLICY = Policy(zone=AMS, hours=parse_windows("08:00-20:00"))
EXPIRY = {
    "reminder": "",
    "appreciation": "7 days",
    "check-in": "3 days",
    "campaign": "7 days",
    "task": "3 working days",
}


def ctx(book: Rulebook, now: datetime, days: int = 3, **kw) -> PlanContext:
    return PlanContext(book, POLICY, EXPIRY, "nl", now, days, **kw)


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=AMS)


def record(tid: str = "T-1", late: set[int] = frozenset({1, 10, 11}), **kw) -> TenantRecord:
    """Rent 600 due on the 1st, paid every month of 2026 up to November; late in the months in `late`."""
    payments = [Payment(date(2026, m, 5 if m in late else 1), RENT, (2026, m)) for m in range(1, 12)]
    base = {
        "tenant_id": tid,
        "name": "Anna de Vries",
        "first_name": "Anna",
        "officer": "fatima",
        "rent": RENT,
        "due_day": 1,
        "move_in": date(2020, 1, 1),
        "preferred_channels": ("sms",),
        "payments": payments,
    }
    base.update(kw)
    return TenantRecord(**base)


def run(
    book: Rulebook,
    now: datetime,
    rules: list[str],
    rec: TenantRecord | None = None,
    events: list[EventFact] = (),
    days: int = 3,
    explain: bool = False,
    **kw,
) -> list[PlannedNudge]:
    c = ctx(book, now, days, **kw)
    rec = rec or record()
    facts = {rec.tenant_id: Facts(rec, c.today)}
    return plan(facts, {rec.tenant_id: list(events)}, c, rule_ids=rules, explain=explain)


def keys(nudges: list[PlannedNudge]) -> list[str]:
    return [n.key for n in nudges]


# --- before: rent_due ---------------------------------------------------------------------------------


def test_rent_reminder_two_days_before_rent_due(book):
    # Friday 27 November 2026; rent is due Tuesday 1 December; two days before is Sunday 29 (closed)
    nudges = run(book, at(2026, 11, 27, 9), ["rent-reminder"])
    assert keys(nudges) == ["rent-reminder:T-1:2026-12-01"]
    n = nudges[0]
    assert (n.status, n.rule_id, n.tenant_id, n.kind, n.channel, n.signer) == (
        "planned",
        "rent-reminder",
        "T-1",
        "reminder",
        "sms",
        "fatima",
    )
    assert n.send_at == at(2026, 11, 30, 8, 0)  # Sunday skipped
    assert "zondag" in n.reason


def test_reminder_expires_when_the_day_it_reminds_of_begins(book):
    n = run(book, at(2026, 11, 27, 9), ["rent-reminder"])[0]
    assert n.expires_at == at(2026, 12, 1, 0, 0)


def test_reminder_is_not_planned_on_its_own_day(book):
    assert run(book, at(2026, 12, 1, 7, 0), ["rent-reminder"], days=1) == []


def test_reminder_planned_late_goes_now_not_in_the_past(book):
    nudges = run(book, at(2026, 11, 30, 15, 30), ["rent-reminder"], days=1)
    assert keys(nudges) == ["rent-reminder:T-1:2026-12-01"]
    assert nudges[0].send_at == at(2026, 11, 30, 15, 30)


def test_planning_twice_gives_the_same_keys(book):
    first = run(book, at(2026, 11, 27, 9), ["rent-reminder", "campaign", "one-off"])
    again = run(book, at(2026, 11, 27, 9), ["rent-reminder", "campaign", "one-off"])
    later = run(book, at(2026, 11, 29, 13), ["rent-reminder"], days=1)
    assert keys(first) == keys(again)
    assert len(set(keys(first))) == len(first)
    assert "rent-reminder:T-1:2026-12-01" in keys(later)


def test_rent_reminder_condition_must_hold(book):
    # late only once in the last six months
    rec = record(late={1, 11})
    assert run(book, at(2026, 11, 27, 9), ["rent-reminder"], rec) == []
    explained = run(book, at(2026, 11, 27, 9), ["rent-reminder"], rec, explain=True)
    assert [(n.status, n.reason) for n in explained] == [("skipped", "the condition does not hold")]


def test_no_rent_reminder_while_in_arrears(book):
    rec = record(arrears=Decimal("100"), arrears_since=date(2026, 11, 2))
    assert run(book, at(2026, 11, 27, 9), ["rent-reminder"], rec) == []


def test_paused_tenant_gets_expired_when_the_pause_outlasts_expiry(book):
    rec = record(pause_until=date(2026, 12, 5))
    nudges = run(book, at(2026, 11, 27, 9), ["rent-reminder"], rec)
    assert len(nudges) == 1
    n = nudges[0]
    assert n.status == "expired"
    assert n.send_at is None
    assert "paused until 2026-12-05" in n.reason


def test_pause_that_ends_in_time_moves_the_slot(book):
    rec = record(pause_until=date(2026, 11, 29))
    n = run(book, at(2026, 11, 27, 9), ["rent-reminder"], rec)[0]
    assert (n.status, n.send_at) == ("planned", at(2026, 11, 30, 8, 0))


def test_tenant_window_is_respected(book):
    rec = record(window=("ma-vr 18:00-20:00",))
    n = run(book, at(2026, 11, 27, 9), ["rent-reminder"], rec)[0]
    assert n.send_at == at(2026, 11, 30, 18, 0)


# --- arrangements --------------------------------------------------------------------------------


def arrangement(**kw) -> TenantRecord:
    return record(arrangement_amount=Decimal("100"), arrangement_day=15, arrangement_until=date(2027, 6, 30), **kw)


def test_reminders_skip_during_an_arrangement(book):
    rec = arrangement()
    assert run(book, at(2026, 11, 27, 9), ["rent-reminder"], rec) == []
    explained = run(book, at(2026, 11, 27, 9), ["rent-reminder"], rec, explain=True)
    assert [(n.key, n.status, n.reason) for n in explained] == [
        ("rent-reminder:T-1:2026-12-01", "skipped", "a payment arrangement is active")
    ]


def test_installment_reminder_goes_during_an_arrangement(book):
    nudges = run(book, at(2026, 12, 12, 9), ["installment-reminder", "rent-reminder"], arrangement())
    assert keys(nudges) == ["installment-reminder:T-1:2026-12-15"]
    n = nudges[0]
    assert n.send_at == at(2026, 12, 14, 8, 0)  # the day before, a Monday
    assert n.expires_at == at(2026, 12, 15, 0, 0)


def test_no_installment_reminder_after_the_arrangement_ends(book):
    rec = arrangement()
    rec.arrangement_until = date(2026, 12, 10)
    assert run(book, at(2026, 12, 12, 9), ["installment-reminder"], rec) == []


# --- on: events ----------------------------------------------------------------------------------


def streak(count: int, previous: int | None, day: date = date(2026, 11, 27)) -> EventFact:
    return EventFact("T-1", "on_time_streak", day, count, previous)


def test_streak_rule_fires_when_the_streak_reaches_three(book):
    nudges = run(book, at(2026, 11, 27, 9), ["streak"], events=[streak(3, 2)])
    assert keys(nudges) == ["streak:T-1:on_time_streak@2026-11-27#3"]
    n = nudges[0]
    assert n.send_at == at(2026, 11, 27, 9, 0)
    assert n.expires_at == at(2026, 12, 5, 0, 0)  # appreciation: 7 days, to the end of the day


def test_streak_rule_does_not_fire_again_from_three_to_four(book):
    assert run(book, at(2026, 11, 27, 9), ["streak"], events=[streak(4, 3)]) == []


def test_streak_rule_fires_when_the_streak_jumps_past_three(book):
    assert len(run(book, at(2026, 11, 27, 9), ["streak"], events=[streak(5, 1)])) == 1


def test_streak_rule_ignores_other_events_and_lower_counts(book):
    events = [streak(2, 1), EventFact("T-1", "arrears_cleared", date(2026, 11, 27))]
    assert run(book, at(2026, 11, 27, 9), ["streak"], events=events) == []


def test_event_from_long_ago_is_not_planned(book):
    assert run(book, at(2026, 11, 27, 9), ["streak"], events=[streak(3, 2, date(2026, 10, 1))]) == []


# --- after: arrears_since ------------------------------------------------------------------------


def test_check_in_fourteen_days_after_arrears_started(book):
    rec = record(arrears=Decimal("600"), arrears_since=date(2026, 11, 12))
    nudges = run(book, at(2026, 11, 26, 9), ["arrears-check-in"], rec)
    assert keys(nudges) == ["arrears-check-in:T-1:2026-11-12"]
    assert nudges[0].send_at == at(2026, 11, 26, 9, 0)
    assert run(book, at(2026, 11, 26, 9), ["arrears-check-in"], record()) == []


# --- yearly --------------------------------------------------------------------------------------


def test_yearly_fires_on_that_day(book):
    # 15 November 2026 is a Sunday: the call task is planned for Monday 08:00
    nudges = run(book, at(2026, 11, 15, 7, 0), ["december-call"], days=1, lookback_days=0)
    assert keys(nudges) == ["december-call:T-1:2026-11-15"]
    n = nudges[0]
    assert (n.kind, n.channel) == ("task", "call")
    assert n.send_at == at(2026, 11, 16, 8, 0)


@pytest.mark.parametrize("day", [date(2026, 11, 14), date(2026, 11, 16), date(2026, 12, 15)])
def test_yearly_does_not_fire_on_other_days(book, day):
    now = datetime(day.year, day.month, day.day, 9, 0, tzinfo=AMS)
    assert run(book, now, ["december-call"], days=1, lookback_days=0) == []


def test_yearly_planned_a_day_late_keeps_the_same_key(book):
    nudges = run(book, at(2026, 11, 16, 9, 0), ["december-call"], days=1)
    assert keys(nudges) == ["december-call:T-1:2026-11-15"]


def test_yearly_condition_on_january(book):
    assert run(book, at(2026, 11, 15, 7), ["december-call"], record(late={10, 11}), days=1) == []


# --- cron and at ---------------------------------------------------------------------------------


def test_cron_gives_one_nudge_per_fire_time_in_the_horizon(book):
    nudges = run(book, at(2026, 11, 30, 9, 0), ["campaign"], days=3, max_per_week=7)
    assert keys(nudges) == [
        "campaign:T-1:2026-11-30T10:00+01:00",
        "campaign:T-1:2026-12-01T10:00+01:00",
        "campaign:T-1:2026-12-02T10:00+01:00",
    ]
    assert [n.send_at for n in nudges] == [at(2026, 11, 30, 10), at(2026, 12, 1, 10), at(2026, 12, 2, 10)]
    assert [n.expires_at - n.send_at for n in nudges] == [timedelta(hours=12)] * 3


def test_cron_time_is_local_across_the_dst_change(book):
    nudges = run(book, at(2026, 10, 24, 9, 0), ["campaign"], days=3, max_per_week=7)
    planned = {n.occurrence: n for n in nudges}
    assert set(planned) == {"2026-10-24T10:00+02:00", "2026-10-25T10:00+01:00", "2026-10-26T10:00+01:00"}
    assert planned["2026-10-26T10:00+01:00"].send_at == at(2026, 10, 26, 10)
    # 25 October is a Sunday and the campaign expires after 12 hours: it is expired, not sent late
    sunday = planned["2026-10-25T10:00+01:00"]
    assert (sunday.status, sunday.send_at) == ("expired", None)
    assert "zondag" in sunday.reason


def test_at_fires_once(book):
    nudges = run(book, at(2026, 11, 30, 9, 0), ["one-off"], days=3)
    assert keys(nudges) == ["one-off:T-1:2026-12-01T10:00+01:00"]
    assert nudges[0].send_at == at(2026, 12, 1, 10, 0)
    assert run(book, at(2026, 11, 27, 9, 0), ["one-off"], days=3) == []  # not yet in the horizon
    assert run(book, at(2027, 1, 10, 9, 0), ["one-off"], days=3) == []  # long past


# --- signers -------------------------------------------------------------------------------------


def test_backup_signs_while_the_officer_is_away(book):
    rec = record(officer="sanne")
    n = run(book, at(2026, 11, 27, 9), ["rent-reminder"], rec)[0]
    assert n.signer == "fatima"


def test_unknown_officer_waits_without_signer(book):
    rec = record(officer="nobody")
    n = run(book, at(2026, 11, 27, 9), ["rent-reminder"], rec)[0]
    assert n.signer == ""
    assert "nobody can sign" in n.reason


# --- several tenants -----------------------------------------------------------------------------


def test_plan_over_several_tenants_is_sorted_and_filtered(book):
    c = ctx(book, at(2026, 11, 27, 9))
    recs = [record("T-1", window=("ma-vr 18:00-20:00",)), record("T-2"), record("T-3", late=set())]
    facts = {r.tenant_id: Facts(r, c.today) for r in recs}
    nudges = plan(facts, {}, c, rule_ids=["rent-reminder"])
    assert keys(nudges) == ["rent-reminder:T-2:2026-12-01", "rent-reminder:T-1:2026-12-01"]
    only = plan(facts, {}, c, rule_ids=["rent-reminder"], tenant_ids=["T-1"])
    assert keys(only) == ["rent-reminder:T-1:2026-12-01"]


def test_disabled_rule_is_not_planned(book):
    disabled = dataclasses.replace(book.rules["rent-reminder"], enabled=False)
    other = dataclasses.replace(book, rules={"rent-reminder": disabled})
    assert run(other, at(2026, 11, 27, 9), ["rent-reminder"]) == []


def test_nudge_as_dict_is_plain_json(book):
    d = run(book, at(2026, 11, 27, 9), ["rent-reminder"])[0].as_dict()
    assert d["key"] == "rent-reminder:T-1:2026-12-01"
    assert d["send_at"] == "2026-11-30T08:00:00+01:00"
    assert d["expires_at"] == "2026-12-01T00:00:00+01:00"


# --- one ask at a time ---------------------------------------------------------------------------


def test_caps_keep_one_a_day_and_two_a_week(book):
    nudges = run(book, at(2026, 11, 30, 9, 0), ["campaign"], days=3)  # a campaign every day at 10:00
    by_day = {n.occurrence[:10]: n for n in nudges}
    assert by_day["2026-11-30"].send_at == at(2026, 11, 30, 10) and by_day["2026-12-01"].send_at == at(2026, 12, 1, 10)
    third = by_day["2026-12-02"]
    assert third.status == "expired" and third.send_at is None
    assert "one ask at a time: already 2 message(s) in the 7 days" in third.reason


def test_caps_count_what_the_ledger_already_sent(book):
    sent = {"T-1": [at(2026, 11, 27, 11), at(2026, 11, 28, 11)]}
    nudges = run(book, at(2026, 11, 30, 9, 0), ["campaign"], days=1, booked=sent)
    assert nudges[0].status == "expired" and "already 2 message(s)" in nudges[0].reason


def test_highest_priority_goes_first_the_other_moves_to_the_next_day(book):
    c = ctx(book, at(2026, 11, 30, 9, 0), 3, max_per_week=7)
    low = PlannedNudge("low:T-1:x", "low", "T-1", "reminder", "x", at(2026, 11, 30, 10), at(2026, 12, 3), 10)
    high = PlannedNudge("high:T-1:x", "high", "T-1", "reminder", "x", at(2026, 11, 30, 12), at(2026, 12, 3), 90)
    apply_caps([(low, []), (high, [])], [], c)
    assert high.send_at == at(2026, 11, 30, 12) and high.reason == ""
    assert low.send_at == at(2026, 12, 1, 8) and "moved to 2026-12-01 08:00" in low.reason
