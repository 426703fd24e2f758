"""The print channel: a PDF per message in a spool folder, batched per officer per day, with a manifest.

A letter is A4 with the organisation's return address on one line and the tenant's address where a
window envelope shows it; a card (`card: true` in the rule) is A6 landscape, with room above the
printed name for a handwritten signature. Every send rebuilds that officer's batch PDF for the day
and the day's `manifest.csv`, then runs the optional print command on the item.
"""

from __future__ import annotations

import csv
import io
import re
import shlex
import subprocess
import threading
from datetime import date, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from nudger.config import Config
from nudger.errors import ConfigError, PermanentChannelError, TemporaryChannelError, UncertainChannelError
from nudger.protocols import NEEDS_ADDRESS, Message, Receipt

from .outbox import write_private

DEFAULT_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # Debian/Ubuntu package fonts-dejavu-core
MANIFEST_FIELDS = ("nudge_key", "tenant_id", "officer", "kind", "file", "pages", "created")

A4 = (210.0, 297.0)
A6_LANDSCAPE = (148.0, 105.0)
# The lines of the engine's letter signature that carry the direct number (nudger.render._CLOSINGS).
_PHONE_LINE = re.compile(r"^(Direct nummer|Direct line)\s*:", re.IGNORECASE)


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._") or "_"


def configured(section: Any) -> bool:
    """The PDF spool works when its font is there; otherwise the engine falls back to the outbox."""
    extra = dict(getattr(section, "model_extra", None) or {})
    return Path(str(extra.get("font") or DEFAULT_FONT)).is_file()


