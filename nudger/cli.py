"""The command line: thin; every command reads config.yaml (or --config) and calls the engine."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from .config import Config, load_config
from .errors import NudgerError, RulebookError
from .pacing import to_local


class Ctx:
    def __init__(self, config_path: str | None):
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def engine(self, clock: Callable[[], datetime] | None = None, *, dry: bool = False, **kwargs: Any):
        """The engine. `dry`: a look that must change nothing, so a missing store is not created."""
        from .engine import Engine, system_clock
        from .ledger import Ledger, sqlite_path

        path = sqlite_path(self.config.store_url)
        if dry and path is not None and not path.exists():
            kwargs.setdefault("ledger", Ledger("sqlite://"))  # in memory: empty, and gone afterwards
        return Engine(self.config, clock=clock or system_clock, **kwargs)


pass_ctx = click.make_pass_decorator(Ctx)


def _fixed_clock(config: Config, day: date | None, moment: datetime | None) -> Callable[[], datetime] | None:
    if moment is not None:
        at = moment if moment.tzinfo else moment.replace(tzinfo=config.zone)
        return lambda: at
    if day is not None:
        at = to_local(day, time(0), config.zone)
        return lambda: at
    return None


DATE = click.DateTime(formats=["%Y-%m-%d"])
MOMENT = click.DateTime(formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"])


def _day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _local(dt: datetime | None, config: Config) -> str:
    return dt.astimezone(config.zone).strftime("%Y-%m-%d %H:%M") if dt else "-"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="config file (default: ./config.yaml)",
)
@click.version_option(package_name="nudger")
@click.pass_context
def cli(click_ctx: click.Context, config_path: str | None) -> None:
    """nudger: friendly, person-signed reminders for tenants of housing corporations.

    \b
    A first walk through the shipped example:
      nudger check                      # is the rulebook sound?
      nudger plan --date 2026-11-30     # who gets what, when (changes nothing)
      nudger preview rent-reminder T-1001 --date 2026-11-30
      nudger run --once --now 2026-11-30T10:00
      nudger history T-1001
    """
    click_ctx.obj = Ctx(config_path)


# --- check -------------------------------------------------------------------------------------


@cli.command()
@click.option("--strict", is_flag=True, help="warnings fail too (exit 1)")
@click.option("--json", "as_json", is_flag=True, help="print the findings as JSON")
@pass_ctx
def check(ctx: Ctx, strict: bool, as_json: bool) -> None:
    """Check the rulebook: every rule, officer and preference, and every text.

    Prints one line per finding, `file:line: error|warning: what is wrong: what to do`.
    Exits 1 on errors (and with --strict on warnings), else 0.

    \b
    Example:
      nudger check --strict
    """
    from .rulebook import load_rulebook
    from .tone import check_all

    engine = ctx.engine(dry=True)
    try:
        try:
            engine.rulebook = load_rulebook(ctx.config)
            records, ids = engine.data_sample()
        except RulebookError:
            records, ids = [], None
        book, findings = check_all(ctx.config, engine.today(), records, ids)
    finally:
        engine.close()
    errors = sum(1 for f in findings if f.level == "error")
    warnings = len(findings) - errors
    if as_json:
        _echo_json(
            {
                "rules": len(book.rules) if book else 0,
                "errors": errors,
                "warnings": warnings,
                "findings": [f.as_dict() for f in findings],
            }
        )
    else:
        current = None
        for f in sorted(findings, key=lambda f: (f.rule, f.file, f.line)):
            if f.rule != current:
                current = f.rule
                click.echo(f"[{f.rule or 'rulebook'}]")
            click.echo(f"  {f}")
        n = len(book.rules) if book else 0
        click.echo(f"{n} rules, {errors} error(s), {warnings} warning(s)")
    if errors or (strict and warnings):
        sys.exit(1)


# --- schema ------------------------------------------------------------------------------------


@cli.command()
@click.option("--kind", type=click.Choice(["rule", "officers", "tenants"]), default="rule", show_default=True)
@click.option(
    "--write",
    "write_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="write all three schemas into this folder instead",
)
def schema(kind: str, write_dir: str | None) -> None:
    """Print the JSON Schema of the rule files (for editors that check YAML as you type).

    \b
    Example:
      nudger schema > schema/rule.schema.json
      nudger schema --write schema
    """
    from .rulebook import json_schemas

    schemas = json_schemas()
    if write_dir:
        folder = Path(write_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in schemas.items():
            (folder / f"{name}.schema.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        click.echo(f"wrote {len(schemas)} schemas to {folder}")
        return
    click.echo(json.dumps(schemas[kind], indent=2, ensure_ascii=False))


# --- import ------------------------------------------------------------------------------------


@cli.command("import")
@click.option("--date", "day", type=DATE, default=None, help="import as of this day (YYYY-MM-DD)")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def import_cmd(ctx: Ctx, day: datetime | None, as_json: bool) -> None:
    """Import the tenant data (config `data:`) and record the events it shows.

    Bad rows are listed with their line and skipped; a broken or truncated file is refused whole.

    \b
    Example:
      nudger import
    """
    engine = ctx.engine(_fixed_clock(ctx.config, _day(day), None))
    try:
        report = engine.import_data()
    finally:
        engine.close()
    if as_json:
        _echo_json(report.__dict__)
        return
    for p in report.problems:
        click.echo(f"skipped: {p}")
    for n in report.notes:
        click.echo(f"note: {n}")
    click.echo(
        f"imported {report.tenants} tenants and {report.payments} payments "
        f"({report.changed} changed, {report.events} new events, {len(report.problems)} rows skipped)"
    )


# --- plan --------------------------------------------------------------------------------------


@cli.command()
@click.option("--date", "day", type=DATE, default=None, help="plan as of this day (default: today)")
@click.option("--days", type=click.IntRange(1, 366), default=None, help="how many days ahead (default: config)")
@click.option("--rule", "rule_ids", multiple=True, help="only this rule (repeatable)")
@click.option("--tenant", "tenant_ids", multiple=True, help="only this tenant (repeatable); also shows what is skipped")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def plan(
    ctx: Ctx,
    day: datetime | None,
    days: int | None,
    rule_ids: tuple[str, ...],
    tenant_ids: tuple[str, ...],
    as_json: bool,
) -> None:
    """Show who gets what, when, through which channel: a dry run that changes nothing.

    \b
    Example:
      nudger plan --date 2026-11-30 --days 14
      nudger plan --tenant T-1001 --json
    """
    engine = ctx.engine(_fixed_clock(ctx.config, _day(day), None), dry=True)
    try:
        _check_ids(engine, rule_ids)
        nudges, _ = engine.plan(
            days=days, store=False, rule_ids=rule_ids or None, tenant_ids=tenant_ids or None, explain=bool(tenant_ids)
        )
        states = {n.key: n for n in engine.ledger.nudges(tenant_id=tenant_ids[0])} if len(tenant_ids) == 1 else {}
        known = engine.ledger.existing_keys(n.key for n in nudges)
    finally:
        engine.close()
    rows = []
    for n in nudges:
        d = n.as_dict()
        if n.key in known:
            d["ledger"] = states[n.key].state if n.key in states else "already in the ledger"
        rows.append(d)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("nothing to plan in this period")
        return
    click.echo(f"{'send at':16}  {'tenant':8}  {'rule':24} {'channel':8} {'status':8} reason")
    for n, d in zip(nudges, rows, strict=True):
        reason = n.reason + (f" [{d['ledger']}]" if "ledger" in d else "")
        click.echo(
            f"{_local(n.send_at, ctx.config):16}  {n.tenant_id:8}  {n.rule_id:24} {n.channel:8} {n.status:8} {reason}"
        )
    planned = sum(1 for n in nudges if n.status == "planned")
    click.echo(f"{planned} planned, {len(nudges) - planned} not (see status and reason)")


def _check_ids(engine: Any, rule_ids: tuple[str, ...]) -> None:
    for rid in rule_ids:
        if rid not in engine.rulebook.rules:
            import difflib

            close = difflib.get_close_matches(rid, list(engine.rulebook.rules), n=1)
            hint = f": did you mean `{close[0]}`?" if close else ": see `nudger check` for the rule ids"
            raise NudgerError(f"there is no rule `{rid}`{hint}")


# --- preview -----------------------------------------------------------------------------------


@cli.command()
@click.argument("rule_id")
@click.argument("tenant_id")
@click.option(
    "--channel",
    type=click.Choice(["sms", "whatsapp", "email", "print", "call"]),
    default=None,
    help="show it for this channel (default: the first the tenant can get)",
)
@click.option("--date", "day", type=DATE, default=None, help="as of this day (default: today)")
@pass_ctx
def preview(ctx: Ctx, rule_id: str, tenant_id: str, channel: str | None, day: datetime | None) -> None:
    """Print a message exactly as it would go out to one tenant.

    \b
    Example:
      nudger preview rent-reminder T-1001 --channel sms --date 2026-11-30
    """
    from .preview import preview_text

    engine = ctx.engine(_fixed_clock(ctx.config, _day(day), None), dry=True)
    try:
        _check_ids(engine, (rule_id,))
        click.echo(preview_text(engine, rule_id, tenant_id, channel))
    finally:
        engine.close()


# --- run ---------------------------------------------------------------------------------------


@cli.command()
@click.option("--once", is_flag=True, help="one import-plan-dispatch cycle, then exit (for cron)")
@click.option(
    "--now",
    "moment",
    type=MOMENT,
    default=None,
    help="with --once: run as of this moment (YYYY-MM-DDTHH:MM), e.g. for the example data",
)
@pass_ctx
def run(ctx: Ctx, once: bool, moment: datetime | None) -> None:
    """Run the daemon in the foreground: import, plan and dispatch on schedule.

    Logs one structured line per event on stdout (ids only). SIGTERM or Ctrl-C finishes the message
    in hand and exits 0; SIGHUP reloads the rulebook.

    \b
    Example:
      nudger run                               # under systemd
      nudger run --once                        # from cron
      nudger run --once --now 2026-11-30T10:00 # the shipped example, as of its day
    """
    from .daemon import run_daemon, run_once

    if moment is not None and not once:
        raise click.UsageError("--now goes with --once only")
    if once:
        result = run_once(ctx.config, _fixed_clock(ctx.config, None, moment))
        click.echo(result, err=False)
    else:
        run_daemon(ctx.config)


# --- send --------------------------------------------------------------------------------------


@cli.command()
@click.argument("rule_id")
@click.option("--tenant", "tenant_ids", multiple=True, help="only this tenant (repeatable)")
@click.option("--dry-run", is_flag=True, help="show what would go, send nothing")
@click.option("--now", "moment", type=MOMENT, default=None, help="as of this moment (YYYY-MM-DDTHH:MM)")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def send(
    ctx: Ctx, rule_id: str, tenant_ids: tuple[str, ...], dry_run: bool, moment: datetime | None, as_json: bool
) -> None:
    """Send one rule now (cron-style), through the same ledger and guards as the daemon.

    Idempotent: running it again sends nothing twice. Windows, caps and expiry still apply; what
    may not go now is kept for its next allowed moment.

    \b
    Example:
      nudger send december-card --dry-run
      nudger send repair-check-in --tenant T-1001
    """
    engine = ctx.engine(_fixed_clock(ctx.config, None, moment), dry=dry_run)
    try:
        _check_ids(engine, (rule_id,))
        nudges, report = engine.send_rule(rule_id, list(tenant_ids) or None, dry_run=dry_run)
    finally:
        engine.close()
    if as_json:
        _echo_json({"planned": [n.as_dict() for n in nudges], "results": report.results})
        return
    if dry_run:
        for n in nudges:
            click.echo(f"would plan {n.key} at {_local(n.send_at, ctx.config)} ({n.status}) {n.reason}")
        click.echo(f"{len(nudges)} nudge(s); nothing was sent (dry run)")
        return
    for r in report.results:
        click.echo(f"{r['outcome']:9} {r['key']} {r['channel']} {r['reason']}")
    held = [n for n in nudges if n.status == "held"]
    for n in held:
        click.echo(f"held      {n.key} {n.reason}")
    click.echo(
        f"{report.sent} sent, {report.moved} moved, {report.retry} to retry, {report.failed} failed, "
        f"{report.expired} expired, {report.cancelled} cancelled" + (f", {len(held)} held" if held else "")
    )


# --- event -------------------------------------------------------------------------------------


@cli.command()
@click.argument("name")
@click.argument("tenant_id")
@click.option("--at", "day", type=DATE, default=None, help="the day it happened (default: today)")
@click.option("--count", type=click.IntRange(1, 10000), default=None, help="for events that count")
@pass_ctx
def event(ctx: Ctx, name: str, tenant_id: str, day: datetime | None, count: int | None) -> None:
    """Record an event for a tenant, such as contact_made or repair_completed.

    \b
    Example:
      nudger event contact_made T-1008
      nudger event repair_completed T-1001 --at 2026-11-27
    """
    from .engine import Engine
    from .rulebook import BUILTIN_EVENTS

    allowed = set(BUILTIN_EVENTS) | set(ctx.config.custom_events)
    if name not in allowed:
        import difflib

        close = difflib.get_close_matches(name, sorted(allowed), n=1)
        hint = f"did you mean `{close[0]}`?" if close else "add it to custom_events in config.yaml"
        raise NudgerError(f"`{name}` is not a known event: {hint}")
    engine: Engine = ctx.engine()
    try:
        if not engine.records([tenant_id]):
            raise NudgerError(f"tenant {tenant_id} is not in the data: check the id")
        when = _day(day) or engine.today()
        added = engine.ledger.add_events(
            [{"tenant_id": tenant_id, "name": name, "day": when, "count": count, "source": "cli"}], engine.now()
        )
    finally:
        engine.close()
    click.echo(
        f"recorded {name} for {tenant_id} on {when}"
        if added
        else f"{name} for {tenant_id} on {when} was already recorded"
    )


# --- history -----------------------------------------------------------------------------------


@cli.command()
@click.argument("tenant_id")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def history(ctx: Ctx, tenant_id: str, as_json: bool) -> None:
    """Tell what a tenant was sent, and why anything was not sent.

    \b
    Example:
      nudger history T-1001
    """
    engine = ctx.engine()
    try:
        nudges = engine.ledger.nudges(tenant_id=tenant_id)
        moves = engine.ledger.transitions(n.id for n in nudges)
        events = engine.ledger.events_for(tenant_id)
        known = bool(engine.records([tenant_id]))
    finally:
        engine.close()
    if not nudges and not events and not known:
        raise NudgerError(f"tenant {tenant_id} is not in the data and has no history: check the id")
    if as_json:
        _echo_json(
            {
                "tenant": tenant_id,
                "events": [
                    {"name": e.name, "day": e.day.isoformat(), "count": e.count or None, "source": e.source}
                    for e in events
                ],
                "nudges": [
                    {
                        "key": n.key,
                        "rule": n.rule_id,
                        "kind": n.kind,
                        "state": n.state,
                        "channel": n.channel,
                        "send_at": n.send_at.isoformat() if n.send_at else None,
                        "sent_at": n.sent_at.isoformat() if n.sent_at else None,
                        "reason": n.reason,
                        "created_at": n.created_at.isoformat(),
                        "transitions": [
                            {
                                "at": t.at.isoformat(),
                                "from": t.from_state,
                                "to": t.to_state,
                                "channel": t.channel,
                                "reason": t.reason,
                            }
                            for t in moves.get(n.id, [])
                        ],
                    }
                    for n in nudges
                ],
            }
        )
        return
    cfg = ctx.config
    click.echo(f"History of {tenant_id}")
    if events:
        click.echo("Events:")
        for e in events:
            extra = f" (count {e.count})" if e.count else ""
            click.echo(f"  {e.day}  {e.name}{extra}  [{e.source}]")
    if not nudges:
        click.echo("No messages planned or sent yet.")
    for n in nudges:
        click.echo(
            f"{n.rule_id} ({n.kind}), for {n.occurrence}: {n.state}"
            + (f" by {n.channel}" if n.channel and n.state in ("sent", "delivered", "read") else "")
        )
        click.echo(
            f"  {_local(n.created_at, cfg)}  planned for {_local(n.send_at, cfg)}"
            + (f" (expires {_local(n.expires_at, cfg)})" if n.state in ("planned", "expired") else "")
        )
        for t in moves.get(n.id, []):
            if t.to_state == "claimed" and t.from_state == "planned":
                continue
            click.echo(f"  {_local(t.at, cfg)}  {t.from_state} -> {t.to_state}: {t.reason}")
        if not moves.get(n.id) and n.reason:
            click.echo(f"  {n.reason}")


@cli.command()
@click.option("--officer", default=None, help="only this officer's calls (key in officers.yaml)")
@click.option("--date", "day", type=DATE, default=None, help="the day (default: today)")
@click.option("--csv", "as_csv", is_flag=True, help="print CSV, for a spreadsheet")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def calls(ctx: Ctx, officer: str | None, day: datetime | None, as_csv: bool, as_json: bool) -> None:
    """List the day's call tasks: tenant, number, why, and a suggested opening line.

    \b
    Example:
      nudger calls --officer fatima
      nudger calls --date 2026-11-30 --csv > bellijst.csv
    """
    import csv as csv_module

    from channels.calls import read_calls

    engine = ctx.engine()
    try:
        when = _day(day) or engine.today()
        if officer and officer not in engine.rulebook.officers:
            raise NudgerError(f"there is no officer `{officer}` in officers.yaml")
        tasks = [t for t in read_calls(engine.call_folder(), when) if officer is None or t.officer == officer]
        reached = {t.tenant_id for t in tasks if engine.contact_since(t.tenant_id, when)}
    finally:
        engine.close()
    rows = [
        {
            "officer": t.officer,
            "tenant": t.tenant_id,
            "name": t.tenant_name,
            "phone": t.phone,
            "why": " ".join(t.why.split()),
            "opening": t.opening,
            "done": t.tenant_id in reached,
        }
        for t in tasks
    ]
    if as_json:
        _echo_json(rows)
    elif as_csv:
        writer = csv_module.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["officer", "tenant"])
        writer.writeheader()
        writer.writerows(rows)
    elif not rows:
        click.echo(f"no calls on {when}" + (f" for {officer}" if officer else ""))
    else:
        for r in rows:
            mark = "[x]" if r["done"] else "[ ]"
            click.echo(f"{mark} {r['officer']:8} {r['tenant']:8} {r['name']}  {r['phone'] or '(no number)'}")
            click.echo(f"      why: {r['why']}")
            click.echo(f"      open with: {r['opening']}")
        click.echo(f"{len(rows)} call(s), {sum(r['done'] for r in rows)} done; record one with `nudger called TENANT`")


@cli.command()
@click.argument("tenant_id")
@click.option("--at", "day", type=DATE, default=None, help="the day of the call (default: today)")
@click.option("--note", default="", help="a short note for colleagues (kept in the store, never logged)")
@pass_ctx
def called(ctx: Ctx, tenant_id: str, day: datetime | None, note: str) -> None:
    """Record that an officer reached a tenant: a `contact_made` event (rules may thank the tenant).

    \b
    Example:
      nudger called T-1008 --note "samen naar een regeling gekeken"
    """
    engine = ctx.engine()
    try:
        if not engine.records([tenant_id]):
            raise NudgerError(f"tenant {tenant_id} is not in the data: check the id")
        when = _day(day) or engine.today()
        added = engine.ledger.add_events(
            [{"tenant_id": tenant_id, "name": "contact_made", "day": when, "source": "call", "note": note}],
            engine.now(),
        )
    finally:
        engine.close()
    click.echo(f"recorded: {tenant_id} was reached on {when}" if added else f"already recorded for {when}")


@cli.command()
@click.option("--until", "until", type=DATE, required=True, help="the last day of the pause (YYYY-MM-DD)")
@pass_ctx
def pause(ctx: Ctx, until: datetime) -> None:
    """Pause every message for the whole organisation, for an incident.

    Paused messages wait until after the pause, or expire if they must; none is lost or sent late.
    Call tasks for officers are paused too.

    \b
    Example:
      nudger pause --until 2026-12-03
    """
    engine = ctx.engine()
    try:
        if until.date() < engine.today():
            raise NudgerError(f"{until.date()} has passed: give a day from today on, or use `nudger resume`")
        engine.pause(until.date())
    finally:
        engine.close()
    click.echo(f"all messages are paused until and including {until.date()}; `nudger resume` ends it sooner")


@cli.command()
@pass_ctx
def resume(ctx: Ctx) -> None:
    """End an organisation-wide pause now.

    \b
    Example:
      nudger resume
    """
    engine = ctx.engine()
    try:
        was = engine.paused_until()
        engine.pause(None)
    finally:
        engine.close()
    click.echo("messages go again" + (f" (the pause was until {was})" if was else " (there was no pause)"))


# --- the store's schema --------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """The store's schema: see which version it has, upgrade it after installing a new nudger."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Ctx) -> None:
    """Bring the store's schema up to this nudger's (back up the store first).

    Safe to run twice; run it once, from one machine, with the daemons stopped.

    \b
    Example:
      nudger db upgrade
    """
    from .ledger import Ledger
    from .log import log
    from .schema import upgrade

    ledger = Ledger(ctx.config.store_url, create=False)
    try:
        before, after = upgrade(ledger.engine)
    finally:
        ledger.close()
    log("schema_upgraded", revision=before or "empty", head=after)
    if before == after:
        click.echo(f"the store is up to date (schema revision {after})")
    else:
        click.echo(f"the store's schema went from {before or 'empty'} to revision {after}")


