"""Planning: facts x rules x today -> nudges, each with an idempotency key. Pure: no clock, no store."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import Any

from jinja2.exceptions import TemplateError

from .conditions import build_scope, event_view
from .facts import Facts
from .pacing import Duration, Policy, Window, next_slot, parse_duration, parse_windows, to_local
from .rulebook import Rule, Rulebook

LOOKBACK_DAYS = 14  # occurrences this far back are still planned when they have not expired


@dataclass(frozen=True)
class EventFact:
    """An event as the planner sees it (from the ledger)."""

    tenant_id: str
    name: str
    day: date
    count: int | None = None
    previous: int | None = None


@dataclass
class PlannedNudge:
    key: str
    rule_id: str
    tenant_id: str
    kind: str
    occurrence: str
    send_at: datetime | None  # the first allowed moment; None when there is none
    expires_at: datetime
    priority: int
    status: str = "planned"  # planned | expired | skipped
    reason: str = ""
    channel: str = ""  # the channel it would use first, for display
    signer: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "tenant": self.tenant_id,
            "rule": self.rule_id,
            "kind": self.kind,
            "occurrence": self.occurrence,
            "channel": self.channel,
            "signer": self.signer,
            "send_at": self.send_at.isoformat() if self.send_at else None,
            "expires_at": self.expires_at.isoformat(),
            "priority": self.priority,
            "status": self.status,
            "reason": self.reason,
        }


@dataclass
class PlanContext:
    rulebook: Rulebook
    policy: Policy
    default_expiry: Mapping[str, str]  # kind -> duration text ("" for reminder: until the date)
    default_language: str
    now: datetime  # aware; the plan starts here
    days: int = 1  # horizon: today and the days after
    lookback_days: int = LOOKBACK_DAYS
    max_per_day: int = 1  # tenant-facing messages per tenant per day (tasks do not count)
    max_per_week: int = 2  # ... per rolling 7 days
    paused_until: date | None = None  # an organisation-wide pause (`nudger pause`)
    existing: frozenset[str] = frozenset()  # keys already in the ledger: they keep their slot
    booked: Mapping[str, Sequence[datetime]] = field(default_factory=dict)  # tenant -> sends and slots in the ledger

    _durations: dict[str, Duration | None] = field(default_factory=dict)
    calendar_occurrences: dict[str, list[Occurrence]] = field(default_factory=dict)  # per rule (and due day)

    @cached_property
    def today(self) -> date:
        return self.now.astimezone(self.policy.zone).date()

    @cached_property
    def last_day(self) -> date:
        return self.today + timedelta(days=self.days - 1)

    def default_duration(self, kind: str) -> Duration | None:
        if kind not in self._durations:
            text = self.default_expiry.get(kind, "")
            self._durations[kind] = parse_duration(text) if text else None
        return self._durations[kind]


@dataclass(frozen=True)
class Occurrence:
    label: str  # part of the key
    start: datetime  # the earliest moment
    about: date | None = None  # the date a reminder reminds of
    event: dict[str, Any] | None = None


def occurrences(rule: Rule, facts: Facts, events: Iterable[EventFact], ctx: PlanContext) -> list[Occurrence]:
    """The moments `rule` fires for one tenant whose planned day falls in the plan's range."""
    t = rule.trigger
    if t.kind in ("yearly", "cron", "at"):  # the same for every tenant: worked out once per plan
        if rule.id not in ctx.calendar_occurrences:
            ctx.calendar_occurrences[rule.id] = _occurrences(rule, facts, (), ctx)
        return ctx.calendar_occurrences[rule.id]
    if t.kind == "on" and not events:
        return []
    if t.kind in ("before", "after") and t.fact == "rent_due":  # the same for every tenant with that due day
        key = f"{rule.id}@{facts.record.due_day}"
        if key not in ctx.calendar_occurrences:
            ctx.calendar_occurrences[key] = _occurrences(rule, facts, events, ctx)
        return ctx.calendar_occurrences[key]
    return _occurrences(rule, facts, events, ctx)


