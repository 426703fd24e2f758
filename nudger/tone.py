"""The tone guard: every text of every rule, rendered for sample tenants, checked for warmth and fit.

`nudger check`, `nudger preview` and the daemon's rulebook reload all use `check_all`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec
import pyphen
import yaml
from jinja2.exceptions import TemplateError

from .conditions import build_scope, event_view
from .config import CHANNEL_NAMES, Config
from .errors import Finding, RulebookError
from .facts import Facts, Payment, TenantRecord
from .pacing import open_weekdays, parse_windows, policy_from_config
from .render import VARIANT_FOR_CHANNEL, render_text, signature
from .rulebook import Rule, Rulebook, check_rulebook

_WORD = re.compile(r"[^\W\d_](?:[^\W_]|['’-][^\W\d_])*", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
_PYPHEN_LANG = {"nl": "nl_NL", "en": "en_US"}


# --- word lists ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Words:
    threats: dict[str, tuple[str, ...]]
    officialese: dict[str, dict[str, str]]
    invitations: dict[str, tuple[str, ...]]
    asks: dict[str, tuple[str, ...]]
    self_signing: dict[str, tuple[str, ...]]
    allow_capitals: frozenset[str]


@cache
def _shipped() -> dict[str, Any]:
    text = resources.files("nudger").joinpath("resources/tone.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def words_for(config: Config) -> Words:
    """The shipped word lists, extended by `tone:` in config.yaml."""
    shipped = _shipped()
    extra = config.tone

    def merged_lists(name: str, more: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
        out = {lang: tuple(items) for lang, items in shipped[name].items()}
        for lang, items in more.items():
            out[lang] = out.get(lang, ()) + tuple(items)
        return out

    officialese = {lang: dict(items) for lang, items in shipped["officialese"].items()}
    for lang, items in extra.officialese.items():
        officialese.setdefault(lang, {}).update(items)
    return Words(
        threats=merged_lists("threats", extra.threats),
        officialese=officialese,
        invitations=merged_lists("invitations", extra.invitations),
        asks=merged_lists("asks", extra.asks),
        self_signing=merged_lists("self_signing", {}),
        allow_capitals=frozenset(shipped["allow_capitals"]) | frozenset(extra.allow_capitals),
    )


def _phrase(pattern: str) -> re.Pattern[str]:
    """Whole words, case-insensitive; the phrase may hold a regular expression such as `\\d+`."""
    return re.compile(r"(?<!\w)" + pattern.replace(" ", r"\s+") + r"(?!\w)", re.IGNORECASE)


@cache
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(_phrase(p) for p in patterns)


def find_phrases(text: str, phrases: Iterable[str]) -> list[str]:
    phrases = tuple(phrases)
    return [m.group(0) for rx in _compiled(phrases) for m in [rx.search(text)] if m]


# --- measures -----------------------------------------------------------------------------------


def sentences(text: str) -> list[str]:
    """Sentences of a text. A line that ends without punctuation (a greeting) joins the next."""
    flat = re.sub(r"(?<=[,;:])\s*\n\s*", " ", text.strip())
    flat = re.sub(r"(?<![.!?])\n(?!\n)", " ", flat)
    return [s.strip() for s in _SENTENCE_END.split(flat) if _WORD.search(s)]


def words(text: str) -> list[str]:
    return _WORD.findall(text)


@cache
def _hyphenator(language: str) -> pyphen.Pyphen:
    return pyphen.Pyphen(lang=_PYPHEN_LANG.get(language, "nl_NL"))


def syllables(word: str, language: str) -> int:
    """Syllables from Pyphen's hyphenation dictionary (Dutch: as Flesch-Douma prescribes)."""
    return max(1, len(_hyphenator(language).positions(word.lower())) + 1)


@dataclass(frozen=True)
class Readability:
    score: float
    words: int
    sentences: int
    syllables: int
    sentence_lengths: tuple[int, ...]


