"""Bad input, fuzzed: broken rule files and garbled data rows never crash nudger.

Hypothesis feeds the real code (no mocks) broken rule YAML and broken CSV rows. nudger answers with
its own errors, naming the file and the line, never with a traceback; bad rows are reported by line
and good rows kept; a refused import or a broken rulebook changes nothing already in the ledger; a
truncated data file is refused and plans nothing.
"""

from __future__ import annotations

import copy
import csv
import io
import re
import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support import ROOT, copy_example, nudger, outbox_files

from nudger.config import load_config
from nudger.data import check_bad_share, read_csv_source
from nudger.engine import Engine
from nudger.errors import Finding, ImportRefused, NudgerError, RulebookError
from nudger.rulebook import load_rulebook
from nudger.rulespec import RuleSpec, TriggerSpec
from nudger.tone import check_all
from nudger.yamlsrc import load_yaml

NOW = "2026-11-30T10:00"  # a Monday; the example data's reference day
NOW_DT = datetime(2026, 11, 30, 10, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
TODAY = NOW_DT.date()

# Modest example counts: the whole file runs in well under a minute.
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW_FUZZ = settings(FUZZ, max_examples=30)

# --- what we start from: the shipped example ------------------------------------------------------

RULE_FILES = sorted(p for p in (ROOT / "rules").glob("*.yaml") if p.name not in ("officers.yaml", "tenants.yaml"))
RULE_TEXTS = [p.read_text(encoding="utf-8") for p in RULE_FILES]
RULE_DOCS = [load_yaml(p)[0].data for p in RULE_FILES]  # nudger's own loader: `on:` stays a text key
TENANT_LINES = (ROOT / "examples" / "tenants.csv").read_text(encoding="utf-8").splitlines()
PAYMENT_LINES = (ROOT / "examples" / "payments.csv").read_text(encoding="utf-8").splitlines()

RULE_FIELDS = sorted(RuleSpec.model_fields)
TRIGGER_FIELDS = sorted(TriggerSpec.model_fields)

# --- 1. rule files ---------------------------------------------------------------------------------

# Values officers (or their editors) get wrong: bad Jinja, bad dates and times, YAML's own syntax.
TRICKY = [
    "{{",
    "}}",
    "{{ x }}",
    "{% if %}",
    "{% for a in b %}{{ a }}",
    "{# an open comment",
    "{{ tenant.first_name",
    "{{ tenant.__class__ }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ rent | money(1, 2) }}",
    "{{ rent_due | date('x') }}",
    "{{ last_payment.year }}",
    "{{ installment_due | date }}",
    "{{ tenant.first_name | upper }} MOET BETALEN!!!",
    "Hoi {{ tenant.first_name }}, lukt het? Bel me gerust.",
    "2026-13-45",
    "2026-02-30",
    "2026-02-30 10:00:00",
    "9999-99-99",
    "02-29",
    "13-01",
    "00-00",
    "2026-02-30T25:61",
    "9999-12-31T23:59",
    "0001-01-01T00:00",
    "61 25 32 13 8",
    "* * * * * * *",
    "0 0 31 2 *",
    "25:00-26:00",
    "zz 10:00-12:00",
    "ma-vr",
    "100000 days",
    "99999999999 hours",
    "367 working days",
    "-1 days",
    "0 days",
    "3 werkdagen",
    "9" * 400,
    "1e400",
    ".nan",
    "-.inf",
    "0x1F",
    "0o777",
    "preferred",
    "fax",
    "call",
    "rent_due",
    "repair_completed",
    "herinnering",
    "nl",
    "de",
    "skip",
    "task",
    "late_count_6m >= 2 and",
    "late_in(13, 2026)",
    "late_in('a', none)",
    "arrears ==",
    "1/0",
    "tenant.__init__.__globals__",
    "\t",
    "~",
    "&anchor",
    "*alias",
    "!!python/object/apply:os.system",
    "!!binary xyz",
    "!!int abc",
    "- -",
    ": :",
    "'",
    '"',
    "[",
    "{",
    "@",
    "`",
    "\u00a0",
    "\u200b",
    "€" * 200,
]

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),
    st.text(max_size=20),
    st.dates(),
    st.datetimes(),
    st.sampled_from(TRICKY),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(RULE_FIELDS + ["nl", "en"]), st.text(max_size=8)), inner, max_size=3),
    ),
    max_leaves=6,
)
KEYS = st.one_of(st.sampled_from(RULE_FIELDS + list(TRIGGER_FIELDS) + ["tekst", "kanalen", "x"]), st.text(max_size=10))


