"""Transports, one module each, behind nudger.protocols.Channel.

`build_channels(config)` gives one channel per channel name: the transport its config section
asks for, or the outbox when that transport is not configured (no credentials, no host).
Modules are imported only when a section asks for them, so the engine never loads a transport
it does not use.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from nudger.config import CHANNEL_NAMES, Config
from nudger.errors import ConfigError
from nudger.log import warn
from nudger.protocols import Channel

from .outbox import OutboxChannel

# transport -> (module, factory name, the channels it can serve)
TRANSPORTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "outbox": ("channels.outbox", "", CHANNEL_NAMES),
    "twilio": ("channels.twilio", "build", ("sms", "whatsapp")),
    "smtp": ("channels.smtp", "SmtpChannel", ("email",)),
    "pdf": ("channels.printing", "PrintChannel", ("print",)),
    "calllist": ("channels.calls", "CallListChannel", ("call",)),
}


def build_channel(name: str, config: Config) -> Channel:
    section = config.channels[name]
    transport = section.transport
    if transport not in TRANSPORTS:
        raise ConfigError(
            f"{config.source_file}: channels.{name}.transport: `{transport}` is not a transport; "
            f"use one of {', '.join(sorted(TRANSPORTS))}"
        )
    module_name, factory_name, serves = TRANSPORTS[transport]
    if name not in serves:
        allowed = ", ".join(t for t, (_, _, s) in TRANSPORTS.items() if name in s)
        raise ConfigError(
            f"{config.source_file}: channels.{name}.transport: `{transport}` cannot carry {name}; use one of {allowed}"
        )
    if transport == "outbox":
        return OutboxChannel(name, config.var_path / "outbox", config)
    module: Any = importlib.import_module(module_name)
    configured = getattr(module, "configured", None)
    if configured is not None and not configured(section):
        warn("channel_outbox_fallback", channel=name, reason=f"{transport} is not configured (no credentials)")
        return OutboxChannel(name, config.var_path / "outbox", config)
    return getattr(module, factory_name)(name, section, config)


def build_channels(config: Config, *, outbox_dir: Path | None = None) -> dict[str, Channel]:
    if outbox_dir is not None:
        return {name: OutboxChannel(name, outbox_dir, config) for name in CHANNEL_NAMES}
    return {name: build_channel(name, config) for name in CHANNEL_NAMES}
