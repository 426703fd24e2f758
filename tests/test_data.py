"""Unit tests for nudger/data.py: amounts, tenant and payment rows, bad rows by line, refused imports."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from nudger.data import (
    TENANT_COLUMNS,
    check_bad_share,
    parse_money,
    read_csv_source,
    tenant_from_row,
)
from nudger.errors import ImportRefused

HEADER = ",".join(TENANT_COLUMNS)


def tenant_cells(tid: str, *, rent: str = "612.45", officer: str = "fatima", due_day: str = "1", **kw: str) -> dict:
    cells = {
        "tenant_id": tid,
        "name": f"Naam {tid}",
        "first_name": "",
        "language": "nl",
        "phone": "0612345678",
        "email": "",
        "whatsapp_opt_in": "ja",
        "street": "Kerkstraat",
        "house_number": "1",
        "postcode": "1061 lg",
        "city": "Amsterdam",
        "officer": officer,
        "rent": rent,
        "due_day": due_day,
        "arrears": "0",
        "arrears_since": "",
        "arrangement_amount": "",
        "arrangement_day": "",
        "arrangement_until": "",
        "preferred_channels": "sms",
        "move_in": "2015-03-01",
    }
    cells.update(kw)
    return cells


def tenant_line(tid: str, **kw: str) -> str:
    cells = tenant_cells(tid, **kw)
    return ",".join(f'"{cells[c]}"' if "," in cells[c] else cells[c] for c in TENANT_COLUMNS)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- parse_money ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("612.45", Decimal("612.45")),
        ("612,45", Decimal("612.45")),
        ("1.234,56", Decimal("1234.56")),
        ("1,234.56", Decimal("1234.56")),
        ("€ 50", Decimal("50")),
        ("€50,00", Decimal("50.00")),
        ("\u20ac\u00a01.234,56", Decimal("1234.56")),  # as Babel writes it
        (" 0 ", Decimal("0")),
    ],
)
def test_parse_money(text, expected):
    value = parse_money(text)
    assert value == expected
    assert isinstance(value, Decimal)


@pytest.mark.parametrize("text", ["", "   ", "abc", "12,34,56x", "NaN", "Infinity"])
def test_parse_money_refuses_what_is_not_an_amount(text):
    with pytest.raises(ValueError):
        parse_money(text)


# --- tenant rows -------------------------------------------------------------------------------


def test_tenant_row_is_read_into_a_record():
    rec = tenant_from_row(tenant_cells("T-1", rent="1.234,56", due_day="28"))
    assert rec.tenant_id == "T-1"
    assert rec.first_name == "Naam"  # from the full name when empty
    assert rec.rent == Decimal("1234.56")
    assert rec.due_day == 28
    assert rec.whatsapp_opt_in is True
    assert rec.postcode == "1061 LG"
    assert rec.preferred_channels == ("sms",)
    assert rec.move_in == date(2015, 3, 1)
    assert rec.arrears_since is None and rec.arrangement_amount is None


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"tenant_id": ""}, "tenant_id is empty"),
        ({"officer": ""}, "officer is empty"),
        ({"rent": ""}, "rent is empty"),
        ({"rent": "veel"}, "rent"),
        ({"arrears": "-5"}, "negative"),
        ({"due_day": "32"}, "due_day"),
        ({"move_in": "01-03-2015"}, "move_in"),
        ({"whatsapp_opt_in": "misschien"}, "whatsapp_opt_in"),
        ({"preferred_channels": "fax"}, "`fax` is not a channel"),
    ],
)
def test_bad_tenant_row_names_the_column(change, says):
    row = tenant_cells("T-1")
    row.update(change)
    with pytest.raises(ValueError, match=says):
        tenant_from_row(row)


# --- CSV files ---------------------------------------------------------------------------------


def test_good_files_are_read(tmp_path):
    tenants = write(tmp_path / "tenants.csv", [HEADER, tenant_line("T-1"), tenant_line("T-2", rent="700,00")])
    payments = write(
        tmp_path / "payments.csv",
        ["tenant_id,paid_on,amount,for_month", "T-1,2026-11-01,612.45,2026-11", 'T-2,2026-11-02,"700,00",2026-11'],
    )
    data = read_csv_source(tenants, payments)
    assert data.problems == []
    assert sorted(data.records) == ["T-1", "T-2"]
    assert data.records["T-2"].rent == Decimal("700.00")
    history = data.records["T-2"].payment_history()  # payments are kept in short while reading
    assert (history.paid_on_time(2026, 11), history.count, history.last_paid_on) == (
        Decimal(0),
        1,
        date(2026, 11, 2),  # paid on the 2nd, due on the 1st: not on time
    )
    assert (data.tenant_rows, data.payment_rows) == (2, 2)


def test_semicolon_separated_dutch_export(tmp_path):
    tenants = write(
        tmp_path / "tenants.csv",
        [
            "tenant_id;name;officer;rent;arrears",
            "T-1;Anna de Vries;fatima;1.234,56;0",
            "T-2;Bert Jansen;jan;612,45;50,00",
        ],
    )
    data = read_csv_source(tenants, None)
    assert data.problems == []
    assert data.records["T-1"].rent == Decimal("1234.56")
    assert data.records["T-2"].arrears == Decimal("50.00")


def test_bad_row_is_reported_with_file_and_line_and_only_it_is_skipped(tmp_path):
    tenants = write(
        tmp_path / "tenants.csv",
        [HEADER, tenant_line("T-1"), tenant_line("T-2", rent="veel"), tenant_line("T-3")],
    )
    data = read_csv_source(tenants, None)
    assert sorted(data.records) == ["T-1", "T-3"]
    assert len(data.problems) == 1
    problem = data.problems[0]
    assert problem.line == 3
    assert str(problem).startswith(f"{tenants}:3: rent")
    assert "skipped" in str(problem)


def test_line_numbers_are_the_lines_in_the_file_blank_lines_included(tmp_path):
    tenants = write(
        tmp_path / "tenants.csv",
        [HEADER, tenant_line("T-1"), "", tenant_line("T-2"), tenant_line("T-3"), tenant_line("T-4", due_day="40")],
    )
    data = read_csv_source(tenants, None)
    assert sorted(data.records) == ["T-1", "T-2", "T-3"]
    assert [p.line for p in data.problems] == [6]
    assert "due_day" in data.problems[0].message


def test_tenant_twice_keeps_the_first_row(tmp_path):
    tenants = write(tmp_path / "tenants.csv", [HEADER, tenant_line("T-1"), tenant_line("T-1", rent="1,00")])
    data = read_csv_source(tenants, None)
    assert data.records["T-1"].rent == Decimal("612.45")
    assert [(p.line, "twice" in p.message) for p in data.problems] == [(3, True)]


def test_row_with_too_many_cells_is_reported(tmp_path):
    tenants = write(tmp_path / "tenants.csv", [HEADER, tenant_line("T-1"), tenant_line("T-2") + ",extra"])
    data = read_csv_source(tenants, None)
    assert sorted(data.records) == ["T-1"]
    assert [p.line for p in data.problems] == [3]


def test_missing_required_column_refuses_the_import_naming_it(tmp_path):
    header = [c for c in TENANT_COLUMNS if c != "officer"]
    tenants = write(tmp_path / "tenants.csv", [",".join(header), ",".join("x" for _ in header)])
    with pytest.raises(ImportRefused) as info:
        read_csv_source(tenants, None)
    message = str(info.value)
    assert "officer" in message
    assert "nothing was imported" in message
    assert f"{tenants}:1" in message


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ImportRefused, match="does not exist"):
        read_csv_source(tmp_path / "nope.csv", None)


def test_unknown_column_is_a_note_not_an_error(tmp_path):
    tenants = write(
        tmp_path / "tenants.csv",
        ["tenant_id,name,officer,rent,arrears,shoe_size", "T-1,Anna de Vries,fatima,600,0,38"],
    )
    data = read_csv_source(tenants, None)
    assert sorted(data.records) == ["T-1"]
    assert any("shoe_size" in n for n in data.notes)


def test_payment_for_unknown_tenant_is_reported_with_its_line(tmp_path):
    tenants = write(tmp_path / "tenants.csv", [HEADER, tenant_line("T-1")])
    payments = write(
        tmp_path / "payments.csv",
        [
            "tenant_id,paid_on,amount,for_month",
            "T-1,2026-11-01,612.45,2026-11",
            "T-9,2026-11-01,612.45,2026-11",
            "T-1,2026-10-01,612.45,2026-10",
        ],
    )
    data = read_csv_source(tenants, payments)
    assert data.records["T-1"].payment_history().count == 2
    assert len(data.problems) == 1
    assert data.problems[0].line == 3
    assert str(data.problems[0]).startswith(f"{payments}:3:")
    assert "T-9" in data.problems[0].message


@pytest.mark.parametrize(
    ("row", "says"),
    [
        ("T-1,2026-11-01,612.45,2026-13", "for_month"),
        ("T-1,01-11-2026,612.45,2026-11", "paid_on"),
        ("T-1,2026-11-01,zes,2026-11", "amount"),
    ],
)
def test_bad_payment_row_names_the_column_and_line(tmp_path, row, says):
    tenants = write(tmp_path / "tenants.csv", [HEADER, tenant_line("T-1")])
    payments = write(
        tmp_path / "payments.csv", ["tenant_id,paid_on,amount,for_month", "T-1,2026-10-01,612.45,2026-10", row]
    )
    data = read_csv_source(tenants, payments)
    assert data.records["T-1"].payment_history().count == 1
    assert [p.line for p in data.problems] == [3]
    assert says in data.problems[0].message


# --- the bad-share guard -----------------------------------------------------------------------


def test_a_few_bad_rows_are_accepted(tmp_path):
    lines = [HEADER] + [tenant_line(f"T-{i}") for i in range(1, 40)] + [tenant_line("T-40", rent="?")]
    data = read_csv_source(write(tmp_path / "tenants.csv", lines), None)
    check_bad_share(data, 0.05)  # 1 of 40 is 2.5 %: fine
    assert len(data.records) == 39


def test_too_many_bad_rows_refuse_the_whole_import(tmp_path):
    lines = [HEADER, tenant_line("T-1"), tenant_line("T-2", rent="?"), tenant_line("T-3", officer="")]
    data = read_csv_source(write(tmp_path / "tenants.csv", lines), None)
    with pytest.raises(ImportRefused) as info:
        check_bad_share(data, 0.05)
    message = str(info.value)
    assert "2 of 3 rows" in message
    assert "refused" in message
    assert ":3:" in message  # the first bad row, by line


def test_a_file_without_tenants_is_refused(tmp_path):
    data = read_csv_source(write(tmp_path / "tenants.csv", [HEADER]), None)
    with pytest.raises(ImportRefused, match="no tenants"):
        check_bad_share(data, 0.05)


def test_the_same_import_reads_from_a_sql_query(tmp_path):
    """`data.source: sql`: the corporation's database, here a SQLite file, gives the same records."""
    import sqlite3

    from nudger.config import DataConfig
    from nudger.data import read_sql_source

    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "create table huurders (tenant_id text, name text, officer text, rent numeric, arrears numeric,"
            " arrears_since date, due_day integer, phone text)"
        )
        conn.execute("create table betalingen (tenant_id text, paid_on date, amount numeric, for_month text)")
        conn.execute(
            "insert into huurders values ('T-1', 'Sanne de Vries', 'fatima', 612.45, 0, null, 1, '06 12345678')"
        )
        conn.execute("insert into huurders values ('T-2', 'Henk Jansen', 'jan', 'zeshonderd', 0, null, 1, null)")
        conn.execute("insert into betalingen values ('T-1', '2026-11-01', 612.45, '2026-11')")
    config = DataConfig(
        source="sql",
        url=f"sqlite:///{db}",
        tenants_query="select * from huurders order by tenant_id",
        payments_query="select * from betalingen",
    )
    data = read_sql_source(config)
    assert list(data.records) == ["T-1"]
    assert data.records["T-1"].rent == Decimal("612.45") and data.records["T-1"].payment_history().count == 1
    assert [str(p) for p in data.problems] == [
        "tenants_query row:2: rent: `zeshonderd` is not an amount in euro (write 612.45 or 612,45); the row was skipped"
    ]