def flow(value: object) -> str:
    """One value in YAML flow style, to put after `key: ` on one line."""
    return yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=10**9).strip()[1:-1]


@st.composite
def edited_rule(draw: st.DrawFn) -> bytes:
    """A shipped rule file with a few lines edited the way hands and editors break YAML."""
    lines = draw(st.sampled_from(RULE_TEXTS)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        indent = line[: len(line) - len(line.lstrip())]
        key = line.split(":", 1)[0] if ":" in line else None
        edit = draw(
            st.sampled_from(["delete", "duplicate", "indent", "tab", "value", "raw", "key", "junk", "cut", "swap"])
        )
        if edit == "delete":
            del lines[i]
        elif edit == "duplicate":
            lines.insert(i, line)
        elif edit == "indent":
            lines[i] = " " * draw(st.integers(0, 8)) + line.lstrip()
        elif edit == "tab":
            lines[i] = indent + "\t" + line.lstrip()
        elif edit == "value" and key is not None:
            lines[i] = f"{key}: {flow(draw(VALUES))}"
        elif edit == "raw" and key is not None:
            lines[i] = f"{key}: {draw(st.sampled_from(TRICKY))}"
        elif edit == "key":
            lines.insert(i, f"{indent}{draw(KEYS)}: {flow(draw(VALUES))}")
        elif edit == "junk":
            lines.insert(i, draw(st.text(max_size=40)))
        elif edit == "cut":
            lines[i:] = [line[: draw(st.integers(0, len(line)))]]
        elif edit == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    return ("\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"]))).encode("utf-8")


@st.composite
def reshaped_rule(draw: st.DrawFn) -> bytes:
    """A shipped rule with fields replaced, added or dropped, written back as YAML."""
    doc = copy.deepcopy(draw(st.sampled_from(RULE_DOCS)))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["field", "trigger", "text", "drop"]))
        if where == "field":
            doc[draw(KEYS)] = draw(VALUES)
        elif where == "trigger":
            trigger = doc["trigger"] if isinstance(doc.get("trigger"), dict) else {}
            trigger[draw(st.sampled_from(TRIGGER_FIELDS))] = draw(VALUES)
            doc["trigger"] = trigger
        elif where == "text":
            variant = draw(st.sampled_from(["text", "sms", "email", "letter", "subject"]))
            texts = doc[variant] if isinstance(doc.get(variant), dict) else {}
            parts = draw(st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=12)), min_size=1, max_size=4))
            texts[draw(st.sampled_from(["nl", "en", "de"]))] = " ".join(parts)
            doc[variant] = texts
        elif doc:
            doc.pop(draw(st.sampled_from(sorted(doc))))
    if draw(st.integers(0, 4)) == 0:  # the list form: several rules in one file
        doc = [doc, copy.deepcopy(draw(st.sampled_from(RULE_DOCS)))]
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode("utf-8")


@st.composite
def damaged_bytes(draw: st.DrawFn) -> bytes:
    """A rule file damaged below the YAML: bytes that are not UTF-8, control characters, a cut."""
    data = draw(st.one_of(edited_rule(), st.sampled_from(RULE_TEXTS).map(str.encode)))
    at = draw(st.integers(0, len(data)))
    damage = draw(st.sampled_from(["bytes", "control", "bom", "cut"]))
    if damage == "bytes":
        return data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    if damage == "control":
        return (
            data[:at]
            + draw(st.sampled_from(["\x00", "\x07", "\x0c", "\x1b", "\x7f", "\x85", "\ufffe"])).encode()
            + data[at:]
        )
    if damage == "bom":
        return b"\xef\xbb\xbf" + data
    return data[:at]


