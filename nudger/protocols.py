"""The seams: what a channel is and what it is handed. Channels live in `channels/`, one module each."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Recipient:
    tenant_id: str
    name: str
    language: str
    phone: str = ""  # as in the data; channels normalise
    email: str = ""
    whatsapp_opt_in: bool = False
    address: tuple[str, ...] = ()  # name / street and number / postcode  CITY


@dataclass(frozen=True)
class Signer:
    key: str
    name: str
    first_name: str
    role: str = ""
    phone: str = ""
    email: str = ""


@dataclass(frozen=True)
class Message:
    """One message, rendered and signed, as the engine hands it to a channel."""

    key: str  # the nudge's idempotency key
    rule_id: str
    kind: str
    channel: str
    recipient: Recipient
    signer: Signer
    subject: str
    body: str  # without the signature
    signature: str
    organisation: str
    organisation_email: str = ""
    return_address: str = ""
    card: bool = False
    created: datetime | None = None
    template_sid: str = ""  # WhatsApp: the approved template
    template_variables: dict[str, str] = field(default_factory=dict)
    opening: str = ""  # call tasks: a suggested first sentence for the officer
    locale: str = "nl_NL"  # the locale the text was written in: dates on letters follow it

    @property
    def text(self) -> str:
        """The whole text as the tenant reads it: body, a blank line, the signature."""
        return f"{self.body}\n\n{self.signature}" if self.signature else self.body


@dataclass(frozen=True)
class Receipt:
    """What the transport gave back: its id for the message (a provider SID, a file name)."""

    id: str
    detail: str = ""


# What contact a channel needs from a tenant (checked by the engine before it picks a channel).
NEEDS_MOBILE, NEEDS_WHATSAPP, NEEDS_EMAIL, NEEDS_ADDRESS, NEEDS_NOTHING = (
    "mobile",
    "whatsapp",
    "email",
    "address",
    "nothing",
)


@runtime_checkable
class Channel(Protocol):
    """A transport. It raises nudger.errors.ChannelError (temporary or permanent) when it fails.

    The engine does fallback, retries, rate limits and pacing; a channel does only its transport.
    """

    name: str
    needs: str

    def send(self, message: Message) -> Receipt: ...

    def close(self) -> None: ...
