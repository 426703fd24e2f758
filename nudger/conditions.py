"""The sandbox that rules' `when:` conditions and texts run in, and the names they may use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .facts import Facts

# The names a condition or a text may use (RULEBOOK.md, "Conditions").
SCOPE_NAMES = frozenset(
    {
        "tenant",
        "officer",
        "rent",
        "arrears",
        "months_behind",
        "arrears_days",
        "rent_due",
        "installment",
        "installment_due",
        "arrangement",
        "late_count_6m",
        "on_time_streak",
        "last_payment",
        "last_contact",
        "today",
        "late_in",
    }
)
EVENT_NAME = "event"  # only in rules with an `on:` trigger


class Helper:
    """A function rules may call (the sandbox refuses every other call)."""

    def __init__(self, fn: Callable[..., Any], name: str):
        self._fn = fn
        self.__name__ = name

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


class RuleSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, StrictUndefined, no globals, and no calls but our helpers."""

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
        self.globals.clear()

    def is_safe_callable(self, obj: Any) -> bool:
        return isinstance(obj, Helper)


def unknown_names(env: RuleSandbox, source: str, allowed: frozenset[str]) -> list[str]:
    """Names a template uses that are not in `allowed` (raises TemplateSyntaxError)."""
    return sorted(meta.find_undeclared_variables(env.parse(source)) - allowed)


class Condition:
    """A compiled `when:` expression."""

    def __init__(self, env: RuleSandbox, source: str):
        self.source = source.strip()
        self._expr = env.compile_expression(self.source, undefined_to_none=False)

    def __call__(self, scope: dict[str, Any]) -> bool:
        return bool(self._expr(**scope))


def compile_condition(env: RuleSandbox, source: str, allowed: frozenset[str]) -> tuple[Condition | None, str]:
    """Compile a condition; on failure return (None, what is wrong)."""
    try:
        names = unknown_names(env, "{{ (" + source + ") }}", allowed)
    except TemplateSyntaxError as exc:
        return None, f"the condition cannot be read ({exc.message})"
    if names:
        return None, f"unknown name(s) {', '.join(names)}"
    try:
        return Condition(env, source), ""
    except TemplateSyntaxError as exc:
        return None, f"the condition cannot be read ({exc.message})"


def tenant_view(facts: Facts) -> dict[str, Any]:
    r = facts.record
    return {
        "id": r.tenant_id,
        "name": r.name,
        "first_name": r.first_name,
        "language": r.language,
        "phone": r.phone,
        "email": r.email,
        "whatsapp_opt_in": r.whatsapp_opt_in,
        "street": r.street,
        "house_number": r.house_number,
        "postcode": r.postcode,
        "city": r.city,
    }


def officer_view(officer: Any, language: str) -> dict[str, Any]:
    if officer is None:
        return {"key": "", "name": "", "first_name": "", "role": "", "phone": "", "email": ""}
    role = officer.role_en if language == "en" and officer.role_en else officer.role
    return {
        "key": officer.key,
        "name": officer.name,
        "first_name": officer.first_name,
        "role": role,
        "phone": officer.phone,
        "email": officer.email,
    }


def build_scope(facts: Facts, officer: Any, language: str, event: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything a condition or a text can see for one tenant, one day."""
    scope: dict[str, Any] = {
        "tenant": tenant_view(facts),
        "officer": officer_view(officer, language),
        "rent": facts.rent,
        "arrears": facts.arrears,
        "months_behind": facts.months_behind,
        "arrears_days": facts.arrears_days,
        "rent_due": facts.rent_due,
        "installment": facts.installment,
        "installment_due": facts.installment_due,
        "arrangement": facts.arrangement,
        "late_count_6m": facts.late_count_6m,
        "on_time_streak": facts.on_time_streak,
        "last_payment": facts.last_payment,
        "last_contact": facts.last_contact,
        "today": facts.today,
        "late_in": Helper(facts.late_in, "late_in"),
    }
    if event is not None:
        scope[EVENT_NAME] = event
    return scope


def event_view(name: str, day: date, count: int | None) -> dict[str, Any]:
    return {"name": name, "at": day, "count": count}