EDGE_FILES = [
    b"",
    b"---\n",
    b"...\n",
    b"null\n",
    b"[]\n",
    b"{}\n",
    b"- - -\n",
    b"id\n",
    b"id: x\n" * 300,
    b"[" * 3000,
    b"[" * 3000 + b"]" * 3000,
    b"a: &x [*x]\n",
    b"%YAML 9.9\n---\nid: x\n",
    b"id: a\n---\nid: b\n",
    b"priority: " + b"9" * 5000 + b"\n",
    b"\xff\xfe" + "id: x\n".encode("utf-16-le"),
]

ANY_RULE_FILE = st.one_of(
    edited_rule(),
    reshaped_rule(),
    damaged_bytes(),
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda s: s.encode("utf-8")),
    st.sampled_from(EDGE_FILES),
)

FUZZED = "rules/fuzzed.yaml"


@pytest.fixture(scope="module")
def lone_rule(tmp_path_factory: pytest.TempPathFactory):
    """The shipped example with one rule file, `rules/fuzzed.yaml`, beside officers and tenants."""
    folder = tmp_path_factory.mktemp("rulebook")
    copy_example(folder)
    for path in (folder / "rules").glob("*.yaml"):
        if path.name not in ("officers.yaml", "tenants.yaml"):
            path.unlink()
    return load_config(folder / "config.yaml"), folder / FUZZED


def line_count(content: bytes) -> int:
    """How many lines an editor (and YAML) sees: CR, CRLF and the Unicode line separators end one too."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return content.count(b"\n") + 1
    return len(re.split("\r\n|[\r\n\x85\u2028\u2029]", text))


def check_rule_file(config, target: Path, content: bytes) -> list[Finding]:
    """`nudger check`, in process, on a rulebook whose only rule file holds `content`."""
    target.write_bytes(content)
    try:
        _, findings = check_all(config, TODAY, [])
    except NudgerError as exc:  # our own error is allowed; it must still say which file
        assert FUZZED in str(exc), exc
        return []
    lines = line_count(content)
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        assert any(f.level == "error" and "not UTF-8" in f.message for f in findings), findings
    for f in findings:
        assert f.file == FUZZED, f  # officers.yaml and tenants.yaml are sound: every finding is ours
        assert f.message.strip() and "Traceback" not in str(f), f
        if f.level == "error":
            assert 1 <= f.line <= lines, f"{f} (the file has {lines} lines)"
    return findings


@FUZZ
@given(content=ANY_RULE_FILE)
def test_check_names_the_file_and_line_of_whatever_is_wrong_in_a_rule_file(lone_rule, content: bytes) -> None:
    config, target = lone_rule
    check_rule_file(config, target, content)


# Values a careful officer could write, at the edges of what is allowed: what passes `check` must plan.
DATE_FACTS = ["rent_due", "installment_due", "arrears_since", "last_payment", "last_contact", "move_in"]
PLAUSIBLE = {
    "trigger": st.one_of(
        st.fixed_dictionaries({"before": st.sampled_from(DATE_FACTS), "days": st.sampled_from([0, 1, 2, 30, 366])}),
        st.fixed_dictionaries({"after": st.sampled_from(DATE_FACTS), "days": st.sampled_from([0, 1, 14, 366])}),
        st.fixed_dictionaries(
            {"on": st.sampled_from(["arrears_started", "on_time_streak", "contact_made", "repair_completed"])},
            optional={"count": st.sampled_from([1, 3, 1000]), "days": st.sampled_from([0, 2, 366])},
        ),
        st.fixed_dictionaries({"yearly": st.sampled_from(["01-01", "11-30", "12-01", "12-31", "02-28"])}),
        st.fixed_dictionaries({"cron": st.sampled_from(["0 10 1 12 *", "0 0 31 2 *", "*/5 * * * *", "59 23 * * 0"])}),
        st.fixed_dictionaries(
            {"at": st.sampled_from(["2026-11-30T10:00", "2026-12-01T08:00", "9999-12-31T23:59", "0001-01-01T00:00"])}
        ),
    ),
    "expires": st.sampled_from(["0 days", "1 hours", "366 days", "8784 hours", "366 working days", "2 dagen"]),
    "window": st.sampled_from(
        ["ma-vr 18:00-20:00", "zo 00:00-23:59", "00:00-00:01", ["za 10:00-12:00", "ma 08:00-09:00"]]
    ),
    "priority": st.sampled_from([0, 1, 99, 100]),
    "channels": st.sampled_from(["preferred", ["sms"], ["print"], ["email", "sms"], ["whatsapp"], ["call"]]),
    "when": st.sampled_from(
        [
            "arrears > 0",
            "late_in(1, today.year)",
            "late_in(13, today.year)",
            "months_behind >= 1 and not arrangement",
            "last_payment and last_payment < today",
            "arrears_days > 366",
            "installment > 0",
            "rent / 0 > 1",
            "on_time_streak >= 3",
        ]
    ),
    "during_arrangement": st.sampled_from(["skip", "send"]),
    "card": st.booleans(),
    "enabled": st.booleans(),
}


@st.composite
def plausible_rule(draw: st.DrawFn) -> bytes:
    doc = copy.deepcopy(draw(st.sampled_from(RULE_DOCS)))
    for name in draw(st.sets(st.sampled_from(sorted(PLAUSIBLE)), min_size=1, max_size=3)):
        doc[name] = draw(PLAUSIBLE[name])
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode("utf-8")


@pytest.fixture(scope="module")
def imported(lone_rule):
    """An engine over `lone_rule`'s folder, with the example data imported into its SQLite store."""
    config, target = lone_rule
    target.write_text(RULE_TEXTS[0], encoding="utf-8")
    engine = Engine(config, clock=lambda: NOW_DT)
    engine.import_data()
    yield engine
    engine.close()


