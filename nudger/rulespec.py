"""The rulebook's file formats (RULEBOOK.md) as pydantic models: validation and `nudger schema`."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

KINDS = ("reminder", "appreciation", "check-in", "campaign", "task")
DATE_FACTS = ("rent_due", "installment_due", "arrears_since", "last_payment", "last_contact", "move_in")
BUILTIN_EVENTS = (
    "arrears_started",
    "arrears_cleared",
    "payment_received",
    "on_time_streak",
    "arrangement_made",
    "installment_missed",
    "contact_made",
    "reply_received",
    "arrears_grew",
)
TRIGGER_KEYS = ("before", "after", "on", "yearly", "cron", "at")
TEXT_VARIANTS = ("text", "sms", "email", "letter", "whatsapp")
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_YEARLY = re.compile(r"^(\d{2})-(\d{2})$")
_RANGE = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})\s*(?:\.\.|tot|to|t/m)\s*(\d{4}-\d{2}-\d{2})\s*$")

Texts = str | dict[str, str]

EXAMPLES = {
    "id": "id: rent-reminder",
    "kind": "kind: reminder",
    "trigger": "trigger: {before: rent_due, days: 2}",
    "text": "text:\n  nl: Hoi {{ tenant.first_name }}, ...",
    "name": "name: Fatima el Amrani",
    "window": 'window: "ma-vr 18:00-20:00"',
    "channels": "channels: [sms, email]",
    "days": "days: 2",
    "priority": "priority: 50",
    "pause_until": "pause_until: 2027-01-15",
    "max_per_day": "max_per_day: 200",
}
# Dutch words officers may reach for, and the field they mean.
DUTCH_FIELDS = {
    "tekst": "text",
    "onderwerp": "subject",
    "kanalen": "channels",
    "kanaal": "channels",
    "wanneer": "when",
    "venster": "window",
    "tijdvak": "window",
    "vervalt": "expires",
    "verloopt": "expires",
    "prioriteit": "priority",
    "soort": "kind",
    "dagen": "days",
    "aantal": "count",
    "voor": "before",
    "na": "after",
    "op": "on",
    "jaarlijks": "yearly",
    "brief": "letter",
    "kaart": "card",
    "naam": "name",
    "voornaam": "first_name",
    "rol": "role",
    "telefoon": "phone",
    "afwezig": "absent",
    "vervanger": "backup",
    "taal": "language",
    "medewerker": "officer",
    "pauze_tot": "pause_until",
    "per_dag": "max_per_day",
}


# --- the file formats (also the source of `nudger schema`) ----------------------------------------


class TriggerSpec(BaseModel):
    """When a rule fires: exactly one of before, after, on, yearly, cron, at."""

    model_config = ConfigDict(extra="forbid")
    before: str | None = Field(None, description=f"N days before a date fact: {', '.join(DATE_FACTS)}")
    after: str | None = Field(None, description=f"N days after a date fact: {', '.join(DATE_FACTS)}")
    on: str | None = Field(None, description="when an event happens, e.g. arrears_cleared")
    yearly: str | None = Field(None, description="that day each year, MM-DD, e.g. 11-15")
    cron: str | None = Field(None, description='a cron moment "m h dom mon dow", e.g. "0 10 1 12 *"')
    at: str | datetime | None = Field(None, description="one moment, YYYY-MM-DDTHH:MM")
    days: int | None = Field(None, ge=0, le=366, description="with before/after (required) or on (a delay)")
    count: int | None = Field(None, ge=1, le=1000, description="with on: fires when the event's count reaches N")


class RuleSpec(BaseModel):
    """One rule: what to say, to whom and when."""

    model_config = ConfigDict(extra="forbid", title="nudger rule")
    id: str = Field(description="unique, lowercase-with-dashes, e.g. rent-reminder")
    about: str = Field("", description="one line for colleagues: what the rule is for")
    kind: Literal["reminder", "appreciation", "check-in", "campaign", "task"]
    trigger: TriggerSpec
    when: str | None = Field(None, description="optional condition, e.g. late_count_6m >= 2 and arrears == 0")
    channels: Literal["preferred"] | list[Literal["sms", "whatsapp", "email", "print", "call"]] = Field(
        "preferred", description="`preferred` (the tenant's order) or a list such as [sms, email]"
    )
    window: str | list[str] | None = Field(None, description='narrows the send window, e.g. "ma-vr 10:00-12:00"')
    expires: str | None = Field(None, description="later than this after the planned day it is not sent, e.g. 2 days")
    priority: int = Field(50, ge=0, le=100, description="0-100: the highest goes first when several are due")
    text: Texts = Field(description="the message per language (nl, en)")
    subject: Texts | None = Field(None, description="e-mail subject and letter heading per language")
    sms: Texts | None = Field(None, description="replaces text on SMS")
    email: Texts | None = Field(None, description="replaces text in e-mail")
    letter: Texts | None = Field(None, description="replaces text on letters and cards")
    whatsapp: Texts | None = Field(None, description="replaces text in WhatsApp (inside a 24-hour session)")
    whatsapp_template: str | None = Field(None, description="name of an approved template in config.yaml")
    card: bool = Field(False, description="print an A6 card to sign by hand instead of a letter")
    during_arrangement: Literal["skip", "send"] | None = Field(
        None, description="skip or send while a payment arrangement is active (reminders skip by default)"
    )
    enabled: bool = Field(True, description="false switches the rule off")
    max_per_day: int | None = Field(
        None,
        ge=1,
        description="the most tenants this rule may reach in one day; more are held for a person to look at",
    )


class OfficerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", title="nudger officer")
    name: str = Field(description="full name, shown in the signature")
    first_name: str | None = Field(None, description="used in short signatures (SMS, WhatsApp)")
    role: str = Field("", description="shown under the signature, e.g. uw vaste contactpersoon")
    role_en: str = Field("", description="the role in English messages")
    phone: str = Field("", description="direct number")
    email: str = Field("", description="direct e-mail address (Reply-To)")
    absent: list[str | date] = Field([], description="date ranges, inclusive: 2026-12-21 .. 2027-01-03")
    backup: str | None = Field(None, description="the officer who signs while this one is absent")


def _yes_no(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("ja", "nee", "j", "n"):
        return value.strip().lower().startswith("j")
    return value


class TenantPrefSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", title="nudger tenant preferences")
    channels: list[Literal["sms", "whatsapp", "email", "print", "call"]] | None = Field(
        None, description="order of preference; the first that works is used"
    )
    window: str | list[str] | None = Field(None, description="e.g. ma-vr 18:00-20:00")
    language: str | None = Field(None, description="message language, e.g. nl or en")
    officer: str | None = Field(None, description="key in officers.yaml")
    pause_until: date | None = Field(None, description="no nudges until and including this date")
    whatsapp_opt_in: bool | None = None

    _yn = field_validator("whatsapp_opt_in", mode="before")(classmethod(lambda cls, v: _yes_no(v)))


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schemas for the three kinds of file, for editors (yaml-language-server)."""
    rule = RuleSpec.model_json_schema()
    defs = rule.pop("$defs", {})
    rules_schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "nudger rule file (one rule, or a list of rules)",
        "$defs": {**defs, "Rule": rule},
        "anyOf": [{"$ref": "#/$defs/Rule"}, {"type": "array", "items": {"$ref": "#/$defs/Rule"}}],
    }
    officers = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "nudger officers.yaml",
        "type": "object",
        "additionalProperties": OfficerSpec.model_json_schema(),
    }
    tenants = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "nudger tenants.yaml",
        "type": ["object", "null"],
        "additionalProperties": TenantPrefSpec.model_json_schema(),
    }
    return {"rule": rules_schema, "officers": officers, "tenants": tenants}