@db.command("current")
@pass_ctx
def db_current(ctx: Ctx) -> None:
    """Show the store's schema revision and the one this nudger needs.

    \b
    Example:
      nudger db current
    """
    from .ledger import Ledger, sqlite_path
    from .schema import current, head

    path = sqlite_path(ctx.config.store_url)
    if path is not None and not path.exists():
        raise NudgerError(f"there is no store yet at {ctx.config.display_path(path)}: `nudger import` makes it")
    ledger = Ledger(ctx.config.store_url, create=False)
    try:
        with ledger.engine.connect() as conn:
            rev = current(conn)
    finally:
        ledger.close()
    need = head()
    state = "up to date" if rev == need else "run `nudger db upgrade`" if rev else "empty"
    click.echo(f"store: {rev or 'empty'}; this nudger: {need} ({state})")


# --- what needs a person: status, release, cancel ----------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(ctx: Ctx, as_json: bool) -> None:
    """List the nudges a person must look at: held, uncertain and failed.

    
    held       the mass-send guard stopped them: `nudger release RULE` or `nudger cancel RULE`
    uncertain  they may or may not have gone out: check with the tenant; never resent
    failed     no channel could deliver them: see the reason, fix the contact data

    Exits 0 when there is nothing to look at, 3 when there is.

    
    Example:
      nudger status
    """
    from .ledger import FAILED, HELD, UNCERTAIN

    cfg = ctx.config
    engine = ctx.engine(dry=True)
    try:
        rows = engine.ledger.nudges(states=[HELD, UNCERTAIN, FAILED])
    finally:
        engine.close()
    groups: dict[str, list[Any]] = {HELD: [], UNCERTAIN: [], FAILED: []}
    for n in rows:
        groups[n.state].append(n)
    if as_json:
        _echo_json(
            {
                state: [
                    {
                        "key": n.key,
                        "tenant": n.tenant_id,
                        "rule": n.rule_id,
                        "channel": n.channel,
                        "send_at": n.send_at.isoformat() if n.send_at else None,
                        "updated_at": n.updated_at.isoformat(),
                        "reason": n.reason,
                    }
                    for n in items
                ]
                for state, items in groups.items()
            }
        )
    else:
        held_by: dict[tuple[str, str], int] = {}
        for n in groups[HELD]:
            day = n.send_at.astimezone(cfg.zone).date().isoformat() if n.send_at else "-"
            held_by[(n.rule_id, day)] = held_by.get((n.rule_id, day), 0) + 1
        click.echo(f"Held ({len(groups[HELD])}): the mass-send guard stopped these; nothing goes until you decide")
        for (rule, day), count in sorted(held_by.items()):
            click.echo(f"  {rule} on {day}: {count} message(s)")
            click.echo(f"    let go: nudger release {rule} --date {day}    drop: nudger cancel {rule} --date {day}")
        for state, title in (
            (UNCERTAIN, "may or may not have gone out: check with the tenant, never resent"),
            (FAILED, "could not be delivered"),
        ):
            click.echo(f"{state.capitalize()} ({len(groups[state])}): {title}")
            for n in groups[state]:
                click.echo(f"  {_local(n.updated_at, cfg)}  {n.tenant_id}  {n.rule_id}  {n.channel or '-'}: {n.reason}")
    if rows:
        sys.exit(3)