@SLOW_FUZZ
@given(content=plausible_rule())
def test_a_rule_that_passes_check_plans_without_crashing(lone_rule, imported, content: bytes) -> None:
    config, target = lone_rule
    findings = check_rule_file(config, target, content)
    if any(f.level == "error" for f in findings):
        event("refused by check")
        return  # refused, with a finding that names the file and the line: all that check must do
    event("planned")
    imported.rulebook = load_rulebook(config)  # check found no errors: what the daemon would run with
    imported.plan(store=False)
    imported.plan(store=False, days=30)


def test_an_expiry_longer_than_a_year_is_an_error_at_check_not_a_crash_when_planning(lone_rule) -> None:
    config, target = lone_rule
    text = next(t for t in RULE_TEXTS if "\nexpires:" in t)
    findings = check_rule_file(config, target, text.replace("\nexpires:", "\nexpires: 100000 days #", 1).encode())
    line = text.split("\nexpires:")[0].count("\n") + 2
    assert [(f.line, f.message) for f in findings if f.level == "error"] == [
        (line, "expires: `100000 days` is longer than a year")
    ]


# The same mistakes through the real command line: exit 1, `file:line: error: ...`, no traceback.
CLI_BROKEN = [
    pytest.param("rent-reminder.yaml", b"  days: 2", b"\tdays: 2", "replace the tab with spaces", id="tab"),
    pytest.param(
        "rent-reminder.yaml", b"channels: preferred", b"channels: [sms, email", "close the bracket", id="bracket"
    ),
    pytest.param("help-offer.yaml", b"about: ", b"about: \x00", "invisible control character", id="nul"),
    pytest.param("contact-made.yaml", b"about: ", b"about: \xe9\xe9n ", "the file is not UTF-8 text", id="cp1252"),
    pytest.param("december-card.yaml", b'  yearly: "12-01"', b"  at: 2026-02-30 10:00:00", "`2026-02-30", id="date"),
]


@pytest.mark.parametrize(("name", "old", "new", "says"), CLI_BROKEN)
def test_check_on_a_broken_rule_exits_1_and_names_file_and_line(tmp_path: Path, name, old, new, says) -> None:
    copy_example(tmp_path)
    path = tmp_path / "rules" / name
    content = path.read_bytes()
    assert old in content, f"{name} no longer holds {old!r}: pick another line to break"
    path.write_bytes(content.replace(old, new, 1))
    line = content.split(old)[0].count(b"\n") + 1
    result = nudger(tmp_path, "check")
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    assert f"rules/{name}:{line}: error: " in result.out and says in result.out, result.out


# --- 2. data rows ------------------------------------------------------------------------------------

