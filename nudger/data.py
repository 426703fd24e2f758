"""Reading tenant data (CSV files or a SQL query) into TenantRecords, with every bad row named."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

from .config import CHANNEL_NAMES, DataConfig
from .errors import ImportRefused
from .facts import Payment, TenantRecord
from .pacing import parse_windows

TENANT_COLUMNS = (
    "tenant_id",
    "name",
    "first_name",
    "language",
    "phone",
    "email",
    "whatsapp_opt_in",
    "street",
    "house_number",
    "postcode",
    "city",
    "officer",
    "rent",
    "due_day",
    "arrears",
    "arrears_since",
    "arrangement_amount",
    "arrangement_day",
    "arrangement_until",
    "preferred_channels",
    "move_in",
)
OPTIONAL_COLUMNS = ("window",)  # beyond the contract: a send window, like `ma-vr 18:00-20:00`
TENANT_REQUIRED = ("tenant_id", "name", "officer", "rent", "arrears")
PAYMENT_COLUMNS = ("tenant_id", "paid_on", "amount", "for_month")
_TRUE = {"1", "true", "yes", "ja", "y", "j", "waar"}
_FALSE = {"", "0", "false", "no", "nee", "n", "onwaar"}
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_PLAIN_AMOUNT = re.compile(r"\d{1,6}(?:[.,]\d{1,2})?")
_THOUSANDS = re.compile(r"-?\d{1,3}([.,]\d{3})+")
_BREAK = re.compile(r"\r\n|\r|\n")
_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class RowProblem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class ImportData:
    """What a source gave: the good records, and every row that was skipped and why."""

    records: dict[str, TenantRecord]
    problems: list[RowProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tenant_rows: int = 0
    payment_rows: int = 0
    source: str = ""


def parse_money(text: str) -> Decimal:
    """Euro amounts as officers' systems write them: `612.45`, `612,45`, `1.234,56`, `€ 50`."""
    s = text.strip()
    if _PLAIN_AMOUNT.fullmatch(s):  # the common case, `612.45` or `612,45`: no further questions
        return Decimal(s.replace(",", "."))
    s = s.replace("€", "").replace("\u00a0", "").replace(" ", "")
    if not s:
        raise ValueError("empty amount")
    if "," in s and "." in s:
        s = s.replace(".", "").replace(",", ".") if s.rfind(",") > s.rfind(".") else s.replace(",", "")
    elif _THOUSANDS.fullmatch(s):
        s = s.replace(".", "").replace(",", "")  # 1.234 or 1,234: a thousands separator, not cents
    elif "," in s:
        s = s.replace(",", ".")
    try:
        value = Decimal(s)
    except InvalidOperation:
        raise ValueError(f"`{text}` is not an amount in euro (write 612.45 or 612,45)") from None
    if not value.is_finite():
        raise ValueError(f"`{text}` is not an amount in euro")
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError(f"`{text}` has more than two decimals (write 612.45 or 612,45)")
    return value