def _decide_held(ctx: Ctx, rule_id: str, day: datetime | None, verb: str) -> None:
    """`release` or `cancel` the held messages of a rule (on one day, or all)."""
    from .ledger import HELD
    from .log import log

    engine = ctx.engine()
    try:
        if rule_id not in engine.rulebook.rules and not engine.ledger.nudges(rule_id=rule_id, limit=1):
            raise NudgerError(f"there is no rule `{rule_id}`: see `nudger status` for what is held")
        if not engine.ledger.nudges(rule_id=rule_id, states=[HELD], limit=1):
            raise NudgerError(f"nothing of `{rule_id}` is held: nothing to {verb} (see `nudger status`)")
        days = {day.date()} if day is not None else None
        let = engine.ledger.release if verb == "release" else engine.ledger.cancel_held
        count = let(rule_id, days, ctx.config.zone, engine.now())
    finally:
        engine.close()
    done = "released" if verb == "release" else "cancelled"
    log(f"held_{done}", rule=rule_id, count=count, day=_day(day))
    click.echo(f"{done} {count} held message(s) of {rule_id}" + (f" on {_day(day)}" if day else ""))


@cli.command()
@click.argument("rule_id")
@click.option("--date", "day", type=DATE, default=None, help="only the messages planned on this day")
@pass_ctx
def release(ctx: Ctx, rule_id: str, day: datetime | None) -> None:
    """Let held messages of a rule go (after you checked they are right).

    They go at their planned moment, or at the next allowed one if that has passed; every other
    guard (quiet hours, one ask at a time, stale facts) still applies. Messages this rule plans
    later for the same day are not held again.

    
    Example:
      nudger release december-campaign --date 2026-12-01
    """
    _decide_held(ctx, rule_id, day, "release")


