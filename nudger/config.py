"""config.yaml: loading, `${ENV}` interpolation for secrets, and validation with clear errors."""

from __future__ import annotations

import difflib
import os
import re
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .yamlsrc import Located, load_yaml

CHANNEL_NAMES = ("sms", "whatsapp", "email", "print", "call")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Organisation(_Strict):
    name: str = "Woningcorporatie"
    return_address: str = ""  # one line, printed above the window on letters
    email: str = ""  # the From address of e-mails (the signer's name is shown with it)
    website: str = ""


class DataConfig(_Strict):
    source: Literal["csv", "sql"] = "csv"
    tenants: str = "examples/tenants.csv"
    payments: str = "examples/payments.csv"
    url: str = ""  # SQLAlchemy URL, for source: sql
    tenants_query: str = ""
    payments_query: str = ""
    min_share_of_previous: float = Field(0.8, ge=0, le=1)
    max_bad_share: float = Field(0.05, ge=0, le=1)


class ScheduleConfig(_Strict):
    import_cron: str = Field("0 6 * * *", alias="import")
    plan_every_minutes: int = Field(60, ge=1, le=1440)
    dispatch_every_seconds: int = Field(10, ge=1, le=3600)
    plan_days: int = Field(3, ge=1, le=60)
    shutdown_seconds: float = Field(30, gt=0, le=600)  # SIGTERM/SIGINT: exit within this time
    dispatch_threads: int = Field(4, ge=1, le=64)  # tenants served side by side (for slow providers)
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PacingConfig(_Strict):
    hours: str = "08:00-20:00"
    closed_days: list[str] = ["zo"]
    holidays: str = "NL"
    closed_dates: list[date] = []
    max_per_week: int = Field(2, ge=1, le=14)
    max_per_day: int = Field(1, ge=1, le=5)


class GuardConfig(_Strict):
    """Against mass mistakes: a day's plan reaching too many tenants is held for a person to look at."""

    max_share_per_day: float = Field(0.20, gt=0, le=1)  # of all tenants in the newest import
    min_tenants_per_day: int = Field(50, ge=0)  # a day reaching fewer tenants is never held for its share


class ExpiryConfig(_Strict):
    reminder: str = ""  # empty: a reminder expires when the day it reminds of begins
    appreciation: str = "7 days"
    check_in: str = Field("3 days", alias="check-in")
    campaign: str = "7 days"
    task: str = "3 working days"
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def for_kind(self, kind: str) -> str:
        return {
            "reminder": self.reminder,
            "appreciation": self.appreciation,
            "check-in": self.check_in,
            "campaign": self.campaign,
            "task": self.task,
        }[kind]


class RetryConfig(_Strict):
    max_attempts: int = Field(5, ge=1, le=50)
    base_seconds: float = Field(60, gt=0)
    max_seconds: float = Field(3600, gt=0)


class ChannelConfig(BaseModel):
    """One channel's section. `transport: outbox` writes files; real transports add their keys."""

    model_config = ConfigDict(extra="allow")
    transport: str = "outbox"
    rate: str = ""  # e.g. "10/s"; empty: no limit

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        from .ratelimit import RateLimiter

        RateLimiter.parse(value)
        return value


class WhatsAppTemplate(_Strict):
    content_sid: str
    variables: dict[str, str] = {"1": "text"}


class ToneConfig(_Strict):
    """The tone guard's limits; the word lists here are added to the shipped ones (nudger/resources/tone.yaml)."""

    readability_floor: dict[str, float] = {"nl": 60, "en": 60}
    max_sentence_words: int = Field(15, ge=5, le=60)
    long_word_syllables: int = Field(4, ge=2, le=10)
    sms_max_segments: int = Field(2, ge=1, le=10)
    threats: dict[str, list[str]] = {}
    officialese: dict[str, dict[str, str]] = {}
    invitations: dict[str, list[str]] = {}
    asks: dict[str, list[str]] = {}
    allow_capitals: list[str] = []


class WebConfig(_Strict):
    host: str = "127.0.0.1"  # loopback unless you put a reverse proxy (TLS) in front on purpose
    port: int = Field(8787, ge=0, le=65535)
    enabled: bool = False
    public_url: str = ""  # the URL Twilio calls (behind the proxy); signatures are checked against it