CELLS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            " ",
            "2026-13-45",
            "2026-02-30",
            "26-11-2026",
            "1e400",
            "NaN",
            "-5",
            "€ 1.234,56",
            "1.234.567,89",
            "612.456",
            "0x10",
            "9" * 40,
            "Infinity",
            "1_000",
            "٣٤٥",
            "１２３",
            "2026-11",
            "2026-00",
            "9999-99",
            "\x00",
            "\ufeff",
            "ja",
            "misschien",
            "sms;fax",
            "ma-vr 25:00-26:00",
            "T-1001",
            "T-9999",
            "fatima",
            "nobody",
            "612.45",
            "Ünïcødé ☃",
        ]
    ),
)
NO_BREAKS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")


def csv_line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue()


def no_breaks(cells: list[str]) -> list[str]:
    return [c.replace("\r", "").replace("\n", "") for c in cells]


@st.composite
def bad_line(draw: st.DrawFn, lines: list[str]) -> str:
    """A line that does not belong: garbage, a wrong number of cells, a changed good row, an open quote."""
    width = len(lines[0].split(","))
    kind = draw(st.sampled_from(["cells", "short", "long", "changed", "raw", "blank", "quote"]))
    if kind == "raw":
        return draw(st.text(NO_BREAKS, max_size=60))
    if kind == "blank":
        return draw(st.sampled_from(["", " ", ",,,", ";"]))
    if kind == "changed":  # a good row with one cell made bad (or harmlessly different)
        cells = next(csv.reader([draw(st.sampled_from(lines[1:]))]))
        cells[draw(st.integers(0, width - 1))] = draw(CELLS)
        return csv_line(no_breaks(cells))
    if kind == "quote":  # a cell that opens a quote and never closes it
        cells = next(csv.reader([draw(st.sampled_from(lines[1:]))]))
        i = draw(st.integers(0, width - 1))
        return csv_line(cells[:i]) + ("," if i else "") + '"' + cells[i] + "," + ",".join(cells[i + 1 :])
    n = {"cells": width, "short": draw(st.integers(1, width - 1)), "long": width + draw(st.integers(1, 3))}[kind]
    return csv_line(no_breaks(draw(st.lists(CELLS, min_size=n, max_size=n))))


def fuzzed_csv(lines: list[str]):
    """How to spoil the example file: bad lines to put in (at a row index), the line ending, whether
    the last line ends, and a byte-order mark. Small to show when a test fails; `spoil` makes the file."""
    return st.tuples(
        st.lists(st.tuples(st.integers(0, len(lines) - 1), bad_line(lines)), max_size=8),
        st.sampled_from(["\n", "\r\n", "\r"]),
        st.sampled_from([True, True, False]),
        st.sampled_from([False] * 5 + [True]),
    )


def spoil(lines: list[str], recipe) -> tuple[bytes, dict[int, str]]:
    """The file, and the good rows left as they were by the line they are now on (header: line 1)."""
    inserts, end, final, bom = recipe
    rows: list[tuple[str, bool]] = [(line, True) for line in lines[1:]]
    for at, line in inserts:
        rows.insert(min(at, len(rows)), (line, False))
    text = end.join([lines[0]] + [r for r, _ in rows]) + (end if final else "")
    good = {n: line for n, (line, ok) in enumerate(rows, start=2) if ok}
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"), good


def physical_lines(data: bytes) -> list[str]:
    """The lines as the CSV reader counts them (\\n, \\r\\n and \\r all end a line)."""
    text = data.decode("utf-8-sig")
    return re.split(r"\r\n|\r|\n", text[:-1] if text.endswith(("\n", "\r")) else text) if text else []


