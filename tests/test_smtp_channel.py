"""The `email` channel against a real SMTP server (aiosmtpd) on a free loopback port."""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from channels.smtp import SmtpChannel, configured
from nudger.config import Config
from nudger.errors import ConfigError, PermanentChannelError, TemporaryChannelError, UncertainChannelError
from nudger.protocols import NEEDS_EMAIL, Message, Receipt, Recipient, Signer

HOST = "127.0.0.1"
PASSWORD = "geheim-Wachtwoord-42"

RECIPIENT = Recipient(tenant_id="T1001", name="Anna Jansen", language="nl", email="anna.jansen@example.nl")
SIGNER = Signer(
    key="ayse",
    name="Ayşe Yılmaz",
    first_name="Ayşe",
    role="woonconsulent",
    phone="010 123 45 67",
    email="a.yilmaz@woonstede.nl",
)
MESSAGE = Message(
    key="huur-herinnering:T1001:2024-05",
    rule_id="huur-herinnering",
    kind="reminder",
    channel="email",
    recipient=RECIPIENT,
    signer=SIGNER,
    subject="Even contact óver de huur",
    body=(
        "Beste Anna,\n\nDe huur van mei (€ 712,50) hebben we nog niet gezien. Misschien is het al onderweg: "
        "dan is dit bericht overbodig.\n\nLukt het even niet? Bel of mail me gerust, dan zoeken we samen een "
        "oplossing. Ook als het <b>lastig</b> voelt: geen probleem, en ik help graag met de ëerste stap."
    ),
    signature="Hartelijke groet,\nAyşe Yılmaz\nwoonconsulent, Woonstede\n010 123 45 67",
    organisation="Woonstede",
    organisation_email="info@woonstede.nl",
    created=datetime(2024, 5, 6, 9, 30, tzinfo=ZoneInfo("Europe/Amsterdam")),
)


# -- servers ---------------------------------------------------------------------------------------------


class Recorder:
    """Takes every message and keeps what arrived, with the session's TLS and login state."""

    def __init__(self) -> None:
        self.arrived: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrived.append(
            {
                "content": envelope.content,
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "mail_options": list(envelope.mail_options),
                "ssl": session.ssl,
                "authenticated": session.authenticated,
            }
        )
        return "250 2.0.0 OK"


