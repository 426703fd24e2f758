"""The engine: import, plan and dispatch, wired to the ledger, the rulebook and the channels.

The CLI and the daemon call this; the logic it uses (facts, planner, pacing, render) stays pure.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError

from .conditions import build_scope, event_view
from .config import Config
from .contact import mobile_e164
from .data import ImportData, check_bad_share, read_source
from .errors import ChannelError, ImportRefused, NudgerError, UncertainChannelError
from .facts import Facts, TenantRecord, derive_events
from .ledger import CLAIMED, EXPIRED, FAILED, PLANNED, SENT, UNCERTAIN, Claimed, Ledger
from .log import log, warn
from .pacing import allowed_now, next_slot, parse_windows, policy_from_config
from .planner import LOOKBACK_DAYS, EventFact, PlanContext, PlannedNudge, channel_order, plan, still_fires
from .protocols import Channel, Message, Recipient, Signer
from .ratelimit import RateLimiter
from .render import render_text, signature, sms_safe
from .rulebook import Rule, Rulebook, load_rulebook
from .tone import sms_segments

Clock = Callable[[], datetime]
LEASE = timedelta(minutes=10)


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


@dataclass
class DispatchReport:
    sent: int = 0
    failed: int = 0
    expired: int = 0
    cancelled: int = 0
    moved: int = 0
    retry: int = 0
    released: int = 0
    uncertain: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)

    def add(self, outcome: str, claimed: Claimed, reason: str = "", channel: str = "") -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        self.results.append(
            {
                "key": claimed.key,
                "tenant": claimed.tenant_id,
                "rule": claimed.rule_id,
                "outcome": outcome,
                "channel": channel,
                "reason": reason,
            }
        )


class Engine:
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

    def limiter(self, channel: str) -> RateLimiter:
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
                    "tenants really left"
                )
            check_bad_share(data, self.config.data.max_bad_share)
        except ImportRefused as exc:
            ledger.record_import(at=now, day=today, source=self.config.data.source, status="refused", reason=str(exc))
            warn("import_refused", reason="see nudger import output")
            raise
        stored = ledger.tenant_summaries()
        changed: list[tuple[str, str, str, str]] = []
        events: list[dict[str, Any]] = []
        for tid, record in data.records.items():
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
        import_id = ledger.record_import(
            at=now,
            day=today,
            source=data.source,
            status="accepted",
            tenants=len(data.records),
            payments=data.payment_rows,
            rows_skipped=len(data.problems),
            events=len(events),
        )
        ledger.save_tenants(import_id, today, changed, set(data.records), known=set(stored))
        added = ledger.add_events(events, now)
        officers = self.rulebook.officers
        notes = list(data.notes)
        unknown = sorted({r.officer for r in data.records.values() if r.officer not in officers})
        if unknown:
            notes.append(
                f"officer(s) {', '.join(unknown)} in the data are not in officers.yaml: "
                "their tenants' messages wait until they are added"
            )
        missing = sorted(set(self.rulebook.prefs) - set(data.records))
        if missing:
            notes.append(f"tenants.yaml names {len(missing)} tenant(s) not in the data: {', '.join(missing[:5])}")
        log(
            "import_done",
            import_id=import_id,
            tenants=len(data.records),
            payments=data.payment_rows,
            rows_skipped=len(data.problems),
            events=added,
        )
        return ImportReport(
            import_id, len(data.records), data.payment_rows, len(changed), added, [str(p) for p in data.problems], notes
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
        now = (now or self.now()).astimezone(self.config.zone)
        days = days or self.config.schedule.plan_days
        ctx = self.plan_context(now, days)
        tids = list(tenant_ids) if tenant_ids is not None else None
        movable = self.ledger.movable(now, tids)
        ctx.existing = frozenset(self.ledger.live_keys(now) - set(movable))
        ctx.booked = self.ledger.booked(now, tids)
        facts = self.facts(ctx.today, tids)
        events = self.events_by_tenant(ctx.today - timedelta(days=LOOKBACK_DAYS + 366), tids)
        nudges = plan(facts, events, ctx, rule_ids=rule_ids, tenant_ids=tids, explain=explain)
        added = moved = 0
        if store:
            added = self.ledger.add_planned([n for n in nudges if n.key not in movable], now)
            for n in nudges:
                if n.key in movable and (n.status == "expired" or n.send_at != movable[n.key]):
                    moved += self.ledger.replan(
                        n.key,
                        n.send_at,
                        "expired" if n.status == "expired" else "planned",
                        n.reason or "planned again",
                        now,
                    )
            log("plan_done", planned=len(nudges), new=added, moved=moved)
        return nudges, added

    # --- dispatch ----------------------------------------------------------------------------
    def recover(self, *, everything: bool = False) -> tuple[int, int]:
        released, uncertain = self.ledger.recover(self.now(), everything=everything)
        if released or uncertain:
            warn("recovered_claims", released=released, uncertain=uncertain)
        return released, uncertain

    def dispatch(self, *, limit: int = 200, keys: Iterable[str] | None = None) -> DispatchReport:
        """Hand every due nudge to its channel, through every guard, once."""
        report = DispatchReport()
        self.ledger.recover(self.now())
        while not self.stop.is_set():
            batch = self.ledger.claim_due(self.now(), self.worker, limit=min(limit, 50), lease=LEASE, keys=keys)
            if not batch:
                break
            for i, claimed in enumerate(batch):
                if self.stop.is_set():
                    for rest in batch[i:]:
                        self.ledger.move(rest.id, PLANNED, self.now(), "released at shutdown")
                        report.add("released", rest, "released at shutdown")
                    break
                self.dispatch_one(claimed, report)
            limit -= len(batch)
            if limit <= 0:
                break
        return report

    def _reschedule(
        self,
        c: Claimed,
        report: DispatchReport,
        now: datetime,
        earliest: datetime,
        why: str,
        windows=(),
        blocked_until: date | None = None,
    ) -> None:
        slot = next_slot(earliest, c.expires_at, self.policy, windows, blocked_until=blocked_until)
        if slot.at is None:
            reason = f"{why}; {slot.reason}"
            self.ledger.move(c.id, EXPIRED, now, reason)
            report.add("expired", c, reason)
            log("nudge_expired", key=c.key, tenant=c.tenant_id, rule=c.rule_id)
        else:
            reason = f"{why}: moved to {slot.at.astimezone(self.config.zone).isoformat(timespec='minutes')}"
            self.ledger.move(c.id, PLANNED, now, reason, send_at=slot.at)
            report.add("moved", c, reason)

    def dispatch_one(self, c: Claimed, report: DispatchReport) -> None:
        now = self.now()
        today = now.date()
        ledger = self.ledger
        book = self.rulebook
        rule = book.rules.get(c.rule_id)
        if rule is None or not rule.enabled:
            why = "the rule was removed from the rulebook" if rule is None else "the rule was switched off"
            ledger.move(c.id, "cancelled", now, why)
            report.add("cancelled", c, why)
            return
        if now >= c.expires_at:
            why = "expired before it could be sent"
            ledger.move(c.id, EXPIRED, now, why)
            report.add("expired", c, why)
            return
        facts = self.facts(today, [c.tenant_id]).get(c.tenant_id)
        if facts is None:
            why = "the tenant is no longer in the data"
            ledger.move(c.id, "cancelled", now, why)
            report.add("cancelled", c, why)
            return
        record = facts.record
        windows = [rule.windows, parse_windows(list(record.window)) if record.window else ()]
        org_pause = self.paused_until()
        for until, who in ((org_pause, "the organisation paused all messages"), (record.pause_until, "the tenant")):
            if until is not None and today <= until:
                why = f"paused until {until.isoformat()}" + (f" ({who})" if until is org_pause else "")
                self._reschedule(c, report, now, now, why, windows, blocked_until=until)
                return
        if not still_fires(rule, facts, c.occurrence):
            why = f"no longer due: {rule.trigger.describe()} does not hold on the newest data"
            ledger.move(c.id, "cancelled", now, why)
            report.add("cancelled", c, why)
            return
        if rule.during_arrangement == "skip" and facts.arrangement:
            why = "a payment arrangement is active"
            ledger.move(c.id, "cancelled", now, why)
            report.add("cancelled", c, why)
            return
        language = record.language if record.language in self.config.locales else self.config.default_language
        signer = book.signer(record.officer, today)
        event = _event_from_occurrence(c.occurrence) if rule.trigger.kind == "on" else None
        scope = build_scope(facts, signer, language, event)
        if rule.condition is not None:
            try:
                holds = rule.condition(scope)
            except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
                holds, why = False, f"the condition could not be evaluated ({type(exc).__name__})"
            else:
                why = "the condition no longer holds (the facts changed since it was planned)"
            if not holds:
                ledger.move(c.id, "cancelled", now, why)
                report.add("cancelled", c, why)
                return
        if not allowed_now(now, self.policy, windows):
            self._reschedule(c, report, now, now, "outside the allowed hours", windows)
            return
        if rule.tenant_facing:
            cap_reason = self._capped(c.tenant_id, now)
            if cap_reason:
                tomorrow = self.policy.local_midnight(today + timedelta(days=1))
                self._reschedule(c, report, now, tomorrow, cap_reason, windows)
                return
        if signer is None:
            tomorrow = self.policy.local_midnight(today + timedelta(days=1))
            self._reschedule(c, report, now, tomorrow, "nobody can sign today (officer and backups away)", windows)
            return
        self._send(c, rule, facts, signer, language, scope, report)

    def _capped(self, tenant_id: str, now: datetime) -> str:
        p = self.config.pacing
        sent = self.ledger.sent_times(tenant_id, now - timedelta(days=7))
        midnight = self.policy.local_midnight(now.date())
        if sum(1 for t in sent if t >= midnight) >= p.max_per_day:
            return f"one ask at a time: already {p.max_per_day} message(s) today"
        if len(sent) >= p.max_per_week:
            return f"one ask at a time: already {p.max_per_week} message(s) in 7 days"
        return ""

    def candidate_channels(self, rule: Rule, facts: Facts, tried: Iterable[str]) -> tuple[list[str], list[str]]:
        """The channels to try in order, and why each other one was passed over."""
        from .contact import why_unreachable

        recipient = recipient_of(facts.record, self.config)
        opted = self.ledger.opted_out(facts.record.tenant_id)
        usable, skipped = [], []
        for name in channel_order(rule, facts):
            channel = self.channels.get(name)
            if name in tried:
                continue
            if channel is None:
                skipped.append(f"{name}: not configured")
            elif name in opted or "all" in opted:
                skipped.append(f"{name}: the tenant opted out")
            elif name == "whatsapp" and not rule.whatsapp_template and not self.in_whatsapp_session(facts, self.now()):
                skipped.append("whatsapp: the rule names no approved template")
            elif (why := why_unreachable(recipient, channel.needs)) is not None:
                skipped.append(f"{name}: {why}")
            else:
                usable.append(name)
        return usable, skipped

    def build_message(
        self,
        c_key: str,
        rule: Rule,
        facts: Facts,
        signer: Any,
        language: str,
        scope: dict[str, Any],
        channel: str,
        now: datetime,
    ) -> Message:
        default = self.config.default_language
        template, lang = rule.template(channel, language, default)
        locale = self.config.locale_for(lang)
        body = render_text(template, scope, locale)
        subject_t = rule.subject(lang, default)
        subject = render_text(subject_t, scope, locale) if subject_t is not None else ""
        officer = scope["officer"]
        org = self.config.organisation
        sig = signature(officer, channel, lang, org.name, card=rule.card)
        tmpl_sid, variables = "", {}
        if channel == "whatsapp" and rule.whatsapp_template and not self.in_whatsapp_session(facts, now):
            tmpl = self.config.whatsapp_templates[rule.whatsapp_template]
            tmpl_sid = tmpl.content_sid
            full = f"{body}\n\n{sig}"
            values = {"text": full, "first_name": facts.record.first_name, "officer": officer["first_name"]}
            variables = {k: values.get(v, "") for k, v in tmpl.variables.items()}
        return Message(
            key=c_key,
            rule_id=rule.id,
            kind=rule.kind,
            channel=channel,
            recipient=recipient_of(facts.record, self.config),
            signer=Signer(signer.key, signer.name, signer.first_name, officer["role"], signer.phone, signer.email),
            subject=subject,
            body=body,
            signature=sig,
            organisation=org.name,
            organisation_email=org.email,
            return_address=org.return_address,
            card=rule.card,
            created=now,
            template_sid=tmpl_sid,
            template_variables=variables,
            opening=opening_line(facts, officer, org.name, lang) if channel == "call" else "",
        )

    def in_whatsapp_session(self, facts: Facts, now: datetime) -> bool:
        """Inside the 24 hours after the tenant's last WhatsApp message free text may go (no template)."""
        last = self.ledger.last_inbound(facts.record.tenant_id, "whatsapp")
        return last is not None and now - last < timedelta(hours=24)

    def _send(
        self,
        c: Claimed,
        rule: Rule,
        facts: Facts,
        signer: Any,
        language: str,
        scope: dict[str, Any],
        report: DispatchReport,
    ) -> None:
        ledger = self.ledger
        tried = list(c.tried_channels)
        reasons: list[str] = []
        usable, skipped = self.candidate_channels(rule, facts, tried)
        reasons.extend(skipped)
        for name in usable:
            now = self.now()
            try:
                message = self.build_message(c.key, rule, facts, signer, language, scope, name, now)
            except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
                why = f"the text could not be rendered for {name} ({type(exc).__name__}): run nudger check"
                ledger.move(c.id, FAILED, now, why)
                report.add("failed", c, why, name)
                warn("render_failed", key=c.key, rule=c.rule_id)
                return
            self.limiter(name).wait()
            ledger.mark_sending(c.id, now, name)
            try:
                receipt = self.channels[name].send(message)
            except UncertainChannelError as exc:
                why = f"{name}: {exc.reason}; it may or may not have gone, so it is never resent"
                ledger.move(c.id, UNCERTAIN, self.now(), why, channel=name, attempts=c.attempts + 1)
                report.add("uncertain", c, why, name)
                warn("nudge_uncertain", key=c.key, channel=name, code=exc.code)
                return
            except ChannelError as exc:
                now = self.now()
                if exc.temporary:
                    self._retry(c, name, exc, report, now)
                    return
                tried.append(name)
                reasons.append(f"{name}: {exc.reason}")
                if exc.code == "21610":  # the tenant sent STOP to the provider: respect it here too
                    ledger.opt_out(c.tenant_id, name, now, "provider")
                ledger.move(
                    c.id,
                    CLAIMED,
                    now,
                    f"{name} failed: {exc.reason}; trying the next channel",
                    channel=name,
                    tried_channels=list(tried),
                    send_started_at=None,
                )
                warn("channel_failed", key=c.key, channel=name, code=exc.code)
                continue
            signed = f"signed by {signer.key}" + (
                f" (backup of {facts.record.officer})" if signer.key != facts.record.officer else ""
            )
            ledger.move(
                c.id,
                SENT,
                self.now(),
                f"sent by {name}, {signed}",
                channel=name,
                receipt=receipt.id[:300],
                sent_at=self.now(),
                attempts=c.attempts + 1,
                segments=sms_segments(sms_safe(message.text)).count if name == "sms" else None,
            )
            report.add("sent", c, "", name)
            log("nudge_sent", key=c.key, tenant=c.tenant_id, rule=c.rule_id, channel=name)
            return
        why = "no channel left: " + ("; ".join(reasons) if reasons else "the tenant has no channel")
        ledger.move(c.id, FAILED, self.now(), why, tried_channels=tried)
        report.add("failed", c, why)
        log("nudge_failed", key=c.key, tenant=c.tenant_id, rule=c.rule_id)

    def _retry(self, c: Claimed, channel: str, exc: ChannelError, report: DispatchReport, now: datetime) -> None:
        r = self.config.retry
        attempt = c.attempts + 1
        delay = exc.retry_after or min(r.max_seconds, r.base_seconds * (2 ** (attempt - 1)))
        delay *= random.uniform(1.0, 1.25)  # jitter, so retries do not come in waves
        at = now + timedelta(seconds=delay)
        if attempt >= r.max_attempts or at >= c.expires_at:
            why = f"{channel}: {exc.reason}; gave up after {attempt} attempt(s)"
            self.ledger.move(c.id, FAILED, now, why, channel=channel, attempts=attempt)
            report.add("failed", c, why, channel)
            return
        why = f"{channel}: {exc.reason} (temporary); retry {attempt + 1} at {at.astimezone(self.config.zone):%H:%M:%S}"
        self.ledger.move(c.id, PLANNED, now, why, channel=channel, attempts=attempt, send_at=at)
        report.add("retry", c, why, channel)
        log("nudge_retry", key=c.key, channel=channel, attempt=attempt, code=exc.code)

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


