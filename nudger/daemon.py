"""`nudger run`: APScheduler 3 as the clock; the ledger, not the scheduler, is the source of truth."""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from . import log as logmod
from .config import Config
from .engine import Engine, system_clock
from .errors import ImportRefused, NudgerError
from .ledger import store_lock
from .log import log, warn
from .rulebook import Rulebook, folder_fingerprint
from .tone import check_all, load_checked
from .web import WebApp

RECENT_IMPORT = timedelta(minutes=10)  # a daemon that finds an import this fresh leaves it at that


@contextmanager
def embedded_lock(config: Config):
    """Hold the SQLite store's file lock for the whole run (refuses when another daemon has it)."""
    lock = store_lock(config.store_url)
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()


def run_once(config: Config, clock: Callable[[], datetime] | None = None) -> str:
    """One import-plan-dispatch cycle. Returns a one-line summary; raises when the import was refused."""
    logmod.setup()
    with embedded_lock(config):
        engine = Engine(config, clock=clock or system_clock)
        refused: ImportRefused | None = None
        try:
            engine.rulebook = load_checked(config, engine.today(), engine.data_sample()[0])
            try:
                report = engine.import_data()
                imported = f"imported {report.tenants} tenants ({len(report.problems)} rows skipped)"
            except ImportRefused as exc:
                refused, imported = exc, "import refused"
            if refused is None:
                _, added = engine.plan()
            else:
                added = 0
            result = engine.dispatch(limit=100_000)
        finally:
            engine.close()
    summary = (
        f"{imported}; planned {added} new; sent {result.sent}, moved {result.moved}, "
        f"retry {result.retry}, failed {result.failed}, expired {result.expired}, "
        f"cancelled {result.cancelled}"
    )
    if refused is not None:
        raise ImportRefused(f"{refused} ({summary})")
    return summary


