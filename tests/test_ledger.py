"""The ledger contract, run on SQLite and on PostgreSQL through one parametrized fixture."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from support import postgres_or_skip

from nudger.ledger import Ledger
from nudger.planner import PlannedNudge

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}" if request.param == "sqlite" else postgres_or_skip()
    store = Ledger(url)
    yield store
    store.close()


def nudge(key: str, *, tenant: str = "T-1", send_at: datetime = NOW, priority: int = 50) -> PlannedNudge:
    rule, tid, occ = key.split(":")
    return PlannedNudge(key, rule, tenant, "reminder", occ, send_at, send_at + timedelta(days=1), priority)


def test_each_key_is_stored_once(ledger: Ledger) -> None:
    batch = [nudge("r:T-1:2026-12-01"), nudge("r:T-2:2026-12-01", tenant="T-2")]
    assert ledger.add_planned(batch, NOW) == 2
    assert ledger.add_planned(batch + [nudge("r:T-3:2026-12-01", tenant="T-3")], NOW) == 1
    assert len(ledger.nudges()) == 3


def test_claim_takes_due_work_by_priority_once(ledger: Ledger) -> None:
    ledger.add_planned(
        [
            nudge("low:T-1:x", priority=10),
            nudge("high:T-1:x", priority=90),
            nudge("later:T-1:x", send_at=NOW + timedelta(hours=1)),
        ],
        NOW,
    )
    first = ledger.claim_due(NOW, "a", limit=10, lease=timedelta(minutes=5))
    assert [c.key for c in first] == ["high:T-1:x", "low:T-1:x"]
    assert ledger.claim_due(NOW, "b", limit=10, lease=timedelta(minutes=5)) == []


def test_concurrent_claimers_never_share_a_nudge(ledger: Ledger) -> None:
    ledger.add_planned([nudge(f"r:T-{i}:x", tenant=f"T-{i}") for i in range(200)], NOW)
    got: dict[str, list[str]] = {"a": [], "b": [], "c": []}

    def worker(name: str) -> None:
        while batch := ledger.claim_due(NOW, name, limit=7, lease=timedelta(minutes=5)):
            got[name].extend(c.key for c in batch)

    threads = [threading.Thread(target=worker, args=(n,)) for n in got]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    everything = [k for keys in got.values() for k in keys]
    assert len(everything) == 200 and len(set(everything)) == 200


def test_recover_releases_unstarted_and_marks_started_uncertain(ledger: Ledger) -> None:
    ledger.add_planned([nudge("a:T-1:x"), nudge("b:T-1:x")], NOW)
    a, b = ledger.claim_due(NOW, "dead", limit=10, lease=timedelta(minutes=5))
    assert ledger.mark_sending(a.id, NOW, "sms", "dead", timedelta(minutes=5))
    assert ledger.recover(NOW + timedelta(minutes=1)) == (0, 0)  # the lease still runs
    assert ledger.recover(NOW + timedelta(minutes=6)) == (1, 1)
    states = {n.key: n.state for n in ledger.nudges()}
    assert states == {a.key: "uncertain", b.key: "planned"}
    history = ledger.transitions([a.id])[a.id]
    assert history[-1].to_state == "uncertain" and "never resent" in history[-1].reason


def test_move_is_conditional_and_recorded(ledger: Ledger) -> None:
    ledger.add_planned([nudge("a:T-1:x")], NOW)
    (c,) = ledger.claim_due(NOW, "w", limit=1, lease=timedelta(minutes=5))
    assert ledger.move(c.id, "sent", NOW, "sent by sms", channel="sms", sent_at=NOW)
    assert not ledger.move(c.id, "failed", NOW, "late failure")  # no longer claimed
    row = ledger.nudges()[0]
    assert row.state == "sent" and row.channel == "sms"
    assert [t.to_state for t in ledger.transitions([c.id])[c.id]] == ["claimed", "sent"]
    assert ledger.sent_times("T-1", NOW - timedelta(days=7)) == [NOW]


def test_events_are_stored_once(ledger: Ledger) -> None:
    rows = [{"tenant_id": "T-1", "name": "contact_made", "day": date(2026, 11, 30), "source": "cli"}]
    assert ledger.add_events(rows, NOW) == 1
    assert ledger.add_events(rows, NOW) == 0
    assert ledger.last_contacts() == {"T-1": date(2026, 11, 30)}


def test_opt_outs(ledger: Ledger) -> None:
    assert ledger.opt_out("T-1", "sms", NOW, "webhook")
    assert not ledger.opt_out("T-1", "sms", NOW, "webhook")
    assert ledger.opted_out("T-1") == {"sms"} and ledger.opted_out("T-2") == set()


def test_tenant_state_upsert_and_absence(ledger: Ledger) -> None:
    day = date(2026, 11, 30)
    ledger.save_tenants(
        1,
        day,
        [("T-1", "d1", '{"tenant_id": "T-1"}', "{}", "+31612345678"), ("T-2", "d2", "{}", "{}", None)],
        {"T-1", "T-2"},
        known=set(),
    )
    ledger.save_tenants(
        2, day, [("T-1", "d3", '{"tenant_id": "T-1", "x": 1}', "{}", "+31612345678")], {"T-1"}, known={"T-1", "T-2"}
    )
    summaries = ledger.tenant_summaries()
    assert set(summaries) == {"T-1"} and summaries["T-1"][0] == "d3"
    assert ledger.tenant_by_phone("+31612345678") == "T-1" and ledger.tenant_by_phone("+31600000000") is None


def test_a_claim_that_ran_out_cannot_be_handed_over_by_its_old_worker(ledger: Ledger) -> None:
    ledger.add_planned([nudge("a:T-1:x")], NOW)
    (mine,) = ledger.claim_due(NOW, "slow", limit=1, lease=timedelta(minutes=5))
    later = NOW + timedelta(minutes=6)
    assert ledger.recover(later) == (1, 0)  # released by another process: the lease ran out
    (theirs,) = ledger.claim_due(later, "fast", limit=1, lease=timedelta(minutes=5))
    assert not ledger.mark_sending(mine.id, later, "sms", "slow", timedelta(minutes=5))
    assert ledger.mark_sending(theirs.id, later, "sms", "fast", timedelta(minutes=5))
    assert not ledger.move(mine.id, "failed", later, "a stale worker's word", worker="slow")  # fast's claim now
    assert ledger.move(theirs.id, "sent", later, "sent by sms", worker="fast", sent_at=later)


def test_store_errors_never_carry_the_data_they_were_given(ledger: Ledger) -> None:
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from nudger.ledger import OptOut

    ledger.opt_out("T-1", "sms", NOW, "reply")
    with pytest.raises(IntegrityError) as caught, ledger.session() as s:
        s.execute(insert(OptOut).values(tenant_id="T-1", channel="sms", at=NOW, source="secret-0612345678"))
    assert "0612345678" not in str(caught.value) and "hidden" in str(caught.value)