def assert_every_row_accounted_for(data, path: Path, content: bytes, good: dict[int, str], kept) -> None:
    """Every row is kept or reported by its line; no line vanishes; good rows are kept unless a
    broken row before them (an open quote, the same tenant twice) took them along, which is reported."""
    lines = physical_lines(content)
    mine = [p for p in data.problems if p.file == str(path)]
    by_line: dict[int, list[str]] = {}
    for p in mine:
        assert 2 <= p.line <= len(lines), f"{p} (the file has {len(lines)} lines)"
        assert p.message.strip(), p
        by_line.setdefault(p.line, []).append(p.message)
    rows = data.tenant_rows if path.name == "tenants.csv" else data.payment_rows
    assert rows >= sum(1 for line in lines[1:] if line), "a line vanished without a word"
    for n, line in good.items():
        reasons = by_line.get(n, [])
        if not reasons:
            assert kept(line), f"{path.name}:{n}: good row lost without a word: {line}"
        elif any("unknown tenant" in r for r in reasons):  # its tenant's row was spoilt: reported too
            assert line.split(",")[0] not in data.records, (n, line, reasons)
        else:  # taken along by an open quote above it, or the tenant came twice (the first row counts)
            assert any("quote" in r or "twice" in r for r in reasons), (n, line, reasons)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for data files, written afresh by every example."""
    return tmp_path_factory.mktemp("data")


@FUZZ
@given(tenants=fuzzed_csv(TENANT_LINES), payments=fuzzed_csv(PAYMENT_LINES))
def test_garbled_rows_are_reported_by_line_and_good_rows_kept(scratch: Path, tenants, payments) -> None:
    tpath, ppath = scratch / "tenants.csv", scratch / "payments.csv"
    tenants, payments = spoil(TENANT_LINES, tenants), spoil(PAYMENT_LINES, payments)
    tpath.write_bytes(tenants[0])
    ppath.write_bytes(payments[0])
    try:
        data = read_csv_source(tpath, ppath)
    except ImportRefused as exc:  # refused whole: a cut-off last row, a header the sniffer misread
        assert re.search(r"(tenants|payments)\.csv(:\d+)?: ", str(exc)), exc
        event(f"refused: {exc.kind}")
        return
    # every row is kept or reported: tenants as records, payments in their tenant's history
    assert data.tenant_rows == len(data.records) + sum(1 for p in data.problems if p.file == str(tpath))
    paid = sum(r.history.count for r in data.records.values() if r.history is not None)
    assert data.payment_rows == paid + sum(1 for p in data.problems if p.file == str(ppath))

    def tenant_kept(line: str) -> bool:
        cells = dict(zip(TENANT_LINES[0].split(","), next(csv.reader([line])), strict=True))
        record = data.records.get(cells["tenant_id"])
        return record is not None and record.name == cells["name"] and record.officer == cells["officer"]

    def payment_kept(line: str) -> bool:  # not reported, so counted (above) in its tenant's history
        record = data.records.get(line.split(",")[0])
        return record is not None and record.history is not None and record.history.count > 0

    assert_every_row_accounted_for(data, tpath, tenants[0], tenants[1], tenant_kept)
    assert_every_row_accounted_for(data, ppath, payments[0], payments[1], payment_kept)
    try:
        check_bad_share(data, 0.05)
    except ImportRefused as exc:
        assert re.search(r"(tenants|payments)\.csv:\d+: ", str(exc)), exc  # the first bad row, by line
        event("refused: too many bad rows")
    else:
        event("accepted")


@FUZZ
@given(
    which=st.sampled_from(["tenants", "payments"]),
    where=st.floats(0, 1),
    junk=st.sampled_from([b"\xff", b"\xe9", b"\x80", b"\xc3", b"\xed\xa0\x80", b"caf\xe9"]),
)
def test_a_file_that_is_not_utf8_is_refused_naming_the_line(scratch: Path, which, where, junk) -> None:
    files = {"tenants": scratch / "tenants.csv", "payments": scratch / "payments.csv"}
    for name, lines in (("tenants", TENANT_LINES), ("payments", PAYMENT_LINES)):
        files[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    raw = files[which].read_bytes()
    at = int(where * len(raw))
    files[which].write_bytes(raw[:at] + junk + raw[at:])  # a Windows-1252 export, or a bad copy
    with pytest.raises(ImportRefused) as refused:
        read_csv_source(files["tenants"], files["payments"])
    line = raw.count(b"\n", 0, at) + 1
    assert f"{which}.csv:{line}: the file is not UTF-8 text" in str(refused.value)
    assert refused.value.kind == "encoding"


# --- 3. a refused import or a broken rulebook changes nothing in the ledger ---------------------------


def ledger_rows(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table of the store, as stored."""
    with closing(sqlite3.connect(db)) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type = 'table' order by name")]
        return {t: conn.execute(f'select * from "{t}" order by rowid').fetchall() for t in tables}


