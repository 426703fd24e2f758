"""SMS and WhatsApp through Twilio's Messages API (twilio-python's `Client.messages.create`).

The form fields come from `channels.formats` (`sms_request`, `whatsapp_request`), so the outbox shows
exactly what these channels send. Twilio's answers become our errors:

* 21211, 21614, 21610, 63016 and any other 4xx: `PermanentChannelError` with `code` the Twilio code ("21610").
* 429: `TemporaryChannelError` with `retry_after` from the Retry-After header, when Twilio sent one.
* 5xx, time-outs and connection errors: `TemporaryChannelError`.

Reasons never hold personal data (no numbers, no text): Twilio's own messages often quote the
number, so every reason is written here.

Config (`channels.sms` / `channels.whatsapp`, `transport: twilio`): `account_sid`, `auth_token` (from the
environment via `${...}`), `sender`, `status_callback` (optional URL), `base_url` (optional: a regional
endpoint or a test server), `timeout` (seconds, default 10).
"""

from __future__ import annotations

import difflib
import email.utils
import re
import threading
import time
from typing import Any
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from nudger.config import Config
from nudger.contact import mobile_e164
from nudger.errors import ConfigError, PermanentChannelError, TemporaryChannelError, UncertainChannelError
from nudger.protocols import NEEDS_MOBILE, NEEDS_WHATSAPP, Message, Receipt
from nudger.tone import sms_segments

from .formats import sms_request, whatsapp_request

KEYS = ("account_sid", "auth_token", "sender", "status_callback", "base_url", "timeout")
DEFAULT_TIMEOUT = 10.0

