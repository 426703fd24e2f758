"""`nudger preview`: one message exactly as it would go out, with what the engine decided about it."""

from __future__ import annotations

from datetime import timedelta

from .conditions import build_scope
from .errors import NudgerError
from .planner import LOOKBACK_DAYS, occurrences


def preview_text(engine, rule_id: str, tenant_id: str, channel: str | None) -> str:
    from channels.formats import (
        build_email,
        call_task_text,
        letter_text,
        sms_request,
        whatsapp_request,
    )

    book = engine.rulebook
    rule = book.rules[rule_id]
    now = engine.now()
    today = now.date()
    facts = engine.facts(today, [tenant_id]).get(tenant_id)
    if facts is None:
        raise NudgerError(f"tenant {tenant_id} is not in the data: check the id")
    record = facts.record
    language = engine.config.language(record.language)
    signer = book.signer(record.officer, today)
    if signer is None:
        raise NudgerError(
            f"nobody can sign for {tenant_id} on {today} (officer `{record.officer}` and backups "
            "are away or unknown): the message would wait"
        )
    notes: list[str] = []
    event = None
    if rule.trigger.kind == "on":
        from .conditions import event_view

        event = event_view(rule.trigger.event, today, rule.trigger.count)
        notes.append(f"shown as if {rule.trigger.event} happened today")
    scope = build_scope(facts, signer, language, event)
    if rule.condition is not None and not rule.condition(scope):
        notes.append(f"the condition `{rule.condition.source}` does not hold for this tenant today")
    ctx = engine.plan_context(now, 30)
    events = engine.events_by_tenant(today - timedelta(days=LOOKBACK_DAYS), [tenant_id]).get(tenant_id, [])
    if rule.trigger.kind != "on" and not occurrences(rule, facts, events, ctx):
        notes.append(f"the trigger ({rule.trigger.describe()}) does not fire for this tenant in the next 30 days")
    if channel is None:
        usable, skipped = engine.candidate_channels(rule, facts, ())
        if not usable:
            raise NudgerError(f"{tenant_id} cannot be reached for {rule_id}: " + "; ".join(skipped))
        channel = usable[0]
        notes.extend(f"passed over {s}" for s in skipped)
    message = engine.build_message(f"{rule_id}:{tenant_id}:preview", rule, facts, signer, language, scope, channel, now)
    if channel == "email":
        body = bytes(build_email(message)).decode("utf-8", "replace")
        body = body.split("\n--", 1)[0] + "\n\n" + message.text  # headers, then the plain text part
    elif channel == "sms":
        body = sms_request(message)["Body"]
    elif channel == "whatsapp":
        fields = whatsapp_request(message)
        body = f"template {fields.get('ContentSid', '(none)')} with:\n{message.text}"
    elif channel == "print":
        body = letter_text(message)
    else:
        body = call_task_text(message)
    from .render import VARIANT_FOR_CHANNEL
    from .tone import Sample, judge, words_for

    _, used_lang = rule.template(channel, language, engine.config.default_language)
    variant = VARIANT_FOR_CHANNEL.get(channel, "text")
    if used_lang not in rule.sources.get(variant, {}):
        variant = "text"
    sms_text = sms_request(message)["Body"] if channel == "sms" else ""
    line = rule.lines.get((variant, used_lang), rule.line)
    sample = Sample(
        rule, used_lang, channel, variant, line, tenant_id, message.body, message.subject, message.signature, sms_text
    )
    report = judge(sample, engine.config, words_for(engine.config))
    read = report.readability
    formula = "Flesch" if used_lang == "en" else "Flesch-Douma"
    floor = engine.config.tone.readability_floor.get(used_lang, 60)
    measures = [
        f"readability: {read.score:.0f} ({formula}, floor {floor:.0f}); "
        f"words per sentence: {', '.join(str(n) for n in read.sentence_lengths)}"
    ]
    if report.segments is not None:
        seg = report.segments
        forced = f"; `{seg.forced_by}` needs UCS-2" if seg.forced_by else ""
        measures.append(f"sms: {seg.count} segment(s), {seg.units} {seg.encoding} characters{forced}")
    measures += [f"{f.level}: {f.message}: {f.fix}" for f in report.findings]
    head = [
        f"rule: {rule_id} ({rule.kind})   tenant: {tenant_id}   channel: {channel}   language: {language}",
        f"signed by: {signer.name}" + (" (backup)" if signer.key != record.officer else ""),
    ]
    head += [f"note: {n}" for n in notes] + measures
    return "\n".join(head) + "\n" + "-" * 72 + "\n" + body.rstrip() + "\n" + "-" * 72