class Daemon:
    def __init__(self, config: Config, engine: Engine):
        self.config = config
        self.engine = engine
        self.scheduler = BackgroundScheduler(
            timezone=config.zone,
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.fingerprint = folder_fingerprint(config.rules_path)
        self.last_dispatch: datetime | None = None
        self.dispatch_began: datetime | None = None
        self.started_at: datetime | None = None
        self.web: WebApp | None = None
        engine.metrics.watch_ledger(engine.ledger.counts)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """For /healthz: the store answers, the scheduler runs, dispatch is not stuck; when the last
        import and dispatch were; what the mass-send guard holds (a hold needs a person, but the
        daemon itself is healthy: it answers 200)."""
        data: dict[str, Any] = {"scheduler": "running" if self.scheduler.running else "stopped"}
        try:
            last = self.engine.ledger.last_accepted_import()
            data["store"] = "ok"
            data["last_import"] = last.at.isoformat() if last else None
            data["held"] = self.engine.ledger.held_by_rule()
        except Exception as exc:  # noqa: BLE001 - any store failure makes the daemon unhealthy
            data["store"] = f"error: {type(exc).__name__}"
        data["last_dispatch"] = self.last_dispatch.isoformat() if self.last_dispatch else None
        every = self.config.schedule.dispatch_every_seconds
        stuck_after = timedelta(seconds=max(300, 10 * every))
        # a round running for too long, or none for too long (the scheduler's thread hangs)
        since = self.dispatch_began or self.last_dispatch or self.started_at
        data["dispatch"] = "stuck" if since and datetime.now(UTC) - since > stuck_after else "ok"
        ok = data["store"] == "ok" and self.scheduler.running and data["dispatch"] == "ok"
        data["status"] = "ok" if ok else "unhealthy"
        return ok, data

    # jobs --------------------------------------------------------------------------------------
    def guarded(self, job: Callable[[], Any], name: str) -> Callable[[], None]:
        """A scheduler job that logs its failure in one line and keeps the daemon running."""

        def run() -> None:
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - any failure: one line (no data), then the next run
                warn("job_failed", job=name, reason=type(exc).__name__)

        return run

    def import_and_plan(self) -> None:
        ledger = self.engine.ledger
        with ledger.exclusive("import") as mine:
            if not mine:
                log("import_skipped", reason="another daemon is importing")
                return
            last = ledger.last_accepted_import()
            if last is not None and self.engine.now() - last.at < RECENT_IMPORT:
                log("import_skipped", reason="another daemon imported a moment ago")
                return
            try:
                self.engine.import_data()
            except ImportRefused:
                return  # the engine logged it (why, in one word); `nudger import` shows the details
            except NudgerError as exc:
                warn("import_failed", reason=f"{type(exc).__name__}: run `nudger import` for the details")
                return
            self.engine.metrics.last_import.set_to_current_time()
        self.plan(after_import=True)

    def plan(self, rule_ids: list[str] | None = None, *, after_import: bool = False) -> None:
        """Plan (one daemon at a time). After an import, wait for a running plan to finish and plan
        the fresh data; otherwise leave it to the daemon already at it."""
        ledger = self.engine.ledger
        if ledger.last_accepted_import() is None:
            log("plan_skipped", reason="nothing imported yet")  # the first import plans when it is done
            return
        with ledger.exclusive("plan", wait=after_import) as mine:
            if not mine:
                log("plan_skipped", reason="another daemon is planning")
                return
            try:
                self.engine.plan(rule_ids=rule_ids)
            except NudgerError as exc:
                warn("plan_failed", reason=f"{type(exc).__name__}: run `nudger plan` for the details")

    def dispatch(self) -> None:
        if self.stopping.is_set():
            return
        self.dispatch_began = datetime.now(UTC)
        report = self.engine.dispatch(limit=500)
        self.last_dispatch = datetime.now(self.config.zone)
        self.dispatch_began = None
        self.engine.metrics.last_dispatch.set_to_current_time()
        if report.results:
            log(
                "dispatch_done",
                sent=report.sent,
                moved=report.moved,
                retry=report.retry,
                failed=report.failed,
                expired=report.expired,
                cancelled=report.cancelled,
                released=report.released or None,
                uncertain=report.uncertain or None,
            )

    def call_digests(self) -> int:
        """The officers' morning e-mail, once a day however many daemons run. Returns how many went."""
        ledger = self.engine.ledger
        marker = f"call_digests_sent:{self.engine.today().isoformat()}"
        with ledger.exclusive("call-digest") as mine:
            if not mine or ledger.get_setting(marker):
                log("call_digests_skipped", reason="another daemon sent them")
                return 0
            sent = self.engine.send_call_digests()
            ledger.set_setting(marker, self.engine.now().isoformat())
            return sent

    def watch_rules(self) -> None:
        current = folder_fingerprint(self.config.rules_path)
        if current != self.fingerprint or self.reload_requested.is_set():
            self.reload_requested.clear()
            self.fingerprint = current
            self.reload()

    def reload(self) -> None:
        book, findings = check_all(self.config, self.engine.today(), self.engine.data_sample()[0])
        errors = [f for f in findings if f.level == "error"]
        if book is None or errors:
            first = errors[0] if errors else None
            warn("rulebook_refused", finding=str(first) if first else "unreadable", count=len(errors))
            return
        self.engine.rulebook = book
        self.schedule_rule_moments(book)
        log("rulebook_reloaded", rules=len(book.rules))
        self.plan()

    def schedule_rule_moments(self, book: Rulebook) -> None:
        """Plan at the moments rules name (cron, yearly, at), besides the regular planning."""
        for job in self.scheduler.get_jobs():
            if job.id.startswith("rule:"):
                job.remove()
        for rule in book.rules.values():
            t = rule.trigger
            trigger: Any = None
            if t.kind == "cron" and t.cron is not None:
                trigger = t.cron
            elif t.kind == "yearly" and t.month_day:
                trigger = CronTrigger(
                    month=t.month_day[0], day=t.month_day[1], hour=0, minute=5, timezone=self.config.zone
                )
            elif t.kind == "at" and t.at is not None and t.at > self.engine.now():
                trigger = DateTrigger(t.at)
            if trigger is not None:
                job = self.guarded(lambda rid=rule.id: self.plan([rid]), f"rule:{rule.id}")
                self.scheduler.add_job(job, trigger, id=f"rule:{rule.id}", replace_existing=True)

    # life --------------------------------------------------------------------------------------
    def start(self) -> None:
        s = self.config.schedule
        sched = self.scheduler
        now = datetime.now(self.config.zone)
        cron = CronTrigger.from_crontab(s.import_cron, timezone=self.config.zone)
        sched.add_job(self.guarded(self.import_and_plan, "import"), cron, id="import")
        plan_every = IntervalTrigger(minutes=s.plan_every_minutes)
        sched.add_job(self.guarded(self.plan, "plan"), plan_every, id="plan", next_run_time=now)
        every = IntervalTrigger(seconds=s.dispatch_every_seconds)
        sched.add_job(self.guarded(self.dispatch, "dispatch"), every, id="dispatch", next_run_time=now)
        sched.add_job(self.guarded(self.watch_rules, "watch"), IntervalTrigger(seconds=5), id="watch")
        digest_at = (self.config.channels["call"].model_extra or {}).get("digest_at")
        if digest_at:
            hour, minute = (int(x) for x in str(digest_at).split(":"))
            sched.add_job(
                self.guarded(self.call_digests, "call-digest"),
                CronTrigger(hour=hour, minute=minute, timezone=self.config.zone),
                id="call-digest",
            )
        self.schedule_rule_moments(self.engine.rulebook)
        if self.engine.ledger.last_accepted_import() is None:
            sched.add_job(self.guarded(self.import_and_plan, "import"), id="first-import", next_run_time=now)
        sched.start()
        self.started_at = datetime.now(UTC)
        web = self.config.web
        if web.enabled:
            self.web = WebApp(self.engine, web.host, web.port, web.public_url, self.health)
            self.web.start()

    def shutdown(self) -> None:
        """No new job starts; the message in hand is finished (the rest of its batch is released).
        If that takes longer than schedule.shutdown_seconds, the process exits anyway: a message
        still in hand then is `uncertain` at the next start, never sent twice."""
        limit = self.config.schedule.shutdown_seconds
        done = threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": True}, daemon=True)
        done.start()
        done.join(limit)
        if self.web is not None:
            self.web.stop()
        if done.is_alive():
            warn("shutdown_timeout", seconds=limit)
            logmod.flush()
            os._exit(0)

    def stop(self, signum: int | None = None) -> None:
        log("daemon_stopping", signal=signum)
        self.engine.stop.set()
        self.stopping.set()


def run_daemon(config: Config) -> None:
    logmod.setup()
    try:
        cron = CronTrigger.from_crontab(config.schedule.import_cron, timezone=config.zone)
    except ValueError as exc:
        raise NudgerError(f"{config.source_file}: schedule.import: not a cron line ({exc})") from None
    del cron
    digest_at = (config.channels["call"].model_extra or {}).get("digest_at")
    if digest_at and not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", str(digest_at)):
        raise NudgerError(f"{config.source_file}: channels.call.digest_at: `{digest_at}` is not a time like 08:30")
    with embedded_lock(config):
        engine = Engine(config)
        book = load_checked(config, engine.today(), engine.data_sample()[0])
        engine.rulebook = book
        engine.recover()  # claims of a daemon that died, once their lease has run out
        daemon = Daemon(config, engine)
        signal.signal(signal.SIGTERM, lambda n, f: daemon.stop(n))
        signal.signal(signal.SIGINT, lambda n, f: daemon.stop(n))
        signal.signal(signal.SIGHUP, lambda n, f: daemon.reload_requested.set())
        daemon.start()
        log("daemon_started", rules=len(book.rules), store=engine.ledger.engine.dialect.name, worker=engine.worker)
        try:
            while not daemon.stopping.wait(1.0):
                pass
        finally:
            daemon.shutdown()
            engine.close()
            log("daemon_stopped")