def _occurrences(rule: Rule, facts: Facts, events: Iterable[EventFact], ctx: PlanContext) -> list[Occurrence]:
    t = rule.trigger
    zone = ctx.policy.zone
    first = ctx.today - timedelta(days=ctx.lookback_days)
    last = ctx.last_day
    out: list[Occurrence] = []

    def at_day(day: date) -> datetime:
        return to_local(day, time(0), zone)

    if t.kind == "before":
        for d in facts.date_series(t.fact, first + timedelta(days=t.days), last + timedelta(days=t.days)):
            out.append(Occurrence(d.isoformat(), at_day(d - timedelta(days=t.days)), about=d))
    elif t.kind == "after":
        for d in facts.date_series(t.fact, first - timedelta(days=t.days), last - timedelta(days=t.days)):
            out.append(Occurrence(d.isoformat(), at_day(d + timedelta(days=t.days))))
    elif t.kind == "on":
        for e in events:
            if e.name != t.event:
                continue
            if t.count is not None and not _reaches(e, t.count):
                continue
            due = e.day + timedelta(days=t.days)
            if first <= due <= last:
                label = f"{e.name}@{e.day.isoformat()}" + (f"#{t.count}" if t.count else "")
                out.append(Occurrence(label, at_day(due), event=event_view(e.name, e.day, e.count)))
    elif t.kind == "yearly" and t.month_day:
        for year in range(first.year, last.year + 1):
            d = date(year, *t.month_day)
            if first <= d <= last:
                out.append(Occurrence(d.isoformat(), at_day(d)))
    elif t.kind == "cron" and t.cron is not None:
        moment = at_day(first)
        end = at_day(last + timedelta(days=1))
        previous = None
        while True:
            fire = t.cron.get_next_fire_time(previous, moment)
            if fire is None or fire >= end:
                break
            out.append(Occurrence(fire.astimezone(zone).isoformat(timespec="minutes"), fire))
            previous, moment = fire, fire + timedelta(seconds=1)
    elif t.kind == "at" and t.at is not None and at_day(first) <= t.at < at_day(last + timedelta(days=1)):
        out.append(Occurrence(t.at.astimezone(zone).isoformat(timespec="minutes"), t.at))
    return out


def still_fires(rule: Rule, facts: Facts, occurrence: str) -> bool:
    """Whether the trigger still gives this occurrence on the newest facts (never stale).

    A nudge planned 2 days after `arrears_since` no longer fires when the arrears were cleared
    (the fact is gone) or started again on another day; an installment reminder stops when the
    arrangement ends.
    """
    t = rule.trigger
    if t.kind not in ("before", "after"):
        return True
    try:
        day = date.fromisoformat(occurrence)
    except ValueError:
        return False
    return day in facts.date_series(t.fact, day, day)


def _reaches(e: EventFact, count: int) -> bool:
    """A counting event fires a `count: N` rule once: when it goes from below N to N or more."""
    return e.count is not None and e.count >= count and (e.previous is None or e.previous < count)


def expiry(rule: Rule, occ: Occurrence, ctx: PlanContext) -> datetime:
    """The latest moment a nudge may go (exclusive)."""
    policy = ctx.policy
    if rule.expires is not None:
        return rule.expires.after(occ.start, policy)
    if rule.kind == "reminder" and occ.about is not None:
        # a reminder is never sent on or after the day it reminds of (unless it is for that day)
        day = occ.about if rule.trigger.days > 0 else occ.about + timedelta(days=1)
        return policy.local_midnight(day)
    duration = ctx.default_duration(rule.kind) or parse_duration("2 days")
    return duration.after(occ.start, policy)


def channel_order(rule: Rule, facts: Facts) -> tuple[str, ...]:
    if rule.channels is not None:
        return rule.channels
    return facts.record.preferred_channels or ("sms", "email", "print")


