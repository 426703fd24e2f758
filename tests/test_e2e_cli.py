"""End to end: the real CLI on the shipped example and on broken inputs."""

from __future__ import annotations

import csv
import email
import json
import sqlite3
import stat
from email import policy
from pathlib import Path

import pytest
from support import copy_example, nudger, outbox_files

NOW = "2026-11-30T10:00"  # a Monday; the example data's reference day


@pytest.fixture
def example(tmp_path: Path) -> Path:
    copy_example(tmp_path)
    return tmp_path


def _keys(files: list[Path]) -> set[str]:
    return {p.name.split("-", 1)[1].rsplit(".", 2 if p.name.endswith(".txt") else 1)[0] for p in files}


def test_run_once_writes_the_expected_outbox_and_a_second_run_sends_nothing(example: Path) -> None:
    first = nudger(example, "run", "--once", "--now", NOW)
    assert first.code == 0, first.text
    files = outbox_files(example)
    by_channel = {p.parent.name for p in files}
    assert by_channel == {"sms", "whatsapp"}  # no Twilio credentials: the outbox shows what would go
    keys = _keys(files)
    # rent reminder two days before 1 December for tenants who were late twice in six months
    assert "rent-reminder_T-1001_2026-12-01" in keys
    assert "rent-reminder_T-1006_2026-12-01" in keys
    # first arrears: a warm message for the tenant, and a call task on the officer's list
    assert "first-arrears-message_T-1008_2026-11-27" in keys
    calls = nudger(example, "calls", "--date", "2026-11-30", "--json")
    tasks = json.loads(calls.out)
    assert [(t["officer"], t["tenant"]) for t in tasks] == [("ahmed", "T-1008")]
    assert tasks[0]["opening"].startswith("Dag Małgorzata, u spreekt met Ahmed")
    assert "installment-reminder_T-1005_2026-12-01" in keys
    # the paused tenant and the letters-only tenant get nothing today
    assert not any("T-1007" in k or "T-1002" in k for k in keys)
    # T-1004 wants e-mail between 18:00 and 20:00 only: not sent at 10:00
    assert not any("T-1004" in k for k in keys)

    sms = json.loads(next(p for p in files if "rent-reminder_T-1006" in p.name).read_text())
    assert sms["To"].startswith("+316")
    assert "Groet, Fatima" in sms["Body"]  # Sanne is away; her backup Fatima signs
    assert "\u00a0" not in sms["Body"]
    wa = json.loads(next(p for p in files if "rent-reminder_T-1001" in p.name).read_text())
    assert wa["To"].startswith("whatsapp:+316") and wa["ContentSid"].startswith("HX")
    assert "Beste" in json.loads(wa["ContentVariables"])["1"]

    second = nudger(example, "run", "--once", "--now", NOW)
    assert second.code == 0, second.text
    assert "planned 0 new; sent 0" in second.out
    assert outbox_files(example) == files


