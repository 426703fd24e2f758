"""The rulebook officers edit (RULEBOOK.md): loading, validation with file:line, and the JSON Schema."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from jinja2 import Template, TemplateSyntaxError
from pydantic import BaseModel, ValidationError

from .conditions import (
    EVENT_NAME,
    SCOPE_NAMES,
    Condition,
    RuleSandbox,
    compile_condition,
    unknown_names,
)
from .config import Config
from .errors import Finding, RulebookError
from .pacing import Duration, Window, parse_duration, parse_windows
from .render import make_env
from .rulespec import (  # noqa: F401 - the file formats, re-exported for callers of the rulebook
    _ID,
    _RANGE,
    _YEARLY,
    BUILTIN_EVENTS,
    DATE_FACTS,
    DUTCH_FIELDS,
    EXAMPLES,
    KINDS,
    TEXT_VARIANTS,
    TRIGGER_KEYS,
    OfficerSpec,
    RuleSpec,
    TenantPrefSpec,
    TriggerSpec,
    json_schemas,
)
from .yamlsrc import Located, load_yaml

_MAX_EXPIRES = {"days": 366, "hours": 366 * 24, "working_days": 366}

# --- the loaded rulebook ---------------------------------------------------------------------------


@dataclass
class Officer:
    key: str
    name: str
    first_name: str
    role: str = ""
    role_en: str = ""
    phone: str = ""
    email: str = ""
    absent: list[tuple[date, date]] = field(default_factory=list)
    backup: str | None = None

    def absent_on(self, day: date) -> bool:
        return any(a <= day <= b for a, b in self.absent)


@dataclass
class TenantPref:
    tenant_id: str
    channels: tuple[str, ...] | None = None
    window: tuple[str, ...] | None = None
    language: str | None = None
    officer: str | None = None
    pause_until: date | None = None
    whatsapp_opt_in: bool | None = None
    line: int = 0


@dataclass
class Trigger:
    kind: str  # one of TRIGGER_KEYS
    fact: str = ""  # before/after
    event: str = ""  # on
    days: int = 0
    count: int | None = None
    month_day: tuple[int, int] | None = None  # yearly
    cron: CronTrigger | None = None
    at: datetime | None = None

    def describe(self) -> str:
        if self.kind in ("before", "after"):
            return f"{self.days} days {self.kind} {self.fact}"
        if self.kind == "on":
            extra = f" (count {self.count})" if self.count else ""
            return f"on {self.event}{extra}" + (f" + {self.days} days" if self.days else "")
        if self.kind == "yearly" and self.month_day:
            return f"yearly on {self.month_day[0]:02d}-{self.month_day[1]:02d}"
        if self.kind == "at" and self.at:
            return f"at {self.at.isoformat()}"
        return self.kind


@dataclass
class Rule:
    id: str
    kind: str
    trigger: Trigger
    channels: tuple[str, ...] | None  # None: the tenant's preferred order
    priority: int
    file: str
    line: int
    about: str = ""
    condition: Condition | None = None
    windows: tuple[Window, ...] = ()
    expires: Duration | None = None
    texts: dict[str, dict[str, Template]] = field(default_factory=dict)  # variant -> language -> template
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    lines: dict[tuple[str, str], int] = field(default_factory=dict)
    whatsapp_template: str | None = None
    card: bool = False
    during_arrangement: str = "send"
    enabled: bool = True
    max_per_day: int | None = None  # tenants this rule may reach in one day before the rest is held
    field_lines: dict[str, int] = field(default_factory=dict)  # top-level field -> its line

    def line_of(self, name: str) -> int:
        return self.field_lines.get(name, self.line)

    @property
    def tenant_facing(self) -> bool:
        return self.kind != "task"

    def template(self, channel: str, language: str, default_language: str) -> tuple[Template, str]:
        """The text template for a channel and language, with its language (after fallback)."""
        from .render import VARIANT_FOR_CHANNEL

        variant = VARIANT_FOR_CHANNEL.get(channel)
        for var in ([variant] if variant else []) + ["text"]:
            by_lang = self.texts.get(var) or {}
            for lang in (language, default_language):
                if lang in by_lang:
                    return by_lang[lang], lang
        lang, tmpl = next(iter(self.texts["text"].items()))
        return tmpl, lang

    def subject(self, language: str, default_language: str) -> Template | None:
        by_lang = self.texts.get("subject") or {}
        return by_lang.get(language) or by_lang.get(default_language)


@dataclass
class Rulebook:
    rules: dict[str, Rule]
    officers: dict[str, Officer]
    prefs: dict[str, TenantPref]
    env: RuleSandbox
    findings: list[Finding]  # warnings (errors raise)
    folder: Path
    fingerprint: tuple = ()

    def signer(self, officer_key: str, day: date) -> Officer | None:
        """Who signs for `officer_key` on `day`: the officer, or the first available backup."""
        seen: set[str] = set()
        key: str | None = officer_key
        while key and key not in seen:
            seen.add(key)
            officer = self.officers.get(key)
            if officer is None:
                return None
            if not officer.absent_on(day):
                return officer
            key = officer.backup
        return None


def folder_fingerprint(folder: Path) -> tuple:
    """Names, sizes and modification times of the rulebook's files, to notice edits."""
    files = sorted(p for p in folder.glob("*.y*ml") if p.is_file())
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)


