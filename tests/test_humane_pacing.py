"""Never at night, never late: properties over random windows and days, and a week of dispatch on a fixed clock."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
from hypothesis import given, settings
from hypothesis import strategies as st
from support import ROOT, copy_example, nudger

from nudger.config import load_config
from nudger.engine import Engine
from nudger.pacing import Policy, Window, next_slot, parse_windows

sys.path.insert(0, str(ROOT / "benchmarks"))
from make_data import generate  # noqa: E402

AMS = ZoneInfo("Europe/Amsterdam")
NL_HOLIDAYS = holidays.country_holidays("NL")
DST_DAYS = [date(2026, 3, 29), date(2026, 10, 25), date(2027, 3, 28), date(2027, 10, 31), date(2028, 3, 26)]


@st.composite
def windows(draw) -> tuple[Window, ...]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        days = frozenset(draw(st.sets(st.integers(0, 6), min_size=1)))
        start = draw(st.integers(0, 23 * 4 - 1)) * 15
        end = draw(st.integers(start // 15 + 1, 24 * 4 - 1)) * 15
        out.append(Window(days, time(start // 60, start % 60), time(end // 60, end % 60)))
    return tuple(out)


def _inside(local: datetime, spec: tuple[Window, ...]) -> bool:
    t = local.time()
    return any(local.weekday() in w.days and w.start <= t < w.end for w in spec)


moments = st.one_of(
    st.datetimes(datetime(2026, 1, 1), datetime(2029, 12, 31)),
    st.builds(
        lambda d, m: datetime.combine(d, time()) + timedelta(minutes=m),
        st.sampled_from(DST_DAYS),
        st.integers(-24 * 60, 48 * 60),
    ),
).map(lambda naive: naive.replace(tzinfo=UTC))


@settings(max_examples=400, deadline=None)
@given(
    moments,
    windows(),
    windows(),
    st.integers(1, 20 * 24),
    st.sets(st.dates(date(2026, 1, 1), date(2029, 12, 31)), max_size=5),
)
def test_no_slot_falls_outside_the_allowed_times(earliest, rule_w, tenant_w, hours, closed):
    policy = Policy(AMS, parse_windows("08:00-20:00"), frozenset({6}), "NL", frozenset(closed))
    latest = earliest + timedelta(hours=hours)
    slot = next_slot(earliest, latest, policy, [rule_w, tenant_w])
    if slot.at is None:
        assert slot.reason
        return
    local = slot.at.astimezone(AMS)
    assert earliest <= slot.at < latest
    assert local.weekday() != 6 and local.date() not in NL_HOLIDAYS and local.date() not in closed
    assert time(8) <= local.time() < time(20)
    assert _inside(local, rule_w) and _inside(local, tenant_w)
    # the wall time is real: converting back and forth gives the same moment (no DST gap)
    assert local.astimezone(UTC).astimezone(AMS) == local


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(DST_DAYS), windows(), st.integers(0, 23 * 60))
def test_dst_days_neither_skip_nor_double_a_window(day, spec, minute):
    """With every hour open, the first slot on a DST day is inside the window, once."""
    policy = Policy(AMS, (), frozenset(), "", frozenset())
    earliest = datetime.combine(day, time()).replace(tzinfo=AMS) + timedelta(minutes=minute)
    slot = next_slot(earliest, earliest + timedelta(days=8), policy, [spec])
    assert slot.at is not None  # every window recurs within a week
    local = slot.at.astimezone(AMS)
    # a window inside the spring-forward gap (02:00-03:00 does not exist) opens an hour later, whole
    shifted = (local.replace(tzinfo=None) - timedelta(hours=1)).replace(tzinfo=AMS)
    assert _inside(local, spec) or (local.month == 3 and local.hour == 3 and _inside(shifted, spec))
    again = next_slot(slot.at, slot.at + timedelta(days=8), policy, [spec])
    assert again.at == slot.at  # asking again at the slot gives the same slot: nothing doubled


def test_a_week_of_dispatch_across_dst_and_easter_monday(tmp_path: Path) -> None:
    """Thursday 25 March to Thursday 1 April 2027: summer time starts on Sunday the 28th, the 29th is
    Easter Monday. The daemon's cycle runs every half hour; every send time must be allowed."""
    copy_example(tmp_path)
    generate(64, tmp_path / "examples", reference_day=date(2027, 3, 29))
    config = load_config(tmp_path / "config.yaml")
    clock = {"now": datetime(2027, 3, 25, 6, 0, tzinfo=AMS)}
    engine = Engine(config, clock=lambda: clock["now"])
    try:
        end = datetime(2027, 4, 1, 21, 0, tzinfo=AMS)
        while clock["now"] < end:
            local = clock["now"].astimezone(AMS)
            if local.hour == 6 and local.minute == 0:
                engine.import_data()
                engine.plan()
            engine.dispatch()
            clock["now"] += timedelta(minutes=30)
        sent = [n for n in engine.ledger.nudges() if n.state == "sent"]
        windows_by_tenant = {t: r.window for t, r in engine.records().items()}
    finally:
        engine.close()
    assert len(sent) >= 10
    for n in sent:
        local = n.sent_at.astimezone(AMS)
        assert time(8) <= local.time() < time(20), n.key
        assert local.date() not in (date(2027, 3, 28), date(2027, 3, 29)), n.key  # Sunday, Easter Monday
        assert n.sent_at < n.expires_at, n.key
        if n.kind == "reminder" and n.rule_id == "rent-reminder":
            assert local.date() < date.fromisoformat(n.occurrence), n.key  # never on or after the rent day
        spec = windows_by_tenant.get(n.tenant_id)
        if spec:
            assert _inside(local, parse_windows(list(spec))), n.key
    per_day: dict[tuple[str, date], int] = {}
    for n in sent:
        if n.kind != "task":
            k = (n.tenant_id, n.sent_at.astimezone(AMS).date())
            per_day[k] = per_day.get(k, 0) + 1
    assert max(per_day.values()) == 1  # one ask a day


