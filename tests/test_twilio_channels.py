"""The SMS and WhatsApp channels against a local server that speaks Twilio's Messages API."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from fake_twilio import Answer, FakeTwilio, error, ok, rate_limited, unavailable

from channels.formats import sms_request, sms_safe, whatsapp_request
from channels.twilio import (
    REASONS,
    SmsChannel,
    WhatsAppChannel,
    build,
    configured,
    retry_after_seconds,
)
from nudger.config import ChannelConfig, Config
from nudger.errors import ConfigError, PermanentChannelError, TemporaryChannelError, UncertainChannelError
from nudger.protocols import NEEDS_MOBILE, NEEDS_WHATSAPP, Channel, Message, Recipient, Signer
from nudger.tone import sms_segments

MOBILE = "+31612345678"
MG = "MG" + "0123456789abcdef" * 2
TEMPLATE = "HX" + "b" * 32
CALLBACK = "https://nudger.example.nl/twilio/status"
SID = re.compile(r"^SM[0-9a-f]{32}$")


@pytest.fixture()
def server():
    with FakeTwilio() as fake:
        yield fake


def section(server: FakeTwilio, **extra: object) -> ChannelConfig:
    values: dict[str, object] = {
        "transport": "twilio",
        "account_sid": server.account_sid,
        "auth_token": server.auth_token,
        "sender": "Woonstad",
        "status_callback": CALLBACK,
        "base_url": server.base_url,
        "timeout": 5,
    }
    values.update(extra)
    return ChannelConfig(**{k: v for k, v in values.items() if v is not None})


def sms(server: FakeTwilio, **extra: object) -> SmsChannel:
    return SmsChannel("sms", section(server, **extra), Config())


def whatsapp(server: FakeTwilio, **extra: object) -> WhatsAppChannel:
    extra.setdefault("sender", "whatsapp:+3197010203040")
    return WhatsAppChannel("whatsapp", section(server, **extra), Config())


def message(
    phone: str = "06 12345678",
    *,
    channel: str = "sms",
    body: str = "Hallo Sanne, je huur van \u20ac\u00a0650 staat op 1 mei klaar. \u201cDank je!\u201d",
    opt_in: bool = True,
    template_sid: str = "",
    variables: dict[str, str] | None = None,
) -> Message:
    return Message(
        key="r1:T-1:2025-05",
        rule_id="r1",
        kind="reminder",
        channel=channel,
        recipient=Recipient("T-1", "Sanne de Vries", "nl", phone=phone, whatsapp_opt_in=opt_in),
        signer=Signer("ans", "Ans Bakker", "Ans", "huurconsulent"),
        subject="",
        body=body,
        signature="Groet, Ans (Woonstad)",
        organisation="Woonstad",
        template_sid=template_sid,
        template_variables=variables or {},
    )


# --- SMS: what is sent ----------------------------------------------------------------------------


def test_sms_alphanumeric_sender_sends_exact_fields_with_basic_auth(server):
    channel = sms(server)
    msg = message()
    receipt = channel.send(msg)

    [req] = server.requests
    assert req.method == "POST"
    assert req.path == f"/2010-04-01/Accounts/{server.account_sid}/Messages.json"
    assert req.auth == (server.account_sid, server.auth_token)
    assert req.fields == {
        "To": MOBILE,
        "From": "Woonstad",
        "Body": sms_safe(msg.text),
        "StatusCallback": CALLBACK,
    }
    assert "\u00a0" not in req.fields["Body"] and '"Dank je!"' in req.fields["Body"]
    assert req.fields == sms_request(msg, "Woonstad", CALLBACK)  # the same fields the outbox writes
    assert SID.match(receipt.id) and receipt.id == req.sid
    assert receipt.detail == f"segments={sms_segments(sms_safe(msg.text)).count}"
    channel.close()


def test_sms_messaging_service_sender_and_no_callback(server):
    channel = sms(server, sender=MG, status_callback=None)
    receipt = channel.send(message("+31 6 1234 5678"))
    assert server.requests[0].fields == {"To": MOBILE, "MessagingServiceSid": MG, "Body": sms_safe(message().text)}
    assert SID.match(receipt.id)


def test_sms_number_sender(server):
    sms(server, sender="+3197010203040").send(message("0031612345678"))
    fields = server.requests[0].fields
    assert fields["From"] == "+3197010203040" and fields["To"] == MOBILE
    assert "MessagingServiceSid" not in fields


def test_sms_receipt_counts_segments(server):
    long = "Hallo Sanne, " + "je huur staat klaar en we helpen je graag. " * 8
    receipt = sms(server).send(message(body=long))
    body = server.requests[0].fields["Body"]
    assert receipt.detail == f"segments={sms_segments(body).count}"
    assert sms_segments(body).count >= 3


def test_sms_landline_is_refused_before_any_request(server):
    with pytest.raises(PermanentChannelError) as caught:
        sms(server).send(message("020 555 0123"))
    assert caught.value.code == "not-mobile"
    assert "0123" not in caught.value.reason
    assert server.requests == []


def test_sms_without_number_is_refused_before_any_request(server):
    with pytest.raises(PermanentChannelError):
        sms(server).send(message(""))
    assert server.requests == []


# --- SMS: Twilio's answers ------------------------------------------------------------------------


@pytest.mark.parametrize("code", [21211, 21614, 21610])
def test_sms_refusals_are_permanent_with_the_twilio_code_and_no_personal_data(server, code):
    server.fail(MOBILE, code=code)
    msg = message()
    with pytest.raises(PermanentChannelError) as caught:
        sms(server).send(msg)
    err = caught.value
    assert not err.temporary
    assert err.code == str(code)
    assert err.reason == REASONS[str(code)]
    assert "612345678" not in err.reason and "Sanne" not in err.reason and "huur" not in err.reason
    assert server.requests[0].status == 400


def test_sms_other_4xx_is_permanent(server):
    server.script([error(30007, status=400), Answer(status=403, code=20008)])
    channel = sms(server)
    with pytest.raises(PermanentChannelError) as first:
        channel.send(message())
    with pytest.raises(PermanentChannelError) as second:
        channel.send(message())
    assert (first.value.code, second.value.code) == ("30007", "20008")
    assert "HTTP 403" in second.value.reason


def test_sms_wrong_token_is_temporary_20003(server):
    """Wrong credentials are ops' to fix: messages wait (retried within expiry) rather than fall back."""
    channel = sms(server, auth_token="not-the-token")
    with pytest.raises(TemporaryChannelError) as caught:
        channel.send(message())
    assert caught.value.code == "20003"
    assert server.requests[0].auth == (server.account_sid, "not-the-token")
    assert "not-the-token" not in caught.value.reason