def readability(text: str, language: str) -> Readability:
    """Flesch-Douma for Dutch (206.835 - 0.93 ASL - 77 ASW), Flesch Reading Ease for English."""
    sents = sentences(text)
    lengths = tuple(len(words(s)) for s in sents)
    all_words = [w for s in sents for w in words(s)]
    n_words = max(1, len(all_words))
    n_sent = max(1, len(sents))
    n_syll = sum(syllables(w, language) for w in all_words)
    if language == "en":
        score = 206.835 - 1.015 * (n_words / n_sent) - 84.6 * (n_syll / n_words)
    else:
        score = 206.835 - 0.93 * (n_words / n_sent) - 77 * (n_syll / n_words)
    return Readability(round(score, 1), len(all_words), len(sents), n_syll, lengths)


@dataclass(frozen=True)
class Segments:
    count: int
    encoding: str  # "GSM-7" | "UCS-2"
    units: int  # septets or UTF-16 code units
    forced_by: str = ""  # the first character that needs UCS-2


def sms_segments(text: str) -> Segments:
    """How many SMS segments a text takes (GSM 03.38 with its extension table, else UCS-2)."""
    try:
        septets = len(text.encode("gsm03.38"))
    except UnicodeEncodeError as exc:
        units = len(text.encode("utf-16-le")) // 2
        return Segments(1 if units <= 70 else math.ceil(units / 67), "UCS-2", units, text[exc.start])
    return Segments(1 if septets <= 160 else math.ceil(septets / 153), "GSM-7", septets)


# --- samples ------------------------------------------------------------------------------------


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
            "SAMPLE-NL",
            "Maria Dolores van den Bosch-Wijnaldum",
            "Maria Dolores",
            "nl",
            rent=Decimal("1234.56"),
            arrears=Decimal("3703.68"),
            arrears_since=date(2026, 9, 1),
            arrangement_amount=Decimal("1125.00"),
            arrangement_day=15,
            **base,
        ),
        TenantRecord(
            "SAMPLE-EN",
            "Christopher Montgomery-Whitfield",
            "Christopher",
            "en",
            rent=Decimal("950.00"),
            payments=[Payment(today, Decimal("950.00"), month)],
            **base,
        ),
    ]


@dataclass
class Sample:
    rule: Rule
    language: str
    channel: str
    variant: str
    line: int
    tenant_id: str
    body: str
    subject: str
    signature: str
    sms_text: str = ""
    names: frozenset[str] = frozenset()  # words of the tenant's, officer's and organisation's names


def channels_of(rule: Rule) -> tuple[str, ...]:
    return rule.channels if rule.channels is not None else tuple(c for c in CHANNEL_NAMES if c != "call")


def _languages(rule: Rule) -> list[str]:
    langs: set[str] = set()
    for variant in rule.sources.values():
        langs |= set(variant)
    return sorted(langs)


def rendered_samples(
    config: Config, book: Rulebook, today: date, records: Iterable[TenantRecord] = ()
) -> Iterator[Sample | Finding]:
    """Render every text of every rule in every language for every channel it can reach."""
    from .render import sms_safe

    samples = sample_records(today) + list(records)  # built-in samples first: their words show in findings
    any_officer = next(iter(book.officers.values()), None)
    for rule in book.rules.values():
        for language in _languages(rule):
            for channel in channels_of(rule):
                variant = VARIANT_FOR_CHANNEL.get(channel, "text")
                if variant not in rule.sources or language not in rule.sources[variant]:
                    variant = "text"
                if language not in rule.sources.get(variant, {}):
                    continue
                template, lang = rule.template(channel, language, config.default_language)
                line = rule.lines.get((variant, lang), rule.line)
                for record in samples:
                    officer = book.signer(record.officer, today) or any_officer
                    facts = Facts(record, today, last_contact=today)
                    event = (
                        event_view(rule.trigger.event, today, rule.trigger.count or 1)
                        if rule.trigger.kind == "on"
                        else None
                    )
                    scope = build_scope(facts, officer, lang, event)
                    locale = config.locale_for(lang)
                    try:
                        body = render_text(template, scope, locale)
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
                    if not body.strip():
                        yield Finding(
                            rule.file,
                            line,
                            "error",
                            f"the {variant} in `{lang}` renders empty",
                            "write the message text",
                            rule.id,
                        )
                        break
                    sig = signature(scope["officer"], channel, lang, config.organisation.name, card=rule.card)
                    full = f"{body}\n\n{sig}" if sig else body
                    names = frozenset(words(f"{record.name} {scope['officer']['name']} {config.organisation.name}"))
                    yield Sample(
                        rule,
                        lang,
                        channel,
                        variant,
                        line,
                        record.tenant_id,
                        body,
                        subject,
                        sig,
                        sms_safe(full) if channel == "sms" else "",
                        names,
                    )


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


