"""The errors a user can meet: one class per kind, each with a message that says what to do."""

from __future__ import annotations

from dataclasses import dataclass


class NudgerError(Exception):
    """An expected error: the CLI prints its message on one line and exits non-zero."""

    exit_code = 1


class ConfigError(NudgerError):
    """config.yaml is missing, malformed or has a value that is not allowed."""

    exit_code = 2


@dataclass(frozen=True)
class Finding:
    """One thing `nudger check` found: where, how bad, what is wrong and what to do."""

    file: str
    line: int
    level: str  # "error" | "warning"
    message: str
    fix: str = ""
    rule: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.level}: {self.message}"
        return f"{text}: {self.fix}" if self.fix else text

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "level": self.level,
            "rule": self.rule,
            "message": self.message,
            "fix": self.fix,
        }


class RulebookError(NudgerError):
    """The rulebook has errors; `findings` lists every one of them."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        errors = [f for f in findings if f.level == "error"]
        first = str(errors[0]) if errors else "rulebook has errors"
        more = f" (and {len(errors) - 1} more: run `nudger check`)" if len(errors) > 1 else ""
        super().__init__(first + more)


class ImportRefused(NudgerError):
    """A data import was refused whole; nothing was stored or planned from it.

    `kind` says why in one word for the log (the message can quote the data, so it is not logged).
    """

    def __init__(self, message: str, kind: str = "refused"):
        super().__init__(message)
        self.kind = kind


class StoreBusy(NudgerError):
    """Another nudger process holds the embedded store."""


class ChannelError(Exception):
    """A channel could not hand over a message. `temporary` errors are retried by the engine."""

    def __init__(self, reason: str, *, temporary: bool, code: str | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary
        self.code = code
        self.retry_after = retry_after


class UncertainChannelError(ChannelError):
    """The transport may have taken the message (an answer was lost): never resend it (promise 1)."""

    def __init__(self, reason: str, *, code: str | None = None):
        super().__init__(reason, temporary=False, code=code)


class TemporaryChannelError(ChannelError):
    def __init__(self, reason: str, *, code: str | None = None, retry_after: float | None = None):
        super().__init__(reason, temporary=True, code=code, retry_after=retry_after)


class PermanentChannelError(ChannelError):
    def __init__(self, reason: str, *, code: str | None = None):
        super().__init__(reason, temporary=False, code=code)