def test_sms_429_with_retry_after_is_temporary(server):
    server.script([rate_limited("7")])
    with pytest.raises(TemporaryChannelError) as caught:
        sms(server).send(message())
    assert caught.value.temporary
    assert caught.value.retry_after == 7.0
    assert caught.value.code == "20429"


def test_sms_429_without_retry_after(server):
    server.fail(MOBILE, code=429, times=1)
    channel = sms(server)
    with pytest.raises(TemporaryChannelError) as caught:
        channel.send(message())
    assert caught.value.retry_after is None
    assert SID.match(channel.send(message()).id)  # `times=1`: the next one goes through
    assert [r.status for r in server.requests] == [429, 201]


def test_sms_503_is_temporary(server):
    server.script([unavailable()])
    with pytest.raises(TemporaryChannelError) as caught:
        sms(server).send(message())
    assert caught.value.code == "20503" and caught.value.retry_after is None
    assert server.requests[0].status == 503


def test_sms_500_without_json_is_temporary(server):
    server.script([Answer(status=500, body="<html>oops</html>")])
    with pytest.raises(TemporaryChannelError):
        sms(server).send(message())


def test_sms_connection_refused_is_temporary(server):
    channel = sms(server)
    server.stop()
    started = time.monotonic()
    with pytest.raises(TemporaryChannelError) as caught:
        channel.send(message())
    assert time.monotonic() - started < 3
    assert caught.value.reason == "could not connect to Twilio"


