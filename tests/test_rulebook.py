"""Unit tests for nudger/rulebook.py: loading, findings with file:line and a fix, and the JSON Schemas."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from support import OFFICERS_YAML

from nudger.config import load_config
from nudger.errors import RulebookError
from nudger.rulebook import check_rulebook, json_schemas, load_rulebook
from nudger.yamlsrc import load_yaml

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
timezone: Europe/Amsterdam
rules: rules
whatsapp_templates:
  herinnering:
    content_sid: HX00000000000000000000000000000001
"""

OFFICERS = OFFICERS_YAML

# a good rule; the line numbers below are what the tests assert
RULE = """\
id: rent-reminder
kind: reminder
trigger:
  before: rent_due
  days: 2
when: late_count_6m >= 2 and arrears == 0
channels: [sms]
text:
  nl: "Hoi {{ tenant.first_name }}, op {{ rent_due | date }} is de huur aan de beurt. Lukt dat?"
  en: "Hi {{ tenant.first_name }}, your rent is due on {{ rent_due | date }}. Is that all right?"
"""


def make_book(tmp_path: Path, files: dict[str, str], officers: str = OFFICERS):
    (tmp_path / "config.yaml").write_text(CONFIG, encoding="utf-8")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "officers.yaml").write_text(officers, encoding="utf-8")
    for name, text in files.items():
        (rules / name).write_text(text, encoding="utf-8")
    config = load_config(tmp_path / "config.yaml")
    return config, check_rulebook(config)


def errors(findings):
    return [f for f in findings if f.level == "error"]


def only_error(findings):
    errs = errors(findings)
    assert len(errs) == 1, [str(f) for f in errs]
    return errs[0]


# --- the shipped rulebook ------------------------------------------------------------------------


def test_shipped_rulebook_loads_without_errors():
    config = load_config(ROOT / "config.yaml")
    book, findings = check_rulebook(config)
    assert errors(findings) == []
    assert book is not None
    assert "rent-reminder" in book.rules
    assert book.rules["rent-reminder"].trigger.describe() == "2 days before rent_due"
    assert book.rules["on-time-streak"].trigger.kind == "on"
    assert book.officers["fatima"].backup == "jan"


def test_shipped_schemas_are_up_to_date():
    for name, schema in json_schemas().items():
        assert json.loads((ROOT / "schema" / f"{name}.schema.json").read_text(encoding="utf-8")) == schema, name


# --- a good small rulebook -------------------------------------------------------------------------


def test_good_rule_loads(tmp_path):
    _, (book, findings) = make_book(tmp_path, {"rent.yaml": RULE})
    assert errors(findings) == []
    rule = book.rules["rent-reminder"]
    assert (rule.file, rule.line) == ("rules/rent.yaml", 1)
    assert rule.trigger.kind == "before" and rule.trigger.fact == "rent_due" and rule.trigger.days == 2
    assert rule.channels == ("sms",)
    assert rule.during_arrangement == "skip"  # reminders skip while an arrangement runs, by default
    assert rule.lines[("text", "nl")] == 9
    assert book.officers["fatima"].first_name == "Fatima"  # from the name when not given


def test_several_rules_in_one_file(tmp_path):
    two = (
        "- "
        + RULE.replace("\n", "\n  ").rstrip()
        + "\n- "
        + RULE.replace("rent-reminder", "second").replace("\n", "\n  ").rstrip()
        + "\n"
    )
    _, (book, findings) = make_book(tmp_path, {"rules.yaml": two})
    assert errors(findings) == []
    assert sorted(book.rules) == ["rent-reminder", "second"]
    assert book.rules["second"].line == 11


def test_load_rulebook_raises_with_every_error(tmp_path):
    bad = RULE.replace("before: rent_due", "before: rent_date").replace("kind: reminder", "kind: reminders")
    config, _ = make_book(tmp_path, {"rent.yaml": bad})
    with pytest.raises(RulebookError) as info:
        load_rulebook(config)
    assert len(errors(info.value.findings)) == 1  # kind is wrong: the rule is not read further
    assert info.value.findings[0].fix == "did you mean `reminder`?"
    assert str(info.value).startswith("rules/rent.yaml:2: error:")