class _Loader:
    def __init__(self, config: Config, folder: Path):
        self.config = config
        self.folder = folder
        self.findings: list[Finding] = []
        self.env = make_env()
        self.languages = set(config.locales) | {config.default_language}
        self.events = set(BUILTIN_EVENTS) | set(config.custom_events)

    def add(self, located: Located, path: tuple, level: str, message: str, fix: str = "", rule: str = "") -> None:
        self.findings.append(Finding(located.file, located.line(path), level, message, fix, rule))

    def pydantic_findings(
        self, located: Located, base: tuple, exc: ValidationError, model: type[BaseModel], rule: str = ""
    ) -> None:
        # A field that may be one of several forms (text or a list, say) gets one error per form;
        # keep one per field: the deepest, which is closest to what the officer wrote.
        chosen: dict[tuple, dict] = {}
        for err in exc.errors():
            where = tuple(p for p in err["loc"] if not _is_type_tag(p))
            field_key = tuple(p for p in where if not isinstance(p, int)) or where
            current = chosen.get(field_key)
            if current is None or len(err["loc"]) > len(current["loc"]):
                chosen[field_key] = {**err, "where": where}
        for err in chosen.values():
            where = err["where"]
            loc = base + where
            name = str(where[-1]) if where else ""
            kind = err["type"]
            field = _field_name(where)
            if kind == "missing":
                example = EXAMPLES.get(name, name + ": ...")
                self.add(located, loc[:-1], "error", f"`{name}` is missing", f"add it, for example `{example}`", rule)
            elif kind == "extra_forbidden":
                allowed = _fields_at(model, tuple(p for p in where[:-1] if not isinstance(p, int)))
                close = (
                    [DUTCH_FIELDS[name]]
                    if DUTCH_FIELDS.get(name) in allowed
                    else difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                )
                fix = f"did you mean `{close[0]}`?" if close else f"allowed here: {', '.join(allowed)}"
                self.add(located, loc, "error", f"unknown field `{name}`", fix, rule)
            elif kind == "literal_error":
                value = err.get("input")
                expected = err.get("ctx", {}).get("expected", "")
                close = difflib.get_close_matches(str(value), re.findall(r"'([^']+)'", expected), n=1)
                fix = f"did you mean `{close[0]}`?" if close else f"use one of {expected}"
                self.add(located, loc, "error", f"`{value}` is not allowed for {field}", fix, rule)
            elif kind.endswith("_type") or kind.endswith("_parsing"):
                example = EXAMPLES.get(field.split(".")[-1])
                fix = f"write it like `{example}`" if example else err["msg"]
                self.add(
                    located, loc, "error", f"{field}: `{err.get('input')}` is not the right kind of value", fix, rule
                )
            else:
                msg = err["msg"].removeprefix("Value error, ")
                self.add(located, loc, "error", f"{field}: {msg}", "", rule)

    # --- officers ----------------------------------------------------------------------------
    def officers(self) -> dict[str, Officer]:
        path = self.folder / "officers.yaml"
        if not path.exists():
            self.findings.append(
                Finding(
                    str(path),
                    0,
                    "error",
                    "officers.yaml is missing",
                    "every message is signed by a person: list the officers there",
                )
            )
            return {}
        located, problems = load_yaml(path, display=self.config.display_path(path))
        self.findings.extend(problems)
        if problems:
            return {}
        if not isinstance(located.data, dict):
            self.add(
                located,
                (),
                "error",
                "officers.yaml must map officer keys to their details",
                "start with a key such as `fatima:` and indent the details under it",
            )
            return {}
        out: dict[str, Officer] = {}
        for key, raw in located.data.items():
            try:
                spec = OfficerSpec.model_validate(raw if raw is not None else {})
            except ValidationError as exc:
                self.pydantic_findings(located, (key,), exc, OfficerSpec)
                continue
            absent: list[tuple[date, date]] = []
            for i, item in enumerate(spec.absent):
                rng = _parse_range(item)
                if rng is None:
                    self.add(
                        located,
                        (key, "absent", i),
                        "error",
                        f"`{item}` is not a date range",
                        "write it like `2026-12-21 .. 2027-01-03` (first and last day)",
                    )
                elif rng[1] < rng[0]:
                    self.add(
                        located,
                        (key, "absent", i),
                        "error",
                        f"`{item}` ends before it starts",
                        "put the first day first",
                    )
                else:
                    absent.append(rng)
            out[key] = Officer(
                key,
                spec.name,
                spec.first_name or spec.name.split()[0],
                spec.role,
                spec.role_en,
                spec.phone,
                spec.email,
                absent,
                spec.backup,
            )
        for key, officer in out.items():
            if officer.backup is None:
                continue
            if officer.backup == key:
                self.add(located, (key, "backup"), "error", f"{key} is their own backup", "name a colleague")
            elif officer.backup not in out:
                self.add(
                    located,
                    (key, "backup"),
                    "error",
                    f"backup `{officer.backup}` is not in officers.yaml",
                    _suggest(officer.backup, list(out)),
                )
        self._check_cover(located, out)
        return out

    def _check_cover(self, located: Located, officers: dict[str, Officer]) -> None:
        """Every absence needs someone to sign: a backup chain that loops back without anyone
        available is an error; an absent officer without a backup is a warning (messages wait)."""
        book = Rulebook({}, officers, {}, self.env, [], self.folder)
        for key, officer in officers.items():
            for a, b in officer.absent:
                day = a
                while day <= b:
                    if book.signer(key, day) is None:
                        chain = [key]
                        nxt = officer.backup
                        while nxt and nxt not in chain and nxt in officers:
                            chain.append(nxt)
                            nxt = officers[nxt].backup
                        if nxt in chain:
                            self.add(
                                located,
                                (key, "backup"),
                                "error",
                                f"on {day.isoformat()} the backups go round in a circle "
                                f"({' -> '.join(chain + [nxt])}) and everyone is away",
                                "give one of them a backup who is in that day",
                            )
                        else:
                            self.add(
                                located,
                                (key, "absent"),
                                "warning",
                                f"on {day.isoformat()} nobody can sign for {key}'s tenants "
                                f"({' -> '.join(chain)} away, no further backup)",
                                "add a `backup:` who is in that day; until then their messages wait",
                            )
                        break
                    day += timedelta(days=1)

    # --- tenant preferences ------------------------------------------------------------------
    def prefs(self, officers: dict[str, Officer]) -> dict[str, TenantPref]:
        path = self.folder / "tenants.yaml"
        if not path.exists():
            return {}
        located, problems = load_yaml(path, display=self.config.display_path(path))
        self.findings.extend(problems)
        if problems or located.data is None:
            return {}
        if not isinstance(located.data, dict):
            self.add(
                located,
                (),
                "error",
                "tenants.yaml must map tenant ids to preferences",
                "start with a tenant id such as `T-1001:`",
            )
            return {}
        out: dict[str, TenantPref] = {}
        for tid, raw in located.data.items():
            try:
                spec = TenantPrefSpec.model_validate(raw if raw is not None else {})
            except ValidationError as exc:
                self.pydantic_findings(located, (tid,), exc, TenantPrefSpec)
                continue
            window: tuple[str, ...] | None = None
            if spec.window is not None:
                window = (spec.window,) if isinstance(spec.window, str) else tuple(spec.window)
                try:
                    parse_windows(list(window))
                except ValueError as exc:
                    self.add(located, (tid, "window"), "error", f"window: {exc}")
            if spec.officer is not None and spec.officer not in officers:
                self.add(
                    located,
                    (tid, "officer"),
                    "error",
                    f"officer `{spec.officer}` is not in officers.yaml",
                    _suggest(spec.officer, list(officers)),
                )
            if spec.language is not None and spec.language not in self.languages:
                self.add(
                    located,
                    (tid, "language"),
                    "error",
                    f"language `{spec.language}` has no texts",
                    f"use one of {', '.join(sorted(self.languages))}",
                )
            out[tid] = TenantPref(
                tid,
                tuple(spec.channels) if spec.channels else None,
                window,
                spec.language,
                spec.officer,
                spec.pause_until,
                spec.whatsapp_opt_in,
                located.line((tid,)),
            )
        return out

    # --- rules -------------------------------------------------------------------------------
    def rules(self) -> dict[str, Rule]:
        out: dict[str, Rule] = {}
        first_seen: dict[str, str] = {}
        files = sorted(p for p in self.folder.glob("*.y*ml") if p.name not in ("officers.yaml", "tenants.yaml"))
        if not files:
            self.findings.append(
                Finding(
                    self.config.display_path(self.folder),
                    0,
                    "warning",
                    "the rulebook has no rules",
                    "add a rule file such as rent-reminder.yaml",
                )
            )
        for path in files:
            located, problems = load_yaml(path, display=self.config.display_path(path))
            self.findings.extend(problems)
            if problems:
                continue
            data = located.data
            if data is None:
                self.add(located, (), "warning", "the file is empty", "write a rule in it or remove it")
                continue
            items = (
                [((), data)]
                if isinstance(data, dict)
                else ([((i,), d) for i, d in enumerate(data)] if isinstance(data, list) else [])
            )
            if not items:
                self.add(
                    located,
                    (),
                    "error",
                    "a rule file holds one rule (a mapping) or a list of rules",
                    "start the rule with `id: my-rule`",
                )
            for base, raw in items:
                rule = self.rule(located, base, raw)
                if rule is None:
                    continue
                if rule.id in out:
                    self.add(
                        located,
                        base + ("id",),
                        "error",
                        f"rule id `{rule.id}` is used twice (also in {first_seen[rule.id]})",
                        "give this rule another id",
                        rule.id,
                    )
                    continue
                first_seen[rule.id] = f"{located.file}:{rule.line}"
                out[rule.id] = rule
        return out

    def rule(self, located: Located, base: tuple, raw: Any) -> Rule | None:
        if not isinstance(raw, dict):
            self.add(located, base, "error", "a rule must be a mapping of fields", "start it with `id: my-rule`")
            return None
        raw = dict(raw)
        rid = str(raw.get("id", "")) or "?"
        for key in TEXT_VARIANTS + ("subject",):
            if isinstance(raw.get(key), str):
                raw[key] = {self.config.default_language: raw[key]}
        try:
            spec = RuleSpec.model_validate(raw)
        except ValidationError as exc:
            self.pydantic_findings(located, base, exc, RuleSpec, rid)
            return None
        n_before = len(self.findings)

        def err(path: tuple, message: str, fix: str = "", level: str = "error") -> None:
            self.add(located, base + path, level, message, fix, spec.id)

        if not _ID.match(spec.id):
            err(
                ("id",),
                f"`{spec.id}` is not a valid id",
                "use lowercase letters, digits and dashes, e.g. rent-reminder",
            )
        trigger = self.trigger(spec.trigger, err)
        channels = None if spec.channels == "preferred" else tuple(dict.fromkeys(spec.channels))
        if spec.kind == "task" and channels != ("call",):
            err(("channels",), "a task is for an officer, not for the tenant", "write `channels: [call]`")
        if channels == ():
            err(("channels",), "the channel list is empty", "write `channels: preferred` or name channels")
        allowed = SCOPE_NAMES | ({EVENT_NAME} if trigger and trigger.kind == "on" else frozenset())
        condition = None
        if spec.when:
            condition, problem = compile_condition(self.env, spec.when, allowed)
            if problem:
                err(("when",), f"when: {problem}", _names_hint(problem, allowed))
        windows: tuple[Window, ...] = ()
        if spec.window:
            try:
                windows = parse_windows(spec.window)
            except ValueError as exc:
                err(("window",), f"window: {exc}")
        expires = None
        if spec.expires:
            try:
                expires = parse_duration(spec.expires)
            except ValueError as exc:
                err(("expires",), f"expires: {exc}")
            else:
                if expires.amount > _MAX_EXPIRES[expires.unit]:  # later than a year is no use (and overflows dates)
                    err(
                        ("expires",),
                        f"expires: `{spec.expires}` is longer than a year",
                        "write at most 366 days (8784 hours, 366 working days)",
                    )
                    expires = None
        texts, sources, lines = self.texts(spec, located, base, allowed, err)
        if spec.whatsapp_template and spec.whatsapp_template not in self.config.whatsapp_templates:
            known = list(self.config.whatsapp_templates)
            err(
                ("whatsapp_template",),
                f"WhatsApp template `{spec.whatsapp_template}` is not in config.yaml",
                _suggest(spec.whatsapp_template, known)
                if known
                else "add it under `whatsapp_templates:` in config.yaml with its content_sid",
            )
        if any(f.level == "error" for f in self.findings[n_before:]) or trigger is None:
            return None
        during = spec.during_arrangement or (
            "skip" if spec.kind == "reminder" and trigger.fact != "installment_due" else "send"
        )
        return Rule(
            id=spec.id,
            kind=spec.kind,
            trigger=trigger,
            channels=channels,
            priority=spec.priority,
            file=located.file,
            line=located.line(base + ("id",)),
            about=spec.about,
            condition=condition,
            windows=windows,
            expires=expires,
            texts=texts,
            sources=sources,
            lines=lines,
            whatsapp_template=spec.whatsapp_template,
            card=spec.card,
            during_arrangement=during,
            enabled=spec.enabled,
            max_per_day=spec.max_per_day,
            field_lines={k: located.line(base + (k,)) for k in raw},
        )

    def trigger(self, spec: TriggerSpec, err) -> Trigger | None:
        given = [k for k in TRIGGER_KEYS if getattr(spec, k) is not None]
        if not given:
            err(
                ("trigger",),
                "the trigger says nothing",
                "use one of before, after, on, yearly, cron, at, for example `trigger: {before: rent_due, days: 2}`",
            )
            return None
        if len(given) > 1:
            err(
                ("trigger",),
                f"the trigger has {' and '.join(given)}",
                "a rule has exactly one trigger: split it into two rules",
            )
            return None
        kind = given[0]
        value = getattr(spec, kind)
        t = Trigger(kind)
        if kind in ("before", "after"):
            if value not in DATE_FACTS:
                err(("trigger", kind), f"`{value}` is not a date fact", _suggest(value, list(DATE_FACTS)))
                return None
            if spec.days is None:
                err(("trigger",), f"`{kind}: {value}` needs `days:`", "add for example `days: 2`")
                return None
            if spec.count is not None:
                err(("trigger", "count"), "count goes with `on:` only", "remove it")
            t.fact, t.days = value, spec.days
        elif kind == "on":
            if value not in self.events:
                err(
                    ("trigger", "on"),
                    f"`{value}` is not a known event",
                    _suggest(value, sorted(self.events)) + "; custom events are listed under "
                    "`custom_events:` in config.yaml",
                )
                return None
            t.event, t.count, t.days = value, spec.count, spec.days or 0
        elif kind == "yearly":
            m = _YEARLY.match(str(value).strip())
            try:
                if not m:
                    raise ValueError
                date(2025, int(m.group(1)), int(m.group(2)))  # a year without 29 February
                t.month_day = (int(m.group(1)), int(m.group(2)))
            except ValueError:
                err(
                    ("trigger", "yearly"),
                    f"`{value}` is not a day of the year",
                    'write month-day in quotes, like `yearly: "11-15"` (not 02-29)',
                )
                return None
        elif kind == "cron":
            try:
                t.cron = CronTrigger.from_crontab(str(value), timezone=self.config.zone)
            except ValueError as exc:
                err(
                    ("trigger", "cron"),
                    f"`{value}` is not a cron moment ({exc})",
                    'write five fields "minute hour day month weekday", like "0 10 1 12 *"',
                )
                return None
            if _fires_twice_a_day(t.cron, self.config.zone):
                err(
                    ("trigger", "cron"),
                    f"`{value}` fires more than once a day",
                    'a campaign goes out once on its day: give one minute and one hour, like "0 10 1 12 *"',
                )
                return None
        elif kind == "at":
            try:
                moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
            except ValueError:
                err(("trigger", "at"), f"`{value}` is not a moment", "write it like `at: 2026-12-01T10:00`")
                return None
            t.at = moment if moment.tzinfo else moment.replace(tzinfo=self.config.zone)
        if kind in ("yearly", "cron", "at") and (spec.days is not None or spec.count is not None):
            err(("trigger",), f"`days`/`count` do not go with `{kind}`", "remove them")
        return t

    def texts(self, spec: RuleSpec, located: Located, base: tuple, allowed: frozenset[str], err):
        texts: dict[str, dict[str, Template]] = {}
        sources: dict[str, dict[str, str]] = {}
        lines: dict[tuple[str, str], int] = {}
        for variant in TEXT_VARIANTS + ("subject",):
            value = getattr(spec, variant)
            if value is None:
                continue
            assert isinstance(value, dict)
            for lang, source in value.items():
                path = (variant, lang)
                lines[path] = located.line(base + path)
                if lang not in self.languages:
                    err(
                        path,
                        f"language `{lang}` is not configured",
                        f"use {', '.join(sorted(self.languages))} (or add it under `locales:` in config.yaml)",
                    )
                    continue
                if not isinstance(source, str) or not source.strip():
                    err(path, f"the {variant} in `{lang}` is empty", "write the message, or remove the line")
                    continue
                try:
                    names = unknown_names(self.env, source, allowed)
                    template = self.env.from_string(source)
                except TemplateSyntaxError as exc:
                    err(
                        path,
                        f"the {variant} in `{lang}` cannot be read ({exc.message})",
                        "check the {{ }} pairs: every `{{` needs its `}}`",
                    )
                    continue
                if names:
                    err(
                        path,
                        f"the {variant} in `{lang}` uses unknown name(s) {', '.join(names)}",
                        _names_hint("unknown name(s) " + ", ".join(names), allowed),
                    )
                    continue
                texts.setdefault(variant, {})[lang] = template
                sources.setdefault(variant, {})[lang] = source
        if spec.text and isinstance(spec.text, dict) and self.config.default_language not in spec.text:
            err(
                ("text",),
                f"there is no text in `{self.config.default_language}`, the default language",
                f"add `{self.config.default_language}:` under `text:`",
            )
        return texts, sources, lines


