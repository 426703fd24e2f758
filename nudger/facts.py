"""Tenant records and the facts rules see: arrears, due dates, late history, streaks. Pure."""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property, lru_cache

ZERO = Decimal("0")


@dataclass(frozen=True, slots=True)
class Payment:
    paid_on: date
    amount: Decimal
    for_month: tuple[int, int]  # (year, month)


def month_index(year: int, month: int) -> int:
    """A month as one small number (year * 12 + month - 1): cheap to keep for 100,000 tenants."""
    return year * 12 + month - 1


@dataclass(slots=True)
class PaymentHistory:
    """What the facts need from the payments, small enough to store per tenant.

    `on_time[month]` is what was paid for that month on or before its due date (never before the
    tenancy began), in cents; `months` are the months with any payment. Months are numbered by
    `month_index`. Built payment by payment while the data is read, so 2 million payments need
    not all be in memory at once.
    """

    on_time: dict[int, int] = field(default_factory=dict)
    months: set[int] = field(default_factory=set)
    count: int = 0
    last_paid_on: date | None = None

    def add(self, record: TenantRecord, p: Payment) -> None:
        index = month_index(*p.for_month)
        if p.paid_on <= _due_for(record, *p.for_month):
            self.on_time[index] = self.on_time.get(index, 0) + int(p.amount * 100)
        self.months.add(index)
        self.count += 1
        if self.last_paid_on is None or p.paid_on > self.last_paid_on:
            self.last_paid_on = p.paid_on

    def paid_on_time(self, year: int, month: int) -> Decimal:
        return Decimal(self.on_time.get(month_index(year, month), 0)) / 100

    @classmethod
    def of(cls, record: TenantRecord) -> PaymentHistory:
        history = cls()
        for p in record.payments:
            history.add(record, p)
        return history

    def to_json(self) -> dict:
        return {
            "on_time": sorted(self.on_time.items()),
            "months": sorted(self.months),
            "count": self.count,
            "last": self.last_paid_on.isoformat() if self.last_paid_on else None,
        }

    @classmethod
    def from_json(cls, data: dict) -> PaymentHistory:
        return cls(
            {int(k): int(v) for k, v in data["on_time"]},
            set(data["months"]),
            int(data["count"]),
            date.fromisoformat(data["last"]) if data.get("last") else None,
        )


def _due_for(record: TenantRecord, year: int, month: int) -> date:
    """When that month's rent is due for this tenant: the due day, never before moving in."""
    due = due_date(year, month, record.due_day)
    if record.move_in is not None and record.move_in > due:
        return record.move_in
    return due


@dataclass(slots=True)
class TenantRecord:
    """One row of the data import, with preferences from tenants.yaml applied on top."""

    tenant_id: str
    name: str
    first_name: str = ""
    language: str = ""
    phone: str = ""
    email: str = ""
    whatsapp_opt_in: bool = False
    street: str = ""
    house_number: str = ""
    postcode: str = ""
    city: str = ""
    officer: str = ""
    rent: Decimal = ZERO
    due_day: int = 1
    arrears: Decimal = ZERO
    arrears_since: date | None = None
    arrangement_amount: Decimal | None = None
    arrangement_day: int | None = None
    arrangement_until: date | None = None
    preferred_channels: tuple[str, ...] = ()
    move_in: date | None = None
    payments: list[Payment] = field(default_factory=list)
    # preferences only tenants.yaml sets
    window: tuple[str, ...] = ()
    pause_until: date | None = None
    # the payments in short (the store keeps this instead of every payment)
    history: PaymentHistory | None = None

    def payment_history(self) -> PaymentHistory:
        if self.history is None:
            self.history = PaymentHistory.of(self)
        return self.history

    def add_payment(self, payment: Payment) -> None:
        """Count a payment in the history; keep it whole only where an arrangement needs it
        (missed installments are judged on the payments themselves)."""
        if self.history is None:
            self.history = PaymentHistory.of(self)
        self.history.add(self, payment)
        if self.arrangement_amount:
            self.payments.append(payment)

    def to_json(self) -> dict:
        """A plain-JSON form for the store (money as strings, dates ISO)."""
        out: dict = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if name == "payments":
                continue
            if name == "history":
                value = self.payment_history().to_json()
            elif isinstance(value, Decimal | date):
                value = str(value) if isinstance(value, Decimal) else value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    @classmethod
    def from_json(cls, data: dict) -> TenantRecord:
        d = dict(data)
        for key in ("rent", "arrears"):
            d[key] = Decimal(d[key])
        if d.get("arrangement_amount") is not None:
            d["arrangement_amount"] = Decimal(d["arrangement_amount"])
        for key in ("arrears_since", "arrangement_until", "move_in", "pause_until"):
            if d.get(key):
                d[key] = date.fromisoformat(d[key])
        d["preferred_channels"] = tuple(d.get("preferred_channels") or ())
        d["window"] = tuple(d.get("window") or ())
        d.pop("payments", None)
        d["history"] = PaymentHistory.from_json(d["history"]) if d.get("history") else None
        return cls(**d)


