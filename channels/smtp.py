"""The `email` transport: SMTP with the standard library (smtplib, email.message.EmailMessage).

The message itself is built by `channels.formats.build_email` (plain text and HTML, From the signer's name
with the organisation's address, Reply-To the signer); this module only hands it to a mail server.

config.yaml, section `channels.email`:

    transport: smtp
    host: smtp.example.nl          # required; without it the engine keeps e-mail in the outbox
    port: 587                      # default 587 for starttls, 465 for ssl, 25 for none
    security: starttls             # starttls | ssl (implicit TLS) | none
    username: nudger@example.nl    # optional; log in when set
    password: ${SMTP_PASSWORD}     # from the environment, never written in the file
    from_address: info@example.nl  # default: organisation.email
    timeout: 20                    # seconds, per connection
    local_hostname: nudger.example.nl  # optional: the name sent with EHLO

`tls_verify: false` turns certificate checking off. It exists ONLY for tests against a server with a
self-signed certificate: never set it in production, where it lets anyone in the network path read the mail
and the password.

A connection is opened per message: simple, and nothing stale to recover from. 4xx answers are temporary
errors (the engine retries), 5xx answers permanent (the engine falls back to the next channel). Error reasons
name the SMTP step and code only: never an address, a text or a credential.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from nudger.config import Config
from nudger.errors import ConfigError, PermanentChannelError, TemporaryChannelError, UncertainChannelError
from nudger.protocols import NEEDS_EMAIL, Message, Receipt

from .formats import build_email

SECURITIES = ("starttls", "ssl", "none")
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
KNOWN_KEYS = frozenset(
    {"host", "port", "security", "username", "password", "from_address", "timeout", "local_hostname", "tls_verify"}
)
_ENHANCED = re.compile(rb"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


def _extra(section: Any) -> dict[str, Any]:
    return dict(getattr(section, "model_extra", None) or {})


def configured(section: Any) -> bool:
    """True when the section names a mail server; otherwise the engine keeps e-mail in the outbox."""
    return bool(str(_extra(section).get("host") or "").strip())


class SmtpChannel:
    """Sends each message over its own SMTP connection. See the module docstring for the settings."""

    needs = NEEDS_EMAIL

    def __init__(self, name: str, section: Any, config: Config):
        self.name = name
        extra = _extra(section)
        where = f"{config.source_file}: channels.{name}"

        def fail(key: str, what: str) -> ConfigError:
            return ConfigError(f"{where}.{key}: {what}")

        for key in extra:
            if key not in KNOWN_KEYS:
                raise fail(key, f"unknown setting: allowed here: transport, rate, {', '.join(sorted(KNOWN_KEYS))}")

        self.host = str(extra.get("host") or "").strip()
        if not self.host:
            raise fail("host", "not set: give the mail server's name (or use transport: outbox)")

        security = str(extra.get("security") or "starttls").strip().lower()
        if security not in SECURITIES:
            raise fail("security", f"`{security}` is not allowed; use one of {', '.join(SECURITIES)}")
        self.security = security

        port = extra.get("port")
        if port is None or port == "":
            self.port = DEFAULT_PORTS[security]
        else:
            try:
                self.port = int(str(port).strip())
            except ValueError:
                raise fail("port", f"`{port}` is not a port number; use a number from 1 to 65535") from None
            if not 1 <= self.port <= 65535:
                raise fail("port", f"{self.port} is not a port number; use a number from 1 to 65535")

        self.username = str(extra.get("username") or "")
        self.password = str(extra.get("password") or "")
        if self.password and not self.username:
            raise fail("username", "a password is set but no username: set both, or neither")
        if self.username and not self.password:
            raise fail("password", "not set: give it from the environment, e.g. password: ${SMTP_PASSWORD}")
        for key in ("username", "password"):
            if not getattr(self, key).isascii():
                raise fail(key, "smtplib can only log in with ASCII characters")

        self.from_address = str(extra.get("from_address") or config.organisation.email or "").strip()
        if "@" not in self.from_address:
            raise fail("from_address", "not set: set it, or organisation.email, to the address mail is sent from")
        if not self.from_address.isascii():
            raise fail("from_address", "use an ASCII address (many mail servers refuse others)")

        timeout = extra.get("timeout", 20)
        try:
            self.timeout = float(timeout)
        except (TypeError, ValueError):
            raise fail("timeout", f"`{timeout}` is not a number of seconds; use e.g. 20") from None
        if not 0 < self.timeout <= 600:
            raise fail("timeout", f"{timeout} is out of range; use a number of seconds above 0, at most 600")

        self.local_hostname = str(extra.get("local_hostname") or "").strip() or None

        verify = extra.get("tls_verify", True)
        if isinstance(verify, str) and verify.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            verify = verify.strip().lower() in ("true", "yes", "on", "1")
        if not isinstance(verify, bool):
            raise fail("tls_verify", f"`{verify}` is not allowed; use true or false (false only in tests)")
        self.tls_verify = verify
        self.zone = config.zone

    # -- sending -------------------------------------------------------------------------------------------

    def send(self, message: Message) -> Receipt:
        msg = self._build(message)
        message_id = str(msg["Message-ID"])
        step = "connecting"
        smtp: smtplib.SMTP | None = None
        try:
            smtp = self._connect()
            if self.security == "starttls":
                step = "starting TLS"
                smtp.starttls(context=self._tls_context())
            if self.username:
                step = "logging in"
                smtp.login(self.username, self.password)
            step = "sending"
            smtp.ehlo_or_helo_if_needed()
            refused = smtp.send_message(msg, mail_options=self._mail_options(smtp, msg, message))
            if refused:  # only some recipients refused; we send to one, so this is defensive
                raise smtplib.SMTPRecipientsRefused(refused)  # handled below like any refusal
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentChannelError(
                f"the mail server refused the login ({exc.smtp_code}): check channels.{self.name}.username "
                f"and the password",
                code=str(exc.smtp_code),
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (-1, b""))
            raise _by_code(code, text, "the mail server refused the recipient") from None
        except smtplib.SMTPSenderRefused as exc:
            raise _by_code(exc.smtp_code, exc.smtp_error, "the mail server refused the sender address") from None
        except smtplib.SMTPDataError as exc:
            raise _by_code(exc.smtp_code, exc.smtp_error, "the mail server refused the message") from None
        except smtplib.SMTPConnectError as exc:
            raise _by_code(exc.smtp_code, exc.smtp_error, "the mail server refused the connection") from None
        except smtplib.SMTPResponseException as exc:
            raise _by_code(exc.smtp_code, exc.smtp_error, f"the mail server answered an error while {step}") from None
        except smtplib.SMTPNotSupportedError:
            raise PermanentChannelError(self._unsupported(step)) from None
        except (smtplib.SMTPServerDisconnected, TimeoutError, ConnectionResetError) as exc:
            if smtp is not None and getattr(smtp, "data_sent", False):
                # the message went over the wire and the server's answer was lost: it may have taken it
                raise UncertainChannelError(
                    "the connection was lost after the message was handed over; it may have arrived",
                    code="lost-answer",
                ) from None
            if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
                # smtplib turns a read timeout into a disconnect
                raise TemporaryChannelError(
                    f"the mail server did not answer within {self.timeout:g} s while {step}"
                ) from None
            raise TemporaryChannelError(f"the mail server closed the connection while {step}") from None
        except smtplib.SMTPException as exc:
            raise TemporaryChannelError(f"SMTP failed while {step} ({type(exc).__name__})") from None
        except ssl.SSLCertVerificationError:
            raise PermanentChannelError(
                f"the mail server's TLS certificate could not be verified ({self.host}:{self.port})"
            ) from None
        except ssl.SSLError as exc:
            raise TemporaryChannelError(f"TLS failed while {step} ({exc.reason or 'SSL error'})") from None
        except ConnectionRefusedError:
            raise TemporaryChannelError(f"the mail server refused the connection ({self.host}:{self.port})") from None
        except socket.gaierror:
            raise TemporaryChannelError(f"the mail server's name could not be resolved ({self.host})") from None
        except OSError as exc:
            raise TemporaryChannelError(
                f"could not reach the mail server while {step} ({type(exc).__name__})"
            ) from None
        else:
            # The server has accepted the message: a failing QUIT must not make the engine send it again.
            with contextlib.suppress(smtplib.SMTPException, OSError):
                if smtp is not None:
                    smtp.quit()
        finally:
            if smtp is not None:
                smtp.close()
        return Receipt(id=message_id)

    def close(self) -> None:
        pass  # a connection per message: nothing stays open

    # -- helpers -------------------------------------------------------------------------------------------

    def _build(self, message: Message) -> EmailMessage:
        try:
            msg = build_email(message, self.from_address)
        except (ValueError, TypeError):  # e.g. a line break in the subject: the text must be fixed
            raise PermanentChannelError("the e-mail could not be built: a header is not valid") from None
        if "Date" not in msg:
            msg["Date"] = format_datetime(datetime.now(self.zone))
        return msg

    def _connect(self) -> smtplib.SMTP:
        if self.local_hostname is None:  # smtplib would look the name up on every connection
            self.local_hostname = socket.getfqdn()
        if self.security == "ssl":
            return _TrackedSMTPSSL(
                self.host,
                self.port,
                local_hostname=self.local_hostname,
                timeout=self.timeout,
                context=self._tls_context(),
            )
        return _TrackedSMTP(self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout)

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.tls_verify:  # tests with self-signed certificates only; see the module docstring
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _mail_options(self, smtp: smtplib.SMTP, msg: EmailMessage, message: Message) -> list[str]:
        """Declare 8-bit bodies where the server takes them; otherwise send the body in base64 (RFC 6152)."""
        if not (self.from_address + message.recipient.email).isascii():
            return []  # send_message asks for SMTPUTF8 and BODY=8BITMIME itself
        if all(part.get("Content-Transfer-Encoding", "7bit").lower() != "8bit" for part in msg.walk()):
            return []
        if smtp.has_extn("8bitmime"):
            return ["BODY=8BITMIME"]
        msg.policy = msg.policy.clone(cte_type="7bit")  # the generator re-encodes 8-bit parts
        return []

    def _unsupported(self, step: str) -> str:
        if step == "starting TLS":
            return f"the mail server does not offer STARTTLS: check channels.{self.name}.security"
        if step == "logging in":
            return f"the mail server does not offer a login (AUTH) here: check channels.{self.name}.security"
        return "the mail server does not take international (non-ASCII) addresses (SMTPUTF8)"


def _by_code(code: int, text: bytes | str, what: str) -> TemporaryChannelError | PermanentChannelError:
    """4xx: temporary, 5xx: permanent, anything else: temporary. The server's text is left out (it may hold
    an address); its enhanced status code (e.g. 5.1.1) is kept."""
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else (text or b"")
    m = _ENHANCED.match(raw)
    detail = f"{code} {m.group(1).decode()}" if m else str(code)
    reason = f"{what} ({detail})"
    if 500 <= code <= 599:
        return PermanentChannelError(reason, code=str(code))
    return TemporaryChannelError(reason, code=str(code) if code > 0 else None)


class _TrackedSMTP(smtplib.SMTP):
    """Knows whether the message body went over the wire (after DATA's 354), for promise 1."""

    data_sent = False

    def send(self, s: bytes | str) -> None:
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.data_sent = True


class _TrackedSMTPSSL(smtplib.SMTP_SSL):
    data_sent = False

    def send(self, s: bytes | str) -> None:
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.data_sent = True
