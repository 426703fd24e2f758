"""The shipped example through the daemon's cycle with every channel pointed at local servers:
Twilio (a local server speaking its REST API), SMTP (aiosmtpd), the PDF spool and the call list;
then what comes back: signed status and inbound webhooks."""

from __future__ import annotations

import email
import json
import shutil
import socket
import sqlite3
import urllib.error
import urllib.request
from datetime import datetime
from email import policy
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
import yaml
from aiosmtpd.controller import Controller
from fake_twilio import FakeTwilio
from support import copy_example, nudger
from twilio.request_validator import RequestValidator

from nudger.config import load_config
from nudger.engine import Engine
from nudger.web import WebApp

AMS = ZoneInfo("Europe/Amsterdam")
NOW = "2026-11-30T10:00"
T1001 = "+31612347035"  # written 0612347035 in the data
T1006 = "+31655551742"  # written +31 6 5555 1742


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def servers():
    mailbox = Mailbox()
    with socket.socket() as probe:  # a free port for aiosmtpd, which cannot take port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(mailbox, hostname="127.0.0.1", port=port, ready_timeout=5)
    smtp.start()
    with FakeTwilio() as twilio:
        yield twilio, smtp, mailbox
    smtp.stop()


def wire(folder: Path, twilio: FakeTwilio, smtp: Controller) -> None:
    """Point the shipped config's channels at the local servers (as ops would with credentials)."""
    copy_example(folder)
    path = folder / "config.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    twilio_keys = {
        "transport": "twilio",
        "account_sid": twilio.account_sid,
        "auth_token": twilio.auth_token,
        "base_url": twilio.base_url,
    }
    config["channels"]["sms"] = {**twilio_keys, "sender": "Woonstad"}
    config["channels"]["whatsapp"] = {**twilio_keys, "sender": "whatsapp:+3197010203040"}
    config["channels"]["email"] = {
        "transport": "smtp",
        "host": "127.0.0.1",
        "port": smtp.port,
        "security": "none",
    }
    config["web"] = {"enabled": False, "host": "127.0.0.1", "port": 0, "public_url": "https://nudger.example.nl"}
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    prefs = folder / "rules" / "tenants.yaml"
    prefs.write_text(
        prefs.read_text(encoding="utf-8") + "\nT-1001:\n  channels: [whatsapp, sms, email]\n", encoding="utf-8"
    )


def history(folder: Path, tenant: str) -> dict:
    return json.loads(nudger(folder, "history", tenant, "--json").out)


def test_the_example_through_real_transports_with_a_fallback_chain(tmp_path: Path, servers) -> None:
    twilio, smtp, mailbox = servers
    wire(tmp_path, twilio, smtp)
    # T-1001 prefers WhatsApp, then SMS, then e-mail: WhatsApp is outside its window, SMS was unsubscribed
    twilio.fail("whatsapp:" + T1001, code=63016)
    twilio.fail(T1001, code=21610)
    # T-1002 has no phone and no e-mail: after a repair, a letter
    assert nudger(tmp_path, "import", "--date", "2026-11-28").code == 0
    assert nudger(tmp_path, "event", "repair_completed", "T-1002", "--at", "2026-11-28").code == 0

    run = nudger(tmp_path, "run", "--once", "--now", NOW)
    assert run.code == 0, run.text

    sms = [r.fields for r in twilio.requests if r.status == 201 and not r.fields["To"].startswith("whatsapp:")]
    assert {"To": T1006, "From": "Woonstad"}.items() <= next(f for f in sms if f["To"] == T1006).items()
    assert "Groet, Fatima" in next(f for f in sms if f["To"] == T1006)["Body"]  # Sanne is away
    assert all(f["To"].startswith("+316") and " " not in f["To"] for f in sms)  # E.164 from every spelling
    wa = [r.fields for r in twilio.requests if r.status == 201 and r.fields["To"].startswith("whatsapp:")]
    assert wa and all(f["ContentSid"].startswith("HX") and "Body" not in f for f in wa)  # templates only

    story = next(n for n in history(tmp_path, "T-1001")["nudges"] if n["rule"] == "rent-reminder")
    assert story["state"] == "sent" and story["channel"] == "email"
    reasons = " / ".join(t["reason"] for t in story["transitions"])
    assert "whatsapp failed: free text outside the 24-hour WhatsApp session" in reasons
    assert "sms failed: the tenant has unsubscribed" in reasons
    [mail] = [m for m in mailbox.messages if m["To"].addresses[0].addr_spec == "m.elidrissi@example.nl"]
    assert "Fatima el Amrani" in str(mail["From"]) and mail.get_body(("plain",)).get_content().startswith(
        "Beste Mohamed"
    )
    optouts = (
        sqlite3.connect(tmp_path / "var" / "nudger.db")
        .execute("select tenant_id, channel, source from optouts")
        .fetchall()
    )
    assert optouts == [("T-1001", "sms", "provider")]

    letters = list((tmp_path / "var" / "print").rglob("repair-check-in_T-1002_*.pdf"))
    assert len(letters) == 1
    from pypdf import PdfReader

    text = PdfReader(letters[0]).pages[0].extract_text()
    assert "Henk Jansen" in text and "2032 VJ  HAARLEM" in text and "Jan de Boer" in text

    calls = json.loads(nudger(tmp_path, "calls", "--date", "2026-11-30", "--json").out)
    assert [(c["officer"], c["tenant"]) for c in calls] == [("ahmed", "T-1008")]

    before = len(twilio.requests), len(mailbox.messages)
    again = nudger(tmp_path, "run", "--once", "--now", "2026-11-30T10:30")
    assert again.code == 0 and (len(twilio.requests), len(mailbox.messages)) == before  # nothing twice