@lru_cache(maxsize=65536)
def due_date(year: int, month: int, day: int) -> date:
    """The due date in that month, moved to the month's last day when the month is shorter."""
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + n
    return index // 12, index % 12 + 1


def monthly_dates(day: int, start: date, end: date) -> Iterator[date]:
    """Every date with day-of-month `day` (clamped) from `start` up to and including `end`."""
    y, m = start.year, start.month
    while True:
        d = due_date(y, m, day)
        if d > end:
            return
        if d >= start:
            yield d
        y, m = _add_months(y, m, 1)


def next_monthly(day: int, on_or_after: date) -> date:
    return next(monthly_dates(day, on_or_after, on_or_after + timedelta(days=62)))


@dataclass
class Facts:
    """What the rules can see about one tenant on one day. Each fact is worked out once."""

    record: TenantRecord
    today: date
    last_contact: date | None = None
    _late: dict[tuple[int, int], bool] = field(default_factory=dict, repr=False)

    @cached_property
    def history(self) -> PaymentHistory:
        return self.record.payment_history()

    # --- money -------------------------------------------------------------------------------
    @property
    def rent(self) -> Decimal:
        return self.record.rent

    @property
    def arrears(self) -> Decimal:
        return self.record.arrears if self.record.arrears > 0 else ZERO

    @cached_property
    def months_behind(self) -> Decimal:
        if self.rent <= 0 or self.arrears <= 0:
            return ZERO
        return (self.arrears / self.rent).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    @property
    def arrears_days(self) -> int:
        if self.arrears <= 0 or self.record.arrears_since is None:
            return 0
        return max(0, (self.today - self.record.arrears_since).days)

    # --- dates -------------------------------------------------------------------------------
    @cached_property
    def rent_due(self) -> date:
        return next_monthly(self.record.due_day, self.today)

    @cached_property
    def arrangement(self) -> bool:
        r = self.record
        if not r.arrangement_amount or r.arrangement_amount <= 0 or not r.arrangement_day:
            return False
        return r.arrangement_until is None or r.arrangement_until >= self.today

    @property
    def installment(self) -> Decimal | None:
        return self.record.arrangement_amount if self.arrangement else None

    @cached_property
    def installment_due(self) -> date | None:
        if not self.arrangement:
            return None
        d = next_monthly(self.record.arrangement_day or 1, self.today)
        until = self.record.arrangement_until
        return d if until is None or d <= until else None

    @cached_property
    def last_payment(self) -> date | None:
        last = self.history.last_paid_on
        if last is not None and last > self.today:  # a payment dated later than today (a future day asked)
            dates = [p.paid_on for p in self.record.payments if p.paid_on <= self.today]
            return max(dates) if dates else None
        return last

    def date_series(self, fact: str, start: date, end: date) -> list[date]:
        """All dates of a date fact from `start` to `end` (recurring facts give several)."""
        r = self.record
        if fact == "rent_due":
            return list(monthly_dates(r.due_day, start, end))
        if fact == "installment_due":
            if not self.arrangement:
                return []
            stop = min(end, r.arrangement_until) if r.arrangement_until else end
            return list(monthly_dates(r.arrangement_day or 1, start, stop))
        single = {
            "arrears_since": r.arrears_since if self.arrears > 0 else None,
            "last_payment": self.last_payment,
            "last_contact": self.last_contact,
            "move_in": r.move_in,
        }[fact]
        return [single] if single is not None and start <= single <= end else []

    # --- history -----------------------------------------------------------------------------
    def late_in(self, month: int, year: int) -> bool:
        """True when that month's rent was paid late (after its due date, or not in full)."""
        key = (year, month)
        if key not in self._late:
            move_in = self.record.move_in
            if (
                move_in is not None
                and key < (move_in.year, move_in.month)
                or _due_for(self.record, year, month) >= self.today
            ):
                self._late[key] = False
            else:
                self._late[key] = self.history.paid_on_time(year, month) < self.rent
        return self._late[key]

    def _past_months(self) -> Iterator[tuple[int, int]]:
        """Months whose rent was due before today, newest first, back to the move-in month."""
        y, m = self.today.year, self.today.month
        move_in = self.record.move_in
        floor = (move_in.year, move_in.month) if move_in else (self.today.year - 3, self.today.month)
        for _ in range(240):
            if (y, m) < floor:
                return
            if due_date(y, m, self.record.due_day) < self.today:
                yield y, m
            y, m = _add_months(y, m, -1)

    @cached_property
    def late_count_6m(self) -> int:
        months = list(zip(range(6), self._past_months(), strict=False))
        return sum(1 for _, (y, m) in months if self.late_in(m, y))

    @cached_property
    def on_time_streak(self) -> int:
        streak = 0
        months = {(i // 12, i % 12 + 1) for i in self.history.months}
        for y, m in self._past_months():
            if (y, m) not in months or self.late_in(m, y):
                break
            streak += 1
        return streak

    def summary(self) -> dict[str, object]:
        """The facts that events are derived from, in a form that can be stored and compared."""
        return {
            "arrears": str(self.arrears),
            "months_behind_whole": int(self.months_behind),
            "arrangement": self.arrangement,
            "streak": self.on_time_streak,
            "payments": self.history.count,
            "last_payment": self.last_payment.isoformat() if self.last_payment else None,
        }


@dataclass(frozen=True, slots=True)
class DerivedEvent:
    name: str
    count: int | None = None
    day: date | None = None  # None: the import's day
    previous: int | None = None  # the count before, for events that count


def derive_events(previous: dict | None, current: Facts, since: date | None) -> list[DerivedEvent]:
    """Events from comparing the stored summary of the last import with today's facts.

    The first import of a tenant is the baseline and yields no events.
    """
    if previous is None:
        return []
    now = current.summary()
    events: list[DerivedEvent] = []
    before_arrears, after_arrears = Decimal(previous["arrears"]), current.arrears
    if before_arrears <= 0 < after_arrears:
        events.append(DerivedEvent("arrears_started"))
    if before_arrears > 0 >= after_arrears:
        events.append(DerivedEvent("arrears_cleared"))
    was, whole = int(previous.get("months_behind_whole", 0)), int(now["months_behind_whole"])
    if whole > was and whole >= 1:
        events.append(DerivedEvent("arrears_grew", whole, None, was))
    if int(now["payments"]) > int(previous.get("payments", 0)):
        events.append(DerivedEvent("payment_received"))
    was, streak = int(previous.get("streak", 0)), int(now["streak"])
    if streak > was:
        events.append(DerivedEvent("on_time_streak", streak, None, was))
    if now["arrangement"] and not previous.get("arrangement"):
        events.append(DerivedEvent("arrangement_made"))
    if since is not None and current.arrangement:
        events.extend(DerivedEvent("installment_missed", None, d) for d in _missed_installments(current, since))
    return events


INSTALLMENT_GRACE_DAYS = 2


def _missed_installments(facts: Facts, since: date) -> list[date]:
    """Installment dates after `since` (plus grace) up to today with too little paid around them.

    Installments pay off earlier months, so only payments for a month before the installment's
    month count towards it.
    """
    r = facts.record
    amount = r.arrangement_amount or ZERO
    missed = []
    start = since - timedelta(days=INSTALLMENT_GRACE_DAYS) + timedelta(days=1)
    end = facts.today - timedelta(days=INSTALLMENT_GRACE_DAYS)
    for d in monthly_dates(r.arrangement_day or 1, start, end):
        window_start, window_end = d - timedelta(days=7), d + timedelta(days=INSTALLMENT_GRACE_DAYS)
        paid = sum(
            (
                p.amount
                for p in r.payments
                if window_start <= p.paid_on <= window_end and p.for_month < (d.year, d.month)
            ),
            ZERO,
        )
        if paid < amount:
            missed.append(d)
    return missed