def test_files_the_engine_writes_are_private(example: Path) -> None:
    assert nudger(example, "run", "--once", "--now", NOW).code == 0
    for path in [example / "var" / "nudger.db", *outbox_files(example)]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in [example / "var", example / "var" / "outbox", example / "var" / "outbox" / "sms"]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_logs_hold_no_personal_data(example: Path) -> None:
    result = nudger(example, "run", "--once", "--now", NOW)
    assert result.code == 0
    with (example / "examples" / "tenants.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for field in ("phone", "email", "name", "street"):
            value = row[field].strip()
            if value:
                assert value not in result.text, f"{field} of {row['tenant_id']} in the log"
        digits = "".join(ch for ch in row["phone"] if ch.isdigit())
        if digits:
            assert digits[-8:] not in result.text


def test_history_explains_sent_and_waiting(example: Path) -> None:
    assert nudger(example, "run", "--once", "--now", NOW).code == 0
    sent = nudger(example, "history", "T-1006")
    assert sent.code == 0 and "rent-reminder" in sent.out and "sent by sms" in sent.out
    data = json.loads(nudger(example, "history", "T-1007", "--json").out)
    card = [n for n in data["nudges"] if n["rule"] == "december-card"]
    assert card and card[0]["state"] == "expired" and "paused until 2027-01-15" in card[0]["reason"]


def test_plan_is_a_dry_run_with_json(example: Path) -> None:
    result = nudger(example, "plan", "--date", "2026-11-30", "--days", "14", "--json")
    assert result.code == 0, result.text
    rows = json.loads(result.out)
    assert rows and all(
        {"tenant", "rule", "kind", "channel", "send_at", "expires_at", "status", "reason"} <= r.keys() for r in rows
    )
    reminder = next(r for r in rows if r["key"] == "rent-reminder:T-1001:2026-12-01")
    assert reminder["send_at"] == "2026-11-30T08:00:00+01:00"
    assert reminder["expires_at"] == "2026-12-01T00:00:00+01:00"
    assert not (example / "var").exists()  # nothing written, not even an empty store


def test_preview_shows_the_message_as_it_would_go(example: Path) -> None:
    result = nudger(example, "preview", "rent-reminder", "T-1004", "--date", "2026-11-30")
    assert result.code == 0, result.text
    assert "channel: email" in result.out and "language: en" in result.out
    assert "1 December 2026" in result.out and "Ahmed Yilmaz" in result.out
    sms = nudger(example, "preview", "installment-reminder", "T-1005", "--channel", "sms", "--date", "2026-11-30")
    assert sms.code == 0 and "€ 75,00" in sms.out
    assert "readability:" in sms.out and "sms: 2 segment(s)" in sms.out and "`ï` needs UCS-2" in sms.out  # Anaïs
    gsm = nudger(example, "preview", "rent-reminder", "T-1006", "--channel", "sms", "--date", "2026-11-30")
    assert "sms: 1 segment(s)" in gsm.out and "GSM-7" in gsm.out and "Dag Priya" in gsm.out


def test_send_is_idempotent_and_guarded(example: Path) -> None:
    assert nudger(example, "import", "--date", "2026-11-30").code == 0
    dry = nudger(example, "send", "first-arrears-message", "--dry-run", "--now", NOW)
    assert dry.code == 0 and "nothing was sent" in dry.out and not outbox_files(example)
    first = nudger(example, "send", "first-arrears-message", "--now", NOW)
    assert first.code == 0 and "1 sent" in first.out, first.text
    again = nudger(example, "send", "first-arrears-message", "--now", NOW)
    assert again.code == 0 and "0 sent" in again.out
    assert len(outbox_files(example)) == 1
    night = nudger(example, "send", "first-arrears-message", "--now", "2026-11-30T22:00")
    assert "0 sent" in night.out


def test_contact_made_event_leads_to_appreciation_but_one_ask_a_day(example: Path) -> None:
    assert nudger(example, "run", "--once", "--now", NOW).code == 0
    recorded = nudger(example, "event", "contact_made", "T-1008", "--at", "2026-11-30")
    assert recorded.code == 0 and "recorded" in recorded.out
    assert nudger(example, "run", "--once", "--now", "2026-11-30T11:00").code == 0
    hist = json.loads(nudger(example, "history", "T-1008", "--json").out)
    thanks = next(n for n in hist["nudges"] if n["rule"] == "contact-made")
    assert thanks["state"] == "planned"
    assert "one ask at a time" in thanks["reason"]
    assert thanks["send_at"].startswith("2026-12-01T07:00")  # 08:00 in Amsterdam, stored as UTC
    nxt = nudger(example, "run", "--once", "--now", "2026-12-01T09:00")
    assert nxt.code == 0
    sent = json.loads(nudger(example, "history", "T-1008", "--json").out)
    assert next(n for n in sent["nudges"] if n["rule"] == "contact-made")["state"] == "sent"


def test_unknown_event_and_tenant_give_one_line_errors(example: Path) -> None:
    bad = nudger(example, "event", "contact_mad", "T-1008")
    assert bad.code != 0 and "did you mean `contact_made`" in bad.err and "Traceback" not in bad.err
    missing = nudger(example, "history", "T-9999")
    assert missing.code != 0 and "T-9999" in missing.err and "Traceback" not in missing.err


def test_a_malformed_rule_names_file_and_line_and_changes_nothing(example: Path) -> None:
    assert nudger(example, "run", "--once", "--now", NOW).code == 0
    before = (
        sqlite3.connect(example / "var" / "nudger.db")
        .execute("select count(*), max(updated_at) from nudges")
        .fetchone()
    )
    (example / "rules" / "broken.yaml").write_text(
        "id: broken-rule\nkind: reminder\ntrigger:\n  befor: rent_due\n  days: 2\ntext:\n  nl: Hoi\n", encoding="utf-8"
    )
    check = nudger(example, "check")
    assert check.code == 1
    assert "rules/broken.yaml:4: error: unknown field `befor`: did you mean `before`?" in check.out
    run = nudger(example, "run", "--once", "--now", "2026-11-30T11:00")
    assert run.code != 0 and "rules/broken.yaml:4" in run.err and "Traceback" not in run.err
    after = (
        sqlite3.connect(example / "var" / "nudger.db")
        .execute("select count(*), max(updated_at) from nudges")
        .fetchone()
    )
    assert after == before


def test_yaml_syntax_error_names_the_line(example: Path) -> None:
    (example / "rules" / "rent-reminder.yaml").write_text('id: x\ntext:\n  nl: "open quote\n', encoding="utf-8")
    result = nudger(example, "check")
    assert result.code == 1 and "rules/rent-reminder.yaml:" in result.out and "Traceback" not in result.text


def test_a_bad_csv_row_is_reported_with_its_line_and_skipped(example: Path) -> None:
    path = example / "examples" / "tenants.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    cells = lines[3].split(",")
    header = lines[0].split(",")
    cells[header.index("rent")] = "zeshonderd"
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = nudger(example, "import", "--date", "2026-11-30")
    assert result.code == 0, result.text
    assert "examples/tenants.csv:4: rent: `zeshonderd` is not an amount in euro" in result.out
    assert "imported 63 tenants" in result.out


def test_a_missing_column_refuses_the_file(example: Path) -> None:
    path = example / "examples" / "tenants.csv"
    text = path.read_text(encoding="utf-8").replace("tenant_id,", "tenant,", 1)
    path.write_text(text, encoding="utf-8")
    result = nudger(example, "import")
    assert result.code != 0
    assert "lacks the column(s) tenant_id" in result.err and "nothing was imported" in result.err


def test_a_truncated_import_is_refused_and_plans_nothing(example: Path) -> None:
    assert nudger(example, "import", "--date", "2026-11-29").code == 0
    path = example / "examples" / "tenants.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:11]) + "\n", encoding="utf-8")  # 10 of 64 tenants
    result = nudger(example, "run", "--once", "--now", NOW)
    assert result.code != 0
    assert "10 tenants, far fewer than the 64" in result.err and "nothing was imported" in result.err
    assert "event=import_refused count=10 reason=truncated" in result.out  # the log: why, in one word
    db = sqlite3.connect(example / "var" / "nudger.db")
    assert db.execute("select count(*) from nudges").fetchone()[0] == 0
    assert db.execute("select count(*) from tenant_state where present = 1").fetchone()[0] == 64
    assert outbox_files(example) == []


def test_email_in_the_outbox_is_a_real_message(tmp_path: Path) -> None:
    copy_example(tmp_path)
    result = nudger(tmp_path, "run", "--once", "--now", "2026-11-30T18:30")
    assert result.code == 0, result.text
    eml = next(p for p in outbox_files(tmp_path) if p.suffix == ".eml" and "T-1004" in p.name)
    msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert msg["To"] == "Emily Clarke <e.clarke@example.nl>"
    assert msg["Reply-To"] == "Ahmed Yilmaz <a.yilmaz@example.nl>"
    assert "Ahmed Yilmaz" in msg["From"] and "huur@example.nl" in msg["From"]
    assert msg["Subject"] and msg["Message-ID"] and msg["Date"]
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Hello Emily" in plain and "Direct line: 020 555 0104" in plain
    assert "<p>Hello Emily" in html


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    copy_example(tmp_path, pacing={"max_per_week": "twee"})
    result = nudger(tmp_path, "check")
    assert result.code == 2 and "pacing.max_per_week" in result.err and "Traceback" not in result.err
    copy_example(tmp_path / "b", timezone="Europe/Amsterdm")
    result = nudger(tmp_path / "b", "check")
    assert result.code == 2 and "unknown time zone" in result.err


def test_missing_secret_names_the_variable(tmp_path: Path) -> None:
    copy_example(tmp_path, organisation={"name": "${NUDGER_ORG_NAME_FOR_TEST}"})
    result = nudger(tmp_path, "check")
    assert result.code == 2 and "NUDGER_ORG_NAME_FOR_TEST is not set" in result.err


def test_every_command_has_help_with_an_example(example: Path) -> None:
    for command in (
        "check",
        "plan",
        "preview",
        "send",
        "run",
        "import",
        "event",
        "history",
        "schema",
        "calls",
        "called",
        "pause",
        "resume",
        "status",
        "release",
        "cancel",
        "db upgrade",
        "db current",
    ):
        result = nudger(example, *command.split(), "--help")
        assert result.code == 0 and "Example:" in result.out, command


def test_shipped_schema_files_match_the_code(tmp_path: Path) -> None:
    result = nudger(tmp_path, "schema", "--write", str(tmp_path / "schema"))
    assert result.code == 0
    root = Path(__file__).resolve().parent.parent
    for name in ("rule", "officers", "tenants"):
        assert (tmp_path / "schema" / f"{name}.schema.json").read_text() == (
            root / "schema" / f"{name}.schema.json"
        ).read_text(), f"run `nudger schema --write schema` ({name})"
    for path in (root / "rules").glob("*.yaml"):
        assert path.read_text(encoding="utf-8").startswith("# yaml-language-server: $schema=../schema/"), path


def test_shipped_rulebook_passes_check(example: Path) -> None:
    result = nudger(example, "check", "--json")
    data = json.loads(result.out)
    assert result.code == 0 and data["errors"] == 0 and data["rules"] >= 11


def test_a_whole_run_logs_no_personal_data_and_never_prints_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-Pa55w0rd-for-the-test"
    monkeypatch.setenv("SMTP_PASSWORD_FOR_TEST", secret)
    copy_example(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "password: ${NUDGER_SMTP_PASSWORD:-}", "password: ${SMTP_PASSWORD_FOR_TEST}"
        ),
        encoding="utf-8",
    )
    assert "SMTP_PASSWORD_FOR_TEST" in config.read_text(encoding="utf-8")
    logs = [
        nudger(tmp_path, "run", "--once", "--now", NOW),
        nudger(tmp_path, "event", "contact_made", "T-1008", "--at", "2026-11-30"),
        nudger(tmp_path, "run", "--once", "--now", "2026-12-01T09:00"),
        nudger(tmp_path, "run", "--once", "--now", "2026-12-02T09:00"),
    ]
    assert all(r.code == 0 for r in logs), [r.text for r in logs]
    printed = [nudger(tmp_path, *args) for args in (("--help",), ("run", "--help"), ("check",), ("status",))]
    printed.append(nudger(tmp_path, "plan", "--date", "2026-13-01"))  # an error
    for r in logs + printed:
        assert secret not in r.text
    text = "\n".join(" ".join(line.split()[1:]) for r in logs for line in r.text.splitlines())  # no timestamps
    with (tmp_path / "examples" / "tenants.csv").open(encoding="utf-8") as handle:
        tenants = list(csv.DictReader(handle))
    values = []
    for row in tenants:
        values += [row[f].strip() for f in ("phone", "email", "name", "street") if row[f].strip()]
        values.append(row["name"].split()[0])  # first names, as texts greet tenants
        digits = "".join(ch for ch in row["phone"] if ch.isdigit())
        values += [digits[-8:]] if digits else []
        for f in ("rent", "arrears"):
            amount = row.get(f, "").strip()
            if amount and amount not in ("0", "0.00", "0,00"):
                values += [amount, amount.replace(".", ",")]
    bodies = [p for p in outbox_files(tmp_path) if p.suffix in (".json", ".txt", ".eml")]
    assert bodies
    for path in bodies:
        content = path.read_text(encoding="utf-8", errors="replace")
        body = json.loads(content).get("Body", "") if path.suffix == ".json" else content
        values += [line.strip() for line in body.splitlines() if len(line.strip()) > 25][:3]
    leaked = sorted({v for v in values if len(v) > 2 and v in text})
    assert leaked == []