def _post(url: str, params: dict[str, str], token: str | None, public: str) -> int:
    path = url.split("/", 3)[3]
    signature = RequestValidator(token).compute_signature(f"{public}/{path}", params) if token else "nonsense"
    req = urllib.request.Request(
        url,
        data=urlencode(params).encode(),
        method="POST",
        headers={"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_webhooks_are_signed_and_move_the_ledger(tmp_path: Path, servers) -> None:
    twilio, smtp, _ = servers
    wire(tmp_path, twilio, smtp)
    config = load_config(tmp_path / "config.yaml")
    clock = {"now": datetime(2026, 11, 30, 10, 0, tzinfo=AMS)}
    engine = Engine(config, clock=lambda: clock["now"])
    public = "https://nudger.example.nl"
    app = WebApp(engine, "127.0.0.1", 0, public, lambda: (True, {"status": "ok"}))
    app.start()
    base = f"http://127.0.0.1:{app.port}"
    try:
        engine.import_data()
        engine.plan()
        engine.dispatch()
        sent = next(n for n in engine.ledger.nudges(tenant_id="T-1006") if n.state == "sent")
        assert sent.receipt.startswith("SM")

        queued = {"MessageSid": sent.receipt, "MessageStatus": "sent", "AccountSid": twilio.account_sid}
        assert _post(f"{base}/twilio/status", queued, twilio.auth_token, public) == 200
        row = next(n for n in engine.ledger.nudges(tenant_id="T-1006") if n.id == sent.id)
        assert (row.state, row.provider_status) == ("sent", "sent")  # recorded on the nudge
        status = {"MessageSid": sent.receipt, "MessageStatus": "delivered", "AccountSid": twilio.account_sid}
        assert _post(f"{base}/twilio/status", status, None, public) == 403  # a wrong signature
        assert next(n for n in engine.ledger.nudges(tenant_id="T-1006") if n.id == sent.id).state == "sent"
        assert _post(f"{base}/twilio/status", status, twilio.auth_token, public) == 200
        assert next(n for n in engine.ledger.nudges(tenant_id="T-1006") if n.id == sent.id).state == "delivered"

        # the tenant answers STOP: SMS is off for them; a later message goes another way or not at all
        assert _post(f"{base}/twilio/inbound", {"From": T1006, "Body": "Stop."}, twilio.auth_token, public) == 200
        assert engine.ledger.opted_out("T-1006") == {"sms"}
        usable, skipped = engine.candidate_channels(
            engine.rulebook.rules["repair-check-in"], engine.facts(clock["now"].date(), ["T-1006"])["T-1006"], ()
        )
        assert "sms" not in usable and "sms: the tenant opted out" in skipped
        assert _post(f"{base}/twilio/inbound", {"From": T1006, "Body": "START"}, twilio.auth_token, public) == 200
        assert engine.ledger.opted_out("T-1006") == set()  # START opts back in

        # any other reply: a reply_received event, and the officer gets a call task
        reply = {"From": "whatsapp:" + T1001, "Body": "Ik bel morgen even"}
        assert _post(f"{base}/twilio/inbound", reply, twilio.auth_token, public) == 200
        assert [e.name for e in engine.ledger.events_for("T-1001")] == ["reply_received"]
        assert engine.in_whatsapp_session(engine.facts(clock["now"].date(), ["T-1001"])["T-1001"], clock["now"])
        clock["now"] = datetime(2026, 11, 30, 11, 0, tzinfo=AMS)
        engine.plan()
        engine.dispatch()
        from channels.calls import read_calls

        assert "T-1001" in {t.tenant_id for t in read_calls(engine.call_folder(), clock["now"].date())}
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as answer:
            assert json.loads(answer.read())["status"] == "ok"
    finally:
        app.stop()
        engine.close()


def test_without_credentials_every_channel_falls_back_to_the_outbox(tmp_path: Path) -> None:
    copy_example(tmp_path)
    shutil.rmtree(tmp_path / "var", ignore_errors=True)
    run = nudger(tmp_path, "run", "--once", "--now", NOW)
    assert run.code == 0
    assert "event=channel_outbox_fallback channel=sms" in run.out
    assert (tmp_path / "var" / "outbox" / "sms").is_dir()


def test_the_morning_digest_mails_each_officer_their_calls(tmp_path: Path) -> None:
    copy_example(tmp_path)
    config = load_config(tmp_path / "config.yaml")
    engine = Engine(config, clock=lambda: datetime(2026, 11, 30, 10, 0, tzinfo=AMS))
    try:
        engine.import_data()
        engine.plan()
        engine.dispatch()
        assert engine.send_call_digests() == 1  # only Ahmed has calls today
    finally:
        engine.close()
    [eml] = [p for p in (tmp_path / "var" / "outbox" / "email").glob("*call-digest*")]
    mail = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert mail["To"].addresses[0].addr_spec == "a.yilmaz@example.nl"
    assert mail["Subject"] == "Belafspraken 2026-11-30"
    body = mail.get_body(("plain",)).get_content()
    assert "Małgorzata Kowalska (T-1008)" in body and "begin met: Dag Małgorzata" in body


def test_a_channel_rate_spaces_the_sends(tmp_path: Path, servers) -> None:
    """`rate: 5/s` on SMS: five sends are spread over at least 0.8 s (a lower bound: never flaky)."""
    import time

    from nudger.ratelimit import RateLimiter

    limiter = RateLimiter.parse("5/s")
    started = time.monotonic()
    for _ in range(5):
        limiter.wait()
    assert time.monotonic() - started >= 0.79
    with pytest.raises(ValueError, match="write it like `10/s`"):
        RateLimiter.parse("vijf per seconde")


def test_two_daemons_on_one_postgresql_store_mail_the_digest_once(tmp_path: Path) -> None:
    from support import postgres_or_skip

    from nudger.daemon import Daemon

    url = postgres_or_skip()
    copy_example(tmp_path, store=url)
    config = load_config(tmp_path / "config.yaml")
    clock = lambda: datetime(2026, 11, 30, 10, 0, tzinfo=AMS)  # noqa: E731
    first, second = Engine(config, clock=clock, worker="a:1"), Engine(config, clock=clock, worker="b:2")
    try:
        first.import_data()
        first.plan()
        first.dispatch()
        daemons = [Daemon(config, first), Daemon(config, second)]
        # both daemons, twice each (a restart, a second digest job): one e-mail to Ahmed in all
        assert [daemon.call_digests() for daemon in daemons * 2] == [1, 0, 0, 0]
    finally:
        first.close()
        second.close()
    mails = list((tmp_path / "var" / "outbox" / "email").glob("*call-digest*"))
    assert len(mails) == 1