def plan_tenant(
    facts: Facts,
    rules: Iterable[Rule],
    events: Iterable[EventFact],
    ctx: PlanContext,
    *,
    explain: bool = False,
) -> list[PlannedNudge]:
    """Every nudge the rules give for one tenant in the plan's range."""
    out: list[PlannedNudge] = []
    record = facts.record
    events = list(events)
    tenant_windows = parse_windows(list(record.window)) if record.window else ()
    language = record.language or ctx.default_language
    blocked = max((d for d in (record.pause_until, ctx.paused_until) if d is not None), default=None)
    to_cap: list[tuple[PlannedNudge, list[tuple[Window, ...]]]] = []
    scopes: dict[str, dict[str, Any]] = {}
    for rule in rules:
        if not rule.enabled:
            continue
        occs = occurrences(rule, facts, events, ctx)
        if not occs:
            continue
        for occ in occs:
            key = f"{rule.id}:{record.tenant_id}:{occ.label}"
            expires_at = expiry(rule, occ, ctx)
            nudge = PlannedNudge(
                key,
                rule.id,
                record.tenant_id,
                rule.kind,
                occ.label,
                None,
                expires_at,
                rule.priority,
                channel=channel_order(rule, facts)[0],
            )
            if expires_at <= ctx.now:
                continue  # long gone; not worth a row
            if rule.during_arrangement == "skip" and facts.arrangement:
                if explain:
                    nudge.status, nudge.reason = "skipped", "a payment arrangement is active"
                    out.append(nudge)
                continue
            day = max(occ.start, ctx.now).astimezone(ctx.policy.zone).date()
            signer = ctx.rulebook.signer(record.officer, day)
            nudge.signer = signer.key if signer else ""
            if rule.condition is not None:
                # only the names this condition reads, each worked out once per tenant (and signer):
                # most tenants never need their late history
                known = scopes.setdefault(signer.key if signer else "", {})
                missing = rule.condition.names - known.keys()
                if missing:
                    known.update(build_scope(facts, signer, language, names=missing))
                scope = {n: known[n] for n in rule.condition.names if n in known}
                if occ.event is not None:
                    scope["event"] = occ.event
                try:
                    holds = rule.condition(scope)
                except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
                    nudge.status, nudge.reason = (
                        "skipped",
                        f"the condition could not be evaluated ({type(exc).__name__})",
                    )
                    if explain:
                        out.append(nudge)
                    continue
                if not holds:
                    if explain:
                        nudge.status, nudge.reason = "skipped", "the condition does not hold"
                        out.append(nudge)
                    continue
            windows = [rule.windows, tenant_windows]
            slot = next_slot(max(occ.start, ctx.now), expires_at, ctx.policy, windows, blocked_until=blocked)
            if slot.at is None:
                nudge.status, nudge.reason = "expired", slot.reason
            else:
                nudge.send_at = slot.at
                if slot.reason:
                    nudge.reason = f"moved: {slot.reason}"
                if signer is None:
                    nudge.reason = "waits: nobody can sign (the officer and backups are away)"
                if rule.tenant_facing and key not in ctx.existing:
                    to_cap.append((nudge, windows))
            out.append(nudge)
    apply_caps(to_cap, ctx.booked.get(record.tenant_id, ()), ctx, blocked)
    return out


def apply_caps(
    items: list[tuple[PlannedNudge, list[tuple[Window, ...]]]],
    booked: Sequence[datetime],
    ctx: PlanContext,
    blocked_until: date | None = None,
) -> None:
    """One ask at a time: at most `max_per_day` a day and `max_per_week` in any 7 days per tenant.

    The highest priority keeps its slot; the others move to the next allowed day, or expire
    when there is none before their expiry. `booked` holds what the ledger already sent or
    planned for this tenant (it keeps its place).
    """
    zone = ctx.policy.zone
    taken: list[date] = [t.astimezone(zone).date() for t in booked]

    def fits(day: date) -> str:
        if sum(1 for d in taken if d == day) >= ctx.max_per_day:
            return f"already {ctx.max_per_day} message(s) on {day.isoformat()}"
        for start in (day - timedelta(days=k) for k in range(7)):
            if sum(1 for d in taken if start <= d < start + timedelta(days=7)) >= ctx.max_per_week:
                return f"already {ctx.max_per_week} message(s) in the 7 days around {day.isoformat()}"
        return ""

    for nudge, windows in sorted(items, key=lambda i: (-i[0].priority, i[0].send_at or i[0].expires_at)):
        at = nudge.send_at
        first_reason = ""
        while at is not None:
            day = at.astimezone(zone).date()
            why = fits(day)
            if not why:
                break
            first_reason = first_reason or why
            after = ctx.policy.local_midnight(day + timedelta(days=1))
            at = next_slot(after, nudge.expires_at, ctx.policy, windows, blocked_until=blocked_until).at
        if at is None:
            nudge.send_at, nudge.status = None, "expired"
            nudge.reason = f"one ask at a time: {first_reason}, and no free day before it expires"
            continue
        if first_reason:
            nudge.send_at = at
            nudge.reason = f"one ask at a time: {first_reason}; moved to {at.astimezone(zone):%Y-%m-%d %H:%M}"
        taken.append(at.astimezone(zone).date())


def plan(
    all_facts: Mapping[str, Facts],
    events_by_tenant: Mapping[str, list[EventFact]],
    ctx: PlanContext,
    *,
    rule_ids: Iterable[str] | None = None,
    tenant_ids: Iterable[str] | None = None,
    explain: bool = False,
) -> list[PlannedNudge]:
    """Plan every rule for every tenant (or the chosen ones)."""
    rules = [r for r in ctx.rulebook.rules.values() if rule_ids is None or r.id in set(rule_ids)]
    wanted = set(tenant_ids) if tenant_ids is not None else None
    out: list[PlannedNudge] = []
    for tid, facts in all_facts.items():
        if wanted is not None and tid not in wanted:
            continue
        out.extend(plan_tenant(facts, rules, events_by_tenant.get(tid, ()), ctx, explain=explain))
    out.sort(key=lambda n: (n.send_at or n.expires_at, n.tenant_id, -n.priority))
    return out
