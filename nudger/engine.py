"""The engine: import, plan and dispatch, wired to the ledger, the rulebook and the channels.

The CLI and the daemon call this; the logic it uses (facts, planner, pacing, render) stays pure.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from .bulk import collector_paused
from .config import Config
from .contact import mobile_e164
from .data import ImportData, check_bad_share, read_source
from .dispatch import Dispatching, DispatchReport
from .errors import ChannelError, ImportRefused, NudgerError
from .facts import Facts, TenantRecord, derive_events
from .guard import GuardLimits, mass_holds
from .ledger import Ledger
from .log import log, warn
from .metrics import Metrics
from .pacing import policy_from_config
from .planner import LOOKBACK_DAYS, EventFact, PlanContext, PlannedNudge, plan
from .protocols import Channel, Message, Recipient, Signer
from .ratelimit import RateLimiter
from .rulebook import Rulebook, load_rulebook

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


_PREF_FIELDS = (  # tenants.yaml field -> the record's field it overrides
    ("channels", "preferred_channels"),
    ("window", "window"),
    ("language", "language"),
    ("officer", "officer"),
    ("pause_until", "pause_until"),
    ("whatsapp_opt_in", "whatsapp_opt_in"),
)


def apply_prefs(record: TenantRecord, book: Rulebook) -> TenantRecord:
    """tenants.yaml overrides the data import, field by field."""
    pref = book.prefs.get(record.tenant_id)
    if pref is None:
        return record
    for field_name, target in _PREF_FIELDS:
        value = getattr(pref, field_name)
        if value is not None:
            setattr(record, target, value)
    return record


def _digest(record: TenantRecord) -> tuple[str, str]:
    text = json.dumps(record.to_json(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest(), text


@dataclass
class ImportReport:
    import_id: int
    tenants: int
    payments: int
    changed: int
    events: int
    problems: list[str]
    notes: list[str]


class Engine(Dispatching):
    def __init__(
        self,
        config: Config,
        *,
        ledger: Ledger | None = None,
        rulebook: Rulebook | None = None,
        channels: dict[str, Channel] | None = None,
        clock: Clock = system_clock,
        worker: str | None = None,
    ):
        self.config = config
        self.clock = clock
        self._ledger = ledger
        self._rulebook = rulebook
        self._channels = channels
        self.policy = policy_from_config(config)
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.stop = threading.Event()
        self._limiters: dict[str, RateLimiter] = {}
        self._limiters_lock = threading.Lock()
        self.metrics = Metrics()

    def limiter(self, channel: str) -> RateLimiter:
        with self._limiters_lock:
            if channel not in self._limiters:
                section = self.config.channels.get(channel)
                self._limiters[channel] = RateLimiter.parse(section.rate if section else "", stop=self.stop)
            return self._limiters[channel]

    # --- parts, made on first use -------------------------------------------------------------
    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(self.config.store_url)
        return self._ledger

    @property
    def rulebook(self) -> Rulebook:
        if self._rulebook is None:
            self._rulebook = load_rulebook(self.config)
        return self._rulebook

    @rulebook.setter
    def rulebook(self, book: Rulebook) -> None:
        self._rulebook = book

    @property
    def channels(self) -> dict[str, Channel]:
        if self._channels is None:
            from channels import build_channels

            self._channels = build_channels(self.config)
        return self._channels

    def now(self) -> datetime:
        return self.clock().astimezone(self.config.zone)

    def today(self) -> date:
        return self.now().date()

    def close(self) -> None:
        if self._channels:
            for ch in self._channels.values():
                ch.close()
        if self._ledger is not None:
            self._ledger.close()

    # --- import ------------------------------------------------------------------------------
    def read_data(self, *, guard: bool = True) -> ImportData:
        data = read_source(self.config.data, self.config.base_dir)
        if guard:
            check_bad_share(data, self.config.data.max_bad_share)
        return data

    def import_data(self, data: ImportData | None = None) -> ImportReport:
        """Import the data: guard against broken or truncated files, store, derive events."""
        with collector_paused():
            return self._import_data(data)

    def _import_data(self, data: ImportData | None) -> ImportReport:
        now = self.now()
        today = now.date()
        ledger = self.ledger
        try:
            data = data or self.read_data(guard=False)
            previous = ledger.last_accepted_import()
            share = self.config.data.min_share_of_previous
            if previous is not None and previous.tenants and len(data.records) < previous.tenants * share:
                raise ImportRefused(
                    f"the data holds {len(data.records)} tenants, far fewer than the {previous.tenants} of the "
                    f"last import (less than {share:.0%}): it looks truncated, so nothing was imported or "
                    "planned; check the export, or lower data.min_share_of_previous in config.yaml if "
                    "tenants really left",
                    "truncated",
                )
            if previous is not None and previous.payments and data.payment_rows < previous.payments * share:
                raise ImportRefused(  # a cut payments file would read as rent paid late or not at all
                    f"the payments data holds {data.payment_rows} rows, far fewer than the {previous.payments} of "
                    f"the last import (less than {share:.0%}): it looks truncated, so nothing was imported or "
                    "planned; check the export, or lower data.min_share_of_previous in config.yaml if the "
                    "history really got shorter",
                    "truncated",
                )
            check_bad_share(data, self.config.data.max_bad_share)
        except ImportRefused as exc:
            self.metrics.imports.labels("refused").inc()
            if data is not None:
                self.metrics.import_rows.labels("refused").inc(len(data.problems))
            ledger.record_import(at=now, day=today, source=self.config.data.source, status="refused", reason=str(exc))
            warn("import_refused", reason=exc.kind, count=len(data.records) if data else None)
            raise
        stored = ledger.tenant_summaries()
        changed: list[tuple[str, str, str, str, str | None]] = []
        events: list[dict[str, Any]] = []
        present = set(data.records)
        officers = self.rulebook.officers
        unknown: set[str] = set()
        tenants = len(data.records)
        while data.records:  # each record is let go once it is summed up: memory stays low
            tid, record = data.records.popitem()
            if record.officer not in officers:
                unknown.add(record.officer)
            digest, text = _digest(record)
            before = stored.get(tid)
            if before is not None and before[0] == digest and before[2] == today:
                continue
            facts = Facts(record, today)
            summary = facts.summary()
            if before is not None:
                for ev in derive_events(before[1], facts, before[2]):
                    events.append(
                        {
                            "tenant_id": tid,
                            "name": ev.name,
                            "day": ev.day or today,
                            "count": ev.count,
                            "previous": ev.previous,
                            "source": "import",
                        }
                    )
            changed.append((tid, digest, text, json.dumps(summary, separators=(",", ":")), mobile_e164(record.phone)))
        changed.sort()
        import_id = ledger.record_import(
            at=now,
            day=today,
            source=data.source,
            status="accepted",
            tenants=tenants,
            payments=data.payment_rows,
            rows_skipped=len(data.problems),
            events=len(events),
        )
        ledger.save_tenants(import_id, today, changed, present, known=set(stored))
        added = ledger.add_events(events, now)
        notes = list(data.notes)
        if unknown:
            notes.append(
                f"officer(s) {', '.join(sorted(unknown))} in the data are not in officers.yaml: "
                "their tenants' messages wait until they are added"
            )
        missing = sorted(set(self.rulebook.prefs) - present)
        if missing:
            notes.append(f"tenants.yaml names {len(missing)} tenant(s) not in the data: {', '.join(missing[:5])}")
        self.metrics.imports.labels("accepted").inc()
        self.metrics.import_rows.labels("accepted").inc(tenants + data.payment_rows)
        self.metrics.import_rows.labels("refused").inc(len(data.problems))
        log(
            "import_done",
            import_id=import_id,
            tenants=tenants,
            payments=data.payment_rows,
            rows_skipped=len(data.problems),
            events=added,
        )
        return ImportReport(
            import_id, tenants, data.payment_rows, len(changed), added, [str(p) for p in data.problems], notes
        )

    # --- facts -------------------------------------------------------------------------------
    def records(self, tenant_ids: Iterable[str] | None = None) -> dict[str, TenantRecord]:
        """The newest imported records, or, before the first import, the data source itself."""
        out = {tid: TenantRecord.from_json(rec) for tid, rec in self.ledger.tenant_records(tenant_ids)}
        if not out and self.ledger.last_accepted_import() is None:
            data = self.read_data()
            wanted = set(tenant_ids) if tenant_ids is not None else None
            out = {t: r for t, r in data.records.items() if wanted is None or t in wanted}
        return out

    def facts(self, today: date, tenant_ids: Iterable[str] | None = None) -> dict[str, Facts]:
        book = self.rulebook
        ids = list(tenant_ids) if tenant_ids is not None else None
        contacts = self.ledger.last_contacts(ids)
        return {
            tid: Facts(apply_prefs(rec, book), today, last_contact=contacts.get(tid))
            for tid, rec in self.records(ids).items()
        }

    def fact_batches(self, today: date, tenant_ids: list[str] | None, size: int = 5000) -> Iterator[dict[str, Facts]]:
        """The facts of every tenant (or the chosen ones), `size` tenants at a time."""
        if self.ledger.last_accepted_import() is None:  # nothing imported yet: the data source itself
            yield self.facts(today, tenant_ids)
            return
        book = self.rulebook
        rows = self.ledger.tenant_records(tenant_ids)
        while batch := list(islice(rows, size)):
            contacts = self.ledger.last_contacts([tid for tid, _ in batch])
            yield {
                tid: Facts(apply_prefs(TenantRecord.from_json(rec), book), today, last_contact=contacts.get(tid))
                for tid, rec in batch
            }

    def events_by_tenant(self, since: date, tenant_ids: Iterable[str] | None = None) -> dict[str, list[EventFact]]:
        out: dict[str, list[EventFact]] = {}
        for e in self.ledger.events_since(since, tenant_ids):
            out.setdefault(e.tenant_id, []).append(EventFact(e.tenant_id, e.name, e.day, e.count or None, e.previous))
        return out

    def data_sample(self, limit: int = 200) -> tuple[list[TenantRecord], set[str] | None]:
        """Some tenants from the data (for the tone guard's samples) and every tenant id.

        Reads the store when something was imported, else the data source; never creates a store.
        Returns ([], None) when neither can be read.
        """
        from .ledger import sqlite_path

        path = sqlite_path(self.config.store_url)
        try:
            if (path is None or path.exists()) and self.ledger.last_accepted_import() is not None:
                ids = self.ledger.tenant_ids()
                records = [TenantRecord.from_json(r) for _, r in self.ledger.tenant_records(sorted(ids)[:limit])]
            else:
                data = self.read_data(guard=False)
                ids = set(data.records)
                records = list(data.records.values())[:limit]
        except NudgerError:
            return [], None
        return [apply_prefs(r, self.rulebook) for r in records], ids

    # --- planning ----------------------------------------------------------------------------
    def plan_context(self, now: datetime, days: int) -> PlanContext:
        expiry = {
            k: self.config.expiry.for_kind(k) for k in ("reminder", "appreciation", "check-in", "campaign", "task")
        }
        pacing = self.config.pacing
        return PlanContext(
            self.rulebook,
            self.policy,
            expiry,
            self.config.default_language,
            now,
            days,
            max_per_day=pacing.max_per_day,
            max_per_week=pacing.max_per_week,
            paused_until=self.paused_until(),
        )

    def paused_until(self) -> date | None:
        """The organisation-wide pause (`nudger pause --until D`), if one is set."""
        value = self.ledger.get_setting("paused_until")
        return date.fromisoformat(value) if value else None

    def pause(self, until: date | None) -> None:
        self.ledger.set_setting("paused_until", until.isoformat() if until else None)
        if until is None:
            log("organisation_resumed")
        else:
            warn("organisation_paused", until=until.isoformat())

    def plan(
        self,
        *,
        days: int | None = None,
        now: datetime | None = None,
        store: bool = True,
        rule_ids: Iterable[str] | None = None,
        tenant_ids: Iterable[str] | None = None,
        explain: bool = False,
    ) -> tuple[list[PlannedNudge], int]:
        """Plan; with `store`, write new nudges into the ledger. Returns (nudges, how many are new)."""
        started = time.monotonic()
        now = (now or self.now()).astimezone(self.config.zone)
        days = days or self.config.schedule.plan_days
        ctx = self.plan_context(now, days)
        tids = list(tenant_ids) if tenant_ids is not None else None
        movable = self.ledger.movable(now, tids)
        ctx.existing = frozenset(self.ledger.live_keys(now) - set(movable))
        ctx.booked = self.ledger.booked(now, tids)
        since = ctx.today - timedelta(days=LOOKBACK_DAYS + 366)
        nudges: list[PlannedNudge] = []
        seen = 0
        with collector_paused():
            for facts in self.fact_batches(ctx.today, tids):  # a batch at a time: memory stays flat
                seen += len(facts)
                events = self.events_by_tenant(since, list(facts))
                nudges.extend(plan(facts, events, ctx, rule_ids=rule_ids, tenant_ids=tids, explain=explain))
        added = moved = 0
        new = [n for n in nudges if n.key not in movable and n.key not in ctx.existing]
        held = self.guard(new, now, days, seen if tids is None else 0, store=store)
        if store:
            added = self.ledger.add_planned([n for n in nudges if n.key not in movable], now, held)
        for n in nudges:  # callers show it; a dry run shows what storing this plan would hold
            if n.key in held:
                n.status, n.reason = "held", held[n.key] if store else f"would be {held[n.key]}"
        if store:
            for n in nudges:
                if n.key in movable and (n.status == "expired" or n.send_at != movable[n.key]):
                    moved += self.ledger.replan(
                        n.key,
                        n.send_at,
                        "expired" if n.status == "expired" else "planned",
                        n.reason or "planned again",
                        now,
                    )
            self.metrics.plan_seconds.observe(time.monotonic() - started)
            log("plan_done", planned=len(nudges), new=added, moved=moved, held=len(held) or None)
        return nudges, added

    def guard(
        self, new: list[PlannedNudge], now: datetime, days: int, seen: int = 0, *, store: bool = False
    ) -> dict[str, str]:
        """The mass-send guard over the nudges about to be stored: {key: why} of those to hold.

        The share is of the tenants in the newest accepted import (or, before any, of the tenants
        this plan looked at); never of zero."""
        book = self.rulebook
        last = self.ledger.last_accepted_import()
        total = max(last.tenants if last is not None else 0, seen) or len(self.ledger.tenant_ids()) or len(new)
        g = self.config.guard
        limits = GuardLimits(
            max_share_per_day=g.max_share_per_day,
            min_tenants_per_day=g.min_tenants_per_day,
            tenants_total=total,
            rule_caps={r.id: r.max_per_day for r in book.rules.values() if r.max_per_day},
            released=self.ledger.released(),
        )
        start = datetime.combine(now.date(), datetime.min.time(), self.config.zone)
        load = self.ledger.day_load(start, start + timedelta(days=days + 60))
        held, holds = mass_holds(new, load, limits, self.config.zone)
        if store:
            for h in holds:
                warn("plan_held", rule=h.rule_id, day=h.day.isoformat(), count=h.held)
        return held

    # dispatch: see nudger/dispatch.py (Dispatching)

    # --- call lists --------------------------------------------------------------------------
    def call_folder(self) -> Path:
        extra = self.config.channels["call"].model_extra or {}
        return Path(extra.get("folder") or self.config.var_path / "calls")

    def contact_since(self, tenant_id: str, day: date) -> bool:
        last = self.ledger.last_contacts([tenant_id]).get(tenant_id)
        return last is not None and last >= day

    def send_call_digests(self, day: date | None = None) -> int:
        """E-mail each officer the day's call list through the email channel. Returns how many went."""
        from channels.calls import read_calls

        day = day or self.today()
        tasks = read_calls(self.call_folder(), day)
        sent = 0
        for key, officer in self.rulebook.officers.items():
            mine = [t for t in tasks if t.officer == key]
            if not mine or not officer.email:
                continue
            lines = [f"Beste {officer.first_name},", "", f"Je belafspraken voor vandaag ({len(mine)}):", ""]
            for t in mine:
                lines += [
                    f"- {t.tenant_name} ({t.tenant_id}), {t.phone or 'geen nummer'}",
                    f"  waarom: {' '.join(t.why.split())}",
                    f"  begin met: {t.opening}",
                    "",
                ]
            lines.append("Zet een gesprek in nudger met: nudger called HUURDER")
            org = self.config.organisation
            message = Message(
                key=f"call-digest:{key}:{day.isoformat()}",
                rule_id="call-digest",
                kind="task",
                channel="email",
                recipient=Recipient(key, officer.name, "nl", email=officer.email),
                signer=Signer("nudger", "nudger", "nudger"),
                subject=f"Belafspraken {day.isoformat()}",
                body="\n".join(lines),
                signature="",
                organisation=org.name,
                organisation_email=org.email,
                created=self.now(),
            )
            try:
                self.channels["email"].send(message)
            except ChannelError as exc:
                warn("call_digest_failed", channel="email", code=exc.code)
                continue
            sent += 1
        log("call_digests_sent", count=sent)
        return sent

    # --- one-offs ----------------------------------------------------------------------------
    def send_rule(
        self, rule_id: str, tenant_ids: list[str] | None, *, dry_run: bool = False
    ) -> tuple[list[PlannedNudge], DispatchReport]:
        """`nudger send`: plan one rule now (idempotently) and dispatch what is due, through every guard."""
        if rule_id not in self.rulebook.rules:
            raise NudgerError(f"there is no rule `{rule_id}`: see `nudger check` for the rule ids")
        nudges, _ = self.plan(days=1, store=not dry_run, rule_ids=[rule_id], tenant_ids=tenant_ids)
        if dry_run:
            return nudges, DispatchReport()
        keys = [n.key for n in nudges]
        return nudges, self.dispatch(keys=keys, limit=max(len(keys), 1))
