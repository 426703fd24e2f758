"""Dispatch throughput of the real nudger daemon against a local Twilio-speaking server.

Run it from anywhere with the Python that has nudger installed:

  python benchmarks/bench_dispatch.py                                   # (a) one daemon, SQLite
  python benchmarks/bench_dispatch.py --store postgresql --daemons 2    # (b) two daemons, PostgreSQL

For each `schedule.dispatch_threads` value (`--threads 1,8,16,32`) it builds a fresh folder with
10,000 tenants (``make_data.generate(..., reference_day=date.today())``, each given a distinct
mobile number), a rulebook with one campaign rule (``trigger: at:`` a minute ago, ``channels:
[sms]``) and a config.yaml whose SMS channel is Twilio pointed at a local server
(``tests/fake_twilio.py``) that answers every request after ``--latency`` seconds and accepts at
most ``--server-rate`` messages in any one-second window (beyond that: 429 with Retry-After: 1).
It runs ``nudger check`` and ``nudger import`` with the command line, ``nudger plan`` (a dry run
that stores nothing) as a check, stores the plan with ``Engine(config).plan()`` (what the daemon's
planning job calls), then starts ``python -m nudger.cli run`` (once, or twice on one PostgreSQL
store) and times the dispatch at the server: from the first request to the last message accepted.

Afterwards it checks that nothing went twice: every number got exactly one accepted message, the
ledger has every nudge `sent`, and the receipts in the ledger are exactly the message SIDs the
server handed out. Results go to benchmarks/RESULTS.md (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from collections import Counter, deque
from datetime import datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "RESULTS.md"
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))

# PG_URL: a database of its own on the project's PostgreSQL server (created when missing), as the tests
# empty the `test` database's public schema when they start: a benchmark there and a test run would
# wreck each other. `--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test` uses that one.
from bench_pipeline import PG_URL, machine_info, postgres_version, reset_postgres, snapshot_code  # noqa: E402
from fake_twilio import FakeTwilio, Recorded, _Handler, rate_limited  # noqa: E402

GOAL_RATE = 95.0
RULE_ID = "bench-campaign"
ZONE = ZoneInfo("Europe/Amsterdam")

RULE_YAML = """\
# One SMS to every tenant, now: the dispatch benchmark's only rule (benchmarks/bench_dispatch.py).
id: {rule_id}
about: Benchmark campaign, one short SMS to every tenant.
kind: campaign
trigger:
  at: "{at}"
channels: [sms]
expires: 1 day
priority: 50
text:
  nl: "Dag {{{{ tenant.first_name }}}}, fijn dat u er bent. Heeft u een vraag? Ik help u graag."
  en: "Hi {{{{ tenant.first_name }}}}, good to have you with us. A question? I am glad to help."