class OnceBusy(Recorder):
    """Answers the first DATA with 451 (as a greylisting or busy server does), then takes messages."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.refused:
            self.refused += 1
            return "451 4.3.0 Try again later"
        return await super().handle_DATA(server, session, envelope)


class NoSuchUser(Recorder):
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        return "550 5.1.1 No such user"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextmanager
def smtp_server(handler: Any, **kwargs: Any) -> Iterator[int]:
    port = free_port()
    controller = Controller(handler, hostname=HOST, port=port, ready_timeout=5, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def accept_all(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    """Logs in nudger with PASSWORD; anything else gets 535 (handled=False lets aiosmtpd answer it)."""
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"nudger", PASSWORD.encode())
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost: with `cryptography` when installed, else with `openssl`."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        from cryptography import x509  # noqa: F401
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("needs a self-signed certificate: install `cryptography` or the `openssl` command")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
            + ["-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
            check=True,
            capture_output=True,
            timeout=30,
        )
    else:
        _self_signed(cert, key)
    return cert, key


def _self_signed(cert: Path, key: Path) -> None:
    from datetime import UTC, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(built.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


# -- the channel -----------------------------------------------------------------------------------------


def make_config(**email: Any) -> Config:
    section = {"transport": "smtp", "host": HOST, "security": "none", "local_hostname": "nudger.test", **email}
    return Config.model_validate(
        {"organisation": {"name": "Woonstede", "email": "info@woonstede.nl"}, "channels": {"email": section}}
    )


def channel(**email: Any) -> SmtpChannel:
    config = make_config(**email)
    return SmtpChannel("email", config.channels["email"], config)


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_delivers_a_signed_multipart_utf8_mail() -> None:
    handler = Recorder()
    with smtp_server(handler) as port:
        ch = channel(port=port)
        receipt = ch.send(MESSAGE)
        ch.close()
    assert ch.needs == NEEDS_EMAIL and ch.name == "email"
    assert isinstance(receipt, Receipt)
    [arrived] = handler.arrived
    assert arrived["mail_from"] == "info@woonstede.nl"
    assert arrived["rcpt_tos"] == ["anna.jansen@example.nl"]
    mail = parse(arrived["content"])

    [sender] = mail["From"].addresses
    assert sender.addr_spec == "info@woonstede.nl"
    assert sender.display_name.startswith("Ayşe Yılmaz")
    [reply_to] = mail["Reply-To"].addresses
    assert (reply_to.display_name, reply_to.addr_spec) == ("Ayşe Yılmaz", "a.yilmaz@woonstede.nl")
    [to] = mail["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Anna Jansen", "anna.jansen@example.nl")
    assert mail["Subject"] == "Even contact óver de huur"
    assert mail["Date"].datetime == MESSAGE.created
    assert mail["Message-ID"] == receipt.id
    assert receipt.id.startswith("<") and receipt.id.endswith("@woonstede.nl>")

    assert mail.get_content_type() == "multipart/alternative"
    plain, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content_charset() == "utf-8" and html.get_content_charset() == "utf-8"
    text, markup = plain.get_content(), html.get_content()
    assert "€ 712,50" in text and "ëerste" in text and "<b>lastig</b>" in text
    assert "€ 712,50" in markup and "ëerste" in markup
    assert "&lt;b&gt;lastig&lt;/b&gt;" in markup and "<b>" not in markup  # autoescaped
    for line in MESSAGE.signature.splitlines():
        assert line in text
        assert line in markup


@pytest.mark.parametrize(
    "name",
    [
        "Fleur de Wit",
        "Ayşe Yılmaz",
    ],
)
def test_from_shows_the_organisation_with_the_signer(name: str) -> None:
    handler = Recorder()
    with smtp_server(handler) as port:
        channel(port=port).send(replace(MESSAGE, signer=replace(SIGNER, name=name)))
    [sender] = parse(handler.arrived[0]["content"])["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (f"{name} (Woonstede)", "info@woonstede.nl")


def test_a_message_without_created_still_gets_a_date() -> None:
    handler = Recorder()
    with smtp_server(handler) as port:
        channel(port=port).send(replace(MESSAGE, created=None))
    mail = parse(handler.arrived[0]["content"])
    assert abs((datetime.now(ZoneInfo("Europe/Amsterdam")) - mail["Date"].datetime).total_seconds()) < 60


def test_from_address_overrides_the_organisation_address() -> None:
    handler = Recorder()
    with smtp_server(handler) as port:
        channel(port=port, from_address="huur@woonstede.nl").send(MESSAGE)
    assert handler.arrived[0]["mail_from"] == "huur@woonstede.nl"
    assert parse(handler.arrived[0]["content"])["From"].addresses[0].addr_spec == "huur@woonstede.nl"


def test_451_is_temporary_and_the_retry_arrives() -> None:
    handler = OnceBusy()
    with smtp_server(handler) as port:
        ch = channel(port=port)
        with pytest.raises(TemporaryChannelError) as caught:
            ch.send(MESSAGE)
        assert caught.value.temporary and caught.value.code == "451"
        assert caught.value.reason == "the mail server refused the message (451 4.3.0)"
        receipt = ch.send(MESSAGE)
    [arrived] = handler.arrived
    assert parse(arrived["content"])["Message-ID"] == receipt.id


def test_550_is_permanent_and_names_no_address() -> None:
    handler = NoSuchUser()
    with smtp_server(handler) as port, pytest.raises(PermanentChannelError) as caught:
        channel(port=port).send(MESSAGE)
    error = caught.value
    assert not error.temporary and error.code == "550"
    assert error.reason == "the mail server refused the recipient (550 5.1.1)"
    assert "@" not in str(error) and "anna" not in str(error).lower()
    assert handler.arrived == []


def test_starttls_with_a_self_signed_certificate(certificate: tuple[Path, Path]) -> None:
    handler = Recorder()
    with smtp_server(handler, tls_context=server_tls(certificate), require_starttls=True) as port:
        channel(port=port, security="starttls", tls_verify=False).send(MESSAGE)
    [arrived] = handler.arrived
    assert arrived["ssl"] is not None  # the message came over TLS
    assert parse(arrived["content"])["Subject"] == "Even contact óver de huur"


def test_starttls_checks_the_certificate_by_default(certificate: tuple[Path, Path]) -> None:
    handler = Recorder()
    with (
        smtp_server(handler, tls_context=server_tls(certificate), require_starttls=True) as port,
        pytest.raises(PermanentChannelError, match="certificate could not be verified"),
    ):
        channel(port=port, security="starttls").send(MESSAGE)
    assert handler.arrived == []


def test_implicit_tls(certificate: tuple[Path, Path]) -> None:
    handler = Recorder()
    with smtp_server(handler, ssl_context=server_tls(certificate)) as port:
        channel(port=port, security="ssl", tls_verify=False).send(MESSAGE)
    assert len(handler.arrived) == 1


def test_starttls_asked_but_not_offered_is_permanent() -> None:
    with smtp_server(Recorder()) as port, pytest.raises(PermanentChannelError, match="does not offer STARTTLS"):
        channel(port=port, security="starttls").send(MESSAGE)


def test_login() -> None:
    handler = Recorder()
    with smtp_server(handler, authenticator=accept_all, auth_require_tls=False) as port:
        channel(port=port, username="nudger", password=PASSWORD).send(MESSAGE)
    assert handler.arrived[0]["authenticated"]


def test_a_wrong_password_is_permanent_and_not_shown() -> None:
    handler = Recorder()
    with (
        smtp_server(handler, authenticator=accept_all, auth_require_tls=False) as port,
        pytest.raises(PermanentChannelError) as caught,
    ):
        channel(port=port, username="nudger", password="not-" + PASSWORD).send(MESSAGE)
    error = caught.value
    assert error.code == "535" and "check channels.email.username and the password" in error.reason
    assert PASSWORD not in str(error) and PASSWORD not in repr(error.args)
    assert error.__cause__ is None and error.__suppress_context__
    assert handler.arrived == []


def test_connection_refused_is_temporary() -> None:
    with pytest.raises(TemporaryChannelError, match="refused the connection") as caught:
        channel(port=free_port()).send(MESSAGE)
    assert caught.value.temporary


def test_a_silent_server_times_out_as_temporary() -> None:
    with socket.socket() as listener:  # accepts connections (the backlog) but never greets
        listener.bind((HOST, 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(TemporaryChannelError, match="did not answer within 0.3 s while connecting"):
            channel(port=port, timeout=0.3).send(MESSAGE)


def test_an_answer_lost_after_the_message_went_over_is_uncertain() -> None:
    """The server took the whole message but never said 250: resending could deliver it twice."""
    import asyncio

    class Hangs:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd
            await asyncio.sleep(2)
            return "250 OK"

    with smtp_server(Hangs()) as port, pytest.raises(UncertainChannelError) as caught:
        channel(port=port, timeout=0.5).send(MESSAGE)
    assert not caught.value.temporary and "may have arrived" in caught.value.reason


# Short lines with € and ë: the stdlib writes the plain part as 8bit.
SHORT = replace(MESSAGE, body="Beste Anna,\n\nDe huur (€ 712,50) is nog niet binnen.\nZullen we ëven bellen?")


def test_an_8bit_body_is_declared() -> None:
    handler = Recorder()
    with smtp_server(handler) as port:
        channel(port=port).send(SHORT)
    [arrived] = handler.arrived
    assert b"Content-Transfer-Encoding: 8bit" in arrived["content"]
    assert "BODY=8BITMIME" in arrived["mail_options"]
    assert "€ 712,50" in parse(arrived["content"]).get_body(("plain",)).get_content()


def test_without_8bitmime_the_body_goes_as_7bit() -> None:
    class Plain7Bit:  # a server (smtplib.SMTP's view of it) that does not advertise 8BITMIME
        def has_extn(self, name: str) -> bool:
            return False

    ch = channel()
    msg = ch._build(SHORT)
    assert msg.get_body(("plain",))["Content-Transfer-Encoding"] == "8bit"
    assert ch._mail_options(Plain7Bit(), msg, SHORT) == []  # type: ignore[arg-type]
    raw = msg.as_bytes()
    assert raw.isascii() and b"Content-Transfer-Encoding: 8bit" not in raw
    assert "€ 712,50" in parse(raw).get_body(("plain",)).get_content()


def test_a_line_break_in_the_subject_is_permanent() -> None:
    with pytest.raises(PermanentChannelError, match="header is not valid"):
        channel(port=free_port()).send(replace(MESSAGE, subject="Huur\nBcc: x@example.org"))


# -- configuration ---------------------------------------------------------------------------------------


def test_configured_only_with_a_host() -> None:
    assert configured(make_config().channels["email"])
    assert not configured(make_config(host="").channels["email"])
    assert not configured(Config().channels["email"])


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("ssl", 465), ("none", 25)])
def test_default_ports(security: str, port: int) -> None:
    ch = channel(security=security)
    assert (ch.port, ch.timeout, ch.from_address) == (port, 20.0, "info@woonstede.nl")


def test_values_from_the_environment_are_strings() -> None:
    ch = channel(port="2525", timeout="5", tls_verify="false")
    assert (ch.port, ch.timeout, ch.tls_verify) == (2525, 5.0, False)


@pytest.mark.parametrize(
    ("setting", "key", "says"),
    [
        ({"security": "tls"}, "channels.email.security", "use one of starttls, ssl, none"),
        ({"port": "smtp"}, "channels.email.port", "not a port number"),
        ({"port": 70000}, "channels.email.port", "not a port number"),
        ({"host": ""}, "channels.email.host", "not set"),
        ({"username": "nudger"}, "channels.email.password", "from the environment"),
        ({"password": PASSWORD}, "channels.email.username", "set both, or neither"),
        ({"timeout": "soon"}, "channels.email.timeout", "not a number of seconds"),
        ({"timeout": 0}, "channels.email.timeout", "out of range"),
        ({"tls_verify": "maybe"}, "channels.email.tls_verify", "use true or false"),
        ({"hots": "x"}, "channels.email.hots", "unknown setting"),
    ],
)
def test_bad_settings_name_the_key(setting: dict[str, Any], key: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        channel(**setting)
    assert key in str(caught.value) and says in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_a_from_address_is_required() -> None:
    config = Config.model_validate({"channels": {"email": {"transport": "smtp", "host": HOST}}})
    with pytest.raises(ConfigError, match=r"channels\.email\.from_address: not set"):
        SmtpChannel("email", config.channels["email"], config)
