"""Rendering texts: Jinja2 in the sandbox, Babel filters in the tenant's locale, and the signature."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import phonenumbers
from babel.dates import format_date, format_time
from babel.numbers import format_currency
from jinja2 import Template, pass_context
from jinja2.runtime import Context

from .conditions import RuleSandbox

VARIANT_FOR_CHANNEL = {"sms": "sms", "email": "email", "print": "letter", "whatsapp": "whatsapp"}


def _locale(ctx: Context) -> str:
    return str(ctx.get("_locale") or "nl_NL")


@pass_context
def money(ctx: Context, value: Any) -> str:
    if value is None:
        return ""
    return format_currency(Decimal(str(value)), "EUR", locale=_locale(ctx))


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


@pass_context
def long_date(ctx: Context, value: Any) -> str:
    if value is None:
        return ""
    return format_date(_as_date(value), format="long", locale=_locale(ctx))


@pass_context
def weekday(ctx: Context, value: Any) -> str:
    if value is None:
        return ""
    return format_date(_as_date(value), format="EEEE", locale=_locale(ctx))


@pass_context
def clock(ctx: Context, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = time.fromisoformat(value)
    return format_time(value, format="short", locale=_locale(ctx))


def make_env() -> RuleSandbox:
    env = RuleSandbox()
    env.filters.update({"money": money, "date": long_date, "weekday": weekday, "time": clock})
    return env


def display_phone(number: str, region: str = "NL") -> str:
    """An officer's number as people write it here (`020 555 0101`); as given when unparseable."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return number
    if not phonenumbers.is_possible_number(parsed):
        return number
    fmt = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if parsed.country_code == 31
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return phonenumbers.format_number(parsed, fmt)


_CLOSINGS = {
    "nl": {
        "short": "Groet,",
        "long": "Met vriendelijke groet,",
        "card": "Hartelijke groet,",
        "direct": "Direct nummer",
    },
    "en": {"short": "Best wishes,", "long": "Kind regards,", "card": "Warm wishes,", "direct": "Direct line"},
}


def signature(officer: dict[str, Any], channel: str, language: str, organisation: str, *, card: bool = False) -> str:
    """The signer's signature in the form that fits the channel. Tasks (call) are not signed."""
    words = _CLOSINGS.get(language, _CLOSINGS["nl"])
    phone = display_phone(officer.get("phone", "")) if officer.get("phone") else ""
    if channel == "call":
        return ""
    if channel in ("sms", "whatsapp"):
        tail = ", ".join(x for x in (officer.get("role", ""), phone) if x)
        return f"{words['short']} {officer['first_name']}" + (f"\n{tail}" if tail else "")
    if channel == "print" and card:
        return f"{words['card']}\n\n\n{officer['name']}"
    lines = [words["long"], "", officer["name"]]
    if officer.get("role"):
        lines.append(f"{officer['role']}, {organisation}")
    if phone:
        lines.append(f"{words['direct']}: {phone}")
    if channel == "email" and officer.get("email"):
        lines.append(officer["email"])
    return "\n".join(lines)


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str  # the text without signature
    signature: str

    @property
    def full(self) -> str:
        return f"{self.body}\n\n{self.signature}" if self.signature else self.body


def render_text(template: Template, scope: dict[str, Any], locale: str) -> str:
    text = template.render({**scope, "_locale": locale})
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return "\n".join(lines)


_SMS_PLAIN = {
    "\u00a0": " ",
    "\u202f": " ",
    "\u2009": " ",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2026": "...",
}


def sms_safe(text: str) -> str:
    """Babel's no-break spaces and typographic quotes become plain ones, so SMS stays in GSM-7."""
    return "".join(_SMS_PLAIN.get(ch, ch) for ch in text)