"""


# ------------------------------------------------------------------------------------------------
# The Twilio side: tests/fake_twilio.py with a per-second limit
# ------------------------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 32 threads or more connect at once; the default backlog is 5

    def get_request(self) -> tuple[socket.socket, Any]:
        # BaseHTTPRequestHandler writes the headers and the body of an answer in two send() calls;
        # with Nagle's algorithm on, the body then waits for the client's delayed ACK (40 ms on
        # Linux), so every answer took about 144 ms instead of `latency` (measured: median 144 ms
        # against 102 ms with TCP_NODELAY). The benchmark's server answers in `latency`.
        connection, address = super().get_request()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address


class LimitedTwilio(FakeTwilio):
    """FakeTwilio that accepts at most `per_second` messages in any one-second window.

    Beyond that it answers 429 (Twilio 20429) with `Retry-After`, as Twilio does when an account's
    queue is full. Every answer, 201 or 429, waits `latency` seconds (FakeTwilio's `latency`).
    """

    def __init__(self, *, latency: float, per_second: int, retry_after: str = "1"):
        super().__init__(latency=latency)
        self.per_second = per_second
        self.retry_after = retry_after
        self._accepted: deque[float] = deque()
        self._limit_lock = threading.Lock()

    def start(self) -> LimitedTwilio:  # FakeTwilio.start with a larger listen backlog
        if self._server is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-twilio", daemon=True
        )
        self._thread.start()
        return self

    def _answer(self, record: Recorded):  # type: ignore[override]
        answer, resource = super()._answer(record)
        if answer.status != 201 or self.per_second <= 0:
            return answer, resource
        with self._limit_lock:
            now = time.monotonic()
            window = self._accepted
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= self.per_second:
                return rate_limited(self.retry_after), None
            window.append(now)
        return answer, resource

    def counts(self) -> tuple[int, int, int]:
        """(answered 201, answered 429, requests) so far."""
        with self._lock:
            reqs = self._state.requests
            return sum(1 for r in reqs if r.status == 201), sum(1 for r in reqs if r.status == 429), len(reqs)


# ------------------------------------------------------------------------------------------------
# Daemon processes
# ------------------------------------------------------------------------------------------------
class Daemon:
    """`python -m nudger.cli run` in a folder (or, with mode "engine", Engine.dispatch in a loop); reaped
    with wait4, so its CPU time and peak RSS are known. With `profile` ("cpu" or "wall") every thread
    of it runs under cProfile."""

    def __init__(self, folder: Path, env: dict[str, str], log: Path, mode: str = "daemon", profile: str = ""):
        self.log = log
        handle = log.open("w")
        me = [sys.executable, str(Path(__file__).resolve())]
        if profile:
            cmd = [*me, "--child-profiled", mode, "--profile", profile, "--profile-out", str(log.with_suffix(".prof"))]
        elif mode == "engine":
            cmd = [*me, "--child-dispatch"]
        else:
            cmd = [sys.executable, "-m", "nudger.cli", "run"]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=folder, stdout=handle, stderr=subprocess.STDOUT, env=env)
        handle.close()
        self.pid = self.proc.pid
        self.returncode: int | None = None
        self.rusage: Any = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status, ru = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.returncode, self.rusage = os.waitstatus_to_exitcode(status), ru
                self.proc.returncode = self.returncode
        return self.returncode

    def stop(self, timeout: float = 60) -> int:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < end:
            time.sleep(0.1)
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            while self.poll() is None:
                time.sleep(0.1)
        return self.returncode  # type: ignore[return-value]

    def cpu_s(self) -> float:
        return (self.rusage.ru_utime + self.rusage.ru_stime) if self.rusage is not None else float("nan")

    def peak_mb(self) -> float:
        return self.rusage.ru_maxrss / 1024 if self.rusage is not None else float("nan")

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


# ------------------------------------------------------------------------------------------------
# Preparation
# ------------------------------------------------------------------------------------------------
def child_env(work: Path) -> dict[str, str]:
    """The environment of every nudger process: the snapshot first on PYTHONPATH, no credentials,
    no NUDGER_* or TWILIO_* variables (the config names everything it needs literally)."""
    src = str(work / "src")
    code = json.loads((work / "src" / "code.json").read_text(encoding="utf-8"))
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", code["config_yaml"]))
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith(("NUDGER_", "TWILIO_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH", "")]))
    return env


def run_cli(folder: Path, env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "nudger.cli", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"`nudger {' '.join(args)}` exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def mobile_for(i: int) -> str:
    """A distinct number for tenant i, in make_data.py's fictional mobile ranges (06-1234xxxx, 06-5555xxxx)."""
    if i < 10_000:
        return f"06-1234{i:04d}"
    if i < 20_000:
        return f"06-5555{i - 10_000:04d}"
    raise ValueError("at most 20,000 tenants: the fictional ranges hold 20,000 numbers")


def e164(number: str) -> str:
    return "+31" + number.replace("-", "")[1:]


def make_data(work: Path, n: int, env: dict[str, str]) -> list[str]:
    """Tenants and payments in <work>/data (make_data.generate, reference day today), then each tenant
    gets a distinct mobile number (make_data draws from 20,000 numbers, so some share one, and some
    tenants have a landline or none). Returns the E.164 numbers the server should see, once each."""
    out = work / "data"
    code = (
        "import sys; from datetime import date; from pathlib import Path; "
        f"sys.path.insert(0, {str(work / 'src' / 'benchmarks')!r}); from make_data import generate; "
        f"generate({n}, Path({str(out)!r}), reference_day=date.today())"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=600)
    path = out / "tenants.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    numbers = []
    for i, row in enumerate(rows):
        row["phone"] = mobile_for(i)
        numbers.append(e164(row["phone"]))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return numbers


def write_folder(
    folder: Path, work: Path, args: argparse.Namespace, threads: int, server: LimitedTwilio, store: str, at: datetime
) -> None:
    import yaml

    code = json.loads((work / "src" / "code.json").read_text(encoding="utf-8"))
    folder.mkdir(parents=True)
    shutil.copytree(work / "data", folder / "examples")
    (folder / "rules").mkdir()
    shutil.copy2(Path(code["rules"]) / "officers.yaml", folder / "rules" / "officers.yaml")
    (folder / "rules" / f"{RULE_ID}.yaml").write_text(
        RULE_YAML.format(rule_id=RULE_ID, at=at.strftime("%Y-%m-%dT%H:%M")), encoding="utf-8"
    )
    raw = yaml.safe_load(code["config_yaml"])
    raw["store"] = store
    raw["var_dir"] = "var"
    raw["rules"] = "rules"
    raw["data"]["tenants"] = "examples/tenants.csv"
    raw["data"]["payments"] = "examples/payments.csv"
    raw["schedule"].update(dispatch_every_seconds=1, dispatch_threads=threads)
    raw["pacing"].update(hours="00:00-24:00", closed_days=[], holidays="", closed_dates=[])
    raw.setdefault("guard", {})["max_share_per_day"] = 1.0  # else the mass-send guard holds the campaign
    raw["channels"]["sms"] = {
        "transport": "twilio",
        "account_sid": server.account_sid,
        "auth_token": server.auth_token,
        "sender": "Woonstad",
        "base_url": server.base_url,
        "timeout": 30,
        "rate": args.channel_rate,
    }
    raw["channels"]["whatsapp"] = {"transport": "outbox"}
    raw.setdefault("web", {})["enabled"] = False
    (folder / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")


def store_query(url: str, sql: str) -> list[tuple[Any, ...]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------------------------
# One run
# ------------------------------------------------------------------------------------------------
def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        parts = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0.0)
    return sum(parts) - idle, sum(parts)


def wait_for_quiet(limit: float, patience: float) -> float:
    """Wait until the 1-minute load average is below `limit` (other work on the machine), at most
    `patience` seconds. Returns the seconds waited."""
    began = time.monotonic()
    while os.getloadavg()[0] >= limit and time.monotonic() - began < patience:
        time.sleep(5)
    return time.monotonic() - began


def log_counts(text: str) -> dict[str, int]:
    events = Counter(re.findall(r"event=(\w+)", text))
    keep = (
        "nudge_sent",
        "dispatch_done",
        "nudge_retry",
        "plan_done",
        "plan_skipped",
        "claim_lost",
        "sent_not_recorded",
        "nudge_uncertain",
        "job_failed",
        "recovered_claims",
        "shutdown_timeout",
    )
    out = {k: events[k] for k in keep if events[k]}
    if "Traceback" in text:
        out["Traceback"] = text.count("Traceback")
    return out


def plan_moved(text: str) -> list[int]:
    return [int(m) for m in re.findall(r"event=plan_done .*?moved=(\d+)", text)]


def run_one(args: argparse.Namespace, work: Path, threads: int, numbers: list[str]) -> dict[str, Any]:
    env = child_env(work)
    n = len(numbers)
    tag = f"{args.store}-{args.daemons}d-t{threads}"
    folder = work / tag
    if folder.exists():
        shutil.rmtree(folder)
    store = "sqlite:///var/nudger.db" if args.store == "sqlite" else args.pg_url
    if args.store == "postgresql":
        reset_postgres(args.pg_url)
    server = LimitedTwilio(latency=args.latency, per_second=args.server_rate).start()
    daemons: list[Daemon] = []
    rep: dict[str, Any] = {"threads": threads, "messages": n, "daemons": args.daemons, "folder": str(folder)}
    try:
        at = (datetime.now(ZONE) - timedelta(minutes=1)).replace(second=0, microsecond=0)
        write_folder(folder, work, args, threads, server, store, at)
        t0 = time.perf_counter()
        check = run_cli(folder, env, "check")
        rep["check"] = check.stdout.strip().splitlines()[-1] if check.stdout.strip() else ""
        imported = run_cli(folder, env, "import")
        rep["import"] = imported.stdout.strip().splitlines()[-1]
        dry = run_cli(folder, env, "plan")
        rep["plan_cli"] = dry.stdout.strip().splitlines()[-1]
        planned = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child-plan", str(folder / "config.yaml")],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        rep["plan"] = json.loads(planned.stdout.strip().splitlines()[-1])
        rep["prepare_s"] = time.perf_counter() - t0
        if rep["plan"]["added"] != n or rep["plan"]["states"].get("planned") != n:
            raise RuntimeError(f"expected {n} planned nudges, got {rep['plan']}")
        print(f"  [{tag}] prepared in {rep['prepare_s']:.1f} s: {rep['import']}; stored {rep['plan']['added']} planned")

        if args.quiet_load:
            waited = wait_for_quiet(args.quiet_load, args.quiet_wait)
            rep["quiet_wait_s"] = waited
        load = os.getloadavg()[0]
        loads = [load]
        cpu0 = cpu_times()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        for i in range(args.daemons):
            daemons.append(Daemon(folder, env, folder / f"daemon{i + 1}.log", args.mode, args.profile))
            if args.stagger and i + 1 < args.daemons:
                time.sleep(args.stagger)
        started = time.monotonic()
        deadline = started + args.max_seconds
        last_progress, last_count = started, -1
        first_seen = None
        cpu_first = cpu0
        stop_reason = "all accepted"
        while True:
            time.sleep(0.25)
            loads.append(os.getloadavg()[0])
            ok, limited, total = server.counts()
            if first_seen is None and total:
                first_seen, cpu_first = time.monotonic(), cpu_times()
            if total != last_count:
                last_count, last_progress = total, time.monotonic()
            if ok >= n:
                time.sleep(args.settle)  # anything sent twice would arrive now
                break
            dead = [d for d in daemons if d.poll() is not None]
            if dead:
                stop_reason = f"a daemon exited ({dead[0].returncode})"
                break
            if time.monotonic() > deadline:
                stop_reason = f"time limit ({args.max_seconds:.0f} s)"
                break
            if time.monotonic() - last_progress > args.stall:
                stop_reason = f"no request for {args.stall:.0f} s"
                break
            if int(time.monotonic() - started) % 15 == 0 and ok:
                print(f"  [{tag}] {ok:,} accepted, {limited:,} 429 ...", flush=True)
        cpu1 = cpu_times()
        rep["stop_reason"] = stop_reason
        rep["load"] = load
        rep["load_mean"] = sum(loads) / len(loads)
        stopping = time.monotonic()
        rep["exit_codes"] = [d.stop() for d in daemons]
        rep["stop_s"] = time.monotonic() - stopping
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        rep["server_cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        rep["daemon_cpu_s"] = [d.cpu_s() for d in daemons]
        rep["daemon_peak_mb"] = [d.peak_mb() for d in daemons]
        texts = [d.text() for d in daemons]
        rep["log"] = [log_counts(t) for t in texts]
        rep["plan_moved"] = [plan_moved(t) for t in texts]
        busy = cpu1[0] - cpu_first[0]
        total_j = cpu1[1] - cpu_first[1]
        rep["machine_busy"] = busy / total_j if total_j else float("nan")
        requests = server.requests
        rep.update(analyse(requests, numbers, started))
        with (folder / "requests.csv").open("w", encoding="utf-8") as handle:  # the server's timeline
            handle.write("seconds_after_start,status,to\n")
            handle.writelines(f"{r.at - started:.4f},{r.status},{r.to}\n" for r in requests)
        rep.update(verify_ledger(store, folder, server.requests))
        if args.profile:
            rep["profile"] = [summarise_profile(folder / f"daemon{i + 1}.prof", args.top) for i in range(args.daemons)]
            rep["profile_kind"] = args.profile
    except Exception as exc:
        rep["error"] = f"{type(exc).__name__}: {exc}"
        for d in daemons:
            d.stop()
        rep["logs_tail"] = [d.text()[-2000:] for d in daemons]
    finally:
        for d in daemons:  # interrupted (Ctrl-C, SIGTERM): no daemon is left behind
            if d.poll() is None:
                d.stop()
        server.stop()
    rep["goal_met"] = bool(
        "error" not in rep
        and rep.get("accepted") == n
        and rep.get("rate", 0) >= GOAL_RATE
        and not rep.get("duplicates")
        and rep.get("ledger_all_sent")
        and rep.get("receipts_match")
    )
    return rep


def analyse(requests: list[Recorded], numbers: list[str], started: float) -> dict[str, Any]:
    """What the server saw: accepted messages per number, the dispatch span and its rate."""
    ok = [r for r in requests if r.status == 201]
    per_to = Counter(r.to for r in ok)
    expected = set(numbers)
    out: dict[str, Any] = {
        "requests": len(requests),
        "accepted": len(ok),
        "rate_limited": sum(1 for r in requests if r.status == 429),
        "other_status": dict(Counter(r.status for r in requests if r.status not in (201, 429))),
        "duplicates": sum(c - 1 for c in per_to.values() if c > 1),
        "numbers_twice": sum(1 for c in per_to.values() if c > 1),
        "unexpected_numbers": len(set(per_to) - expected),
        "numbers_missing": len(expected - set(per_to)),
    }
    if not requests or not ok:
        return out
    first = min(r.at for r in requests)
    arrivals = sorted(r.at for r in ok)
    last_answer = arrivals[-1]  # arrival of the last accepted message; its answer came `latency` later
    span = last_answer - first
    out["start_to_first_s"] = first - started
    out["span_s"] = span
    out["rate"] = len(ok) / span if span > 0 else float("nan")
    # the slowest 10 seconds between the first and the last accepted message
    window = 10.0
    if span > window:
        worst = min(
            bisect_left(arrivals, t + window) - bisect_left(arrivals, t)
            for t in (first + k * 0.5 for k in range(int((span - window) / 0.5) + 1))
        )
        out["slowest_10s"] = worst / window
    # time with nothing arriving: every gap between requests longer than 50 ms (at 100/s they come every 10 ms)
    times = sorted(r.at for r in requests)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False) if b - a > 0.05]
    out["idle_s"] = sum(gaps)
    out["idle_gaps"] = len(gaps)
    out["longest_gap_s"] = max(gaps, default=0.0)
    # by length: batch tails (a claimed batch waits for its slowest thread), pauses between the
    # daemon's dispatch jobs (up to one dispatch_every_seconds), and longer stalls (planning)
    out["gaps_by_length"] = {
        label: (len(sel), sum(sel))
        for label, lo, hi in (("0.05-0.5 s", 0.05, 0.5), ("0.5-2 s", 0.5, 2.0), ("over 2 s", 2.0, float("inf")))
        for sel in [[g for g in gaps if lo < g <= hi]]
    }
    per_second = Counter(int(t - first) for t in arrivals)
    out["accepted_per_second"] = [per_second.get(i, 0) for i in range(int(arrivals[-1] - first) + 1)]
    return out


def verify_ledger(store: str, folder: Path, requests: list[Recorded]) -> dict[str, Any]:
    url = store
    if store.startswith("sqlite:///") and not store.startswith("sqlite:////"):
        url = f"sqlite:///{folder / store.removeprefix('sqlite:///')}"
    states = dict(store_query(url, "SELECT state, count(*) FROM nudges GROUP BY state"))
    receipts = [r for (r,) in store_query(url, "SELECT receipt FROM nudges WHERE state = 'sent'")]
    sids = {r.sid for r in requests if r.status == 201}
    total = sum(states.values())
    return {
        "ledger_states": states,
        "ledger_all_sent": total > 0 and states.get("sent", 0) == total,
        "receipts_match": Counter(receipts) == Counter(sids),
        "sent_without_receipt_at_server": len(set(receipts) - sids),
        "accepted_not_in_ledger": len(sids - set(receipts)),
    }


# ------------------------------------------------------------------------------------------------
# Children
# ------------------------------------------------------------------------------------------------
def child_plan(config_path: str) -> None:
    """Store the plan as the daemon's planning job does (`nudger plan` is a dry run)."""
    from nudger.config import load_config
    from nudger.engine import Engine

    engine = Engine(load_config(config_path))
    t0 = time.perf_counter()
    nudges, added = engine.plan()
    wall = time.perf_counter() - t0
    counts: Counter[str] = Counter()
    for state, _channel, _rule, k in engine.ledger.counts():
        counts[state] += k
    engine.close()
    print(json.dumps({"planned": len(nudges), "added": added, "states": dict(counts), "wall_s": wall}))


def child_dispatch() -> None:
    """The engine's dispatch in-process, without the daemon's scheduler: Engine.dispatch over every due
    nudge, again until nothing is planned or claimed (429 retries come back about a second later)."""
    from nudger.config import load_config
    from nudger.engine import Engine
    from nudger.log import setup

    setup()
    engine = Engine(load_config("config.yaml"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: (engine.stop.set(), stop.set()))
    try:
        while not stop.is_set():
            report = engine.dispatch(limit=100_000)
            left = sum(k for state, _c, _r, k in engine.ledger.counts() if state in ("planned", "claimed"))
            if not left:
                break
            if not report.results:
                stop.wait(0.2)
    finally:
        engine.close()


def child_profiled(mode: str, kind: str, out: str) -> None:
    """The daemon (or the in-process dispatch) with every thread under its own cProfile; the profiles
    are merged per group of threads into `out`.* at exit.

    cProfile only sees the thread that enables it, and the daemon works in APScheduler's executor
    thread and in the dispatch pool's threads, so Thread.run is wrapped. `kind` "cpu" times each
    thread's CPU (time.thread_time: waiting for the GIL, the network or a lock does not count);
    "wall" times the wall clock (waiting included). Either way the times add up over threads.
    """
    import atexit
    import cProfile
    import pstats

    timer = time.thread_time if kind == "cpu" else time.perf_counter
    done: list[tuple[str, cProfile.Profile]] = []
    lock = threading.Lock()
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profiler = cProfile.Profile(timer)
        profiler.enable()
        try:
            original(self)
        finally:
            profiler.disable()
            with lock:
                done.append((self.name, profiler))

    threading.Thread.run = run  # type: ignore[method-assign]
    main = cProfile.Profile(timer)

    def dump() -> None:
        main.disable()
        groups: dict[str, list[cProfile.Profile]] = {"main thread": [main]}
        with lock:
            for name, profiler in done:
                if name.startswith("nudger-send"):
                    group = "dispatch pool threads"
                elif name.startswith("ThreadPoolExecutor"):
                    group = "scheduler executor thread"
                else:
                    group = "other threads"
                groups.setdefault(group, []).append(profiler)
        summary: dict[str, Any] = {}
        for group, profilers in groups.items():
            stats = pstats.Stats(profilers[0])
            for p in profilers[1:]:
                stats.add(p)
            stats.dump_stats(f"{out}.{group.replace(' ', '_')}")
            summary[group] = len(profilers)
        Path(out).write_text(json.dumps(summary), encoding="utf-8")

    atexit.register(dump)
    main.enable()
    if mode == "engine":
        child_dispatch()
        return
    from nudger.cli import main as cli_main

    sys.argv = ["nudger", "run"]
    with contextlib.suppress(SystemExit):
        cli_main()


# The steps of a send, and of the daemon's jobs, shown in every profile whatever their rank.
KEY_FUNCTIONS = (
    r"nudger/dispatch\.py:\d+\(dispatch_one\)",
    r"nudger/engine\.py:\d+\(facts\)",
    r"nudger/engine\.py:\d+\(paused_until\)",
    r"nudger/dispatch\.py:\d+\(_capped\)",
    r"nudger/dispatch\.py:\d+\(candidate_channels\)",
    r"nudger/conditions\.py:\d+\(build_scope\)",
    r"nudger/dispatch\.py:\d+\(build_message\)",
    r"nudger/ratelimit\.py:\d+\(wait\)",
    r"nudger/ledger\.py:\d+\(mark_sending\)",
    r"nudger/dispatch\.py:\d+\(_hand_over\)",
    r"requests/sessions\.py:\d+\(merge_environment_settings\)",
    r"nudger/ledger\.py:\d+\(move\)",
    r"nudger/log\.py:\d+\(log\)",
    r"nudger/ledger\.py:\d+\(session\)",
    r"nudger/dispatch\.py:\d+\(dispatch\)",
    r"nudger/ledger\.py:\d+\(claim_due\)",
    r"nudger/dispatch\.py:\d+\(recover\)",
    r"nudger/engine\.py:\d+\(plan\)",
    r"nudger/ledger\.py:\d+\(replan\)",
    r"concurrent/futures/thread\.py:\d+\(shutdown\)",
)


def summarise_profile(path: Path, top: int) -> dict[str, Any]:
    import pstats

    if not path.exists():
        return {"error": "no profile written (did the daemon exit through os._exit?)"}
    groups = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, Any] = {}
    for group, threads in groups.items():
        stats = pstats.Stats(f"{path}.{group.replace(' ', '_')}")
        rows = []
        for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            where = func if filename == "~" else f"{_short(filename)}:{line}({func})"
            rows.append({"function": where, "ncalls": nc, "tottime": tt, "cumtime": ct})
        ours = [r for r in rows if r["function"].startswith(("nudger/", "channels/"))]
        out[group] = {
            "threads": threads,
            "total": stats.total_tt,  # type: ignore[attr-defined]
            "cumulative": sorted(ours, key=lambda r: r["cumtime"], reverse=True)[:top],
            "tottime": sorted(rows, key=lambda r: r["tottime"], reverse=True)[:top],
            "key": [r for pattern in KEY_FUNCTIONS for r in rows if re.fullmatch(pattern, r["function"])],
        }
    return out


def _short(filename: str) -> str:
    for marker in ("/src/", "site-packages/", "/lib/python3"):
        if marker in filename:
            rest = filename.split(marker, 1)[1]
            return rest.split("/", 1)[1] if marker == "/lib/python3" and "/" in rest else rest
    return filename


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def fmt(x: Any, spec: str = ".1f") -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return format(x, spec)


def section_key(args: argparse.Namespace) -> str:
    key = f"dispatch:{args.store}-{args.daemons}d"
    if args.channel_rate != "100/s":
        key += "-rate" + re.sub(r"[^0-9a-z]+", "", args.channel_rate)
    if args.server_rate != 100 or args.latency != 0.1 or args.messages != 10_000:
        key += f"-server{args.server_rate}-latency{args.latency:g}-n{args.messages}"
    if args.mode == "engine":
        key += "-engine"
    if args.profile:
        key += f"-profile-{args.profile}"
    return key


def render(args: argparse.Namespace, machine: dict[str, str], runs: list[dict[str, Any]], total_s: float) -> str:
    runs = sorted(runs, key=lambda r: r["threads"])
    key = section_key(args)
    what = {
        ("sqlite", 1): "(a) one daemon, SQLite",
        ("postgresql", 2): "(b) two daemons, PostgreSQL",
    }.get((args.store, args.daemons), f"{args.daemons} daemon(s), {args.store}")
    if args.mode == "engine":
        what = what.replace("daemons", "processes").replace("daemon", "process") + ", Engine.dispatch in-process"
    if args.profile:
        what += f", profiled ({args.profile})"
    cmd = "python benchmarks/bench_dispatch.py" + "".join(
        f" {flag}"
        for flag, on in (
            (f"--store {args.store}", args.store != "sqlite"),
            (f"--daemons {args.daemons}", args.daemons != 1),
            (f"--threads {args.threads}", args.threads != "1,8,16,32"),
            (f"--messages {args.messages}", args.messages != 10_000),
            (f"--latency {args.latency}", args.latency != 0.1),
            (f"--server-rate {args.server_rate}", args.server_rate != 100),
            (f"--channel-rate {args.channel_rate}", args.channel_rate != "100/s"),
            (f"--max-seconds {args.max_seconds:g}", args.max_seconds != 540),
            (f"--mode {args.mode}", args.mode != "daemon"),
            (f"--profile {args.profile}", args.profile),
            ("--code worktree", args.code == "worktree"),
            (f"--commit {args.commit}", args.code == "head" and args.commit != "HEAD"),
        )
        if on
    )
    store = "SQLite " + machine["sqlite"] if args.store == "sqlite" else "PostgreSQL " + machine.get("postgres", "?")
    lines = [
        f"<!-- {key} begin -->",
        f"## Dispatch: {what}, {args.messages:,} SMS",
        "",
        f"Run on {machine['date']} with `{cmd}` (whole run {total_s / 60:.1f} min).",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory']} RAM, {machine['os']}; "
        f"Python {machine['python']}, {store}, SQLAlchemy {machine['sqlalchemy']}.",
        "",
        f"Code measured: {machine['code']}.",
        "",
        f"Setup: {args.daemons} "
        + (
            "real daemon process(es) (`python -m nudger.cli run`)"
            if args.mode == "daemon"
            else "process(es) calling `Engine(config).dispatch(limit=100000)` until nothing is due (no scheduler)"
        )
        + " on "
        + ("one SQLite store" if args.store == "sqlite" else "one PostgreSQL store (public schema emptied first)")
        + f"; `dispatch_every_seconds: 1`, sms `rate: {args.channel_rate}`, `guard.max_share_per_day: 1.0`, pacing "
        f"00:00-24:00 every day. Server: `tests/fake_twilio.py` answering after {args.latency * 1000:.0f} ms, "
        f"accepting at most {args.server_rate} messages in any one-second window (429 with Retry-After: 1 beyond)."
        + (
            f" **Profiled run** (every thread under cProfile, timing {args.profile}): the rates are lower than "
            "without it; the profile is for the shares, not the speed."
            if args.profile
            else ""
        ),
        "",
        "| dispatch_threads | Accepted | 429s | Span (s) | Rate (msg/s) | Slowest 10 s (msg/s) | Idle (s) "
        "| Start to first (s) | Daemon CPU (s) | CPU/msg (ms) | Server CPU (s) | Machine busy | Load (start/mean) "
        "| Goal |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        if "error" in r and "accepted" not in r:
            lines.append(f"| {r['threads']} | **failed** | | | | | | | | | | | | {r['error'][:200]} |")
            continue
        cpu = sum(r.get("daemon_cpu_s", [])) if r.get("daemon_cpu_s") else float("nan")
        per = cpu / r["accepted"] * 1000 if r.get("accepted") else float("nan")
        cpu_text = " + ".join(fmt(c) for c in r.get("daemon_cpu_s", []))
        goal = "**yes**" if r["goal_met"] else "no"
        busy = r.get("machine_busy", float("nan"))
        if r.get("stop_reason") != "all accepted":
            goal += f" (stopped: {r.get('stop_reason')})"
        lines.append(
            f"| {r['threads']} | {r.get('accepted', 0):,} | {r.get('rate_limited', 0):,} | {fmt(r.get('span_s'))} "
            f"| {fmt(r.get('rate'))} | {fmt(r.get('slowest_10s'))} | {fmt(r.get('idle_s'))} "
            f"| {fmt(r.get('start_to_first_s'))} | {cpu_text} | {fmt(per)} | {fmt(r.get('server_cpu_s'))} "
            f"| {fmt(busy * 100, '.0f')}% "
            f"| {fmt(r.get('load'))} / {fmt(r.get('load_mean'))} | {goal} |"
        )
    lines += [
        "",
        "Accepted: messages the server answered 201. Span: from the first request at the server to the last "
        "accepted one; Rate = accepted / span. Slowest 10 s: the fewest accepted in any 10-second window of "
        "the span. Idle: the sum of the gaps longer than 50 ms between requests (at 100/s they arrive every "
        "10 ms). Start to first: daemon start to its first request (start-up, recovery and the start-up "
        "planning run). Daemon CPU: user + system CPU of each daemon process over its whole life (wait4); "
        "CPU/msg: their sum per accepted message. Server CPU: the benchmark process (the fake Twilio server) "
        "while the daemons ran. "
        "Machine busy: CPU use of the whole machine (all cores, /proc/stat) from the first request to the end, "
        "the server, the store and anything else running included; Load: the 1-minute load average when the "
        "daemons started and its mean during the run (2 cores: above 2, something waited for a CPU). "
        "Goal: all accepted, at least 95 msg/s, nobody twice, every nudge "
        "`sent` in the ledger with the server's message SID as receipt.",
        "",
        "| dispatch_threads | Numbers twice | Numbers missing | Ledger states | Receipts = server SIDs "
        "| Gaps (count, s) by length | Daemon log | Exit | Peak RSS (MB) |",
        "|---:|---:|---:|---|---|---|---|---|---|",
    ]
    for r in runs:
        if "accepted" not in r:
            continue
        states = ", ".join(f"{k} {v:,}" for k, v in sorted(r.get("ledger_states", {}).items()))
        gaps = "; ".join(f"{k}: {c}, {t:.1f}" for k, (c, t) in r.get("gaps_by_length", {}).items())
        logs = "; ".join(
            ", ".join(f"{k} {v:,}" for k, v in lg.items()) + (f", plan moved {'/'.join(map(str, mv))}" if mv else "")
            for lg, mv in zip(r.get("log", []), r.get("plan_moved", []), strict=False)
        )
        lines.append(
            f"| {r['threads']} | {r.get('numbers_twice', 0)} | {r.get('numbers_missing', 0):,} | {states} "
            f"| {'yes' if r.get('receipts_match') else '**no**'} | {gaps} | {logs} | {r.get('exit_codes')} "
            f"| {' + '.join(fmt(m, '.0f') for m in r.get('daemon_peak_mb', []))} |"
        )
    for r in runs:
        if "error" in r:
            lines += ["", f"dispatch_threads {r['threads']} failed: {r['error']}"]
            for tail in r.get("logs_tail", []):
                lines += ["", "```", tail.strip()[-1500:], "```"]
    for r in runs:
        sent = r.get("accepted") or 0
        for i, prof in enumerate(r.get("profile", []) or []):
            kind = "CPU seconds (time.thread_time)" if r.get("profile_kind") == "cpu" else "wall seconds"
            lines += ["", f"### Profile: dispatch_threads {r['threads']}, process {i + 1} ({kind})", ""]
            if "error" in prof:
                lines.append(prof["error"])
                continue
            for group, data in prof.items():
                total = data["total"]
                if total < 0.5:
                    continue
                key_rows = [r for r in data.get("key", []) if r["cumtime"] >= 0.01 * total]
                if key_rows:
                    lines += [
                        f"**{group}**: the steps (cumulative; `session` is called twice per transaction):",
                        "",
                        "| Step | Calls | Cumulative (s) | Share of the group | ms per message |",
                        "|---|---:|---:|---:|---:|",
                    ]
                    for row in key_rows:
                        lines.append(
                            f"| `{row['function']}` | {row['ncalls']:,} | {row['cumtime']:.2f} "
                            f"| {row['cumtime'] / total * 100 if total else 0:.0f}% "
                            f"| {row['cumtime'] / sent * 1000 if sent else 0:.2f} |"
                        )
                    lines.append("")
                lines += [
                    f"**{group}** ({data['threads']:,} thread(s), {total:.1f} s profiled in all, "
                    f"{total / sent * 1000 if sent else 0:.2f} ms per accepted message). nudger functions by "
                    "cumulative time:",
                    "",
                    "| Function | Calls | Cumulative (s) | Share of the group | ms per message | Own (s) |",
                    "|---|---:|---:|---:|---:|---:|",
                ]
                for row in data["cumulative"]:
                    lines.append(
                        f"| `{row['function']}` | {row['ncalls']:,} | {row['cumtime']:.2f} "
                        f"| {row['cumtime'] / total * 100 if total else 0:.0f}% "
                        f"| {row['cumtime'] / sent * 1000 if sent else 0:.2f} | {row['tottime']:.2f} |"
                    )
                lines += [
                    "",
                    "Top by own time (any code):",
                    "",
                    "| Function | Calls | Own (s) | Share of the group |",
                    "|---|---:|---:|---:|",
                ]
                for row in data["tottime"]:
                    lines.append(
                        f"| `{row['function']}` | {row['ncalls']:,} | {row['tottime']:.2f} "
                        f"| {row['tottime'] / total * 100 if total else 0:.0f}% |"
                    )
                lines.append("")
    if args.notes:
        lines += ["", args.notes]
    lines += ["", f"<!-- {key} end -->"]
    return "\n".join(lines) + "\n"


def record(section: str, key: str) -> None:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    begin, end = f"<!-- {key} begin -->", f"<!-- {key} end -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text, encoding="utf-8")


def rerender(work: Path, no_record: bool) -> int:
    """The section again from a kept folder, the server's timeline analysed anew."""
    meta = json.loads((work / "meta.json").read_text(encoding="utf-8"))
    args = argparse.Namespace(**meta["args"])
    with (work / "data" / "tenants.csv").open(encoding="utf-8", newline="") as handle:
        numbers = [e164(row["phone"]) for row in csv.DictReader(handle)]
    runs = []
    for threads in meta["threads"]:
        rep = json.loads((work / f"report-t{threads}.json").read_text(encoding="utf-8"))
        timeline = Path(rep["folder"]) / "requests.csv"
        if timeline.exists():
            with timeline.open(encoding="utf-8", newline="") as handle:
                rows = list(csv.DictReader(handle))
            requests = [
                Recorded("POST", "", None, {"To": r["to"]}, {}, float(r["seconds_after_start"]), int(r["status"]))
                for r in rows
            ]
            rep.update(analyse(requests, numbers, 0.0))
        runs.append(rep)
    section = render(args, meta["machine"], runs, meta["total_s"])
    print(section)
    if not no_record:
        record(section, section_key(args))
        print(f"written to {RESULTS}")
    return 0


# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    return run(p, args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--pg-url", default=PG_URL, help=f"PostgreSQL store (its public schema is emptied!); {PG_URL}")
    p.add_argument("--daemons", type=int, default=1, help="daemon processes on the store (default 1)")
    p.add_argument("--threads", default="1,8,16,32", help="schedule.dispatch_threads values, comma-separated")
    p.add_argument("--messages", type=int, default=10_000, help="tenants, one SMS each (default 10000, max 20000)")
    p.add_argument("--latency", type=float, default=0.1, help="seconds the server takes per answer (default 0.1)")
    p.add_argument("--server-rate", type=int, default=100, help="messages per second the server accepts (default 100)")
    p.add_argument("--channel-rate", default="100/s", help="the sms channel's `rate:` (default 100/s)")
    p.add_argument("--max-seconds", type=float, default=540, help="stop a run after this long (default 540)")
    p.add_argument("--stall", type=float, default=60, help="stop a run when no request came for this long")
    p.add_argument("--settle", type=float, default=3, help="seconds to wait after the last message for repeats")
    p.add_argument("--stagger", type=float, default=0.0, help="seconds between starting daemons")
    p.add_argument(
        "--quiet-load",
        type=float,
        default=0.0,
        help="before each run, wait until the 1-minute load average is below this (0: do not wait)",
    )
    p.add_argument("--quiet-wait", type=float, default=300, help="wait at most this long for --quiet-load")
    p.add_argument("--code", choices=("head", "worktree"), default="head")
    p.add_argument("--commit", default="HEAD", help="with --code head: measure this commit instead of HEAD")
    p.add_argument(
        "--mode",
        choices=("daemon", "engine"),
        default="daemon",
        help="the real daemon (default), or Engine.dispatch in a loop in one process, without the scheduler",
    )
    p.add_argument(
        "--profile",
        choices=("", "cpu", "wall"),
        default="",
        help="every thread of the daemons under cProfile, timing CPU (time.thread_time) or wall time",
    )
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--workdir", help="work here (kept) instead of a temporary folder")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--notes", default="")
    p.add_argument(
        "--rerender",
        metavar="WORKDIR",
        help="write the RESULTS.md section again from a kept folder (its meta.json, report-t*.json and "
        "requests.csv), with the analysis of this version of the script; runs nothing",
    )
    p.add_argument("--child-plan", help=argparse.SUPPRESS)
    p.add_argument("--child-profiled", help=argparse.SUPPRESS)
    p.add_argument("--child-dispatch", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--profile-out", help=argparse.SUPPRESS)
    return p


def run(p: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops the daemons too
    if args.child_plan:
        child_plan(args.child_plan)
        return 0
    if args.child_profiled:
        child_profiled(args.child_profiled, args.profile, args.profile_out)
        return 0
    if args.child_dispatch:
        child_dispatch()
        return 0
    if args.rerender:
        return rerender(Path(args.rerender), args.no_record)
    if args.store == "sqlite" and args.daemons != 1:
        p.error("one daemon per SQLite store (a second one refuses to start): use --store postgresql")
    thread_list = [int(t) for t in args.threads.split(",") if t.strip()]

    t_start = time.perf_counter()
    machine = machine_info()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="nudger-dispatch-"))
    work.mkdir(parents=True, exist_ok=True)
    machine["code"] = snapshot_code(work, args.code, args.commit)
    if args.store == "postgresql":
        machine["postgres"] = postgres_version(args.pg_url)
    print(f"nudger dispatch benchmark in {work}\ncode: {machine['code']}\nhost: {socket.gethostname()}")
    env = child_env(work)
    numbers = make_data(work, args.messages, env)
    runs = []
    for threads in thread_list:
        print(f"dispatch_threads {threads}:")
        rep = run_one(args, work, threads, numbers)
        runs.append(rep)
        (work / f"report-t{threads}.json").write_text(json.dumps(rep, indent=1, default=str), encoding="utf-8")
        print(
            f"  -> {rep.get('accepted', 0):,} accepted in {fmt(rep.get('span_s'))} s = {fmt(rep.get('rate'))} msg/s; "
            f"429s {rep.get('rate_limited', 0)}; twice {rep.get('numbers_twice')}; "
            f"ledger {rep.get('ledger_states')}; goal {'met' if rep['goal_met'] else 'missed'}"
            + (f"; ERROR {rep['error']}" if "error" in rep else "")
        )
    total = time.perf_counter() - t_start
    meta = {"machine": machine, "args": vars(args), "total_s": total, "threads": thread_list}
    (work / "meta.json").write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
    section = render(args, machine, runs, total)
    print()
    print(section)
    if not args.no_record:
        record(section, section_key(args))
        print(f"written to {RESULTS}")
    if args.keep or args.workdir:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