_MESSAGING_SERVICE = re.compile(r"^MG[0-9a-fA-F]{32}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_ALPHANUMERIC = re.compile(r"^[A-Za-z0-9 ]{1,11}$")

# Our own words for Twilio's codes: Twilio's messages often quote the number, so they are never passed on.
REASONS = {
    "21211": "the number is not a valid phone number (Twilio 21211)",
    "21408": "Twilio may not send to this country or region (Twilio 21408)",
    "21610": "the tenant has unsubscribed from messages from this sender by replying STOP (Twilio 21610)",
    "21612": "Twilio cannot route a message to this number (Twilio 21612)",
    "21614": "the number is not a mobile number (Twilio 21614)",
    "63016": "free text outside the 24-hour WhatsApp session: use an approved template (Twilio 63016)",
    "20003": "Twilio refused the credentials: check channels.<name>.account_sid and auth_token (Twilio 20003)",
}

# form field -> keyword of twilio-python's `messages.create`
_KWARGS = {
    "To": "to",
    "From": "from_",
    "MessagingServiceSid": "messaging_service_sid",
    "Body": "body",
    "ContentSid": "content_sid",
    "ContentVariables": "content_variables",
    "StatusCallback": "status_callback",
}


def _extra(section: Any) -> dict[str, Any]:
    if section is None:
        return {}
    if isinstance(section, dict):
        return section
    return dict(getattr(section, "model_extra", None) or {})


def configured(section: Any) -> bool:
    """Whether the section has credentials (account_sid and auth_token); when not, the engine uses the outbox."""
    extra = _extra(section)
    return bool(str(extra.get("account_sid") or "").strip() and str(extra.get("auth_token") or "").strip())


def sender_kind(sender: str) -> str:
    """ "service" (a Messaging Service SID), "number" (E.164), "alphanumeric", or "" when not allowed."""
    if _MESSAGING_SERVICE.match(sender):
        return "service"
    if _E164.match(sender):
        return "number"
    if _ALPHANUMERIC.match(sender) and any(ch.isalpha() for ch in sender):
        return "alphanumeric"
    return ""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _HttpClient(TwilioHttpClient):
    """TwilioHttpClient that keeps the last response per thread, for its headers (Retry-After).

    twilio-python's exceptions do not carry the response headers.
    """

    def __init__(self, timeout: float):
        super().__init__(timeout=timeout)
        self._local = threading.local()
        if self.session is not None:  # a pool as large as the https one, for http base URLs (tests, proxies)
            self.session.mount("http://", HTTPAdapter(pool_maxsize=32))

    def request(self, *args: Any, **kwargs: Any) -> Response:
        self._local.response = None
        response = super().request(*args, **kwargs)
        self._local.response = response
        return response

    def last_header(self, name: str) -> str | None:
        response = getattr(self._local, "response", None)
        headers = getattr(response, "headers", None) or {}
        return headers.get(name)  # requests' headers are case-insensitive

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


class _TwilioChannel:
    needs = NEEDS_MOBILE
    concurrent = True  # one HTTP pool, the last answer kept per thread: several threads may send

    def __init__(self, name: str, section: Any, config: Config | None = None):
        self.name = name
        source = config.source_file if config is not None else "config.yaml"
        extra = _extra(section)
        where = f"{source}: channels.{name}"
        unknown = sorted(k for k in extra if k not in KEYS)
        if unknown:
            close = difflib.get_close_matches(unknown[0], KEYS, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"allowed here: transport, rate, {', '.join(KEYS)}"
            raise ConfigError(f"{where}.{unknown[0]}: unknown setting: {hint}")
        self.account_sid = str(extra.get("account_sid") or "").strip()
        auth_token = str(extra.get("auth_token") or "").strip()
        if not self.account_sid or not auth_token:
            missing = "account_sid" if not self.account_sid else "auth_token"
            raise ConfigError(
                f"{where}.{missing}: is empty: set it (from the environment, e.g. ${{TWILIO_ACCOUNT_SID}}), "
                "or use `transport: outbox`"
            )
        self.sender = self._check_sender(str(extra.get("sender") or "").strip(), f"{where}.sender")
        self.status_callback = self._check_url(
            str(extra.get("status_callback") or "").strip(), f"{where}.status_callback"
        )
        self.base_url = self._check_url(str(extra.get("base_url") or "").strip(), f"{where}.base_url").rstrip("/")
        timeout = extra.get("timeout", DEFAULT_TIMEOUT)
        try:
            self.timeout = float(timeout if timeout not in (None, "") else DEFAULT_TIMEOUT)
        except (TypeError, ValueError):
            self.timeout = -1.0
        if not 0 < self.timeout <= 300:
            raise ConfigError(
                f"{where}.timeout: `{timeout}` is not allowed: use a number of seconds above 0 and at most 300"
            )

        self._http = _HttpClient(self.timeout)
        self.client = Client(self.account_sid, auth_token, http_client=self._http)
        if self.base_url:
            self.client.api.base_url = self.base_url  # the Domain builds every URL from it
            self.client.edge = self.client.region = None  # so TWILIO_EDGE/TWILIO_REGION cannot rewrite it

    # --- config ---------------------------------------------------------------------------------
    def _check_sender(self, sender: str, key: str) -> str:
        raise NotImplementedError

    @staticmethod
    def _check_url(url: str, key: str) -> str:
        if not url:
            return ""
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"{key}: `{url}` is not allowed: use an http:// or https:// URL")
        return url

    # --- sending --------------------------------------------------------------------------------
    def _fields(self, message: Message) -> dict[str, str]:
        raise NotImplementedError

    def _check(self, message: Message) -> str:
        """The recipient's number in E.164, or a PermanentChannelError before any request is made."""
        if not message.recipient.phone.strip():
            raise PermanentChannelError("the tenant has no phone number", code="no-number")
        number = mobile_e164(message.recipient.phone)
        if number is None:
            raise PermanentChannelError("the phone number is not a mobile number", code="not-mobile")
        return number

    def _create(self, fields: dict[str, str]) -> str:
        kwargs = {_KWARGS[k]: v for k, v in fields.items()}
        try:
            created = self.client.messages.create(**kwargs)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise self._error(int(exc.status or 0), exc.code) from None
        except requests.RequestException as exc:
            if _never_sent(exc):
                raise TemporaryChannelError("could not connect to Twilio") from None
            # the request went out and the answer was lost: Twilio may have taken the message
            raise UncertainChannelError(
                f"Twilio's answer was lost after the request was sent ({type(exc).__name__})", code="lost-answer"
            ) from None
        except (TwilioException, ValueError) as exc:  # e.g. a 201 whose body is not JSON
            raise UncertainChannelError(
                f"Twilio gave an answer that could not be read ({type(exc).__name__})", code="unreadable-answer"
            ) from None
        sid = str(getattr(created, "sid", "") or "")
        if not sid:
            raise UncertainChannelError("Twilio accepted the request but gave no message SID", code="no-sid")
        return sid

    def _error(self, status: int, code: Any) -> TemporaryChannelError | PermanentChannelError:
        code_text = str(code) if code not in (None, "") else str(status)
        if status == 429:
            return TemporaryChannelError(
                f"Twilio is limiting the rate (HTTP 429, Twilio {code_text})",
                code=code_text,
                retry_after=retry_after_seconds(self._http.last_header("Retry-After")),
            )
        if status >= 500 or status < 400:
            return TemporaryChannelError(
                f"Twilio is unavailable (HTTP {status}, Twilio {code_text})",
                code=code_text,
                retry_after=retry_after_seconds(self._http.last_header("Retry-After")),
            )
        if code_text == "20003":  # our credentials, not this message: wait for ops instead of falling back
            return TemporaryChannelError(REASONS["20003"].replace("<name>", self.name), code=code_text)
        reason = REASONS.get(code_text, f"Twilio refused the message (HTTP {status}, Twilio {code_text})")
        return PermanentChannelError(reason.replace("<name>", self.name), code=code_text)

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} via {self.base_url or 'api.twilio.com'}>"