# --- errors with file, line and fix ----------------------------------------------------------------


def test_unknown_trigger_fact(tmp_path):
    _, (book, findings) = make_book(tmp_path, {"rent.yaml": RULE.replace("before: rent_due", "before: rent_date")})
    assert book is None
    f = only_error(findings)
    assert (f.file, f.line) == ("rules/rent.yaml", 4)
    assert "rent_date" in f.message
    assert f.fix == "did you mean `rent_due`?"
    assert f.rule == "rent-reminder"


def test_unknown_event(tmp_path):
    rule = RULE.replace("  before: rent_due\n  days: 2\n", "  on: arrears_clered\n").replace(
        "when: late_count_6m >= 2 and arrears == 0\n", ""
    )
    _, (_, findings) = make_book(tmp_path, {"cleared.yaml": rule})
    f = only_error(findings)
    assert (f.file, f.line) == ("rules/cleared.yaml", 4)
    assert "did you mean `arrears_cleared`?" in f.fix


def test_typo_in_a_field_name(tmp_path):
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": RULE.replace("text:", "tekst:")})
    typo = [f for f in errors(findings) if "tekst" in f.message]
    assert len(typo) == 1
    assert (typo[0].file, typo[0].line) == ("rules/rent.yaml", 8)
    assert typo[0].fix == "did you mean `text`?"
    assert any("`text` is missing" in f.message for f in errors(findings))


def test_typo_inside_the_trigger(tmp_path):
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": RULE.replace("  days: 2", "  dagen: 2")})
    typo = [f for f in errors(findings) if "dagen" in f.message]
    assert [f.line for f in typo] == [5]
    assert "days" in typo[0].fix  # the allowed fields, or a suggestion


def test_duplicate_ids_across_two_files(tmp_path):
    other = RULE.replace("days: 2", "days: 3")
    _, (_, findings) = make_book(tmp_path, {"a.yaml": RULE, "b.yaml": "# the same id again\n" + other})
    f = only_error(findings)
    assert (f.file, f.line) == ("rules/b.yaml", 2)
    assert "used twice" in f.message
    assert "rules/a.yaml:1" in f.message
    assert f.fix


def test_unknown_officer_backup(tmp_path):
    officers = OFFICERS.replace("  backup: jan", "  backup: jann")
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": RULE}, officers)
    f = only_error(findings)
    assert (f.file, f.line) == ("rules/officers.yaml", 5)
    assert "jann" in f.message
    assert f.fix == "did you mean `jan`?"


def test_officer_without_name(tmp_path):
    officers = OFFICERS.replace("  name: Jan de Boer\n", "  first_name: Jan\n")
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": RULE}, officers)
    f = [f for f in errors(findings) if "`name` is missing" in f.message]
    assert [(x.file, x.line) for x in f] == [("rules/officers.yaml", 6)]
    assert "name: Fatima el Amrani" in f[0].fix


def test_bad_window(tmp_path):
    rule = RULE.replace("channels: [sms]\n", 'channels: [sms]\nwindow: "ma-xx 10:00-12:00"\n')
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": rule})
    f = only_error(findings)
    assert (f.file, f.line) == ("rules/rent.yaml", 8)
    assert "`xx` is not a day name" in f.message
    assert "ma-vr 18:00-20:00" in f.message  # how to write it


def test_bad_expiry(tmp_path):
    rule = RULE.replace("channels: [sms]\n", "channels: [sms]\nexpires: 2 weken\n")
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": rule})
    f = only_error(findings)
    assert f.line == 8
    assert "3 working days" in f.message


def test_unknown_whatsapp_template(tmp_path):
    rule = RULE.replace("channels: [sms]\n", "channels: [whatsapp, sms]\nwhatsapp_template: herinnerin\n")
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": rule})
    f = only_error(findings)
    assert (f.file, f.line) == ("rules/rent.yaml", 8)
    assert "herinnerin" in f.message
    assert f.fix == "did you mean `herinnering`?"


