"""No mass mistakes: a plan that would reach too many tenants in a day is held for a person."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support import copy_example, nudger, outbox_files

from nudger.guard import GuardLimits, mass_holds
from nudger.planner import PlannedNudge

ZONE = ZoneInfo("Europe/Amsterdam")
MON = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
NOW = "2026-11-30T10:00"


def planned(rule: str, tenant: str, at: datetime = MON, kind: str = "reminder") -> PlannedNudge:
    return PlannedNudge(f"{rule}:{tenant}:x", rule, tenant, kind, "x", at, at + timedelta(days=2), 50)


def limits(total: int = 100, share: float = 0.2, floor: int = 0, caps=None, released=()) -> GuardLimits:
    return GuardLimits(share, floor, total, dict(caps or {}), frozenset(released))


def test_a_day_over_the_share_is_held_and_one_under_it_is_not() -> None:
    tuesday = MON + timedelta(days=1)
    new = [planned("r", f"T-{i}") for i in range(21)] + [planned("r", f"U-{i}", tuesday) for i in range(20)]
    held, holds = mass_holds(new, [], limits(), ZONE)
    assert {k for k in held} == {n.key for n in new[:21]}  # Monday: 21 of 100 > 20%
    assert [(h.rule_id, h.day, h.held) for h in holds] == [("r", date(2026, 11, 30), 21)]
    assert "21 of 100 tenants (21%)" in held[new[0].key]
    assert "nudger release r --date 2026-11-30" in held[new[0].key]


def test_what_the_day_already_reaches_counts_and_tasks_do_not() -> None:
    existing = [(f"T-{i}", "other", MON) for i in range(15)]
    new = [planned("r", f"N-{i}") for i in range(6)] + [planned("call", f"C-{i}", kind="task") for i in range(50)]
    held, _ = mass_holds(new, existing, limits(), ZONE)
    assert set(held) == {n.key for n in new[:6]}  # 15 + 6 = 21 tenants; the call tasks are not held
    held, _ = mass_holds(new[:5], existing, limits(), ZONE)
    assert held == {}  # 20 tenants: at the limit, not over it


def test_the_floor_keeps_small_organisations_from_being_held_for_their_share() -> None:
    new = [planned("r", f"T-{i}") for i in range(14)]
    assert mass_holds(new, [], limits(total=64, floor=50), ZONE)[0] == {}
    assert len(mass_holds(new, [], limits(total=64, floor=0), ZONE)[0]) == 14


def test_a_rule_over_its_own_max_per_day_is_held_even_when_the_day_is_small() -> None:
    new = [planned("campaign", f"T-{i}") for i in range(4)] + [planned("r", "T-9")]
    held, holds = mass_holds(new, [], limits(total=1000, caps={"campaign": 3}), ZONE)
    assert set(held) == {n.key for n in new[:4]}
    assert "more than its max_per_day of 3" in held[new[0].key]


def test_a_released_rule_and_day_is_not_held_again() -> None:
    new = [planned("r", f"T-{i}") for i in range(30)]
    held, _ = mass_holds(new, [], limits(released=[("r", date(2026, 11, 30))]), ZONE)
    assert held == {}


# --- end to end: plan, status, release, cancel, history -------------------------------------------


@pytest.fixture
def strict(tmp_path: Path) -> Path:
    """The example with a guard tight enough to hold its Monday (10% of 64 tenants, no floor)."""
    copy_example(tmp_path, guard={"max_share_per_day": 0.1, "min_tenants_per_day": 0})
    return tmp_path


def test_held_messages_wait_for_a_person_who_releases_or_cancels_them(strict: Path) -> None:
    run = nudger(strict, "run", "--once", "--now", NOW)
    assert run.code == 0, run.text
    assert "event=plan_held" in run.out and "rule=rent-reminder" in run.out
    assert not any("rent-reminder" in p.name for p in outbox_files(strict))  # nothing of it went

    status = nudger(strict, "status", "--json")
    assert status.code == 3  # something to look at
    held = json.loads(status.out)["held"]
    assert {h["rule"] for h in held} >= {"rent-reminder", "december-card"}
    text = nudger(strict, "status").out
    assert "rent-reminder on 2026-11-30" in text and "nudger release rent-reminder --date 2026-11-30" in text

    history = nudger(strict, "history", "T-1006").out
    assert "held" in history and "guard.max_share_per_day" in history

    released = nudger(strict, "release", "rent-reminder", "--date", "2026-11-30")
    assert released.code == 0 and "released 12 held message(s)" in released.out, released.text
    again = nudger(strict, "run", "--once", "--now", "2026-11-30T10:05")
    assert again.code == 0, again.text
    assert len([p for p in outbox_files(strict) if "rent-reminder" in p.name]) >= 10
    assert not [line for line in again.out.splitlines() if "plan_held" in line and "rule=rent-reminder" in line]

    card_tenant = next(h["tenant"] for h in held if h["rule"] == "december-card")
    cancelled = nudger(strict, "cancel", "december-card")
    assert cancelled.code == 0 and "cancelled 11 held message(s)" in cancelled.out, cancelled.text
    nudger(strict, "run", "--once", "--now", "2026-12-01T10:00")
    assert not any("december-card" in p.name for p in outbox_files(strict))
    still = json.loads(nudger(strict, "status", "--json").out)["held"]
    assert not any(h["rule"] in ("december-card", "rent-reminder") for h in still)
    card = json.loads(nudger(strict, "history", card_tenant, "--json").out)
    dropped = [n for n in card["nudges"] if n["rule"] == "december-card"]
    assert [n["state"] for n in dropped] == ["cancelled"]
    assert "cancelled by a person" in dropped[0]["reason"]


def test_release_and_cancel_say_clearly_when_there_is_nothing_to_do(strict: Path) -> None:
    nudger(strict, "run", "--once", "--now", NOW)
    unknown = nudger(strict, "release", "no-such-rule")
    assert unknown.code != 0 and "there is no rule `no-such-rule`" in unknown.err
    nothing = nudger(strict, "cancel", "reply-call")
    assert nothing.code != 0 and "nothing of `reply-call` is held" in nothing.err
    assert "Traceback" not in unknown.text + nothing.text


def test_a_rule_with_max_per_day_is_held_on_a_busy_day(tmp_path: Path) -> None:
    copy_example(tmp_path)
    rule = tmp_path / "rules" / "rent-reminder.yaml"
    rule.write_text(rule.read_text(encoding="utf-8") + "max_per_day: 5\n", encoding="utf-8")
    assert nudger(tmp_path, "check").code == 0
    run = nudger(tmp_path, "run", "--once", "--now", NOW)
    assert run.code == 0, run.text
    assert not any("rent-reminder" in p.name for p in outbox_files(tmp_path))
    status = json.loads(nudger(tmp_path, "status", "--json").out)
    assert {h["rule"] for h in status["held"]} == {"rent-reminder"}
    assert "max_per_day of 5" in status["held"][0]["reason"]
    assert any("first-arrears-message" in p.name for p in outbox_files(tmp_path))  # other rules go on


def test_held_messages_nobody_releases_expire_with_the_reason(strict: Path) -> None:
    nudger(strict, "run", "--once", "--now", NOW)
    later = nudger(strict, "run", "--once", "--now", "2026-12-09T10:00")
    assert later.code == 0 and "event=held_expired" in later.out, later.text
    history = json.loads(nudger(strict, "history", "T-1006", "--json").out)
    reminder = next(n for n in history["nudges"] if n["rule"] == "rent-reminder")
    assert reminder["state"] == "expired" and "nobody released it" in reminder["reason"]


def test_plan_and_send_show_what_the_guard_would_hold_or_holds(strict: Path) -> None:
    dry = nudger(strict, "plan", "--date", "2026-11-30", "--days", "2", "--json")
    assert dry.code == 0, dry.text
    rows = json.loads(dry.out)
    held = [r for r in rows if r["status"] == "held"]
    assert held and all(r["reason"].startswith("would be held:") and "of 64 tenants" in r["reason"] for r in held)
    assert not (strict / "var").exists()  # a dry run stores nothing
    send = nudger(strict, "send", "december-card", "--now", "2026-12-01T10:00")
    assert send.code == 0, send.text
    assert "11 held" in send.out and "nudger release december-card --date 2026-12-01" in send.out
    printed = list((strict / "var").rglob("*.pdf")) + [p for p in outbox_files(strict) if "december-card" in p.name]
    assert printed == []
    released = nudger(strict, "release", "december-card")
    assert released.code == 0 and "released 11" in released.out
    again = nudger(strict, "send", "december-card", "--now", "2026-12-01T10:05")
    assert again.code == 0 and "held" not in again.out, again.text
    assert list((strict / "var").rglob("*.pdf")) or any("december-card" in p.name for p in outbox_files(strict))
