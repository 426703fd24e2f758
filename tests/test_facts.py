"""Unit tests for nudger/facts.py: late history, streaks, due dates, arrangements and derived events."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from nudger.facts import DerivedEvent, Facts, Payment, TenantRecord, derive_events

RENT = Decimal("600.00")


def record(**kw) -> TenantRecord:
    base = {
        "tenant_id": "T-1",
        "name": "Anna de Vries",
        "first_name": "Anna",
        "officer": "fatima",
        "rent": RENT,
        "due_day": 1,
        "move_in": date(2020, 1, 1),
    }
    base.update(kw)
    return TenantRecord(**base)


def pay(paid_on: str, for_month: str, amount: Decimal = RENT) -> Payment:
    y, m = for_month.split("-")
    return Payment(date.fromisoformat(paid_on), Decimal(amount), (int(y), int(m)))


def monthly(months: list[str], late: set[str] = frozenset(), day_late: int = 5) -> list[Payment]:
    """One full payment per month `YYYY-MM`: on the 1st, or on `day_late` for the months in `late`."""
    return [pay(f"{m}-{day_late:02d}" if m in late else f"{m}-01", m) for m in months]


# --- late_in -----------------------------------------------------------------------------------


def test_paid_on_the_due_date_is_on_time():
    facts = Facts(record(payments=[pay("2026-03-01", "2026-03")]), date(2026, 6, 1))
    assert facts.late_in(3, 2026) is False


def test_paid_the_day_after_the_due_date_is_late():
    facts = Facts(record(payments=[pay("2026-03-02", "2026-03")]), date(2026, 6, 1))
    assert facts.late_in(3, 2026) is True


def test_paid_early_in_the_month_before_is_on_time():
    facts = Facts(record(payments=[pay("2026-02-26", "2026-03")]), date(2026, 6, 1))
    assert facts.late_in(3, 2026) is False


def test_no_payment_at_all_is_late():
    facts = Facts(record(payments=[pay("2026-04-01", "2026-04")]), date(2026, 6, 1))
    assert facts.late_in(3, 2026) is True


def test_partial_payment_by_the_due_date_is_late_even_when_completed_later():
    payments = [pay("2026-03-01", "2026-03", Decimal("300")), pay("2026-03-10", "2026-03", Decimal("300"))]
    facts = Facts(record(payments=payments), date(2026, 6, 1))
    assert facts.late_in(3, 2026) is True


def test_two_partial_payments_that_add_up_by_the_due_date_are_on_time():
    payments = [pay("2026-02-20", "2026-03", Decimal("250")), pay("2026-03-01", "2026-03", Decimal("350"))]
    facts = Facts(record(payments=payments), date(2026, 6, 1))
    assert facts.late_in(3, 2026) is False


def test_payment_booked_for_another_month_does_not_count():
    # paid on time, but for April: March is still unpaid
    facts = Facts(record(payments=[pay("2026-03-01", "2026-04")]), date(2026, 6, 1))
    assert facts.late_in(3, 2026) is True


def test_months_before_move_in_are_never_late():
    facts = Facts(record(move_in=date(2026, 5, 10), payments=[]), date(2026, 8, 1))
    assert facts.late_in(4, 2026) is False
    assert facts.late_in(1, 2026) is False


def test_rent_of_the_move_in_month_paid_on_the_move_in_day_is_not_late():
    # moved in on 10 May; May's rent "was due" on 1 May, before the tenancy began
    facts = Facts(record(move_in=date(2026, 5, 10), payments=[pay("2026-05-10", "2026-05")]), date(2026, 8, 1))
    assert facts.late_in(5, 2026) is False


def test_a_month_whose_due_date_has_not_passed_is_not_late():
    facts = Facts(record(due_day=15, payments=[]), date(2026, 6, 15))
    assert facts.late_in(6, 2026) is False  # due today: not late yet
    assert facts.late_in(7, 2026) is False  # in the future
    assert facts.late_in(5, 2026) is True  # due last month, nothing paid


def test_late_in_uses_the_clamped_due_date_in_february():
    # due_day 31: February's rent is due on the 28th, so paying on 1 March is late
    facts = Facts(record(due_day=31, payments=[pay("2027-03-01", "2027-02")]), date(2027, 5, 1))
    assert facts.late_in(2, 2027) is True
    facts = Facts(record(due_day=31, payments=[pay("2027-02-28", "2027-02")]), date(2027, 5, 1))
    assert facts.late_in(2, 2027) is False


# --- late_count_6m and on_time_streak --------------------------------------------------------------


MONTHS_2026 = [f"2026-{m:02d}" for m in range(1, 8)]  # January .. July


def test_late_count_counts_late_months_in_the_last_six():
    payments = monthly(MONTHS_2026, late={"2026-03", "2026-06"})
    facts = Facts(record(payments=payments), date(2026, 7, 15))
    assert facts.late_count_6m == 2


def test_late_count_ignores_a_late_month_seven_months_back():
    # today 15 July: the last six due months are February .. July; January's lateness is older
    payments = monthly(MONTHS_2026, late={"2026-01"})
    facts = Facts(record(payments=payments), date(2026, 7, 15))
    assert facts.late_count_6m == 0


def test_late_count_does_not_count_the_month_due_today():
    # today 1 July: July's rent is due today and not paid yet; that is not late (yet)
    payments = monthly(MONTHS_2026[:6], late={"2026-01"})
    facts = Facts(record(payments=payments), date(2026, 7, 1))
    assert facts.late_count_6m == 1  # January is within January .. June


def test_late_count_does_not_count_months_before_move_in():
    payments = monthly(["2026-06", "2026-07"])
    facts = Facts(record(move_in=date(2026, 6, 1), payments=payments), date(2026, 7, 15))
    assert facts.late_count_6m == 0


def test_on_time_streak_counts_back_to_the_last_late_month():
    payments = monthly(MONTHS_2026, late={"2026-04"})
    facts = Facts(record(payments=payments), date(2026, 7, 15))
    assert facts.on_time_streak == 3  # May, June, July


def test_on_time_streak_is_zero_when_the_last_month_was_late():
    payments = monthly(MONTHS_2026, late={"2026-07"})
    facts = Facts(record(payments=payments), date(2026, 7, 15))
    assert facts.on_time_streak == 0


def test_on_time_streak_stops_at_a_month_without_payment():
    payments = monthly(["2026-01", "2026-02", "2026-04", "2026-05", "2026-06", "2026-07"])
    facts = Facts(record(payments=payments), date(2026, 7, 15))
    assert facts.on_time_streak == 4  # April .. July; March was never paid


def test_on_time_streak_stops_at_move_in():
    payments = monthly(["2026-05", "2026-06", "2026-07"])
    facts = Facts(record(move_in=date(2026, 5, 1), payments=payments), date(2026, 7, 15))
    assert facts.on_time_streak == 3


# --- money -------------------------------------------------------------------------------------


def test_arrears_months_behind_and_days():
    facts = Facts(record(arrears=Decimal("900"), arrears_since=date(2026, 6, 2)), date(2026, 7, 2))
    assert facts.arrears == Decimal("900")
    assert facts.months_behind == Decimal("1.50")
    assert facts.arrears_days == 30


def test_credit_is_not_arrears():
    facts = Facts(record(arrears=Decimal("-50"), arrears_since=date(2026, 6, 2)), date(2026, 7, 2))
    assert facts.arrears == 0
    assert facts.months_behind == 0
    assert facts.arrears_days == 0


# --- rent_due ----------------------------------------------------------------------------------


def test_rent_due_on_the_due_day_itself_is_today():
    assert Facts(record(due_day=1), date(2026, 12, 1)).rent_due == date(2026, 12, 1)


def test_rent_due_the_day_after_is_next_month():
    assert Facts(record(due_day=1), date(2026, 12, 2)).rent_due == date(2027, 1, 1)


def test_rent_due_before_the_due_day_is_this_month():
    assert Facts(record(due_day=15), date(2026, 11, 3)).rent_due == date(2026, 11, 15)


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2027, 1, 31), date(2027, 1, 31)),
        (date(2027, 2, 1), date(2027, 2, 28)),
        (date(2027, 2, 28), date(2027, 2, 28)),
        (date(2027, 3, 1), date(2027, 3, 31)),
        (date(2028, 2, 10), date(2028, 2, 29)),  # leap year
        (date(2026, 4, 30), date(2026, 4, 30)),  # April has 30 days
    ],
)
def test_due_day_31_is_clamped_to_the_last_day_of_short_months(today, expected):
    assert Facts(record(due_day=31), today).rent_due == expected


# --- arrangements ------------------------------------------------------------------------------


def arrangement_record(**kw) -> TenantRecord:
    return record(
        arrears=Decimal("1200"),
        arrears_since=date(2026, 9, 2),
        arrangement_amount=Decimal("100"),
        arrangement_day=15,
        arrangement_until=date(2027, 3, 31),
        **kw,
    )


def test_installment_due_inside_the_arrangement():
    facts = Facts(arrangement_record(), date(2027, 3, 10))
    assert facts.arrangement is True
    assert facts.installment == Decimal("100")
    assert facts.installment_due == date(2027, 3, 15)


def test_installment_due_on_the_day_itself():
    assert Facts(arrangement_record(), date(2027, 2, 15)).installment_due == date(2027, 2, 15)


def test_no_installment_due_after_the_last_one():
    # the arrangement still runs until 31 March, but the next 15th is after it
    facts = Facts(arrangement_record(), date(2027, 3, 20))
    assert facts.arrangement is True
    assert facts.installment_due is None


def test_no_arrangement_after_arrangement_until():
    facts = Facts(arrangement_record(), date(2027, 4, 1))
    assert facts.arrangement is False
    assert facts.installment is None
    assert facts.installment_due is None


def test_arrangement_without_end_date_keeps_going():
    facts = Facts(record(arrangement_amount=Decimal("50"), arrangement_day=20), date(2030, 1, 25))
    assert facts.arrangement is True
    assert facts.installment_due == date(2030, 2, 20)


def test_no_arrangement_without_amount():
    facts = Facts(record(arrangement_amount=Decimal("0"), arrangement_day=20), date(2027, 1, 5))
    assert facts.arrangement is False
    assert facts.installment_due is None


# --- derive_events ---------------------------------------------------------------------------


def test_first_import_gives_no_events():
    facts = Facts(record(arrears=Decimal("900"), arrears_since=date(2026, 6, 1)), date(2026, 7, 1))
    assert derive_events(None, facts, None) == []


def names(events: list[DerivedEvent]) -> list[str]:
    return [e.name for e in events]


def test_unchanged_facts_give_no_events():
    facts = Facts(record(payments=monthly(MONTHS_2026)), date(2026, 7, 15))
    assert derive_events(facts.summary(), facts, date(2026, 7, 14)) == []


def test_arrears_started():
    before = Facts(record(), date(2026, 7, 1)).summary()
    now = Facts(record(arrears=Decimal("200"), arrears_since=date(2026, 7, 1)), date(2026, 7, 2))
    events = derive_events(before, now, date(2026, 7, 1))
    assert "arrears_started" in names(events)
    assert "arrears_cleared" not in names(events)
    assert "arrears_grew" not in names(events)  # 200 of 600 is not a whole month behind


def test_arrears_cleared():
    before = Facts(record(arrears=Decimal("200"), arrears_since=date(2026, 7, 1)), date(2026, 7, 1)).summary()
    now = Facts(record(), date(2026, 7, 8))
    events = derive_events(before, now, date(2026, 7, 1))
    assert "arrears_cleared" in names(events)
    assert "arrears_started" not in names(events)


def test_on_time_streak_event_has_count_and_previous():
    payments = monthly(MONTHS_2026, late={"2026-04"})
    before = Facts(record(payments=payments[:6]), date(2026, 6, 15)).summary()  # May, June: streak 2
    now = Facts(record(payments=payments), date(2026, 7, 15))  # May .. July: streak 3
    events = [e for e in derive_events(before, now, date(2026, 6, 15)) if e.name == "on_time_streak"]
    assert events == [DerivedEvent("on_time_streak", 3, None, 2)]
    assert "payment_received" in names(derive_events(before, now, date(2026, 6, 15)))


def test_no_streak_event_when_the_streak_broke():
    payments = monthly(MONTHS_2026, late={"2026-07"})
    before = Facts(record(payments=payments[:6]), date(2026, 6, 15)).summary()
    now = Facts(record(payments=payments), date(2026, 7, 15))
    assert "on_time_streak" not in names(derive_events(before, now, date(2026, 6, 15)))


def test_arrears_grew_by_whole_months():
    before = Facts(record(arrears=Decimal("700"), arrears_since=date(2026, 6, 2)), date(2026, 7, 1)).summary()
    now = Facts(record(arrears=Decimal("1300"), arrears_since=date(2026, 6, 2)), date(2026, 7, 2))
    grew = [e for e in derive_events(before, now, date(2026, 7, 1)) if e.name == "arrears_grew"]
    assert grew == [DerivedEvent("arrears_grew", 2, None, 1)]


def test_arrears_grew_not_within_the_same_whole_month():
    before = Facts(record(arrears=Decimal("650"), arrears_since=date(2026, 6, 2)), date(2026, 7, 1)).summary()
    now = Facts(record(arrears=Decimal("1100"), arrears_since=date(2026, 6, 2)), date(2026, 7, 2))
    assert "arrears_grew" not in names(derive_events(before, now, date(2026, 7, 1)))


def test_arrangement_made():
    before = Facts(record(arrears=Decimal("1200"), arrears_since=date(2026, 9, 2)), date(2026, 11, 1)).summary()
    now = Facts(arrangement_record(), date(2026, 11, 2))
    assert "arrangement_made" in names(derive_events(before, now, date(2026, 11, 1)))


def test_installment_missed_when_nothing_was_paid_around_the_date():
    # arrangement on the 15th; last import on 10 January, today 20 January: nothing paid around 15 January
    rec = arrangement_record()
    before = Facts(rec, date(2027, 1, 10)).summary()
    now = Facts(rec, date(2027, 1, 20))
    missed = [e for e in derive_events(before, now, date(2027, 1, 10)) if e.name == "installment_missed"]
    assert missed == [DerivedEvent("installment_missed", None, date(2027, 1, 15))]


def test_installment_paid_is_not_missed():
    rec = arrangement_record(payments=[pay("2027-01-14", "2026-12", Decimal("100"))])
    before = Facts(arrangement_record(), date(2027, 1, 10)).summary()
    now = Facts(rec, date(2027, 1, 20))
    assert "installment_missed" not in names(derive_events(before, now, date(2027, 1, 10)))


def test_record_json_round_trip():
    rec = arrangement_record(payments=[pay("2027-01-14", "2026-12", Decimal("100.50"))], window=("ma 10:00-12:00",))
    again = TenantRecord.from_json(rec.to_json())
    # the store keeps the payments in short: what the facts need, not every payment
    assert again.payments == [] and again.payment_history() == rec.payment_history()
    assert replace(again, history=None) == replace(rec, payments=[], history=None)
    today = date(2027, 2, 1)
    for facts_of in (Facts(rec, today), Facts(again, today)):
        assert facts_of.late_in(12, 2026) and facts_of.last_payment == date(2027, 1, 14)
