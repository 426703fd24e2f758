"""The daemon as ops run it: a real process, real signals, the embedded store's lock, restarts, reloads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from support import ROOT, copy_example, nudger, outbox_files

sys.path.insert(0, str(ROOT / "benchmarks"))
from make_data import generate  # noqa: E402


@pytest.fixture
def live(tmp_path: Path) -> Path:
    """The example with data dated around today and every hour open, so a real clock finds work."""
    copy_example(
        tmp_path,
        pacing={"hours": "00:00-24:00", "closed_days": [], "holidays": ""},
        schedule={"import": "0 6 * * *", "plan_every_minutes": 60, "dispatch_every_seconds": 1, "plan_days": 3},
    )
    generate(64, tmp_path / "examples", reference_day=date.today())
    return tmp_path


def start(folder: Path) -> tuple[subprocess.Popen, Path]:
    log = folder / f"daemon-{time.monotonic_ns()}.log"
    handle = log.open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGER_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nudger.cli", "run"], cwd=folder, stdout=handle, stderr=subprocess.STDOUT, env=env
    )
    return proc, log


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.2)
    return False


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_daemon_sends_refuses_a_second_stops_cleanly_and_restarts_without_repeats(live: Path) -> None:
    proc, log = start(live)
    try:
        assert wait_for(lambda: len(outbox_files(live)) > 0), log.read_text()
        assert wait_for(lambda: "dispatch_done" in log.read_text())
        second = nudger(live, "run", "--once")
        assert second.code != 0 and "another nudger daemon is already running" in second.err
        assert "Traceback" not in second.err
    finally:
        code = stop(proc)
    text = log.read_text()
    assert code == 0, text
    assert "event=daemon_started" in text and "event=daemon_stopped" in text
    assert "Traceback" not in text
    files = outbox_files(live)

    proc, log = start(live)
    try:
        assert wait_for(lambda: "event=daemon_started" in log.read_text())
        time.sleep(3)  # several dispatch rounds
    finally:
        assert stop(proc, signal.SIGINT) == 0
    assert outbox_files(live) == files  # nothing twice


def test_daemon_refuses_a_broken_rulebook_and_keeps_the_old_one(live: Path) -> None:
    proc, log = start(live)
    try:
        assert wait_for(lambda: "event=daemon_started" in log.read_text())
        rule = live / "rules" / "contact-made.yaml"
        rule.write_text(
            rule.read_text(encoding="utf-8").replace("kind: appreciation", "kind: appreciaton"), encoding="utf-8"
        )
        assert wait_for(lambda: "event=rulebook_refused" in log.read_text(), timeout=20), log.read_text()
        assert "contact-made.yaml" in log.read_text()
        # the old rulebook still works: a recorded contact leads to the appreciation message
        assert nudger(live, "event", "contact_made", "T-1010").code == 0
        proc.send_signal(signal.SIGHUP)  # reload attempt; still refused, old rules kept
        assert wait_for(lambda: log.read_text().count("event=rulebook_refused") >= 2, timeout=20)
    finally:
        assert stop(proc) == 0
    assert "Traceback" not in log.read_text()


def test_the_daemon_serves_health_on_loopback(tmp_path: Path) -> None:
    import json
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    copy_example(tmp_path, web={"enabled": True, "host": "127.0.0.1", "port": port, "public_url": ""})
    proc, log = start(tmp_path)
    try:
        assert wait_for(lambda: "event=web_started" in log.read_text()), log.read_text()
        assert wait_for(lambda: "event=plan_done" in log.read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            health = json.loads(answer.read())
        assert answer.status == 200 and health["status"] == "ok" and health["store"] == "ok"
        assert health["scheduler"] == "running" and health["last_import"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/twilio/inbound", data=b"From=%2B31612347035&Body=STOP"
        )
        try:
            urllib.request.urlopen(request, timeout=5)
            raise AssertionError("an unsigned webhook was accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 403
    finally:
        assert stop(proc) == 0
    assert "webhook_rejected" in log.read_text() and "Traceback" not in log.read_text()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_health_and_metrics_show_the_work_and_the_holds(live: Path) -> None:
    import json

    import yaml

    port = _free_port()
    config = yaml.safe_load((live / "config.yaml").read_text(encoding="utf-8"))
    config["web"] = {"enabled": True, "host": "127.0.0.1", "port": port, "public_url": ""}
    config["guard"] = {"max_share_per_day": 0.01, "min_tenants_per_day": 0}  # hold (nearly) everything
    (live / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    proc, log = start(live)
    try:
        assert wait_for(lambda: "event=plan_held" in log.read_text()), log.read_text()
        assert wait_for(lambda: "event=dispatch_done" in log.read_text() or _get_health(port).get("last_dispatch"))
        health = _get_health(port)
        assert health["status"] == "ok" and health["dispatch"] == "ok" and health["last_import"]
        assert health["held"] and all(n > 0 for n in health["held"].values())
        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        text = body.decode()
        assert status == 200
        assert "nudger_store_up 1.0" in text
        assert 'nudger_nudges{channel="",rule="rent-reminder",state="held"}' in text
        assert 'nudger_imports_total{status="accepted"} 1.0' in text
        assert 'nudger_import_rows_total{outcome="accepted"}' in text
        assert "nudger_plan_seconds_count" in text
        assert "nudger_last_dispatch_timestamp_seconds" in text
        for secret in ("+316", "@", "Beste", "T-10"):  # labels carry rules and states, never tenants
            assert secret not in text, secret
        assert json.loads(_get(f"http://127.0.0.1:{port}/healthz")[1])["store"] == "ok"
    finally:
        assert stop(proc) == 0
    assert "Traceback" not in log.read_text()


def _get_health(port: int) -> dict:
    import json

    return json.loads(_get(f"http://127.0.0.1:{port}/healthz")[1])


def test_sigterm_exits_0_within_the_shutdown_time_and_the_message_in_hand_is_never_resent(live: Path) -> None:
    import yaml
    from fake_twilio import FakeTwilio, ok

    with FakeTwilio() as twilio:
        config = yaml.safe_load((live / "config.yaml").read_text(encoding="utf-8"))
        config["channels"]["sms"] = {
            "transport": "twilio",
            "account_sid": twilio.account_sid,
            "auth_token": twilio.auth_token,
            "sender": "Woonstad",
            "base_url": twilio.base_url,
            "timeout": 120,
        }
        config["schedule"]["shutdown_seconds"] = 2
        (live / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        twilio.script([ok(delay=60)] * 50)  # the provider hangs: the daemon is stuck in a send
        proc, log = start(live)
        try:
            assert wait_for(lambda: len(twilio.requests) >= 1, timeout=60), log.read_text()  # in hand
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)  # well before the provider would answer (60 s)
            waited = time.monotonic() - began
        finally:
            if proc.poll() is None:
                proc.kill()
        text = log.read_text()
        assert code == 0 and waited < 30, text
        assert "event=shutdown_timeout" in text and "Traceback" not in text
        in_hand = twilio.requests[0].to
        twilio.reset()
        proc, log = start(live)  # the restart finds the claim of the dead process
        try:
            assert wait_for(lambda: "event=recovered_claims" in log.read_text()), log.read_text()
            assert wait_for(lambda: "event=plan_done" in log.read_text()), log.read_text()
            time.sleep(3)  # several dispatch rounds
        finally:
            assert stop(proc) == 0
        assert in_hand not in [r.to for r in twilio.requests]  # never twice
        status = nudger(live, "status", "--json")
        import json

        uncertain = json.loads(status.out)["uncertain"]
        assert len(uncertain) >= 1 and "never resent" in uncertain[0]["reason"]


def test_health_turns_503_when_dispatch_hangs_or_stops_running(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from nudger.config import load_config
    from nudger.daemon import Daemon
    from nudger.engine import Engine

    copy_example(tmp_path)
    engine = Engine(load_config(tmp_path / "config.yaml"))
    daemon = Daemon(engine.config, engine)
    daemon.scheduler.start(paused=True)
    try:
        now = datetime.now(UTC)
        daemon.started_at = daemon.last_dispatch = now - timedelta(seconds=20)
        ok, data = daemon.health()
        assert ok and data["dispatch"] == "ok" and data["store"] == "ok"
        daemon.last_dispatch = now - timedelta(minutes=30)  # no round for half an hour
        ok, data = daemon.health()
        assert not ok and data["dispatch"] == "stuck" and data["status"] == "unhealthy"
        daemon.dispatch_began = now - timedelta(minutes=30)  # one round running for half an hour
        daemon.last_dispatch = now
        assert daemon.health()[1]["dispatch"] == "stuck"
        daemon.dispatch_began = now - timedelta(seconds=5)
        assert daemon.health()[0]
    finally:
        daemon.scheduler.shutdown(wait=False)
        engine.close()


def test_a_new_export_dropped_in_the_data_folder_is_what_the_next_scheduled_import_reads(tmp_path: Path) -> None:
    import csv
    import shutil
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from nudger.config import load_config
    from nudger.daemon import Daemon
    from nudger.engine import Engine

    copy_example(tmp_path, data={"tenants": "exports/tenants-*.csv", "payments": "exports/payments-*.csv"})
    exports = tmp_path / "exports"
    exports.mkdir()
    for name in ("tenants", "payments"):
        shutil.copy(tmp_path / "examples" / f"{name}.csv", exports / f"{name}-2026-11-29.csv")
    moment = [datetime(2026, 11, 29, 6, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))]
    engine = Engine(load_config(tmp_path / "config.yaml"), clock=lambda: moment[0])
    daemon = Daemon(engine.config, engine)
    try:
        daemon.import_and_plan()
        first = engine.ledger.last_accepted_import()
        assert first is not None and first.source.endswith("tenants-2026-11-29.csv")
        # the next day's export arrives: T-1010 now owes rent
        with (exports / "tenants-2026-11-29.csv").open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            if row["tenant_id"] == "T-1010":
                row["arrears"], row["arrears_since"] = "250.00", "2026-11-01"
        with (exports / "tenants-2026-11-30.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        shutil.copy(exports / "payments-2026-11-29.csv", exports / "payments-2026-11-30.csv")
        moment[0] += timedelta(days=1)
        daemon.import_and_plan()
        second = engine.ledger.last_accepted_import()
        assert second.id != first.id and second.source.endswith("tenants-2026-11-30.csv")
        assert [e.name for e in engine.ledger.events_for("T-1010")] == ["arrears_started"]
    finally:
        engine.close()