def test_whatsapp_without_template_is_a_tone_guard_error(tmp_path):
    from nudger.tone import check_all

    rule = RULE.replace("channels: [sms]\n", "channels: [whatsapp, sms]\n")
    config, (book, _) = make_book(tmp_path, {"rent.yaml": rule})
    assert book is not None  # the structure is sound; `nudger check` refuses it
    _, findings = check_all(config, date(2026, 11, 30))
    assert [(f.level, f.line) for f in findings if "WhatsApp" in f.message] == [("error", 7)]


def test_unknown_name_in_a_text(tmp_path):
    rule = RULE.replace("{{ rent_due | date }} is de huur", "{{ rent_du | date }} is de huur")
    _, (book, findings) = make_book(tmp_path, {"rent.yaml": rule})
    assert book is None
    found = [f for f in errors(findings) if "rent_du" in f.message]
    assert len(found) == 1
    f = found[0]
    assert (f.file, f.line) == ("rules/rent.yaml", 9)
    assert "`nl`" in f.message
    assert f.fix.startswith("did you mean `rent_due`?")


def test_a_text_with_an_error_is_not_also_reported_as_missing(tmp_path):
    rule = RULE.replace("{{ rent_due | date }} is de huur", "{{ rent_du | date }} is de huur")
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": rule})
    assert [str(f) for f in errors(findings) if "there is no text" in f.message] == []
    assert len(errors(findings)) == 1


def test_unknown_name_in_a_condition(tmp_path):
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": RULE.replace("late_count_6m >= 2", "late_count >= 2")})
    f = only_error(findings)
    assert (f.file, f.line) == ("rules/rent.yaml", 6)
    assert "late_count" in f.message
    assert f.fix.startswith("did you mean `late_count_6m`?")


def test_event_is_known_only_in_rules_with_on(tmp_path):
    rule = RULE.replace("Is that all right?", "{{ event.count }} times?")
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": rule})
    f = only_error(findings)
    assert f.line == 10 and "event" in f.message and "`en`" in f.message


def test_unreadable_template(tmp_path):
    rule = RULE.replace("Hi {{ tenant.first_name }},", "Hi {{ tenant.first_name ,")
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": rule})
    f = only_error(findings)
    assert f.line == 10
    assert "cannot be read" in f.message
    assert "{{" in f.fix


def test_text_in_an_unconfigured_language(tmp_path):
    rule = RULE + '  de: "Hallo {{ tenant.first_name }}"\n'
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": rule})
    f = only_error(findings)
    assert f.line == 11 and "`de`" in f.message


def test_text_missing_the_default_language(tmp_path):
    rule = "".join(line for line in RULE.splitlines(keepends=True) if not line.startswith("  nl:"))
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": rule})
    f = only_error(findings)
    assert f.line == 8 and "`nl`" in f.message


def test_task_must_go_to_call(tmp_path):
    rule = RULE.replace("kind: reminder", "kind: task")
    _, (_, findings) = make_book(tmp_path, {"task.yaml": rule})
    f = only_error(findings)
    assert f.line == 7 and f.fix == "write `channels: [call]`"


def test_unknown_channel(tmp_path):
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": RULE.replace("[sms]", "[smss]")})
    f = only_error(findings)
    assert f.line == 7
    assert "smss" in f.message
    assert "literal[" not in f.message
    assert "did you mean `sms`?" in f.fix


def test_two_triggers(tmp_path):
    rule = RULE.replace("  days: 2\n", '  days: 2\n  yearly: "11-15"\n')
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": rule})
    f = only_error(findings)
    assert f.line == 3 and "split it into two rules" in f.fix


def test_bad_yearly_day(tmp_path):
    rule = RULE.replace("  before: rent_due\n  days: 2\n", '  yearly: "02-30"\n')
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": rule})
    f = only_error(findings)
    assert f.line == 4 and "not a day of the year" in f.message


def test_bad_cron(tmp_path):
    rule = RULE.replace("  before: rent_due\n  days: 2\n", '  cron: "0 10 1 13 *"\n')
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": rule})
    f = only_error(findings)
    assert f.line == 4 and "cron" in f.message and "0 10 1 12 *" in f.fix


