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
