"""Transports, one module each, behind nudger.protocols.Channel.

`build_channels(config)` gives one channel per channel name: the transport its config section asks
for, or the outbox when the section asks for nothing (or has no credentials).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nudger.config import CHANNEL_NAMES, Config
from nudger.errors import ConfigError
from nudger.protocols import Channel

from .outbox import OutboxChannel

# transport name -> factory(channel name, its config section, the whole config)
TRANSPORTS: dict[str, Callable[[str, Any, Config], Channel]] = {
    "outbox": lambda name, section, config: OutboxChannel(name, config.var_path / "outbox", config),
}


def build_channels(config: Config, *, outbox_dir: Path | None = None) -> dict[str, Channel]:
    channels: dict[str, Channel] = {}
    for name in CHANNEL_NAMES:
        section = config.channels[name]
        if outbox_dir is not None:
            channels[name] = OutboxChannel(name, outbox_dir, config)
            continue
        factory = TRANSPORTS.get(section.transport)
        if factory is None:
            raise ConfigError(
                f"{config.source_file}: channels.{name}.transport: `{section.transport}` is not available; "
                f"use one of {', '.join(sorted(TRANSPORTS))}"
            )
        channels[name] = factory(name, section, config)
    return channels
