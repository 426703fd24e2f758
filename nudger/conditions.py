"""The sandbox that rules' `when:` conditions and texts run in, and the names they may use."""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
        self.names = frozenset(meta.find_undeclared_variables(env.parse("{{ (" + self.source + ") }}")))

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


_FACTS: dict[str, Any] = {
    "rent": lambda f: f.rent,
    "arrears": lambda f: f.arrears,
    "months_behind": lambda f: f.months_behind,
    "arrears_days": lambda f: f.arrears_days,
    "rent_due": lambda f: f.rent_due,
    "installment": lambda f: f.installment,
    "installment_due": lambda f: f.installment_due,
    "arrangement": lambda f: f.arrangement,
    "late_count_6m": lambda f: f.late_count_6m,
    "on_time_streak": lambda f: f.on_time_streak,
    "last_payment": lambda f: f.last_payment,
    "last_contact": lambda f: f.last_contact,
    "today": lambda f: f.today,
    "late_in": lambda f: Helper(f.late_in, "late_in"),
}


def build_scope(
    facts: Facts,
    officer: Any,
    language: str,
    event: dict[str, Any] | None = None,
    names: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Everything a condition or a text can see for one tenant, one day (or only `names` of it:
    planning asks for what the conditions use, so 100,000 tenants are not worked out in full)."""
    wanted = SCOPE_NAMES if names is None else frozenset(names)
    scope: dict[str, Any] = {name: get(facts) for name, get in _FACTS.items() if name in wanted}
    if "tenant" in wanted:
        scope["tenant"] = tenant_view(facts)
    if "officer" in wanted:
        scope["officer"] = officer_view(officer, language)
    if event is not None:
        scope[EVENT_NAME] = event
    return scope


def event_view(name: str, day: date, count: int | None) -> dict[str, Any]:
    return {"name": name, "at": day, "count": count}