def assert_only_refusals_added(before: dict[str, list[tuple]], db: Path) -> int:
    """The ledger is as it was, row for row; only `imports` may have gained rows, each a refusal with
    its reason. Returns how many refusals were added."""
    after = ledger_rows(db)
    assert sorted(after) == sorted(before)
    for table in before:
        if table != "imports":
            assert after[table] == before[table], f"{table} changed"
    assert after["imports"][: len(before["imports"])] == before["imports"]
    with closing(sqlite3.connect(db)) as conn:
        added = conn.execute(
            "select status, reason from imports order by id limit -1 offset ?", (len(before["imports"]),)
        ).fetchall()
    for status, reason in added:
        assert status == "refused" and reason.strip(), (status, reason)
    return len(added)


@pytest.fixture(scope="module")
def planned_store(tmp_path_factory: pytest.TempPathFactory):
    """The example imported, planned and sent at NOW, in its own SQLite store."""
    folder = tmp_path_factory.mktemp("store")
    copy_example(folder)
    config = load_config(folder / "config.yaml")
    engine = Engine(config, clock=lambda: NOW_DT)
    try:
        engine.import_data()
        _, added = engine.plan()
        engine.dispatch(limit=1000)
    finally:
        engine.close()
    assert added > 0
    db = folder / "var" / "nudger.db"
    return config, db, ledger_rows(db)


BAD_MONTHS = st.sampled_from(["", "2026-13", "2026-00", "nov 2026", "2026/11", "11-2026", "2026-1x"])
BROKEN_RULES = st.sampled_from(
    [
        b"id: broken\nkind: reminder\ntrigger:\n\tbefore: rent_due\n",
        b"id: broken\nchannels: [sms, email\n",
        b"id: broken\nabout: \x00\n",
        b"id: broken\nabout: \xe9\xe9n\n",
        b"id: broken\nkind: reminder\ntrigger: {at: 2026-02-30 10:00:00}\ntext: Hoi\n",
        b"id: broken\nkind: reminder\ntrigger: {before: rent_due, days: 2}\nexpires: 100000 days\ntext: Hoi\n",
        b"id: broken\nsoort: reminder\n",
    ]
)


@st.composite
def refused_data(draw: st.DrawFn) -> tuple[str, bytes]:
    """A data file that must be refused whole: which file, and what it holds."""
    kind = draw(st.sampled_from(["truncated", "cut", "bad rows", "not utf8", "header", "empty"]))
    if kind == "truncated":  # at most 50 of 64 tenants (below 80% of the last import), maybe half a row more
        keep = draw(st.integers(0, 50))
        partial = TENANT_LINES[keep + 1][: draw(st.integers(0, len(TENANT_LINES[keep + 1]) - 1))]
        return "tenants.csv", ("\n".join(TENANT_LINES[: keep + 1]) + "\n" + partial).encode()
    if kind == "cut":  # payments stop in the middle of a row
        at = draw(st.integers(1, len(PAYMENT_LINES) - 1))
        row = PAYMENT_LINES[at]
        return "payments.csv", (
            "\n".join(PAYMENT_LINES[:at]) + "\n" + row[: draw(st.integers(1, len(row) - 1))]
        ).encode()
    if kind == "bad rows":  # every n-th payment unreadable: more than 5% of all rows
        step, first, month = draw(st.integers(2, 15)), draw(st.integers(1, 15)), draw(BAD_MONTHS)
        lines = [
            line.rsplit(",", 1)[0] + "," + month if i >= first and (i - first) % step == 0 else line
            for i, line in enumerate(PAYMENT_LINES)
        ]
        return "payments.csv", ("\n".join(lines) + "\n").encode()
    if kind == "not utf8":
        name, lines = draw(st.sampled_from([("tenants.csv", TENANT_LINES), ("payments.csv", PAYMENT_LINES)]))
        raw = ("\n".join(lines) + "\n").encode()
        at = draw(st.integers(0, len(raw)))
        return name, raw[:at] + draw(st.sampled_from([b"\xe9", b"\xff", b"\x80"])) + raw[at:]
    if kind == "header":
        name, lines = draw(st.sampled_from([("tenants.csv", TENANT_LINES), ("payments.csv", PAYMENT_LINES)]))
        required = ["tenant_id", "name", "officer", "rent", "arrears"] if name == "tenants.csv" else lines[0].split(",")
        column = draw(st.sampled_from(required))
        header = lines[0].replace(column, draw(st.sampled_from(["", "huurder", column.upper(), column + "x"])), 1)
        if column in header.split(","):
            header = header.replace(column, "", 1)
        return name, ("\n".join([header, *lines[1:]]) + "\n").encode()
    return "tenants.csv", draw(st.sampled_from([b"", b"\n", TENANT_LINES[0].encode() + b"\n"]))


