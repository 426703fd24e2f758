"""Whether a tenant can be reached on a channel: phone numbers (phonenumbers), e-mail, address."""

from __future__ import annotations

import re

import phonenumbers

from .protocols import (
    NEEDS_ADDRESS,
    NEEDS_EMAIL,
    NEEDS_MOBILE,
    NEEDS_NOTHING,
    NEEDS_WHATSAPP,
    Recipient,
)

_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_MOBILE_TYPES = {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}


def mobile_e164(number: str, region: str = "NL") -> str | None:
    """The number in E.164 (`+31612345678`) when it is a valid mobile number, else None."""
    if not number or not number.strip():
        return None
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed) or phonenumbers.number_type(parsed) not in _MOBILE_TYPES:
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def why_unreachable(recipient: Recipient, needs: str) -> str | None:
    """None when the tenant has what the channel needs, else the reason in plain words."""
    if needs == NEEDS_NOTHING:
        return None
    if needs in (NEEDS_MOBILE, NEEDS_WHATSAPP):
        if not recipient.phone:
            return "no phone number"
        if mobile_e164(recipient.phone) is None:
            return "the phone number is not a mobile number"
        if needs == NEEDS_WHATSAPP and not recipient.whatsapp_opt_in:
            return "no WhatsApp opt-in"
        return None
    if needs == NEEDS_EMAIL:
        if not recipient.email:
            return "no e-mail address"
        return None if _EMAIL.match(recipient.email) else "the e-mail address is not valid"
    if needs == NEEDS_ADDRESS:
        return None if len(recipient.address) >= 3 and all(recipient.address) else "no postal address"
    return f"unknown need {needs}"