def _is_type_tag(part: object) -> bool:
    """Pydantic names union branches in error locations (`str`, `list[str]`): not the officer's words."""
    return isinstance(part, str) and (part in ("str", "int", "bool", "date", "datetime", "dict") or "[" in part)


def _field_name(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not isinstance(p, int)) or "value"


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            break
        current = fields[part].annotation
    fields = getattr(current, "model_fields", None) or {}
    return sorted(fields)


def _suggest(value: str, options: list[str]) -> str:
    close = difflib.get_close_matches(str(value), options, n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    return f"use one of {', '.join(options)}" if options else ""


def _names_hint(problem: str, allowed: frozenset[str]) -> str:
    words = re.findall(r"[a-z_]+", problem.split("name(s)")[-1]) if "name(s)" in problem else []
    for word in words:
        close = difflib.get_close_matches(word, sorted(allowed), n=1)
        if close:
            return f"did you mean `{close[0]}`? (see the list of names in docs/rulebook.md)"
    return "see the list of names in docs/rulebook.md"


def _fires_twice_a_day(cron: CronTrigger, zone: Any) -> bool:
    """Whether a cron moment fires twice on one day, like `*/5 * * * *`: a tenant gets one ask a day,
    and planning a moment every five minutes for every tenant takes hours."""
    moment, previous = datetime(2026, 1, 1, tzinfo=zone), None
    for _ in range(50):
        fire = cron.get_next_fire_time(previous, moment)
        if fire is None:
            return False
        if previous is not None and fire.astimezone(zone).date() == previous.astimezone(zone).date():
            return True
        previous, moment = fire, fire + timedelta(seconds=1)
    return False


def _parse_range(item: str | date) -> tuple[date, date] | None:
    if isinstance(item, date):
        return item, item
    m = _RANGE.match(str(item))
    if m:
        try:
            return date.fromisoformat(m.group(1)), date.fromisoformat(m.group(2))
        except ValueError:
            return None
    try:
        day = date.fromisoformat(str(item).strip())
    except ValueError:
        return None
    return day, day


def load_rulebook(config: Config, folder: Path | None = None, *, strict: bool = False) -> Rulebook:
    """Load and validate the rulebook folder; raise RulebookError listing every error found."""
    folder = folder or config.rules_path
    if not folder.is_dir():
        raise RulebookError(
            [Finding(str(folder), 0, "error", "the rules folder does not exist", "check `rules:` in config.yaml")]
        )
    fingerprint = folder_fingerprint(folder)
    loader = _Loader(config, folder)
    officers = loader.officers()
    prefs = loader.prefs(officers)
    rules = loader.rules()
    findings = loader.findings
    if any(f.level == "error" for f in findings) or (strict and findings):
        raise RulebookError(findings)
    return Rulebook(rules, officers, prefs, loader.env, findings, folder, fingerprint)


def check_rulebook(config: Config, folder: Path | None = None) -> tuple[Rulebook | None, list[Finding]]:
    """Like load_rulebook, but returns every finding instead of raising."""
    try:
        book = load_rulebook(config, folder)
    except RulebookError as exc:
        return None, exc.findings
    return book, list(book.findings)