# --- the checks ---------------------------------------------------------------------------------


@dataclass
class TextReport:
    """Everything the guard found about one rendered text (used by `nudger preview` too)."""

    readability: Readability
    segments: Segments | None
    findings: list[Finding] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # what each finding is about, for de-duplication


def judge(sample: Sample, config: Config, words_: Words, *, sms: bool = True) -> TextReport:
    """Check one rendered text. Findings carry the rule file and the line of the text."""
    rule, lang, body = sample.rule, sample.language, sample.body
    t = config.tone
    out: list[Finding] = []
    kinds: list[str] = []

    def add(level: str, message: str, fix: str, kind: str = "") -> None:
        where = f"{sample.variant} `{lang}`" + (f" ({sample.channel})" if kind == "sms" else "")
        out.append(Finding(rule.file, sample.line, level, f"{where}: {message}", fix, rule.id))
        kinds.append(kind or message)

    read = readability(body, lang)
    tenant_facing = rule.tenant_facing
    if tenant_facing:
        floor = t.readability_floor.get(lang, 60)
        if read.score < floor:
            name = "Flesch-Douma" if lang != "en" else "Flesch"
            add(
                "error",
                f"readability {name} {read.score:.1f} is below {floor:g} (B1)",
                "use shorter sentences and shorter, everyday words",
                "readability",
            )
        for index, sentence in enumerate(sentences(body)):
            n = len(words(sentence))
            if n > t.max_sentence_words:
                add(
                    "error",
                    f'a sentence of {n} words (more than {t.max_sentence_words}): "{_clip(sentence)}"',
                    "split it into two sentences",
                    f"sentence:{index}",
                )
            # names are not the tenant's burden: the sample's own names, and capitals inside a sentence
            long_words = [
                w
                for i, w in enumerate(words(sentence))
                if syllables(w, lang) > t.long_word_syllables
                and w not in sample.names
                and (i == 0 or not w[0].isupper())
            ]
            if long_words:
                add(
                    "warning",
                    f'long word(s) {", ".join(sorted(set(long_words)))} in "{_clip(sentence)}"',
                    "use a shorter, everyday word if there is one",
                    f"long-words:{index}",
                )
    for phrase in find_phrases(body + "\n" + sample.subject, words_.threats.get(lang, ())):
        add(
            "error",
            f"`{phrase}` threatens or commands",
            "ask instead: invite the tenant to talk or reply",
            f"threat:{phrase.lower()}",
        )
    for word, plain in words_.officialese.get(lang, {}).items():
        if find_phrases(body + "\n" + sample.subject, (word,)):
            add("warning", f"`{word}` is officialese", f"write `{plain}`", f"officialese:{word}")
    shouting = sorted({w for w in words(body) if len(w) >= 2 and w.isupper() and w not in words_.allow_capitals})
    if shouting:
        add("error", f"word(s) in capitals: {', '.join(shouting)}", "write them in small letters", "capitals")
    if body.count("!") > 1:
        add("error", f"{body.count('!')} exclamation marks", "use at most one", "exclamation")
    if (
        rule.kind in ("reminder", "check-in")
        and "?" not in body
        and not find_phrases(body, words_.invitations.get(lang, ()))
    ):
        example = (
            '"Shall we have a quick call?" or "Just let me know."'
            if lang == "en"
            else '"Zullen we even bellen?" or "Laat het me gerust weten."'
        )
        add("warning", "the text does not invite a reply", f"ask a question or offer to talk, e.g. {example}", "invite")
    if tenant_facing:
        ask_sentences = [s for s in sentences(body) if find_phrases(s, words_.asks.get(lang, ()))]
        if len(ask_sentences) > 1:
            add(
                "warning",
                f"{len(ask_sentences)} requests in one message: "
                + " / ".join(f'"{_clip(s, 40)}"' for s in ask_sentences),
                "keep one ask per message; send the other one later",
                "asks",
            )
        last_line = body.strip().splitlines()[-1].lower()
        org = config.organisation.name.lower()
        if (org and org in last_line) or find_phrases(last_line, words_.self_signing.get(lang, ())):
            add(
                "warning",
                "the text signs itself with the organisation, not a person",
                "leave the closing out: nudger signs every message with the officer's name",
                "self-signed",
            )
    segments = None
    if sample.channel == "sms":
        segments = sms_segments(sample.sms_text)
        if sms and segments.count > t.sms_max_segments:
            forced = f"; `{segments.forced_by}` needs UCS-2, which halves the room" if segments.forced_by else ""
            add(
                "error",
                f"the SMS takes {segments.count} segments ({segments.units} {segments.encoding} "
                f"characters with the signature){forced}",
                f"shorten it to {t.sms_max_segments} segments, or write an `sms:` variant",
                "sms",
            )
    return TextReport(read, segments, out, kinds)


