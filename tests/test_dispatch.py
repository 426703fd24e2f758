"""Dispatch through every guard, in process, on a fixed clock, with transports that fail on purpose."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support import copy_example

from nudger.config import load_config
from nudger.engine import Engine
from nudger.errors import PermanentChannelError, TemporaryChannelError
from nudger.protocols import Message, Receipt
from nudger.rulebook import load_rulebook

AMS = ZoneInfo("Europe/Amsterdam")
from channels.outbox import NEEDS  # noqa: E402 - what each channel needs, as the real ones declare


class Transport:
    """A transport for tests: records what it is handed; fails as told (a real Channel, not a mock)."""

    def __init__(self, name: str):
        self.name = name
        self.needs = NEEDS[name]
        self.failures: dict[str, list[Exception]] = {}  # tenant id -> errors to raise, in order
        self.sent: list[Message] = []

    def send(self, message: Message) -> Receipt:
        pending = self.failures.get(message.recipient.tenant_id)
        if pending:
            raise pending.pop(0)
        self.sent.append(message)
        return Receipt(f"{self.name}-{len(self.sent)}")

    def close(self) -> None:
        pass


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def setup(tmp_path: Path):
    copy_example(tmp_path)
    config = load_config(tmp_path / "config.yaml")
    clock = Clock(datetime(2026, 11, 30, 10, 0, tzinfo=AMS))
    transports = {name: Transport(name) for name in NEEDS}
    engine = Engine(config, clock=clock, channels=transports)
    yield engine, clock, transports
    engine.close()


def _state(engine: Engine, key: str):
    return next(n for n in engine.ledger.nudges() if n.key == key)


def test_permanent_error_falls_back_to_the_next_channel(setup) -> None:
    engine, clock, t = setup
    t["whatsapp"].failures = {"T-1001": [PermanentChannelError("outside the WhatsApp window", code="63016")]}
    engine.import_data()
    engine.plan()
    engine.dispatch()
    key = "rent-reminder:T-1001:2026-12-01"  # prefers whatsapp, then sms
    row = _state(engine, key)
    assert row.state == "sent" and row.channel == "sms"
    assert [m.key for m in t["sms"].sent].count(key) == 1
    moves = engine.ledger.transitions([row.id])[row.id]
    assert any("whatsapp failed: outside the WhatsApp window" in m.reason for m in moves)


def test_temporary_error_is_retried_later_within_expiry(setup) -> None:
    engine, clock, t = setup
    t["sms"].failures = {"T-1006": [TemporaryChannelError("HTTP 503", code="503")]}
    engine.import_data()
    engine.plan(tenant_ids=["T-1006"])
    engine.dispatch()
    key = "rent-reminder:T-1006:2026-12-01"
    row = _state(engine, key)
    assert row.state == "planned" and row.attempts == 1 and "temporary" in row.reason
    assert row.send_at > clock.at
    engine.dispatch()  # not due yet: nothing happens
    assert _state(engine, key).state == "planned" and not t["sms"].sent
    clock.at = row.send_at + timedelta(seconds=1)
    engine.dispatch()
    row = _state(engine, key)
    assert row.state == "sent" and len(t["sms"].sent) == 1


def test_no_channel_left_lists_every_reason(setup) -> None:
    engine, clock, t = setup
    rules = engine.config.rules_path
    (rules / "phone-or-mail.yaml").write_text(
        "id: phone-or-mail\nkind: check-in\ntrigger: {yearly: '11-30'}\nchannels: [sms, email]\n"
        "subject: {nl: Even contact}\ntext:\n  nl: Hoe gaat het met u? Laat het me gerust weten.\n",
        encoding="utf-8",
    )
    engine.rulebook = load_rulebook(engine.config)
    engine.import_data()
    _, report = engine.send_rule("phone-or-mail", ["T-1012"])  # a landline and no e-mail address
    row = _state(engine, "phone-or-mail:T-1012:2026-11-30")
    assert report.failed == 1 and row.state == "failed"
    assert "sms: the phone number is not a mobile number" in row.reason
    assert "email: no e-mail address" in row.reason
    assert not t["sms"].sent and not t["email"].sent


def test_condition_that_no_longer_holds_cancels(setup, tmp_path: Path) -> None:
    engine, clock, t = setup
    engine.import_data()
    clock.at = datetime(2026, 11, 30, 7, 0, tzinfo=AMS)  # before opening hours: planned, not sent
    engine.plan(tenant_ids=["T-1008"])
    engine.dispatch()
    assert not t["whatsapp"].sent
    # the tenant pays: the next import shows no arrears
    path = engine.config.base_dir / "examples" / "tenants.csv"
    text = path.read_text(encoding="utf-8").splitlines()
    header = text[0].split(",")
    for i, line in enumerate(text):
        if line.startswith("T-1008,"):
            cells = line.split(",")
            cells[header.index("arrears")] = "0"
            cells[header.index("arrears_since")] = ""
            text[i] = ",".join(cells)
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    clock.at = datetime(2026, 11, 30, 9, 0, tzinfo=AMS)
    report = engine.import_data()
    assert report.events >= 1  # arrears_cleared
    engine.dispatch()
    row = _state(engine, "first-arrears-message:T-1008:2026-11-27")
    assert row.state == "cancelled" and "no longer due" in row.reason
    assert not t["whatsapp"].sent and not t["call"].sent


def test_outside_hours_moves_to_the_next_allowed_moment(setup) -> None:
    engine, clock, t = setup
    engine.import_data()
    clock.at = datetime(2026, 11, 30, 19, 58, tzinfo=AMS)
    engine.plan(tenant_ids=["T-1006"])
    clock.at = datetime(2026, 11, 30, 20, 1, tzinfo=AMS)  # claimed after 20:00
    engine.dispatch()
    row = _state(engine, "rent-reminder:T-1006:2026-12-01")
    # the next allowed moment (1 December 08:00) is the day it reminds of: expired, never late
    assert row.state == "expired" and not t["sms"].sent


def test_crash_inside_a_send_is_uncertain_and_never_resent(setup) -> None:
    engine, clock, t = setup
    engine.import_data()
    engine.plan(tenant_ids=["T-1006", "T-1001"])
    ledger = engine.ledger
    claimed = ledger.claim_due(clock.at, "dead-worker", limit=10, lease=timedelta(minutes=10))
    assert len(claimed) == 2
    assert ledger.mark_sending(
        claimed[0].id, clock.at, "sms", "dead-worker", timedelta(minutes=10)
    )  # died inside the first send
    clock.at += timedelta(minutes=11)
    engine.dispatch()
    rows = {r.id: r for r in ledger.nudges()}
    assert rows[claimed[0].id].state == "uncertain"
    assert rows[claimed[1].id].state == "sent"  # released, then sent once by the live worker
    sent_keys = [m.key for ch in t.values() for m in ch.sent]
    assert claimed[0].key not in sent_keys and sent_keys.count(claimed[1].key) == 1


def test_stop_releases_the_rest_of_the_batch(setup) -> None:
    engine, clock, t = setup
    engine.import_data()
    engine.plan()
    engine.stop.set()
    report = engine.dispatch()
    assert report.sent == 0
    assert all(n.state in ("planned", "expired") for n in engine.ledger.nudges())


def test_a_slow_batch_never_sends_what_another_worker_took_over(setup) -> None:
    """Worker A's first send is so slow that its lease runs out; worker B releases and sends the rest.
    A must then not send those too (promise 1)."""
    engine_a, clock, t = setup
    engine_a.import_data()
    engine_a.plan(tenant_ids=["T-1006", "T-1016", "T-1018"])
    engine_b = Engine(engine_a.config, clock=clock, channels=t, worker="worker-b")
    first = {"done": False}
    real_send = t["sms"].send

    def slow_send(message):
        receipt = real_send(message)
        if not first["done"]:
            first["done"] = True
            clock.at += timedelta(minutes=11)  # A is stuck in this send past its lease
            engine_b.dispatch()  # B releases A's other claims and sends them
        return receipt

    t["sms"].send = slow_send
    try:
        engine_a.dispatch()
    finally:
        engine_b.close()
    keys = [m.key for m in t["sms"].sent]
    assert len(keys) == 3 and len(set(keys)) == 3  # each once
    assert {n.state for n in engine_a.ledger.nudges() if n.key in keys} == {"sent"}