_OPENINGS = {
    "nl": "Dag {first}, u spreekt met {officer} van {org}. Ik bel even om te horen hoe het met u gaat.",
    "en": "Hello {first}, this is {officer} from {org}. I am calling to hear how you are doing.",
}


def opening_line(facts: Facts, officer: dict[str, Any], organisation: str, language: str) -> str:
    """A suggested first sentence for a call: friendly, from a person, no reproach."""
    text = _OPENINGS.get(facts.record.language or language, _OPENINGS["nl"])
    return text.format(first=facts.record.first_name, officer=officer.get("first_name", ""), org=organisation)


def _event_from_occurrence(occurrence: str) -> dict[str, Any] | None:
    """`contact_made@2026-11-30#3` -> the event view a text may use."""
    try:
        name, rest = occurrence.split("@", 1)
        day_text, _, count = rest.partition("#")
        return event_view(name, date.fromisoformat(day_text), int(count) if count else None)
    except ValueError:
        return None


def recipient_of(record: TenantRecord, config: Config) -> Recipient:
    city_line = f"{record.postcode}  {record.city.upper()}".strip()
    street_line = f"{record.street} {record.house_number}".strip()
    address = (record.name, street_line, city_line) if record.street and record.city else ()
    return Recipient(
        record.tenant_id,
        record.name,
        record.language or config.default_language,
        record.phone,
        record.email,
        record.whatsapp_opt_in,
        address,
    )