def _never_sent(exc: BaseException) -> bool:
    """True when the request cannot have reached Twilio: the connection was refused or never made."""
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, NewConnectionError | ConnectTimeoutError | NameResolutionError | ConnectionRefusedError):
            return True
        stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None)])
        stack.extend(a for a in getattr(item, "args", ()) if isinstance(a, BaseException))
    return False


class SmsChannel(_TwilioChannel):
    """SMS: from an alphanumeric ID, a number or a Messaging Service; the receipt says the segment count."""

    needs = NEEDS_MOBILE

    def _check_sender(self, sender: str, key: str) -> str:
        if sender_kind(sender):
            return sender
        shown = f"`{sender}` is not allowed" if sender else "is empty"
        raise ConfigError(
            f"{key}: {shown}: use an alphanumeric sender ID of 1 to 11 letters, digits and spaces with at least "
            "one letter (e.g. `Woonstad`), a phone number in E.164 (e.g. `+3197010203040`), "
            "or a Messaging Service SID (MG and 32 hex digits)"
        )

    def _fields(self, message: Message) -> dict[str, str]:
        return sms_request(message, self.sender, self.status_callback)

    def send(self, message: Message) -> Receipt:
        number = self._check(message)
        fields = self._fields(message)
        fields["To"] = number
        segments = sms_segments(fields["Body"]).count
        return Receipt(id=self._create(fields), detail=f"segments={segments}")


class WhatsAppChannel(_TwilioChannel):
    """WhatsApp: an approved template (ContentSid + ContentVariables) or, inside the session, free text.

    The engine decides: a message with `template_sid` goes as the template, one without as `Body`.
    """

    needs = NEEDS_WHATSAPP

    def _check_sender(self, sender: str, key: str) -> str:
        bare = sender.removeprefix("whatsapp:")
        if _MESSAGING_SERVICE.match(sender) or _E164.match(bare):
            return sender
        shown = f"`{sender}` is not allowed" if sender else "is empty"
        raise ConfigError(
            f"{key}: {shown}: use the WhatsApp sender's number in E.164 (e.g. `whatsapp:+3197010203040` "
            "or `+3197010203040`) or a Messaging Service SID (MG and 32 hex digits)"
        )

    def _fields(self, message: Message) -> dict[str, str]:
        return whatsapp_request(message, self.sender, self.status_callback)

    def send(self, message: Message) -> Receipt:
        number = self._check(message)
        if not message.recipient.whatsapp_opt_in:
            raise PermanentChannelError("the tenant has not opted in to WhatsApp", code="no-opt-in")
        fields = self._fields(message)
        fields["To"] = "whatsapp:" + number
        detail = f"template={message.template_sid}" if message.template_sid else "session"
        return Receipt(id=self._create(fields), detail=detail)


CHANNELS: dict[str, type[_TwilioChannel]] = {"sms": SmsChannel, "whatsapp": WhatsAppChannel}


def build(name: str, section: Any, config: Config) -> _TwilioChannel:
    """The factory for `channels.TRANSPORTS["twilio"]`: the SMS or the WhatsApp channel, by name."""
    cls = CHANNELS.get(name)
    if cls is None:
        raise ConfigError(
            f"{config.source_file}: channels.{name}.transport: `twilio` is for sms and whatsapp only; "
            "use `transport: outbox`"
        )
    return cls(name, section, config)
