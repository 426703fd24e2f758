"""The `call` channel: call tasks for officers, one list per day under var/calls/ (mode 0600).

A task is "sent" when it is on the officer's list; `nudger calls` shows the list and
`nudger called TENANT` records that the call happened (a `contact_made` event).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from nudger.config import Config
from nudger.errors import TemporaryChannelError
from nudger.protocols import NEEDS_NOTHING, Message, Receipt

from .outbox import write_private


@dataclass(frozen=True)
class CallTask:
    key: str
    day: str
    officer: str  # officer key
    officer_name: str
    tenant_id: str
    tenant_name: str
    phone: str
    why: str
    opening: str
    created: str


class CallListChannel:
    """Appends each task to the day's call list; the same nudge key twice is one task."""

    def __init__(self, name: str, section, config: Config):
        self.name = name
        self.needs = NEEDS_NOTHING
        extra = section.model_extra or {}
        self.folder = Path(extra.get("folder") or config.var_path / "calls")

    def send(self, message: Message) -> Receipt:
        day = (message.created.date() if message.created else date.today()).isoformat()
        task = CallTask(
            key=message.key,
            day=day,
            officer=message.signer.key,
            officer_name=message.signer.name,
            tenant_id=message.recipient.tenant_id,
            tenant_name=message.recipient.name,
            phone=message.recipient.phone,
            why=message.body,
            opening=message.opening,
            created=message.created.isoformat() if message.created else "",
        )
        path = self.folder / f"{day}.jsonl"
        try:
            existing = path.read_bytes() if path.exists() else b""
            line = json.dumps(task.__dict__, ensure_ascii=False).encode() + b"\n"
            write_private(path, existing + line)
        except OSError as exc:
            raise TemporaryChannelError(f"the call list could not be written ({exc.strerror})") from None
        return Receipt(id=f"call:{day}")

    def close(self) -> None:
        pass


def read_calls(folder: Path, day: date) -> list[CallTask]:
    """The day's call tasks, one per nudge key (the last write wins), in the order they came."""
    path = folder / f"{day.isoformat()}.jsonl"
    if not path.exists():
        return []
    tasks: dict[str, CallTask] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            data = json.loads(line)
            tasks[data["key"]] = CallTask(**data)
    return list(tasks.values())
