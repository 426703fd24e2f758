"""Tests for benchmarks/make_data.py and the shipped example data in examples/."""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
REFERENCE_DAY = date(2026, 11, 30)

TENANT_HEADER_LINE = (
    "tenant_id,name,first_name,language,phone,email,whatsapp_opt_in,street,house_number,"
    "postcode,city,officer,rent,due_day,arrears,arrears_since,arrangement_amount,"
    "arrangement_day,arrangement_until,preferred_channels,move_in"
)
TENANT_HEADER = TENANT_HEADER_LINE.split(",")
PAYMENT_HEADER = ["tenant_id", "paid_on", "amount", "for_month"]

MOBILE = re.compile(r"^(06 ?|\+316|\+31 6 )(1234|5555) ?\d{4}$")
LANDLINE = re.compile(r"^0\d{2} 555 0\d{3}$")
MONEY = re.compile(r"^\d+([.,]\d{2})?$")


def _load_module() -> ModuleType:
    path = ROOT / "benchmarks" / "make_data.py"
    spec = importlib.util.spec_from_file_location("nudger_bench_make_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module to be registered
    spec.loader.exec_module(module)
    return module


make_data = _load_module()


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _header(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return next(csv.reader(handle))


def _money(text: str) -> Decimal:
    assert MONEY.match(text), text
    return Decimal(text.replace(",", "."))


def _month(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def _due_date(for_month: str, due_day: int) -> date:
    year, month = (int(part) for part in for_month.split("-"))
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return date(year, month, min(due_day, (nxt - timedelta(days=1)).day))


def _window(reference_day: date, months: int = 24) -> list[str]:
    index = reference_day.year * 12 + reference_day.month - 1
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - months + 1, index + 1)]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen200")
    make_data.generate(200, out, seed=2026, reference_day=REFERENCE_DAY)
    return out


Example = tuple[dict[str, dict[str, str]], dict[str, list[dict[str, str]]]]


@pytest.fixture(scope="module")
def example() -> Example:
    tenants = {row["tenant_id"]: row for row in _read(EXAMPLES / "tenants.csv")}
    payments: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in _read(EXAMPLES / "payments.csv"):
        payments[row["tenant_id"]].append(row)
    return tenants, payments


def _late_months(tenant: dict[str, str], payments: list[dict[str, str]]) -> list[str]:
    due_day = int(tenant["due_day"])
    return sorted(
        p["for_month"] for p in payments if date.fromisoformat(p["paid_on"]) > _due_date(p["for_month"], due_day)
    )


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------


def test_headers_and_row_count(generated: Path) -> None:
    assert _header(generated / "tenants.csv") == TENANT_HEADER
    assert _header(generated / "payments.csv") == PAYMENT_HEADER
    tenants = _read(generated / "tenants.csv")
    assert [t["tenant_id"] for t in tenants] == [f"T-{1001 + i}" for i in range(200)]
    payments = _read(generated / "payments.csv")
    # at most 24 rent payments per tenant plus partial/arrangement payments; most pay all 24
    assert 200 * 18 < len(payments) < 200 * 26
    assert {p["tenant_id"] for p in payments} <= {t["tenant_id"] for t in tenants}


def test_deterministic_for_seed(generated: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    make_data.generate(200, again, seed=2026, reference_day=REFERENCE_DAY)
    for name in ("tenants.csv", "payments.csv"):
        assert (again / name).read_bytes() == (generated / name).read_bytes()
    other = tmp_path / "other"
    make_data.generate(200, other, seed=7, reference_day=REFERENCE_DAY)
    assert (other / "tenants.csv").read_bytes() != (generated / "tenants.csv").read_bytes()


def test_cli(tmp_path: Path) -> None:
    assert make_data.main(["--tenants", "20", "--out", str(tmp_path), "--seed", "5"]) == 0
    direct = tmp_path / "direct"
    make_data.generate(20, direct, seed=5)
    for name in ("tenants.csv", "payments.csv"):
        assert (tmp_path / name).read_bytes() == (direct / name).read_bytes()


def test_fields_are_plausible(generated: Path) -> None:
    for t in _read(generated / "tenants.csv"):
        assert t["name"].startswith(t["first_name"] + " ")
        assert t["language"] in {"nl", "en", ""}
        assert not t["phone"] or MOBILE.match(t["phone"]) or LANDLINE.match(t["phone"])
        assert not t["email"] or re.match(r"^[a-z0-9.]+@example\.(nl|com)$", t["email"])
        assert t["whatsapp_opt_in"] in {"ja", "nee", ""}
        assert re.match(r"^[1-9]\d{3} [A-Z]{2}$", t["postcode"])
        assert t["officer"] in {"fatima", "jan", "sanne", "ahmed"}
        assert Decimal(450) <= _money(t["rent"]) <= Decimal(950)
        assert int(t["due_day"]) in {1, 5, 15, 27, 28}
        channels = t["preferred_channels"].split(";") if t["preferred_channels"] else []
        assert set(channels) <= {"whatsapp", "sms", "email", "print", "call"}
        assert len(channels) == len(set(channels))
        assert date.fromisoformat(t["move_in"]) <= REFERENCE_DAY
        if t["arrangement_amount"]:
            assert 1 <= int(t["arrangement_day"]) <= 28
            assert date.fromisoformat(t["arrangement_until"]) > REFERENCE_DAY
            assert _money(t["arrears"]) > 0
        else:
            assert t["arrangement_day"] == t["arrangement_until"] == ""


def _check_consistency(directory: Path, reference_day: date) -> None:
    """Arrears, arrears_since and payments tell the same story for every tenant."""
    window = _window(reference_day)
    payments: dict[str, list[dict[str, str]]] = defaultdict(list)
    for p in _read(directory / "payments.csv"):
        payments[p["tenant_id"]].append(p)
    for t in _read(directory / "tenants.csv"):
        tenant_id = t["tenant_id"]
        rent = _money(t["rent"])
        due_day = int(t["due_day"])
        months = [m for m in window if m >= _month(date.fromisoformat(t["move_in"]))]
        paid: dict[str, Decimal] = defaultdict(Decimal)
        for p in payments[tenant_id]:
            assert date.fromisoformat(p["paid_on"]) <= reference_day, p
            assert p["for_month"] in months, p
            paid[p["for_month"]] += _money(p["amount"])
        owed = {m: rent - paid[m] for m in months if _due_date(m, due_day) <= reference_day and paid[m] < rent}
        assert all(paid[m] <= rent for m in months), tenant_id
        assert sum(owed.values(), Decimal(0)) == _money(t["arrears"]), tenant_id
        if owed:
            assert t["arrears_since"] == _due_date(min(owed), due_day).isoformat(), tenant_id
        else:
            assert t["arrears"] == "0" and t["arrears_since"] == "", tenant_id


def test_payments_consistent_with_arrears(generated: Path) -> None:
    _check_consistency(generated, REFERENCE_DAY)


def test_other_reference_day_is_consistent(tmp_path: Path) -> None:
    reference_day = date(2026, 3, 10)
    make_data.generate(150, tmp_path, seed=11, reference_day=reference_day)
    _check_consistency(tmp_path, reference_day)


def test_larger_run_starts_with_the_example(generated: Path) -> None:
    big = (generated / "tenants.csv").read_text(encoding="utf-8").splitlines()
    small = (EXAMPLES / "tenants.csv").read_text(encoding="utf-8").splitlines()
    assert big[: len(small)] == small


# --------------------------------------------------------------------------------------------
# Shipped example
# --------------------------------------------------------------------------------------------


def test_examples_match_generator(tmp_path: Path) -> None:
    make_data.generate(64, tmp_path, seed=2026, reference_day=REFERENCE_DAY)
    for name in ("tenants.csv", "payments.csv"):
        assert (EXAMPLES / name).read_bytes() == (tmp_path / name).read_bytes(), (
            f"examples/{name} drifted from benchmarks/make_data.py; regenerate with: python "
            "benchmarks/make_data.py --tenants 64 --out examples --seed 2026 "
            "--reference-day 2026-11-30"
        )


def test_example_shape(example: Example) -> None:
    tenants, _payments = example
    assert _header(EXAMPLES / "tenants.csv") == TENANT_HEADER
    assert _header(EXAMPLES / "payments.csv") == PAYMENT_HEADER
    assert list(tenants) == [f"T-{i}" for i in range(1001, 1065)]
    rents = [t["rent"] for t in tenants.values()]
    assert any("," in r for r in rents) and any("." in r for r in rents)
    _check_consistency(EXAMPLES, REFERENCE_DAY)


def test_edge_cases_contact(example: Example) -> None:
    t, _ = example
    assert t["T-1001"]["preferred_channels"] == "whatsapp;sms"
    assert t["T-1001"]["whatsapp_opt_in"] == "ja"
    assert MOBILE.match(t["T-1001"]["phone"])
    assert t["T-1001"]["officer"] == "fatima"

    assert t["T-1002"]["phone"] == t["T-1002"]["email"] == ""
    assert t["T-1002"]["preferred_channels"] == "print"
    assert t["T-1002"]["officer"] == "jan"

    assert t["T-1003"]["preferred_channels"] == "whatsapp;sms"
    assert MOBILE.match(t["T-1003"]["phone"])
    assert t["T-1003"]["whatsapp_opt_in"] == "nee"

    assert t["T-1004"]["language"] == "en"
    assert t["T-1004"]["phone"] and t["T-1004"]["email"]
    assert t["T-1004"]["preferred_channels"] == "email;sms"
    assert t["T-1004"]["officer"] == "ahmed"

    assert t["T-1006"]["officer"] == "sanne"
    assert t["T-1006"]["preferred_channels"] == "sms"

    assert t["T-1009"]["preferred_channels"] == "email" and t["T-1009"]["email"]
    assert t["T-1010"]["preferred_channels"] == "sms"
    assert t["T-1011"]["phone"]

    assert t["T-1012"]["phone"] == "020 555 0123"
    assert t["T-1012"]["email"] == ""
    assert t["T-1012"]["preferred_channels"] == "sms"

    assert t["T-1013"]["name"] == "Maria Dolores van den Bosch-Wijnaldum"
    assert t["T-1013"]["first_name"] == "Maria Dolores"
    assert t["T-1013"]["preferred_channels"] == "email" and t["T-1013"]["email"]
    assert t["T-1013"]["house_number"] == "140 II"


def test_edge_cases_payment_history(example: Example) -> None:
    t, p = example
    last6 = _window(REFERENCE_DAY, 6)

    assert t["T-1001"]["due_day"] == "1" and t["T-1001"]["arrears"] == "0"
    assert _late_months(t["T-1001"], p["T-1001"]) == ["2026-06", "2026-08", "2026-10"]

    assert t["T-1004"]["due_day"] == "1" and t["T-1004"]["arrears"] == "0"
    late = _late_months(t["T-1004"], p["T-1004"])
    assert len(late) == 2 and set(late) <= set(last6)

    assert t["T-1006"]["due_day"] == "1" and t["T-1006"]["arrears"] == "0"
    assert len([m for m in _late_months(t["T-1006"], p["T-1006"]) if m in last6]) >= 2

    rent7 = _money(t["T-1007"]["rent"])
    assert _money(t["T-1007"]["arrears"]) == rent7
    assert t["T-1007"]["arrears_since"]

    t8 = t["T-1008"]
    assert t8["due_day"] == "27"
    assert _money(t8["arrears"]) == _money(t8["rent"])
    assert t8["arrears_since"] == "2026-11-27"
    assert t8["preferred_channels"] == "whatsapp;sms" and t8["whatsapp_opt_in"] == "ja"
    assert _late_months(t8, p["T-1008"]) == []
    assert "2026-11" not in {row["for_month"] for row in p["T-1008"]}

    t9 = t["T-1009"]
    assert t9["due_day"] == "1"
    assert _money(t9["arrears"]) == 2 * _money(t9["rent"])
    assert t9["arrears_since"] == "2026-10-01"

    months10 = [row["for_month"] for row in p["T-1010"]]
    assert months10 == _window(REFERENCE_DAY)
    assert _late_months(t["T-1010"], p["T-1010"]) == []
    assert t["T-1010"]["arrears"] == "0"

    assert _late_months(t["T-1011"], p["T-1011"]) == ["2025-01", "2026-01"]
    assert t["T-1011"]["arrears"] == "0"
    assert len(p["T-1011"]) == 24

    assert t["T-1014"]["move_in"] == "2026-09-01"
    assert [row["for_month"] for row in p["T-1014"]] == ["2026-09", "2026-10", "2026-11"]
    assert _late_months(t["T-1014"], p["T-1014"]) == []
    assert t["T-1014"]["arrears"] == "0"


def test_edge_case_arrangement(example: Example) -> None:
    t, p = example
    t5 = t["T-1005"]
    assert t5["arrears"] == "450.00"
    assert t5["arrangement_amount"] == "75.00"
    assert t5["arrangement_day"] == "1"
    assert t5["arrangement_until"] == "2027-05-31"
    assert t5["arrears_since"] == "2026-07-01"
    assert t5["preferred_channels"] == "sms" and MOBILE.match(t5["phone"])
    extra = [row for row in p["T-1005"] if _money(row["amount"]) == Decimal("75.00")]
    assert extra and all(row["for_month"] == "2026-07" for row in extra)
    assert all(row["paid_on"][8:] == "01" for row in extra)