def test_repeated_key_in_a_file(tmp_path):
    rule = RULE.replace("channels: [sms]\n", "channels: [sms]\nchannels: [email]\n")
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": rule})
    f = only_error(findings)
    assert (f.file, f.line) == ("rules/rent.yaml", 8)
    assert "appears twice" in f.message


def test_yaml_syntax_error_unclosed_bracket(tmp_path):
    broken = RULE.replace("channels: [sms]\n", "channels: [sms\n")
    _, (book, findings) = make_book(tmp_path, {"rent.yaml": broken, "other.yaml": RULE.replace("rent-reminder", "ok")})
    assert book is None
    f = only_error(findings)
    assert f.file == "rules/rent.yaml"
    assert f.line == 7  # where the `[` is left open, not the next line where the parser gave up
    assert f.fix


def test_yaml_syntax_error_unclosed_quote(tmp_path):
    broken = RULE + 'about: "Heads-up before the rent is due\n'  # line 11; the file has 11 lines
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": broken})
    f = only_error(findings)
    assert f.file == "rules/rent.yaml"
    assert f.line == 11
    assert f.fix == "close the quote that opens here"


def test_yaml_bad_indentation(tmp_path):
    broken = RULE.replace("kind: reminder", "  kind: reminder")
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": broken})
    f = only_error(findings)
    assert (f.file, f.line) == ("rules/rent.yaml", 2)
    assert "indentation" in f.fix


def test_tab_in_yaml(tmp_path):
    broken = RULE.replace("  days: 2", "\tdays: 2")
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": broken})
    f = only_error(findings)
    assert (f.file, f.line) == ("rules/rent.yaml", 5)
    assert "tab" in f.fix


def test_missing_officers_file(tmp_path):
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": RULE})
    (tmp_path / "rules" / "officers.yaml").unlink()
    config = load_config(tmp_path / "config.yaml")
    _, findings = check_rulebook(config)
    assert any("officers.yaml is missing" in f.message for f in errors(findings))


# --- YAML 1.2 booleans: `on:` stays a key ----------------------------------------------------------


def test_on_trigger_survives_yaml(tmp_path):
    rule = (
        RULE.replace("  before: rent_due\n  days: 2\n", "  on: arrears_cleared\n")
        .replace("kind: reminder", "kind: appreciation")
        .replace("when: late_count_6m >= 2 and arrears == 0\n", "")
    )
    _, (book, findings) = make_book(tmp_path, {"cleared.yaml": rule})
    assert errors(findings) == []
    trigger = book.rules["rent-reminder"].trigger
    assert (trigger.kind, trigger.event) == ("on", "arrears_cleared")


def test_on_trigger_in_flow_style_with_count(tmp_path):
    rule = RULE.replace("trigger:\n  before: rent_due\n  days: 2\n", "trigger: {on: on_time_streak, count: 3}\n")
    rule = rule.replace("kind: reminder", "kind: appreciation").replace("Lukt dat?", "{{ event.count }} keer!")
    _, (book, findings) = make_book(tmp_path, {"streak.yaml": rule})
    assert errors(findings) == []
    trigger = book.rules["rent-reminder"].trigger
    assert (trigger.kind, trigger.event, trigger.count) == ("on", "on_time_streak", 3)