def test_organisation_pause_holds_messages_until_after_it(tmp_path: Path) -> None:
    copy_example(tmp_path)
    assert nudger(tmp_path, "import", "--date", "2026-11-30").code == 0
    paused = nudger(tmp_path, "pause", "--until", "2030-01-01")
    assert paused.code == 0 and "paused until and including 2030-01-01" in paused.out
    run = nudger(tmp_path, "run", "--once", "--now", "2026-11-30T10:00")
    assert run.code == 0 and "sent 0" in run.out
    assert "paused until 2030-01-01" in nudger(tmp_path, "history", "T-1006").out
    assert nudger(tmp_path, "resume").code == 0
    earlier = nudger(tmp_path, "pause", "--until", "2001-01-01")
    assert earlier.code != 0 and "has passed" in earlier.err


def test_windows_that_cannot_meet_the_organisation_hours_are_reported(tmp_path: Path) -> None:
    copy_example(tmp_path)
    rule = tmp_path / "rules" / "rent-reminder.yaml"
    rule.write_text(
        rule.read_text(encoding="utf-8").replace("priority: 50", 'priority: 50\nwindow: "zo 10:00-12:00"'),
        encoding="utf-8",
    )
    prefs = tmp_path / "rules" / "tenants.yaml"
    prefs.write_text(prefs.read_text(encoding="utf-8") + '\nT-1011:\n  window: "ma-vr 21:00-22:00"\n', encoding="utf-8")
    result = nudger(tmp_path, "check")
    assert result.code == 1
    line = rule.read_text(encoding="utf-8").splitlines().index('window: "zo 10:00-12:00"') + 1
    assert f"rules/rent-reminder.yaml:{line}: error: the window never overlaps the organisation's hours" in result.out
    assert "tenant T-1011's window never overlaps" in result.out


def test_backups_that_go_round_in_a_circle_are_an_error(tmp_path: Path) -> None:
    copy_example(tmp_path)
    officers = tmp_path / "rules" / "officers.yaml"
    text = officers.read_text(encoding="utf-8")
    text = text.replace("  backup: jan\n", "  backup: jan\n  absent:\n    - 2026-12-24 .. 2026-12-26\n", 1)
    text = text.replace("  backup: fatima\n", "  backup: fatima\n  absent:\n    - 2026-12-25\n", 1)
    officers.write_text(text, encoding="utf-8")
    result = nudger(tmp_path, "check")
    assert result.code == 1
    assert "on 2026-12-25 the backups go round in a circle (fatima -> jan -> fatima)" in result.out


def test_a_window_column_in_the_data_is_used_and_checked(tmp_path: Path) -> None:
    copy_example(tmp_path)
    path = tmp_path / "examples" / "tenants.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[0] += ",window"
    lines[1] += ",ma-vr 17:00-19:00"  # T-1001
    lines[2] += ",ma-vx 17:00"  # T-1002: a bad window
    lines[3:] = [ln + "," for ln in lines[3:]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = nudger(tmp_path, "import", "--date", "2026-11-30")
    assert result.code == 0 and "tenants.csv:3: window:" in result.out
    plan = nudger(tmp_path, "plan", "--date", "2026-11-30", "--tenant", "T-1001")
    assert "2026-11-30 17:00  T-1001" in plan.out
