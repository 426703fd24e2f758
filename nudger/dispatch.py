"""Dispatch: claim due nudges and hand them to channels through every guard, once.

Never twice (claims are conditional updates; a lost answer is `uncertain`), never stale (the
newest facts, the trigger and the condition are checked again), never at night or late (pacing at
send time), one ask at a time (caps), never from nobody (a signer or it waits), fallback,
retries and rate limits. The Engine mixes this in; the parts it uses (ledger, rulebook, channels,
clock, policy) are the Engine's.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from jinja2.exceptions import TemplateError

from .conditions import build_scope, event_view
from .config import Config
from .errors import ChannelError, UncertainChannelError
from .facts import Facts, TenantRecord
from .ledger import CLAIMED, EXPIRED, FAILED, PLANNED, SENT, UNCERTAIN, Claimed
from .log import log, warn
from .metrics import provider_code
from .pacing import allowed_now, next_slot, parse_windows
from .planner import channel_order, still_fires
from .protocols import Message, Recipient, Signer
from .render import render_text, signature, sms_safe
from .rulebook import Rule
from .tone import sms_segments

LEASE = timedelta(minutes=10)
_LOCKS_LOCK = threading.Lock()


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
    on_outcome: Any = None  # called with each outcome (the daemon's metrics)
    lock: Any = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: str, claimed: Claimed, reason: str = "", channel: str = "") -> None:
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        with self.lock:
            self._add(outcome, claimed, reason, channel)

    def _add(self, outcome: str, claimed: Claimed, reason: str, channel: str) -> None:
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


@dataclass(frozen=True)
class BatchView:
    facts: dict[str, Facts]
    opted: dict[str, set[str]]  # tenant -> channels opted out of ("all" for every channel)
    paused_until: date | None  # the organisation-wide pause


class Dispatching:
    """Dispatch, mixed into the Engine."""

    def _move(self, nudge_id: int, to_state: str, now: datetime, reason: str = "", **fields: Any) -> bool:
        """A state change by this worker: from `claimed` only while the claim is still its own."""
        return self.ledger.move(nudge_id, to_state, now, reason, worker=self.worker, **fields)

    def dead_workers(self) -> set[str]:
        """Claimers on this machine whose process is gone (killed, crashed): their claims need not
        wait for the lease to run out. Workers on other machines are left to their lease."""
        host = socket.gethostname()
        dead = set()
        for worker in self.ledger.claimers():
            name, _, pid = worker.rpartition(":")
            if name != host or not pid.isdigit() or worker == self.worker:
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                dead.add(worker)
            except OSError:
                pass  # alive, under another user
        return dead

    def recover(self) -> tuple[int, int]:
        released, uncertain = self.ledger.recover(self.now(), self.dead_workers())
        if released or uncertain:
            warn("recovered_claims", released=released, uncertain=uncertain)
        return released, uncertain

    def dispatch(self, *, limit: int = 200, keys: Iterable[str] | None = None) -> DispatchReport:
        """Hand every due nudge to its channel, through every guard, once.

        With `schedule.dispatch_threads` above 1, the tenants of a claimed batch are served side by
        side (each tenant's nudges in order, by one thread, so one ask at a time holds); channels
        that are not made for it (SMTP, print, outbox) still send one message at a time.
        """
        report = DispatchReport(on_outcome=lambda outcome: self.metrics.outcomes.labels(outcome).inc())
        self.recover()
        if expired := self.ledger.expire_held(self.now()):
            warn("held_expired", count=expired)
        threads = self.config.schedule.dispatch_threads if self.ledger.concurrent else 1
        if threads > 1:
            self.channels  # noqa: B018 - made once, before the threads share them
        while not self.stop.is_set():
            size = min(limit, max(50, threads * 8))
            batch = self.ledger.claim_due(self.now(), self.worker, limit=size, lease=LEASE, keys=keys)
            if not batch:
                break
            groups: dict[str, list[Claimed]] = {}
            for claimed in batch:
                groups.setdefault(claimed.tenant_id, []).append(claimed)
            view = self.batch_view(list(groups))
            if threads <= 1 or len(groups) == 1:
                self._dispatch_group(batch, report, view)
            else:
                with ThreadPoolExecutor(min(threads, len(groups)), thread_name_prefix="nudger-send") as pool:
                    futures = [pool.submit(self._dispatch_group, g, report, view) for g in groups.values()]
                for future in futures:
                    future.result()  # a failure in a thread fails the run as it would without threads
            limit -= len(batch)
            if limit <= 0:
                break
        return report

    def batch_view(self, tenant_ids: list[str]) -> BatchView:
        """What a claimed batch needs from the store, read once for all its tenants (read just
        after the claim, so still the newest facts). Caps are read per message, at send time."""
        return BatchView(
            self.facts(self.today(), tenant_ids), self.ledger.opted_out_many(tenant_ids), self.paused_until()
        )

    def _dispatch_group(self, group: list[Claimed], report: DispatchReport, view: BatchView | None = None) -> None:
        for claimed in group:
            if self.stop.is_set():  # shutting down: what is not in hand goes back, untouched
                self._move(claimed.id, PLANNED, self.now(), "released at shutdown")
                report.add("released", claimed, "released at shutdown")
                continue
            self.dispatch_one(claimed, report, view)

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
            self._move(c.id, EXPIRED, now, reason)
            report.add("expired", c, reason)
            log("nudge_expired", key=c.key, tenant=c.tenant_id, rule=c.rule_id)
        else:
            reason = f"{why}: moved to {slot.at.astimezone(self.config.zone).isoformat(timespec='minutes')}"
            self._move(c.id, PLANNED, now, reason, send_at=slot.at)
            report.add("moved", c, reason)

    def dispatch_one(self, c: Claimed, report: DispatchReport, view: BatchView | None = None) -> None:
        now = self.now()
        today = now.date()
        view = view or self.batch_view([c.tenant_id])
        book = self.rulebook
        rule = book.rules.get(c.rule_id)
        if rule is None or not rule.enabled:
            why = "the rule was removed from the rulebook" if rule is None else "the rule was switched off"
            self._move(c.id, "cancelled", now, why)
            report.add("cancelled", c, why)
            return
        if now >= c.expires_at:
            why = "expired before it could be sent"
            self._move(c.id, EXPIRED, now, why)
            report.add("expired", c, why)
            return
        facts = view.facts.get(c.tenant_id)
        if facts is None:
            why = "the tenant is no longer in the data"
            self._move(c.id, "cancelled", now, why)
            report.add("cancelled", c, why)
            return
        record = facts.record
        windows = [rule.windows, parse_windows(list(record.window)) if record.window else ()]
        org_pause = view.paused_until
        for until, who in ((org_pause, "the organisation paused all messages"), (record.pause_until, "the tenant")):
            if until is not None and today <= until:
                why = f"paused until {until.isoformat()}" + (f" ({who})" if until is org_pause else "")
                self._reschedule(c, report, now, now, why, windows, blocked_until=until)
                return
        if not still_fires(rule, facts, c.occurrence):
            why = f"no longer due: {rule.trigger.describe()} does not hold on the newest data"
            self._move(c.id, "cancelled", now, why)
            report.add("cancelled", c, why)
            return
        if rule.during_arrangement == "skip" and facts.arrangement:
            why = "a payment arrangement is active"
            self._move(c.id, "cancelled", now, why)
            report.add("cancelled", c, why)
            return
        language = self.config.language(record.language)
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
                self._move(c.id, "cancelled", now, why)
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
        self._send(c, rule, facts, signer, language, scope, report, view.opted.get(c.tenant_id, set()))

    def _capped(self, tenant_id: str, now: datetime) -> str:
        p = self.config.pacing
        sent = self.ledger.sent_times(tenant_id, now - timedelta(days=7))
        midnight = self.policy.local_midnight(now.date())
        if sum(1 for t in sent if t >= midnight) >= p.max_per_day:
            return f"one ask at a time: already {p.max_per_day} message(s) today"
        if len(sent) >= p.max_per_week:
            return f"one ask at a time: already {p.max_per_week} message(s) in 7 days"
        return ""

    def candidate_channels(
        self, rule: Rule, facts: Facts, tried: Iterable[str], opted: set[str] | None = None
    ) -> tuple[list[str], list[str]]:
        """The channels to try in order, and why each other one was passed over."""
        from .contact import why_unreachable

        recipient = recipient_of(facts.record, self.config)
        if opted is None:
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
            locale=locale,
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
        opted: set[str] | None = None,
    ) -> None:
        ledger = self.ledger
        tried = list(c.tried_channels)
        reasons: list[str] = []
        usable, skipped = self.candidate_channels(rule, facts, tried, opted)
        reasons.extend(skipped)
        for name in usable:
            now = self.now()
            try:
                message = self.build_message(c.key, rule, facts, signer, language, scope, name, now)
            except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
                why = f"the text could not be rendered for {name} ({type(exc).__name__}): run nudger check"
                self._move(c.id, FAILED, now, why)
                report.add("failed", c, why, name)
                warn("render_failed", key=c.key, rule=c.rule_id)
                return
            self.limiter(name).wait()
            if not ledger.mark_sending(c.id, self.now(), name, self.worker, LEASE):
                # the claim ran out while earlier messages of the batch were slow: another worker
                # may have it now. Not sending is the only way to be sure it never goes twice.
                report.add("released", c, "the claim ran out before it could be handed over", name)
                warn("claim_lost", key=c.key, channel=name)
                return
            try:
                receipt = self._hand_over(name, message)
            except UncertainChannelError as exc:
                why = f"{name}: {exc.reason}; it may or may not have gone, so it is never resent"
                self._move(c.id, UNCERTAIN, self.now(), why, channel=name, attempts=c.attempts + 1)
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
                self._move(
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
            recorded = self._move(
                c.id,
                SENT,
                self.now(),
                f"sent by {name}, {signed}",
                channel=name,
                expect=(CLAIMED, UNCERTAIN),  # a send that outlived its lease was marked uncertain: it went
                receipt=receipt.id[:300],
                sent_at=self.now(),
                attempts=c.attempts + 1,
                segments=sms_segments(sms_safe(message.text)).count if name == "sms" else None,
            )
            if not recorded:
                warn("sent_not_recorded", key=c.key, channel=name)
            report.add("sent", c, "", name)
            log("nudge_sent", key=c.key, tenant=c.tenant_id, rule=c.rule_id, channel=name)
            return
        why = "no channel left: " + ("; ".join(reasons) if reasons else "the tenant has no channel")
        self._move(c.id, FAILED, self.now(), why, tried_channels=tried)
        report.add("failed", c, why)
        log("nudge_failed", key=c.key, tenant=c.tenant_id, rule=c.rule_id)

    def _hand_over(self, name: str, message: Message) -> Any:
        """The channel's send, measured: latency per channel, errors per provider code."""
        channel = self.channels[name]
        started = time.monotonic()
        try:
            if getattr(channel, "concurrent", False):
                return channel.send(message)
            with self._send_lock(name):
                return channel.send(message)
        except ChannelError as exc:
            self.metrics.provider_errors.labels(name, provider_code(exc)).inc()
            raise
        finally:
            self.metrics.send_seconds.labels(name).observe(time.monotonic() - started)

    def _send_lock(self, name: str) -> threading.Lock:
        with _LOCKS_LOCK:
            return self.__dict__.setdefault("_send_locks", {}).setdefault(name, threading.Lock())

    def _retry(self, c: Claimed, channel: str, exc: ChannelError, report: DispatchReport, now: datetime) -> None:
        r = self.config.retry
        attempt = c.attempts + 1
        delay = exc.retry_after or min(r.max_seconds, r.base_seconds * (2 ** (attempt - 1)))
        delay *= random.uniform(1.0, 1.25)  # jitter, so retries do not come in waves
        at = now + timedelta(seconds=delay)
        if attempt >= r.max_attempts or at >= c.expires_at:
            why = f"{channel}: {exc.reason}; gave up after {attempt} attempt(s)"
            self._move(c.id, FAILED, now, why, channel=channel, attempts=attempt)
            report.add("failed", c, why, channel)
            return
        why = f"{channel}: {exc.reason} (temporary); retry {attempt + 1} at {at.astimezone(self.config.zone):%H:%M:%S}"
        self._move(c.id, PLANNED, now, why, channel=channel, attempts=attempt, send_at=at)
        report.add("retry", c, why, channel)
        log("nudge_retry", key=c.key, channel=channel, attempt=attempt, code=exc.code)


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