def test_sms_after_the_server_stopped_a_pooled_connection_is_not_reused(server):
    channel = sms(server)
    channel.send(message())
    server.stop()
    with pytest.raises(TemporaryChannelError):
        channel.send(message())
    assert len(server.requests) == 1


def test_sms_timeout_after_sending_is_uncertain(server):
    """Twilio may have taken a message whose answer timed out: never resend it (promise 1)."""
    server.script([ok(delay=3)])
    channel = sms(server, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(UncertainChannelError) as caught:
        channel.send(message())
    assert time.monotonic() - started < 2
    assert not caught.value.temporary and "answer was lost" in caught.value.reason


def test_sms_retry_after_is_per_thread(server):
    other = "+31687654321"
    server.fail(other, code=429, retry_after="9")
    channel = sms(server)
    results: dict[str, object] = {}

    def send(phone: str) -> None:
        for _ in range(5):
            try:
                results[phone] = channel.send(message(phone)).id
            except TemporaryChannelError as exc:
                results[phone] = exc.retry_after

    threads = [threading.Thread(target=send, args=(p,)) for p in (MOBILE, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert SID.match(str(results[MOBILE]))
    assert results[other] == 9.0
    assert len(server.requests) == 10


# --- WhatsApp -------------------------------------------------------------------------------------


def test_whatsapp_template_sends_content_sid_and_variables(server):
    msg = message(channel="whatsapp", template_sid=TEMPLATE, variables={"1": "Sanne", "2": "1 mei"})
    receipt = whatsapp(server).send(msg)
    [req] = server.requests
    assert req.auth == (server.account_sid, server.auth_token)
    assert req.fields == {
        "To": "whatsapp:" + MOBILE,
        "From": "whatsapp:+3197010203040",
        "ContentSid": TEMPLATE,
        "ContentVariables": json.dumps({"1": "Sanne", "2": "1 mei"}),
        "StatusCallback": CALLBACK,
    }
    assert json.loads(req.fields["ContentVariables"]) == {"1": "Sanne", "2": "1 mei"}
    assert req.fields == whatsapp_request(msg, "whatsapp:+3197010203040", CALLBACK)
    assert receipt.id == req.sid and receipt.detail == f"template={TEMPLATE}"


def test_whatsapp_session_sends_body(server):
    msg = message(channel="whatsapp")
    receipt = whatsapp(server, sender="+3197010203040", status_callback=None).send(msg)
    assert server.requests[0].fields == {
        "To": "whatsapp:" + MOBILE,
        "From": "whatsapp:+3197010203040",
        "Body": msg.text,
    }
    assert receipt.detail == "session"


def test_whatsapp_messaging_service_sender(server):
    msg = message(channel="whatsapp", template_sid=TEMPLATE)
    whatsapp(server, sender=MG).send(msg)
    fields = server.requests[0].fields
    assert fields["MessagingServiceSid"] == MG and "From" not in fields
    assert fields == whatsapp_request(msg, MG, CALLBACK)


def test_whatsapp_outside_the_session_is_permanent_63016(server):
    server.fail("whatsapp:" + MOBILE, code=63016)
    with pytest.raises(PermanentChannelError) as caught:
        whatsapp(server).send(message(channel="whatsapp"))
    assert caught.value.code == "63016"
    assert caught.value.reason == REASONS["63016"]


def test_whatsapp_unsubscribed_scripted_by_bare_number(server):
    server.fail(MOBILE, code=21610)
    with pytest.raises(PermanentChannelError) as caught:
        whatsapp(server).send(message(channel="whatsapp", template_sid=TEMPLATE))
    assert caught.value.code == "21610"


def test_whatsapp_needs_opt_in_and_a_mobile(server):
    channel = whatsapp(server)
    with pytest.raises(PermanentChannelError) as no_opt_in:
        channel.send(message(channel="whatsapp", opt_in=False))
    with pytest.raises(PermanentChannelError) as landline:
        channel.send(message("020 555 0123", channel="whatsapp"))
    assert (no_opt_in.value.code, landline.value.code) == ("no-opt-in", "not-mobile")
    assert server.requests == []


def test_whatsapp_429_and_503_are_temporary(server):
    server.script([rate_limited("2"), unavailable()], to="whatsapp:" + MOBILE)
    channel = whatsapp(server)
    with pytest.raises(TemporaryChannelError) as limited:
        channel.send(message(channel="whatsapp", template_sid=TEMPLATE))
    with pytest.raises(TemporaryChannelError):
        channel.send(message(channel="whatsapp", template_sid=TEMPLATE))
    assert limited.value.retry_after == 2.0
    assert SID.match(channel.send(message(channel="whatsapp", template_sid=TEMPLATE)).id)


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender",
    ["Woonstad", "Woon Stad 1", "W", "ABCDEFGHIJK", "+3197010203040", "+447700900123", MG],
)
def test_sms_senders_allowed(server, sender):
    assert sms(server, sender=sender).sender == sender


@pytest.mark.parametrize(
    "sender",
    ["", "Woonstad Amsterdam", "ABCDEFGHIJKL", "12345", "Woon-stad", "Wóonstad", "0612345678"],
)
def test_sms_senders_refused(server, sender):
    with pytest.raises(ConfigError) as caught:
        sms(server, sender=sender)
    text = str(caught.value)
    assert "channels.sms.sender" in text
    assert "alphanumeric" in text and "E.164" in text and "Messaging Service SID" in text


@pytest.mark.parametrize("sender", ["Woonstad", "", "0612345678"])
def test_whatsapp_senders_refused(server, sender):
    with pytest.raises(ConfigError, match=r"channels\.whatsapp\.sender"):
        whatsapp(server, sender=sender)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (
            {"status_calback": CALLBACK},
            r"channels\.sms\.status_calback: unknown setting: did you mean `status_callback`",
        ),
        ({"status_callback": "ftp://x"}, r"channels\.sms\.status_callback: .*http"),
        ({"base_url": "localhost"}, r"channels\.sms\.base_url"),
        ({"timeout": 0}, r"channels\.sms\.timeout"),
        ({"timeout": "soon"}, r"channels\.sms\.timeout"),
        ({"auth_token": ""}, r"channels\.sms\.auth_token: is empty"),
    ],
)
def test_config_errors(server, extra, match):
    with pytest.raises(ConfigError, match=match):
        sms(server, **extra)


