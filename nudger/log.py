"""Structured log lines (`time level event key=value ...`) with ids only: never contact data,
amounts, names or message bodies."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

LOGGER = logging.getLogger("nudger")
# Fields that may appear in a log line. Anything else is dropped, so personal data cannot slip in.
ALLOWED_FIELDS = frozenset(
    {
        "key",
        "tenant",
        "rule",
        "channel",
        "state",
        "reason",
        "count",
        "planned",
        "new",
        "sent",
        "failed",
        "expired",
        "cancelled",
        "retry",
        "uncertain",
        "released",
        "skipped",
        "tenants",
        "payments",
        "rows_skipped",
        "events",
        "import_id",
        "file",
        "line",
        "worker",
        "pid",
        "seconds",
        "store",
        "rules",
        "receipt",
        "code",
        "attempt",
        "next_at",
        "until",
        "finding",
        "job",
        "signal",
        "held",
        "moved",
        "version",
        "waiting",
        "url",
        "day",
        "revision",
        "head",
        "ms",
    }
)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        parts = [ts, f"level={record.levelname.lower()}", f"event={record.getMessage()}"]
        for k, v in sorted(getattr(record, "fields", {}).items()):
            text = str(v)
            if any(c in text for c in ' ="'):
                text = '"' + text.replace('"', "'") + '"'
            parts.append(f"{k}={text}")
        return " ".join(parts)


def setup(level: str = "info", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(KeyValueFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False
    # APScheduler's own lines (a job skipped because the last run is still busy) are not ours:
    # they would break the one-line format; failures of our jobs are logged as event=job_failed
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


def flush() -> None:
    for handler in LOGGER.handlers:
        handler.flush()


def log(event: str, level: int = logging.INFO, **fields: Any) -> None:
    safe = {k: v for k, v in fields.items() if k in ALLOWED_FIELDS and v is not None}
    LOGGER.log(level, event, extra={"fields": safe})


def warn(event: str, **fields: Any) -> None:
    log(event, logging.WARNING, **fields)
