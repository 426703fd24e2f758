"""What each transport would send, built from a Message: the e-mail, the Twilio request, the letter.

The outbox writes exactly these; the real transports send them.
"""

from __future__ import annotations

import html
import json
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from nudger.contact import mobile_e164
from nudger.protocols import Message
from nudger.render import sms_safe

_MESSAGING_SERVICE = re.compile(r"MG[0-9a-fA-F]{32}")


def sms_request(message: Message, sender: str = "", status_callback: str = "") -> dict[str, str]:
    """The form fields of Twilio's Messages API for an SMS."""
    fields = {"To": mobile_e164(message.recipient.phone) or message.recipient.phone, "Body": sms_safe(message.text)}
    if _MESSAGING_SERVICE.fullmatch(sender):
        fields["MessagingServiceSid"] = sender
    elif sender:
        fields["From"] = sender
    if status_callback:
        fields["StatusCallback"] = status_callback
    return fields


def whatsapp_request(message: Message, sender: str = "", status_callback: str = "") -> dict[str, str]:
    """The form fields of Twilio's Messages API for a business-initiated WhatsApp template message."""
    fields = {"To": "whatsapp:" + (mobile_e164(message.recipient.phone) or message.recipient.phone)}
    if _MESSAGING_SERVICE.fullmatch(sender):
        fields["MessagingServiceSid"] = sender
    elif sender:
        fields["From"] = sender if sender.startswith("whatsapp:") else "whatsapp:" + sender
    if message.template_sid:
        fields["ContentSid"] = message.template_sid
        fields["ContentVariables"] = json.dumps(message.template_variables, ensure_ascii=False)
    else:
        fields["Body"] = message.text
    if status_callback:
        fields["StatusCallback"] = status_callback
    return fields


def build_email(message: Message, sender_address: str = "") -> EmailMessage:
    """An RFC 5322 message: plain text and HTML, From the signer's name, Reply-To the signer."""
    msg = EmailMessage()
    from_address = sender_address or message.organisation_email or message.signer.email or "nudger@localhost"
    # headerregistry.Address keeps "(Organisation)" in a non-ASCII name; formataddr would turn it into a comment
    msg["From"] = Address(display_name=f"{message.signer.name} ({message.organisation})", addr_spec=from_address)
    msg["To"] = Address(display_name=message.recipient.name, addr_spec=message.recipient.email)
    if message.signer.email:
        msg["Reply-To"] = Address(display_name=message.signer.name, addr_spec=message.signer.email)
    msg["Subject"] = message.subject or message.organisation
    if message.created is not None:
        msg["Date"] = format_datetime(message.created)
    domain = from_address.rsplit("@", 1)[-1] if "@" in from_address else "nudger.local"
    msg["Message-ID"] = make_msgid(idstring=message.key.replace(":", "."), domain=domain)
    msg["X-Nudger-Key"] = message.key
    msg.set_content(message.text, charset="utf-8")
    paragraphs = "".join(
        f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>\n" for p in message.text.split("\n\n") if p.strip()
    )
    msg.add_alternative(
        f'<!DOCTYPE html>\n<html lang="{message.recipient.language}"><body>\n{paragraphs}</body></html>\n',
        subtype="html",
        charset="utf-8",
    )
    return msg


def letter_text(message: Message) -> str:
    """A plain rendering of a letter or card: return address, address block, date, heading, text."""
    lines: list[str] = []
    if not message.card:
        if message.return_address:
            lines += [message.return_address, ""]
        lines += list(message.recipient.address) + [""]
        if message.created is not None:
            from babel.dates import format_date

            lines += [format_date(message.created.date(), "long", locale=message.locale), ""]
        if message.subject:
            lines += [message.subject, ""]
    lines.append(message.text)
    return "\n".join(lines) + "\n"


def call_task_text(message: Message) -> str:
    r = message.recipient
    return (
        "\n".join(
            [
                f"Call task for {message.signer.name}",
                f"Tenant: {r.name} ({r.tenant_id})",
                f"Phone: {r.phone or '(no number: visit or write)'}",
                "",
                message.body,
            ]
        )
        + "\n"
    )


def as_json(fields: dict[str, Any]) -> str:
    return json.dumps(fields, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