def _clip(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def rule_findings(config: Config, book: Rulebook, today: date, records: list[TenantRecord]) -> list[Finding]:
    """Checks of whole rules: subjects, WhatsApp templates, signers, reachability."""
    out: list[Finding] = []
    samples = records + sample_records(today)
    unsigned = sorted({r.tenant_id for r in records if book.signer(r.officer, today) is None})
    policy = policy_from_config(config)
    for tid, pref in book.prefs.items():
        if pref.window and not open_weekdays(policy, [parse_windows(list(pref.window))]):
            out.append(
                Finding(
                    config.display_path(config.rules_path / "tenants.yaml"),
                    pref.line,
                    "warning",
                    f"tenant {tid}'s window never overlaps the organisation's hours ({config.pacing.hours})",
                    "choose hours inside them, or nothing can reach this tenant",
                )
            )
    for rule in book.rules.values():
        if not rule.tenant_facing:
            continue

        def flag(field_name: str, level: str, message: str, fix: str, rule: Rule = rule) -> None:
            out.append(Finding(rule.file, rule.line_of(field_name), level, message, fix, rule.id))

        chans = channels_of(rule)
        if "whatsapp" in chans and not rule.whatsapp_template:
            flag(
                "channels",
                "error",
                "the rule can reach WhatsApp but names no approved template",
                "add `whatsapp_template: NAME` (templates are listed in config.yaml)",
            )
        if any(c in ("email", "print") for c in chans) and "subject" not in rule.sources:
            flag(
                "text",
                "warning",
                "e-mails and letters need a subject or heading",
                "add `subject:` with a short heading per language",
            )
        for c in chans:
            if c not in config.channels:
                flag(
                    "channels",
                    "error",
                    f"channel `{c}` is not configured",
                    f"add `{c}:` under `channels:` in config.yaml",
                )
        if unsigned:
            flag(
                "id",
                "warning",
                f"nobody can sign today for {len(unsigned)} tenant(s) (e.g. {unsigned[0]}): "
                "their officer is unknown or away without a backup",
                "check `officer` in the data and `backup` in officers.yaml",
            )
        if rule.trigger.kind == "at" and rule.trigger.at is not None and rule.trigger.at.date() < today:
            flag(
                "trigger",
                "warning",
                "the moment in `at:` has passed; the rule never fires",
                "set a new moment, or `enabled: false`",
            )
        if rule.windows and not open_weekdays(policy, [rule.windows]):
            flag(
                "window",
                "error",
                "the window never overlaps the organisation's hours "
                f"({config.pacing.hours}, closed on {', '.join(config.pacing.closed_days)})",
                "choose hours inside them, e.g. `ma-vr 10:00-12:00`",
            )
        if rule.condition is not None and not _holds_for_any(rule, book, samples, today):
            flag(
                "when",
                "warning",
                f"the condition `{rule.condition.source}` is false for every sample tenant",
                f"check it with `nudger plan --rule {rule.id}`",
            )
    return out


def _holds_for_any(rule: Rule, book: Rulebook, samples: list[TenantRecord], today: date) -> bool:
    any_officer = next(iter(book.officers.values()), None)
    for record in samples:
        event = event_view(rule.trigger.event, today, rule.trigger.count or 1) if rule.trigger.kind == "on" else None
        scope = build_scope(Facts(record, today, last_contact=today), any_officer, record.language or "nl", event)
        try:
            if rule.condition is not None and rule.condition(scope):
                return True
        except (TemplateError, TypeError, ValueError, ArithmeticError):
            continue
    return False


def check_all(
    config: Config,
    today: date | None = None,
    records: list[TenantRecord] | None = None,
    data_ids: set[str] | None = None,
) -> tuple[Rulebook | None, list[Finding]]:
    """Everything `nudger check` reports: structure, then every text, then whole rules.

    `records` are sample tenants from the data (the built-in samples are always added);
    `data_ids` lets check warn about tenants.yaml entries that are not in the data.
    """
    book, findings = check_rulebook(config)
    if book is None:
        return None, findings
    today = today or date.today()
    records = records or []
    words_ = words_for(config)
    seen: set[tuple[str, int, str]] = set()

    def keep(f: Finding) -> None:
        key = (f.file, f.line, f.message)
        if key not in seen:
            seen.add(key)
            findings.append(f)

    seen_text: set[tuple[str, int, str]] = set()
    worst: dict[tuple[str, str, str], tuple[Sample, Segments]] = {}
    from_data: dict[tuple[str, str, str], tuple[Sample, Segments, set[str]]] = {}
    for item in rendered_samples(config, book, today, records):
        if isinstance(item, Finding):
            keep(item)
            continue
        report = judge(item, config, words_, sms=False)
        for f, kind in zip(report.findings, report.kinds, strict=True):
            text_key = (f.file, f.line, kind)
            if text_key not in seen_text:
                seen_text.add(text_key)
                keep(f)
        if report.segments is None:
            continue
        key = (item.rule.id, item.variant, item.language)
        if item.tenant_id.startswith("SAMPLE-"):
            if key not in worst or report.segments.count > worst[key][1].count:
                worst[key] = (item, report.segments)
        elif report.segments.count > config.tone.sms_max_segments:
            _, seg, chars = from_data.get(key, (item, report.segments, set()))
            chars.add(report.segments.forced_by)
            if report.segments.count >= seg.count:
                from_data[key] = (item, report.segments, chars)
            else:
                from_data[key] = (from_data[key][0], seg, chars)
    limit = config.tone.sms_max_segments
    for item, seg in worst.values():
        if seg.count > limit:
            forced = f"; `{seg.forced_by}` needs UCS-2, which halves the room" if seg.forced_by else ""
            keep(
                Finding(
                    item.rule.file,
                    item.line,
                    "error",
                    f"{item.variant} `{item.language}` (sms): the SMS takes {seg.count} segments "
                    f"({seg.units} {seg.encoding} characters with the signature){forced}",
                    f"shorten it to {limit} segments, or write a shorter `sms:` variant",
                    item.rule.id,
                )
            )
    for key, (item, seg, chars) in from_data.items():
        if key in worst and worst[key][1].count > limit:
            continue  # already an error for every tenant
        names = ", ".join(f"`{c}`" for c in sorted(c for c in chars if c))
        keep(
            Finding(
                item.rule.file,
                item.line,
                "warning",
                f"{item.variant} `{item.language}` (sms): for tenants whose name or address needs "
                f"{names} (UCS-2), the SMS takes up to {seg.count} segments",
                f"a shorter `sms:` variant keeps it within {limit}",
                item.rule.id,
            )
        )
    for f in rule_findings(config, book, today, records):
        keep(f)
    if data_ids is not None:
        for tid, pref in book.prefs.items():
            if tid not in data_ids:
                keep(
                    Finding(
                        config.display_path(config.rules_path / "tenants.yaml"),
                        pref.line,
                        "warning",
                        f"tenant {tid} is not in the data",
                        "check the id, or remove the entry when the tenant has left",
                    )
                )
    return book, findings


def load_checked(config: Config, today: date | None = None, records: list[TenantRecord] | None = None) -> Rulebook:
    """The rulebook, only when `nudger check` finds no errors in it (for the daemon and run --once)."""
    book, findings = check_all(config, today, records)
    errors = [f for f in findings if f.level == "error"]
    if book is None or errors:
        raise RulebookError(errors or findings)
    return book
