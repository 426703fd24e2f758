"""What each transport would send, built from a Message: the e-mail, the Twilio request, the letter.

The outbox writes exactly these; the real transports send them.
"""

from __future__ import annotations

import html
import json
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any

from nudger.contact import mobile_e164
from nudger.protocols import Message


def sms_safe(text: str) -> str:
    """Babel's no-break spaces and typographic quotes become plain ones, so SMS stays in GSM-7."""
    table = {
        "\u00a0": " ",
        "\u202f": " ",
        "\u2009": " ",
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
    }
    return "".join(table.get(ch, ch) for ch in text)


def sms_request(message: Message, sender: str = "", status_callback: str = "") -> dict[str, str]:
    """The form fields of Twilio's Messages API for an SMS."""
    fields = {"To": mobile_e164(message.recipient.phone) or message.recipient.phone, "Body": sms_safe(message.text)}
    if sender.startswith("MG"):
        fields["MessagingServiceSid"] = sender
    elif sender:
        fields["From"] = sender
    if status_callback:
        fields["StatusCallback"] = status_callback
    return fields


def whatsapp_request(message: Message, sender: str = "", status_callback: str = "") -> dict[str, str]:
    """The form fields of Twilio's Messages API for a business-initiated WhatsApp template message."""
    fields = {"To": "whatsapp:" + (mobile_e164(message.recipient.phone) or message.recipient.phone)}
    if sender:
        fields["From"] = sender if sender.startswith(("whatsapp:", "MG")) else "whatsapp:" + sender
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
    msg["From"] = formataddr((f"{message.signer.name} ({message.organisation})", from_address))
    msg["To"] = formataddr((message.recipient.name, message.recipient.email))
    if message.signer.email:
        msg["Reply-To"] = formataddr((message.signer.name, message.signer.email))
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

            lines += [format_date(message.created.date(), "long", locale=_locale(message)), ""]
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


def _locale(message: Message) -> str:
    return {"en": "en_GB"}.get(message.recipient.language, "nl_NL")


def as_json(fields: dict[str, Any]) -> str:
    return json.dumps(fields, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
