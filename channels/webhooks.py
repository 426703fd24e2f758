"""What comes back from Twilio: checking the signature of its webhook calls (X-Twilio-Signature)."""

from __future__ import annotations

from twilio.request_validator import RequestValidator


def valid_twilio_signature(auth_token: str, url: str, params: dict[str, str], signature: str) -> bool:
    """True when `signature` is Twilio's HMAC of the full URL and the POSTed form fields."""
    if not auth_token or not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, params, signature))
