"""What `nudger check` guards beyond the rulebook's structure: every text renders for sample tenants.

The tone guard proper (readability, threatening words, SMS segments) builds on `rendered_samples`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from jinja2.exceptions import TemplateError

from .conditions import build_scope, event_view
from .config import CHANNEL_NAMES, Config
from .errors import Finding, NudgerError
from .facts import Facts, Payment, TenantRecord
from .render import VARIANT_FOR_CHANNEL, render_text
from .rulebook import Rule, Rulebook, check_rulebook


def sample_records(today: date) -> list[TenantRecord]:
    """Built-in samples: a long name, large amounts, an arrangement, each language."""
    base = dict(
        street="Burgemeester van Leeuwenlaan",
        house_number="140 II",
        postcode="1064 KL",
        city="Amsterdam",
        officer="",
        due_day=1,
        phone="06 12345678",
        email="sample@example.nl",
        whatsapp_opt_in=True,
        move_in=date(2015, 3, 1),
    )
    month = (today.year, today.month)
    return [
        TenantRecord(
            "SAMPLE-1",
            "Maria Dolores van den Bosch-Wijnaldum",
            "Maria Dolores",
            "nl",
            rent=Decimal("1234.56"),
            arrears=Decimal("3703.68"),
            arrears_since=date(2026, 9, 1),
            arrangement_amount=Decimal("125.00"),
            arrangement_day=15,
            **base,
        ),
        TenantRecord(
            "SAMPLE-2",
            "Sam Smith",
            "Sam",
            "en",
            rent=Decimal("650.00"),
            payments=[Payment(today, Decimal("650.00"), month)],
            **base,
        ),
    ]


@dataclass
class Sample:
    rule: Rule
    language: str
    channel: str
    tenant_id: str
    text: str
    subject: str


def _channels_of(rule: Rule) -> tuple[str, ...]:
    return rule.channels if rule.channels is not None else tuple(c for c in CHANNEL_NAMES if c != "call")


def rendered_samples(
    config: Config, book: Rulebook, today: date, records: list[TenantRecord] | None = None
) -> Iterator[Sample | Finding]:
    """Render every text of every rule in every language for every channel it can reach."""
    records = records or sample_records(today)
    any_officer = next(iter(book.officers.values()), None)
    for rule in book.rules.values():
        languages = set(rule.sources.get("text", {}))
        for variant in rule.sources.values():
            languages |= set(variant)
        for language in sorted(languages):
            for channel in _channels_of(rule):
                variant = VARIANT_FOR_CHANNEL.get(channel, "text")
                if language not in rule.sources.get(variant, {}) and language not in rule.sources.get("text", {}):
                    continue
                template, lang = rule.template(channel, language, config.default_language)
                line = rule.lines.get((variant if variant in rule.sources else "text", lang), rule.line)
                for record in records:
                    officer = book.officers.get(record.officer) or any_officer
                    facts = Facts(record, today, last_contact=today)
                    event = (
                        event_view(rule.trigger.event, today, rule.trigger.count or 1)
                        if rule.trigger.kind == "on"
                        else None
                    )
                    scope = build_scope(facts, officer, lang, event)
                    locale = config.locale_for(lang)
                    try:
                        text = render_text(template, scope, locale)
                        subject_t = rule.subject(lang, config.default_language)
                        subject = render_text(subject_t, scope, locale) if subject_t else ""
                    except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
                        yield Finding(
                            rule.file,
                            line,
                            "error",
                            f"the {variant} in `{lang}` does not render for a sample tenant ({_short(exc)})",
                            "check the names after the dots, e.g. `tenant.first_name`",
                            rule.id,
                        )
                        break
                    if not text.strip():
                        yield Finding(
                            rule.file,
                            line,
                            "error",
                            f"the {variant} in `{lang}` renders empty",
                            "write the message text",
                            rule.id,
                        )
                        break
                    yield Sample(rule, lang, channel, record.tenant_id, text, subject)


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


def check_all(config: Config, today: date | None = None) -> tuple[Rulebook | None, list[Finding]]:
    """Everything `nudger check` reports: the rulebook's structure, then its texts."""
    book, findings = check_rulebook(config)
    if book is None:
        return None, findings
    today = today or date.today()
    seen: set[tuple[str, int, str]] = set()
    for item in rendered_samples(config, book, today):
        if isinstance(item, Finding):
            k = (item.file, item.line, item.message)
            if k not in seen:
                seen.add(k)
                findings.append(item)
    return book, findings


def require_clean(config: Config, book: Rulebook) -> None:
    """Raise when the texts do not render (used before swapping in a reloaded rulebook)."""
    problems = [f for f in rendered_samples(config, book, date.today()) if isinstance(f, Finding)]
    if problems:
        raise NudgerError(str(problems[0]))