class PrintChannel:
    """Letters and cards as PDF files in a spool folder (`transport: pdf` under `channels.print`).

    Keys of the section, all optional:

    - `spool`: the folder, relative to config.yaml's folder; default `<var_dir>/print`.
      Items go to `<spool>/<YYYY-MM-DD>/<officer key>/<nudge key>.pdf`, the officer's batch to
      `<spool>/<YYYY-MM-DD>/<officer key>-batch.pdf`, the day's list to `<spool>/<YYYY-MM-DD>/manifest.csv`.
    - `command`: a command line run without a shell after each send, with the item's PDF path as its
      last argument, e.g. `lp -d incasso` (each item is submitted once; the day's batch per officer is
      there to print or check by hand). A non-zero exit, a timeout or a command that cannot be started
      is a temporary error (the item and batch are kept; the retry rewrites them).
    - `command_timeout`: seconds, default 60.
    - `window_left_mm`, `window_top_mm`: where the window of the envelope is, from the sheet's left and top
      edges: default 22 and 50 (a Dutch/European window envelope). The tenant's name line starts there;
      the return address is printed on one line just above it.
    - `pictograms`: true to draw a small phone (and envelope) icon next to the signer's direct number
      (and e-mail address); default false.
    - `font`: a TrueType font that covers the letters in names (ë, ï, ş, ł, ğ): default
      `/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf`, from the Debian/Ubuntu package `fonts-dejavu-core`.
    - `font_bold`: its bold face; default `DejaVuSans-Bold.ttf` beside `font` when that exists, else `font`.

    The manifest holds nudge keys, tenant ids, officer keys and file names: no names or addresses.
    """

    def __init__(self, name: str, section: Any, config: Config):
        self.name = name
        self.needs = NEEDS_ADDRESS
        self.config = config
        extra: dict[str, Any] = dict(section.model_extra or {}) if section is not None else {}
        where = f"{config.source_file}: channels.{name}"
        self.spool = config.path(str(extra.get("spool") or config.var_path / "print"))
        self.window_left = _number(extra, "window_left_mm", 22, 0, A4[0] - 60, where)
        self.window_top = _number(extra, "window_top_mm", 50, 0, A4[1] - 60, where)
        self.pictograms = _flag(extra, "pictograms", where)
        self.timeout = _number(extra, "command_timeout", 60, 1, 3600, where)
        self.command = _command(extra.get("command"), where)
        self.font = config.path(str(extra.get("font") or DEFAULT_FONT))
        bold = extra.get("font_bold")
        if bold:
            self.font_bold = config.path(str(bold))
        else:
            beside = self.font.with_name("DejaVuSans-Bold.ttf")
            self.font_bold = beside if self.font.name == "DejaVuSans.ttf" and beside.is_file() else self.font
        for key, path in (("font", self.font), ("font_bold", self.font_bold)):
            if not path.is_file():
                raise ConfigError(
                    f"{where}.{key}: the font file {path} does not exist; install a TrueType font that covers "
                    f"names like ş and ł (Debian/Ubuntu: apt-get install fonts-dejavu-core) or set {key} to its path"
                )
        try:
            _Document(A4, self.font, self.font_bold)  # fails here, at start-up, on a file that is no font
        except Exception as exc:
            raise ConfigError(f"{where}.font: {self.font} cannot be used as a TrueType font ({exc})") from None
        self._lock = threading.Lock()

    # -- the channel -------------------------------------------------------------------------------

    def send(self, message: Message) -> Receipt:
        if not message.card and len([line for line in message.recipient.address if line.strip()]) < 3:
            raise PermanentChannelError(
                "letter needs an address of three lines (name, street and number, postcode and place)",
                code="no-address",
            )
        day = self._day(message)
        officer = _safe(message.signer.key or "officer")
        item = f"{_safe(message.key)}.pdf"
        try:
            data, pages = self.render(message)
        except (OSError, RuntimeError, ValueError) as exc:
            # fpdf2 raises these for a font file that went missing or broke after start-up
            raise PermanentChannelError(
                f"could not lay out the PDF ({type(exc).__name__}); check channels.{self.name}.font ({self.font})",
                code="render",
            ) from None
        day_dir = self.spool / day.isoformat()
        item_path = day_dir / officer / item
        try:
            with self._lock:
                _private_folders(item_path.parent)  # 0700, before the lock file goes in
                with FileLock(str(day_dir / ".lock"), mode=0o600, timeout=60):
                    write_private(item_path, bytes(data))
                    rows = self._update_manifest(day_dir, message, officer, item, pages)
                    self._write_batch(day_dir, officer, rows)
        except OSError as exc:
            raise TemporaryChannelError(
                f"could not write to the print spool ({exc.strerror or type(exc).__name__})"
            ) from None
        if self.command:
            self._submit(item_path)  # each item once: re-submitting the growing batch would reprint it
        return Receipt(id=f"print:{item_path.relative_to(self.spool).as_posix()}", detail=f"{pages} page(s)")

    def close(self) -> None:
        pass

    # -- layout ------------------------------------------------------------------------------------

    def render(self, message: Message) -> tuple[bytes, int]:
        """The PDF of one letter or card, and its number of pages."""
        if message.card:
            doc = _Document(A6_LANDSCAPE, self.font, self.font_bold)
            self._card(doc, message)
        else:
            doc = _Document(A4, self.font, self.font_bold)
            self._letter(doc, message)
        pdf = doc.pdf
        pdf.set_creator("nudger")
        pdf.set_title(message.subject or message.organisation)
        if message.created is not None:
            pdf.set_creation_date(message.created)
        return bytes(pdf.output()), pdf.pages_count

    def _letter(self, doc: _Document, message: Message) -> None:
        from fpdf.enums import XPos, YPos

        pdf = doc.pdf
        left, top = self.window_left, self.window_top
        pdf.set_margins(left, 20, 20)
        pdf.set_auto_page_break(True, margin=20)
        pdf.add_page()
        if message.organisation and top >= 35:
            doc.font(13, bold=True)
            pdf.set_xy(left, 20)
            pdf.cell(0, 6, message.organisation)
        if message.return_address:
            doc.font(7)
            pdf.set_xy(left, top - 4.5)
            pdf.cell(0, 3.5, message.return_address)
        doc.font(10.5)
        pdf.set_xy(left, top)
        for line in message.recipient.address:
            pdf.cell(0, 5, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_y(max(pdf.get_y() + 15, top + 45))  # below the window
        doc.font(11)
        if message.created is not None:
            pdf.cell(0, 6, self._date(message), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(6)
        if message.subject:
            doc.font(11, bold=True)
            pdf.multi_cell(0, 6, message.subject, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(4)
        doc.font(11)
        pdf.multi_cell(0, 5.5, message.body, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(6)
        lines = (message.signature or _signature_fallback(message)).split("\n")
        if pdf.get_y() + 5.5 * len(lines) > pdf.h - pdf.b_margin:
            pdf.add_page()  # keep the signature block together
        for line in lines:
            y = pdf.get_y()
            if self.pictograms and line.strip():
                if _PHONE_LINE.match(line) or (message.signer.phone and line.strip() == message.signer.phone):
                    _phone_icon(pdf, left - 5.5, y + 1)
                elif message.signer.email and line.strip() == message.signer.email:
                    _envelope_icon(pdf, left - 6, y + 1.5)
            pdf.cell(0, 5.5, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def _card(self, doc: _Document, message: Message) -> None:
        from fpdf.enums import XPos, YPos

        pdf = doc.pdf
        margin = 12.0
        pdf.set_margins(margin, margin, margin)
        pdf.set_auto_page_break(True, margin=10)
        pdf.add_page()
        doc.font(11)
        pdf.set_xy(margin, margin)
        pdf.multi_cell(0, 5.5, message.body, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        closing, name = _split_card_signature(message)
        space = 20.0  # room for the handwritten signature
        needed = 4 + 5.5 * len(closing) + space + 5.5 + (4.5 if message.signer.role else 0)
        if pdf.get_y() + needed > pdf.h - pdf.b_margin:
            pdf.add_page()
        pdf.ln(4)
        for line in closing:
            pdf.cell(0, 5.5, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(space)
        pdf.cell(0, 5.5, name, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if message.signer.role:
            doc.font(8.5)
            pdf.cell(0, 4.5, message.signer.role, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def _date(self, message: Message) -> str:
        from babel.dates import format_date

        assert message.created is not None
        when = message.created.astimezone(self.config.zone) if message.created.tzinfo else message.created
        return format_date(when.date(), "long", locale=message.locale)

    def _day(self, message: Message) -> date:
        if message.created is None:
            return datetime.now(self.config.zone).date()
        if message.created.tzinfo is None:
            return message.created.date()
        return message.created.astimezone(self.config.zone).date()

    # -- spool -------------------------------------------------------------------------------------

    def _update_manifest(
        self, day_dir: Path, message: Message, officer: str, item: str, pages: int
    ) -> list[dict[str, str]]:
        path = day_dir / "manifest.csv"
        rows: list[dict[str, str]] = []
        if path.exists():
            with path.open(newline="", encoding="utf-8") as handle:
                rows = [dict(row) for row in csv.DictReader(handle)]
        row = {
            "nudge_key": message.key,
            "tenant_id": message.recipient.tenant_id,
            "officer": officer,
            "kind": "card" if message.card else "letter",
            "file": f"{officer}/{item}",
            "pages": str(pages),
            "created": message.created.isoformat() if message.created else "",
        }
        for i, old in enumerate(rows):
            if old.get("nudge_key") == message.key:
                rows[i] = row  # a resend replaces its row and keeps its place in the batch
                break
        else:
            rows.append(row)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=MANIFEST_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_private(path, out.getvalue().encode("utf-8"))
        return rows

    def _write_batch(self, day_dir: Path, officer: str, rows: list[dict[str, str]]) -> Path:
        from pypdf import PdfWriter

        writer = PdfWriter()
        for row in rows:
            item = day_dir / row["file"]
            if row.get("officer") == officer and item.is_file():
                writer.append(str(item))
        buf = io.BytesIO()
        writer.write(buf)
        batch = day_dir / f"{officer}-batch.pdf"
        write_private(batch, buf.getvalue())
        return batch

    def _submit(self, pdf: Path) -> None:
        argv = [*self.command, str(pdf)]
        program = Path(self.command[0]).name
        try:
            proc = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=self.timeout, check=False
            )
        except subprocess.TimeoutExpired:
            # it started and may have queued the job: trying again could print the letter twice
            raise UncertainChannelError(
                f"print command `{program}` did not finish within {self.timeout:g} s; the job may be queued",
                code="timeout",
            ) from None
        except OSError as exc:
            raise TemporaryChannelError(
                f"print command `{program}` could not be started ({exc.strerror or type(exc).__name__})",
                code="oserror",
            ) from None
        if proc.returncode != 0:
            said = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            tail = said[-1].replace(str(pdf), "<pdf>")[:200] if said else ""
            raise TemporaryChannelError(
                f"print command `{program}` exited with code {proc.returncode}" + (f": {tail}" if tail else ""),
                code=str(proc.returncode),
            )


class _Document:
    """An fpdf2 document in millimetres with the configured font embedded (regular and bold)."""

    def __init__(self, size: tuple[float, float], font: Path, font_bold: Path):
        from fpdf import FPDF

        orientation = "L" if size[0] > size[1] else "P"
        self.pdf = FPDF(orientation=orientation, unit="mm", format=(min(size), max(size)))
        self.pdf.add_font("body", "", str(font))
        self.pdf.add_font("body", "B", str(font_bold))
        self.pdf.c_margin = 0  # text starts exactly where it is placed (the window position)
        self.pdf.set_draw_color(60, 60, 60)

    def font(self, size: float, *, bold: bool = False) -> None:
        self.pdf.set_font("body", "B" if bold else "", size)


def _private_folders(folder: Path) -> None:
    """Create `folder` and its missing parents only their owner can enter (as write_private does)."""
    for each in reversed([folder, *folder.parents]):
        if not each.exists():
            each.mkdir(mode=0o700, exist_ok=True)


def _signature_fallback(message: Message) -> str:
    s = message.signer
    return "\n".join(x for x in (s.name, s.role, s.phone) if x)


def _split_card_signature(message: Message) -> tuple[list[str], str]:
    """A card's signature "Hartelijke groet,\\n\\n\\n<name>": the closing lines, and the name to print."""
    lines = [line for line in (message.signature or "").split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    name = lines.pop().strip() if lines else ""
    closing = [line for line in lines if line.strip()]
    return closing, name or message.signer.name


def _phone_icon(pdf: Any, x: float, y: float) -> None:
    """A small handset: a rounded body with a screen and a button, drawn with lines (about 2.4 x 3.6 mm)."""
    pdf.set_line_width(0.25)
    pdf.rect(x, y, 2.4, 3.6, round_corners=True, corner_radius=0.4)
    pdf.rect(x + 0.4, y + 0.5, 1.6, 2.1)
    pdf.line(x + 1.0, y + 3.1, x + 1.4, y + 3.1)


def _envelope_icon(pdf: Any, x: float, y: float) -> None:
    """A small envelope: a rectangle with its flap (about 3.6 x 2.5 mm)."""
    pdf.set_line_width(0.25)
    pdf.rect(x, y, 3.6, 2.5)
    pdf.line(x, y, x + 1.8, y + 1.4)
    pdf.line(x + 1.8, y + 1.4, x + 3.6, y)


def _number(extra: dict[str, Any], key: str, default: float, low: float, high: float, where: str) -> float:
    value = extra.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{where}.{key}: {value!r} is not allowed; use a number from {low:g} to {high:g}")
    return float(value)


def _flag(extra: dict[str, Any], key: str, where: str) -> bool:
    value = extra.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: {value!r} is not allowed; use true or false")
    return value


def _command(value: Any, where: str) -> list[str]:
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"{where}.command: cannot read {value!r} as a command line ({exc})") from None
        if argv:
            return argv
    raise ConfigError(f"{where}.command: {value!r} is not allowed; use a command line such as `lp -d incasso`")