def parse_date(text: str, column: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{column}: `{text}` is not a date (write YYYY-MM-DD, like 2026-11-26)") from None


def parse_bool(text: str, column: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError(f"{column}: `{text}` is not yes or no (write ja/nee or true/false)")


def parse_channels(text: str) -> tuple[str, ...]:
    items = [c.strip().lower() for c in re.split(r"[;|, ]+", text) if c.strip()]
    for c in items:
        if c not in CHANNEL_NAMES:
            raise ValueError(f"preferred_channels: `{c}` is not a channel (use {', '.join(CHANNEL_NAMES)})")
    return tuple(dict.fromkeys(items))


def _int(text: str, column: str, lo: int, hi: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{column}: `{text}` is not a whole number") from None
    if not lo <= value <= hi:
        raise ValueError(f"{column}: {value} is not between {lo} and {hi}")
    return value


def tenant_from_row(row: Mapping[str, str | None]) -> TenantRecord:
    """One tenant row to a record; raises ValueError naming the column that is wrong."""

    def get(name: str) -> str:
        value = row.get(name)
        return "" if value is None else str(value).strip()

    tid = get("tenant_id")
    if not tid:
        raise ValueError("tenant_id is empty")
    if not get("name"):
        raise ValueError("name is empty")
    if not get("officer"):
        raise ValueError("officer is empty (every tenant needs a contact person)")

    def money(name: str, required: bool = False) -> Decimal | None:
        value = get(name)
        if not value:
            if required:
                raise ValueError(f"{name} is empty")
            return None
        try:
            amount = parse_money(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        if amount < 0:
            raise ValueError(f"{name}: {value} is negative")
        return amount

    def day(name: str) -> date | None:
        value = get(name)
        return parse_date(value, name) if value else None

    arrears = money("arrears") or Decimal(0)
    since = day("arrears_since")
    name = get("name")
    return TenantRecord(
        tenant_id=tid,
        name=name,
        first_name=get("first_name") or name.split()[0],
        language=get("language").lower(),
        phone=get("phone"),
        email=get("email"),
        whatsapp_opt_in=parse_bool(get("whatsapp_opt_in"), "whatsapp_opt_in"),
        street=get("street"),
        house_number=get("house_number"),
        postcode=get("postcode").upper(),
        city=get("city"),
        officer=get("officer"),
        rent=money("rent", required=True) or Decimal(0),
        due_day=_int(get("due_day"), "due_day", 1, 31) if get("due_day") else 1,
        arrears=arrears,
        arrears_since=since,
        arrangement_amount=money("arrangement_amount"),
        arrangement_day=_int(get("arrangement_day"), "arrangement_day", 1, 31) if get("arrangement_day") else None,
        arrangement_until=day("arrangement_until"),
        preferred_channels=parse_channels(get("preferred_channels")),
        move_in=day("move_in"),
        window=_windows(get("window")),
    )


def _windows(text: str) -> tuple[str, ...]:
    if not text:
        return ()
    try:
        parse_windows(text)
    except ValueError as exc:
        raise ValueError(f"window: {exc}") from None
    return tuple(p.strip() for p in text.split(";") if p.strip())


def payment_from_row(row: Mapping[str, str | None]) -> tuple[str, Payment]:
    tid = (row.get("tenant_id") or "").strip()
    if not tid:
        raise ValueError("tenant_id is empty")
    month = (row.get("for_month") or "").strip()
    m = _MONTH.match(month)
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"for_month: `{month}` is not a month (write YYYY-MM, like 2026-11)")
    try:
        amount = parse_money(row.get("amount") or "")
    except ValueError as exc:
        raise ValueError(f"amount: {exc}") from None
    paid_on = parse_date(row.get("paid_on") or "", "paid_on")
    return tid, Payment(paid_on, amount, (int(m.group(1)), int(m.group(2))))


def _read_csv(
    path: Path, required: Iterable[str], known: Iterable[str]
) -> tuple[Iterator[tuple[int, dict]], list[str]]:
    if not path.exists():
        raise ImportRefused(f"{path}: the file does not exist: check `data` in config.yaml", "missing_file")
    handle = path.open(newline="", encoding="utf-8-sig")
    try:
        try:
            sample = handle.read(4096)
            handle.seek(0)
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t") if sample else csv.excel
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(handle, dialect=dialect)
        header = [h.strip() for h in (reader.fieldnames or [])]
    except (UnicodeDecodeError, csv.Error) as exc:
        handle.close()
        raise _unreadable(path, exc, 1) from None
    reader.fieldnames = header
    missing = [c for c in required if c not in header]
    if missing:
        handle.close()
        raise ImportRefused(
            f"{path}:1: the header lacks the column(s) {', '.join(missing)}: "
            f"nothing was imported; the first line must name the columns ({', '.join(known)})",
            "missing_columns",
        )
    notes = [f"{path}:1: unknown column `{c}` is ignored" for c in header if c and c not in known]

    def rows() -> Iterator[tuple[int, dict]]:
        with handle:
            line = 1
            try:
                for row in reader:
                    line = reader.line_num
                    yield line, row
            except (UnicodeDecodeError, csv.Error) as exc:
                raise _unreadable(path, exc, line + 1) from None

    return rows(), notes


def _unreadable(path: Path, exc: UnicodeDecodeError | csv.Error, line: int) -> ImportRefused:
    """A file that is not UTF-8 or not CSV is refused whole, naming the line where it goes wrong."""
    if isinstance(exc, UnicodeDecodeError):  # only now, on the way out: find the line of the first bad byte
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            line = raw.count(b"\n", 0, bad.start) + 1
            byte = f" (byte 0x{raw[bad.start]:02x})"
        else:
            byte = ""
        return ImportRefused(
            f"{path}:{line}: the file is not UTF-8 text{byte}, so nothing was imported: "
            "export it as UTF-8 (in Excel: CSV UTF-8)",
            "encoding",
        )
    return ImportRefused(
        f"{path}:{line}: the file cannot be read as CSV ({exc}), so nothing was imported: "
        'a quote (") is probably left open around here',
        "bad_csv",
    )


def _runaway_quotes(
    rows: Iterable[tuple[int, dict]], data: ImportData, where: str, counter: str
) -> Iterator[tuple[int, dict]]:
    """A cell that runs over several lines is a quote left open: it swallowed the rows after it.

    Each swallowed line is reported and counted as a skipped row, so the bad-rows guard sees them
    (no cell of the data contract holds a line break)."""
    last = 1  # the header
    for line, row in rows:
        if line == last + 1:  # the usual row: one line after the last, so no line break inside it
            last = line
            yield line, row
            continue
        cells = [c for v in row.values() for c in (v if isinstance(v, list) else [v]) if isinstance(c, str)]
        breaks = sum(len(_BREAK.findall(c)) for c in cells)
        if not breaks:
            last = line
            yield line, row
            continue
        start = max(last + 1, line - breaks)
        last = line
        setattr(data, counter, getattr(data, counter) + line - start + 1)
        data.problems.append(
            RowProblem(
                where,
                start,
                f'a quote (") opens in this row and is not closed on its line, so lines {start}-{line} '
                "ran together; they were skipped",
            )
        )
        data.problems.extend(
            RowProblem(where, n, f"inside the quote left open on line {start}; skipped")
            for n in range(start + 1, line + 1)
        )


def read_csv_source(tenants_path: Path, payments_path: Path | None) -> ImportData:
    """Read the two CSV files of the data contract."""
    rows, notes = _read_csv(tenants_path, TENANT_REQUIRED, TENANT_COLUMNS + OPTIONAL_COLUMNS)
    data = ImportData({}, notes=notes, source=str(tenants_path))
    _collect_tenants(data, _runaway_quotes(rows, data, str(tenants_path), "tenant_rows"), str(tenants_path))
    _refuse_cut_off(tenants_path, data)
    if payments_path is not None:
        prow, pnotes = _read_csv(payments_path, PAYMENT_COLUMNS, PAYMENT_COLUMNS)
        data.notes.extend(pnotes)
        where = str(payments_path)
        _collect_payments(data, _runaway_quotes(prow, data, where, "payment_rows"), where)
        _refuse_cut_off(payments_path, data)
    return data


def _refuse_cut_off(path: Path, data: ImportData) -> None:
    """A file that ends inside a row it could not read was cut off halfway (an export or a copy that
    stopped): the rows after the cut are missing too, so the whole file is refused."""
    last = data.problems[-1] if data.problems else None
    if last is None or last.file != str(path):
        return
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(size - 1, 0))
        if size == 0 or handle.read(1) in (b"\n", b"\r"):
            return
    lines = len(_BREAK_BYTES.findall(path.read_bytes())) + 1
    if last.line == lines:
        raise ImportRefused(
            f"{path}:{lines}: the file stops in the middle of a row, so it looks cut off "
            "(an export or a copy that did not finish): nothing was imported; export the data again",
            "truncated",
        )


def read_sql_source(config: DataConfig) -> ImportData:
    """Run the configured queries against the corporation's database (a SQLAlchemy URL)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    if not config.url or not config.tenants_query:
        raise ImportRefused("data.source is sql, but data.url or data.tenants_query is empty in config.yaml", "config")
    engine = create_engine(config.url)
    data = ImportData({}, source="sql")
    try:
        with engine.connect() as conn:
            result = conn.execute(text(config.tenants_query))
            columns = list(result.keys())
            missing = [c for c in TENANT_REQUIRED if c not in columns]
            if missing:
                raise ImportRefused(
                    f"data.tenants_query: the result lacks the column(s) {', '.join(missing)}", "missing_columns"
                )
            _collect_tenants(data, ((i, _as_text(r._mapping)) for i, r in enumerate(result, 1)), "tenants_query row")
            if config.payments_query:
                result = conn.execute(text(config.payments_query))
                _collect_payments(
                    data, ((i, _as_text(r._mapping)) for i, r in enumerate(result, 1)), "payments_query row"
                )
    except SQLAlchemyError as exc:
        raise ImportRefused(f"the data database could not be read: {type(exc).__name__}", "database") from None
    finally:
        engine.dispose()
    return data


def _collect_tenants(data: ImportData, rows: Iterable[tuple[int, dict]], where: str) -> None:
    for line, row in rows:
        data.tenant_rows += 1
        if None in row:
            data.problems.append(RowProblem(where, line, "the row has more cells than the header; skipped"))
            continue
        try:
            record = tenant_from_row({k: (str(v) if v is not None else None) for k, v in row.items()})
        except ValueError as exc:
            data.problems.append(RowProblem(where, line, f"{exc}; the row was skipped"))
            continue
        if record.tenant_id in data.records:
            data.problems.append(
                RowProblem(where, line, f"tenant {record.tenant_id} appears twice; the second row was skipped")
            )
            continue
        data.records[record.tenant_id] = record


def _collect_payments(data: ImportData, rows: Iterable[tuple[int, dict]], where: str) -> None:
    for line, row in rows:
        data.payment_rows += 1
        if None in row:
            data.problems.append(RowProblem(where, line, "the row has more cells than the header; skipped"))
            continue
        try:
            tid, payment = payment_from_row(row)
        except ValueError as exc:
            data.problems.append(RowProblem(where, line, f"{exc}; the row was skipped"))
            continue
        record = data.records.get(tid)
        if record is None:
            data.problems.append(RowProblem(where, line, f"payment for unknown tenant {tid}; skipped"))
            continue
        record.add_payment(payment)


def _as_text(row: Mapping) -> dict[str, str | None]:
    """A database row as the CSV reader would give it: text, or None for NULL."""
    return {
        k: (v.isoformat() if hasattr(v, "isoformat") else str(v)) if v is not None else None for k, v in row.items()
    }


def newest_file(pattern: str, base: Path) -> Path:
    """The file a data setting names; with a wildcard (`exports/tenants-*.csv`), the newest file
    that matches it (by modification time, then name), so a new export dropped in the folder is
    what the next import reads."""
    path = Path(pattern) if Path(pattern).is_absolute() else base / pattern
    if not any(ch in pattern for ch in "*?["):
        return path
    matches = [p for p in path.parent.glob(path.name) if p.is_file()]
    if not matches:
        raise ImportRefused(
            f"{path}: no file matches this pattern: check `data` in config.yaml and the export folder",
            "missing_file",
        )
    return max(matches, key=lambda p: (p.stat().st_mtime, p.name))


def read_source(config: DataConfig, base: Path) -> ImportData:
    if config.source == "sql":
        return read_sql_source(config)
    tenants = newest_file(config.tenants, base)
    payments = newest_file(config.payments, base) if config.payments else None
    return read_csv_source(tenants, payments)


def check_bad_share(data: ImportData, max_share: float) -> None:
    """Refuse the whole import when too many rows could not be read (a broken export)."""
    total = data.tenant_rows + data.payment_rows
    if total == 0 or data.tenant_rows == 0:
        raise ImportRefused(f"{data.source}: the data holds no tenants; nothing was imported", "empty")
    bad = len(data.problems)
    if bad / total > max_share:
        first = data.problems[0]
        raise ImportRefused(
            f"{bad} of {total} rows could not be read (more than {max_share:.0%}), so the whole import "
            f"was refused and nothing was planned; first: {first}",
            "too_many_bad_rows",
        )