@SLOW_FUZZ
@given(bad=refused_data(), broken=BROKEN_RULES)
def test_a_refused_import_or_a_broken_rulebook_changes_nothing_in_the_ledger(planned_store, bad, broken) -> None:
    config, db, before = planned_store
    data = config.base_dir / "examples"
    name, content = bad
    for file, lines in (("tenants.csv", TENANT_LINES), ("payments.csv", PAYMENT_LINES)):
        (data / file).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (data / name).write_bytes(content)
    engine = Engine(config, clock=lambda: NOW_DT)
    try:
        with pytest.raises(ImportRefused) as refused:
            engine.import_data()
    finally:
        engine.close()
    assert re.search(r"nothing was (imported|planned)", str(refused.value)), refused.value
    event(f"refused: {refused.value.kind}")
    # a rulebook that fails to load is refused before anything is planned
    rule = config.rules_path / "zz-broken.yaml"
    rule.write_bytes(broken)
    engine = Engine(config, clock=lambda: NOW_DT)
    try:
        with pytest.raises(RulebookError) as bad_book:
            engine.plan()
    finally:
        engine.close()
        rule.unlink()
    assert any(f.file == "rules/zz-broken.yaml" and f.line >= 1 for f in bad_book.value.findings)
    assert assert_only_refusals_added(before, db) >= 1


# --- 4. a truncated data file is refused and plans nothing ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "command"),
    [
        pytest.param("tenants.csv", ("run", "--once", "--now", NOW), id="tenants-run-once"),
        pytest.param("payments.csv", ("import", "--date", "2026-11-30"), id="payments-import"),
    ],
)
def test_a_data_file_cut_off_halfway_is_refused_and_plans_nothing(tmp_path: Path, name: str, command) -> None:
    copy_example(tmp_path)
    engine = Engine(load_config(tmp_path / "config.yaml"), clock=lambda: NOW_DT)
    try:  # a good day first: imported, planned and sent
        engine.import_data()
        engine.plan()
        engine.dispatch(limit=1000)
    finally:
        engine.close()
    db = tmp_path / "var" / "nudger.db"
    before, sent = ledger_rows(db), outbox_files(tmp_path)
    assert sent
    path = tmp_path / "examples" / name
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = len(lines) * 3 // 10  # the first 30% of the lines, and half of the next: an export that stopped
    path.write_text("".join(lines[:keep]) + lines[keep][: len(lines[keep]) // 2], encoding="utf-8")
    result = nudger(tmp_path, *command)
    assert result.code != 0, result.text
    assert "Traceback" not in result.text
    assert "nudger: " in result.err and "nothing was imported" in result.err, result.err
    assert assert_only_refusals_added(before, db) == 1
    assert outbox_files(tmp_path) == sent


def test_a_payments_file_cut_at_the_end_of_a_line_is_refused(tmp_path: Path) -> None:
    copy_example(tmp_path)
    config = load_config(tmp_path / "config.yaml")
    path = tmp_path / "examples" / "payments.csv"
    engine = Engine(config, clock=lambda: NOW_DT)
    try:
        engine.import_data()
        path.write_text("\n".join(PAYMENT_LINES[: len(PAYMENT_LINES) * 3 // 10]) + "\n", encoding="utf-8")
        with pytest.raises(ImportRefused, match="payments data holds .* rows, far fewer than"):
            engine.import_data()
        assert engine.ledger.last_accepted_import().id == 1  # the first import is still the newest
    finally:
        engine.close()