def test_configured():
    assert configured(ChannelConfig(account_sid="AC1", auth_token="t"))
    assert not configured(ChannelConfig(account_sid="AC1", auth_token=""))
    assert not configured(ChannelConfig(account_sid=" ", auth_token="t"))
    assert not configured(ChannelConfig())
    assert configured({"account_sid": "AC1", "auth_token": "t"})


def test_build_picks_the_channel_by_name(server):
    config = Config()
    sms_channel = build("sms", section(server), config)
    wa_channel = build("whatsapp", section(server, sender="+3197010203040"), config)
    assert isinstance(sms_channel, SmsChannel) and isinstance(wa_channel, WhatsAppChannel)
    assert isinstance(sms_channel, Channel) and isinstance(wa_channel, Channel)
    assert (sms_channel.name, sms_channel.needs, wa_channel.needs) == ("sms", NEEDS_MOBILE, NEEDS_WHATSAPP)
    with pytest.raises(ConfigError, match="sms and whatsapp only"):
        build("email", section(server), config)


def test_retry_after_seconds():
    now = time.time()
    later = format_datetime(datetime.fromtimestamp(now, UTC) + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds("-3") == 0.0
    assert 28 <= (retry_after_seconds(later, now) or 0) <= 31
    assert retry_after_seconds("") is None and retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None


# --- the fake server itself -----------------------------------------------------------------------


def test_fake_server_checks_required_fields_and_counts_concurrency(server):
    server.latency = 0.1
    channel = sms(server)
    threads = [threading.Thread(target=channel.send, args=(message(),)) for _ in range(4)]
    for t in threads:
        t.start()
    server.wait_for(4, timeout=5)
    for t in threads:
        t.join()
    assert server.max_in_flight >= 2
    assert len(server.sent) == 4
    server.reset()
    assert server.requests == []
