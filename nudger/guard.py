"""The mass-send guard (DESIGN.md promise 6, "no mass mistakes").

A plan that would reach more than a set share of all tenants on one day, or a rule that would
reach more tenants in a day than its `max_per_day`, is not sent: its new nudges are stored as
`held` until a person lets them go (`nudger release RULE`) or drops them (`nudger cancel RULE`).
A wrong condition, a wrong date in a rule or a broken import then costs one look, not a thousand
letters. Pure: the engine brings what the ledger already holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from .planner import PlannedNudge


@dataclass(frozen=True)
class GuardLimits:
    max_share_per_day: float  # of all tenants, e.g. 0.20
    min_tenants_per_day: int  # a day reaching fewer tenants than this is never held for its share
    tenants_total: int
    rule_caps: dict[str, int]  # rule id -> max_per_day (rules without one are absent)
    released: frozenset[tuple[str, date]]  # (rule, day) a person let go: not held again

    @property
    def day_limit(self) -> int:
        """The most tenants one day may reach before its new nudges are held."""
        return max(self.min_tenants_per_day, int(self.max_share_per_day * self.tenants_total))


@dataclass(frozen=True)
class Hold:
    rule_id: str
    day: date
    held: int  # new nudges of this rule held on that day
    reason: str


def _release_hint(rule_id: str, day: date) -> str:
    return f"`nudger release {rule_id} --date {day.isoformat()}` lets it go, `nudger cancel {rule_id}` drops it"


def mass_holds(
    new: Iterable[PlannedNudge],
    existing: Iterable[tuple[str, str, datetime]],
    limits: GuardLimits,
    zone: ZoneInfo,
) -> tuple[dict[str, str], list[Hold]]:
    """Which of the new tenant-facing nudges to hold, and why.

    `existing` is (tenant, rule, moment) of the tenant-facing nudges the ledger already holds for
    these days (planned, held, claimed or sent). Returns {key: reason} for the nudges to hold and
    one Hold per (rule, day).
    """
    fresh = [n for n in new if n.kind != "task" and n.status == "planned" and n.send_at is not None]
    day_of = {n.key: n.send_at.astimezone(zone).date() for n in fresh}  # type: ignore[union-attr]
    days: set[date] = set(day_of.values())
    per_day: dict[date, set[str]] = {d: set() for d in days}
    per_rule: dict[tuple[str, date], set[str]] = {}
    for tenant, rule, at in existing:
        d = at.astimezone(zone).date()
        if d in per_day:
            per_day[d].add(tenant)
            per_rule.setdefault((rule, d), set()).add(tenant)
    for n in fresh:
        d = day_of[n.key]
        per_day[d].add(n.tenant_id)
        per_rule.setdefault((n.rule_id, d), set()).add(n.tenant_id)

    limit = limits.day_limit
    held: dict[str, str] = {}
    for n in fresh:
        d = day_of[n.key]
        if (n.rule_id, d) in limits.released:
            continue
        reached = len(per_day[d])
        cap = limits.rule_caps.get(n.rule_id)
        by_rule = len(per_rule[(n.rule_id, d)])
        if cap is not None and by_rule > cap:
            held[n.key] = (
                f"held: rule {n.rule_id} would reach {by_rule} tenants on {d.isoformat()}, more than its "
                f"max_per_day of {cap}; {_release_hint(n.rule_id, d)}"
            )
        elif reached > limit:
            share = reached / limits.tenants_total if limits.tenants_total else 1.0
            held[n.key] = (
                f"held: the plan would reach {reached} of {limits.tenants_total} tenants ({share:.0%}) on "
                f"{d.isoformat()}, more than guard.max_share_per_day ({limits.max_share_per_day:.0%}); "
                f"{_release_hint(n.rule_id, d)}"
            )
    holds: dict[tuple[str, date], list[str]] = {}
    for n in fresh:
        if n.key in held:
            holds.setdefault((n.rule_id, day_of[n.key]), []).append(held[n.key])
    return held, [Hold(rule, d, len(reasons), reasons[0]) for (rule, d), reasons in sorted(holds.items())]