def test_yaml_loader_keeps_yes_no_words_as_text(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("on: x\nnee: ja\nyes: no\noff: y\nflag: true\nother: False\n", encoding="utf-8")
    located, findings = load_yaml(path)
    assert findings == []
    assert located.data == {"on": "x", "nee": "ja", "yes": "no", "off": "y", "flag": True, "other": False}
    assert located.line(("off",)) == 4


# --- tenants.yaml ----------------------------------------------------------------------------------


def test_tenant_preferences(tmp_path):
    prefs = """\
T-1001:
  channels: [whatsapp, sms]
  window: ma-vr 18:00-20:00
  language: en
  officer: jan
  pause_until: 2027-01-15
  whatsapp_opt_in: nee
"""
    _, (book, findings) = make_book(tmp_path, {"rent.yaml": RULE, "tenants.yaml": prefs})
    assert errors(findings) == []
    pref = book.prefs["T-1001"]
    assert pref.channels == ("whatsapp", "sms")
    assert pref.window == ("ma-vr 18:00-20:00",)
    assert pref.pause_until == date(2027, 1, 15)
    assert pref.whatsapp_opt_in is False
    assert "T-1001" not in book.rules  # tenants.yaml is not a rule file


def test_tenant_preferences_errors_by_line(tmp_path):
    prefs = "T-1001:\n  window: ma-vr 20:00-18:00\n  officer: fatma\n"
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": RULE, "tenants.yaml": prefs})
    errs = sorted((f.file, f.line) for f in errors(findings))
    assert errs == [("rules/tenants.yaml", 2), ("rules/tenants.yaml", 3)]
    officer = next(f for f in errors(findings) if f.line == 3)
    assert officer.fix == "did you mean `fatima`?"


# --- signers ---------------------------------------------------------------------------------------


def test_backup_signs_while_the_officer_is_away(tmp_path):
    officers = OFFICERS.replace("  backup: jan\n", "  backup: jan\n  absent:\n    - 2026-12-21 .. 2027-01-03\n")
    _, (book, findings) = make_book(tmp_path, {"rent.yaml": RULE}, officers)
    assert errors(findings) == []
    assert book.signer("fatima", date(2026, 12, 20)).key == "fatima"
    assert book.signer("fatima", date(2026, 12, 21)).key == "jan"
    assert book.signer("fatima", date(2027, 1, 3)).key == "jan"
    assert book.signer("fatima", date(2027, 1, 4)).key == "fatima"


def test_backups_in_a_circle_all_away_is_an_error(tmp_path):
    officers = OFFICERS.replace("  backup: jan\n", "  backup: jan\n  absent: [2026-12-21 .. 2026-12-23]\n").replace(
        "  backup: fatima\n", "  backup: fatima\n  absent: [2026-12-22]\n"
    )
    _, (book, findings) = make_book(tmp_path, {"rent.yaml": RULE}, officers)
    assert book is None
    circle = [f for f in findings if "go round in a circle" in f.message]
    assert circle and all(f.level == "error" for f in circle)
    assert any("2026-12-22" in f.message and "fatima -> jan -> fatima" in f.message for f in circle)


def test_an_absent_officer_without_a_backup_is_a_warning(tmp_path):
    officers = OFFICERS.replace("jan:\n  name: Jan de Boer\n  backup: fatima\n", "jan:\n  name: Jan de Boer\n") + (
        "  absent: [2026-12-22]\n"
    )
    _, (book, findings) = make_book(tmp_path, {"rent.yaml": RULE}, officers)
    assert book is not None
    assert book.signer("jan", date(2026, 12, 22)) is None
    warn = [f for f in findings if "nobody can sign" in f.message]
    assert [f.level for f in warn] == ["warning"] and "2026-12-22" in warn[0].message


def test_absence_that_is_not_a_range(tmp_path):
    officers = OFFICERS.replace("  backup: jan\n", "  backup: jan\n  absent:\n    - kerstvakantie\n")
    _, (_, findings) = make_book(tmp_path, {"rent.yaml": RULE}, officers)
    f = only_error(findings)
    assert (f.file, f.line) == ("rules/officers.yaml", 7)
    assert "2026-12-21 .. 2027-01-03" in f.fix


# --- JSON Schemas ----------------------------------------------------------------------------------


def test_json_schemas_describe_the_three_files():
    schemas = json_schemas()
    assert set(schemas) == {"rule", "officers", "tenants"}
    rule = schemas["rule"]["$defs"]["Rule"]
    assert rule["additionalProperties"] is False
    assert {"id", "kind", "trigger", "text", "when", "channels"} <= set(rule["properties"])
    assert set(rule["required"]) == {"id", "kind", "trigger", "text"}
    trigger = schemas["rule"]["$defs"]["TriggerSpec"]
    assert {"before", "after", "on", "yearly", "cron", "at", "days", "count"} == set(trigger["properties"])
    assert "name" in schemas["officers"]["additionalProperties"]["properties"]
    assert "pause_until" in schemas["tenants"]["additionalProperties"]["properties"]
