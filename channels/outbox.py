"""The outbox: writes exactly what would have gone out, one file per message under var/outbox/<channel>/.

A first-class channel: the default for every channel without credentials, and what dry runs and
tests use.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from nudger.config import Config
from nudger.protocols import (
    NEEDS_ADDRESS,
    NEEDS_EMAIL,
    NEEDS_MOBILE,
    NEEDS_NOTHING,
    NEEDS_WHATSAPP,
    Message,
    Receipt,
)

from .formats import (
    as_json,
    build_email,
    call_task_text,
    letter_text,
    sms_request,
    whatsapp_request,
)

NEEDS = {
    "sms": NEEDS_MOBILE,
    "whatsapp": NEEDS_WHATSAPP,
    "email": NEEDS_EMAIL,
    "print": NEEDS_ADDRESS,
    "call": NEEDS_NOTHING,
}


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key)


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, in folders only its owner can enter."""
    for folder in reversed([path.parent, *path.parent.parents]):
        if not folder.exists():
            folder.mkdir(mode=0o700, exist_ok=True)  # another channel may make it at this moment
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


class OutboxChannel:
    def __init__(self, name: str, folder: Path, config: Config):
        self.name = name
        self.needs = NEEDS[name]
        self.folder = folder / name
        section = config.channels[name]
        extra = section.model_extra or {}
        self.sender = str(extra.get("sender", "") or "")
        self.status_callback = str(extra.get("status_callback", "") or "")

    def send(self, message: Message) -> Receipt:
        stamp = message.created.strftime("%Y%m%dT%H%M%S") if message.created else "message"
        base = f"{stamp}-{_safe(message.key)}"
        if self.name == "email":
            name, data = base + ".eml", bytes(build_email(message))
        elif self.name == "sms":
            name, data = base + ".json", as_json(sms_request(message, self.sender, self.status_callback)).encode()
        elif self.name == "whatsapp":
            fields = whatsapp_request(message, self.sender, self.status_callback)
            name, data = base + ".json", as_json(fields).encode()
        elif self.name == "print":
            name, data = base + (".card.txt" if message.card else ".letter.txt"), letter_text(message).encode()
        else:
            name, data = base + ".task.txt", call_task_text(message).encode()
        path = self.folder / name
        write_private(path, data)
        return Receipt(id=f"outbox:{self.name}/{name}")

    def close(self) -> None:
        pass