@cli.command()
@click.argument("rule_id")
@click.option("--date", "day", type=DATE, default=None, help="only the messages planned on this day")
@pass_ctx
def cancel(ctx: Ctx, rule_id: str, day: datetime | None) -> None:
    """Drop held messages of a rule: they are never sent (the history keeps them, as cancelled).

    
    Example:
      nudger cancel december-campaign
    """
    _decide_held(ctx, rule_id, day, "cancel")


def main() -> None:
    """Entry point: expected errors become one line on stderr and a non-zero exit, never a traceback."""
    try:
        cli.main(standalone_mode=False, prog_name="nudger")
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RulebookError as exc:
        for f in exc.findings:
            if f.level == "error":
                click.echo(f"nudger: {f}", err=True)
        click.echo("nudger: the rulebook has errors; fix them (see `nudger check`)", err=True)
        sys.exit(exc.exit_code)
    except NudgerError as exc:
        click.echo(f"nudger: {exc}", err=True)
        sys.exit(exc.exit_code)
    except SQLAlchemyError as exc:  # the store failed: say how, never with the data it was given
        cause = getattr(exc, "orig", None)
        click.echo(
            f"nudger: the store could not be used ({type(cause or exc).__name__}: {cause or 'see the store'})"
            "; nothing was changed by this command",
            err=True,
        )
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