class Config(_Strict):
    timezone: str = "Europe/Amsterdam"
    locale: str = "nl_NL"
    default_language: str = "nl"
    locales: dict[str, str] = {"nl": "nl_NL", "en": "en_GB"}
    organisation: Organisation = Organisation()
    store: str = "sqlite:///var/nudger.db"
    var_dir: str = "var"
    rules: str = "rules"
    data: DataConfig = DataConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    pacing: PacingConfig = PacingConfig()
    guard: GuardConfig = GuardConfig()
    expiry: ExpiryConfig = ExpiryConfig()
    retry: RetryConfig = RetryConfig()
    channels: dict[str, ChannelConfig] = {n: ChannelConfig() for n in CHANNEL_NAMES}
    whatsapp_templates: dict[str, WhatsAppTemplate] = {}
    custom_events: list[str] = ["repair_completed"]
    tone: ToneConfig = ToneConfig()
    web: WebConfig = WebConfig()

    # set by load_config, not read from the file
    base_dir: Path = Field(default=Path("."), exclude=True)
    source_file: str = Field(default="config.yaml", exclude=True)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use a name like Europe/Amsterdam") from None
        return value

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: dict[str, ChannelConfig]) -> dict[str, ChannelConfig]:
        for name in value:
            if name not in CHANNEL_NAMES:
                raise ValueError(f"unknown channel {name!r}; channels are {', '.join(CHANNEL_NAMES)}")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def path(self, value: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p

    @property
    def var_path(self) -> Path:
        return self.path(self.var_dir)

    @property
    def rules_path(self) -> Path:
        return self.path(self.rules)

    @property
    def store_url(self) -> str:
        """The store URL with a relative SQLite path made relative to the config's folder."""
        prefix = "sqlite:///"
        if self.store.startswith(prefix) and not self.store.startswith(prefix + "/"):
            rel = self.store[len(prefix) :]
            if rel and rel != ":memory:":
                return prefix + str(self.path(rel).resolve())
        return self.store

    def locale_for(self, language: str | None) -> str:
        return self.locales.get(language or self.default_language, self.locale)

    def language(self, wanted: str | None) -> str:
        """The tenant's language when the rulebook can speak it, else the default language."""
        return wanted if wanted in self.locales else self.default_language

    def display_path(self, path: Path) -> str:
        """A path as officers see it in findings: relative to config.yaml's folder when inside it."""
        try:
            return str(path.relative_to(self.base_dir))
        except ValueError:
            return str(path)


def _interpolate(value: Any, path: tuple, located: Located, problems: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, path + (k,), located, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, path + (i,), located, problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(3)
        if name in os.environ:
            return os.environ[name]
        if m.group(2) is not None:
            return default or ""
        key = ".".join(str(p) for p in path)
        problems.append(
            f"{located.file}:{located.line(path)}: {key}: the environment variable {name} is not set: "
            f"set it, or write ${{{name}:-}} to allow it to be empty"
        )
        return ""

    return _ENV.sub(repl, value)


def _explain(err: dict[str, Any], located: Located, model: type[BaseModel]) -> str:
    loc = tuple(p for p in err["loc"])
    key = ".".join(str(p) for p in loc) or "(top)"
    line = located.line(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"allowed here: {', '.join(allowed)}"
        return f"{located.file}:{line}: {key}: unknown setting: {hint}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{located.file}:{line}: {key}: {msg}"


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        f = fields.get(part) or next((v for v in fields.values() if v.alias == part), None)
        if f is None:
            return []
        current = f.annotation
    fields = getattr(current, "model_fields", {})
    return sorted(f.alias or name for name, f in fields.items() if not f.exclude)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate config.yaml. Every problem becomes one ConfigError line."""
    file = Path(path) if path else Path("config.yaml")
    if not file.exists():
        raise ConfigError(
            f"{file}: no such file: run nudger in the folder that holds config.yaml, or pass --config PATH"
        )
    located, findings = load_yaml(file, display=str(file))
    if findings:
        raise ConfigError(str(findings[0]))
    raw = located.data if located.data is not None else {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}:1: the config must be a mapping of settings (key: value)")
    problems: list[str] = []
    raw = _interpolate(raw, (), located, problems)
    if problems:
        raise ConfigError(problems[0])
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(_explain(first, located, Config)) from None
    config.base_dir = file.resolve().parent
    config.source_file = str(file)
    for name in CHANNEL_NAMES:
        config.channels.setdefault(name, ChannelConfig())
    return config
