"""The print channel: real PDFs written to a spool folder, read back with pypdf."""

from __future__ import annotations

import csv
import stat
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader

from channels.printing import DEFAULT_FONT, PrintChannel
from nudger.config import ChannelConfig, Config
from nudger.errors import ConfigError, TemporaryChannelError
from nudger.protocols import NEEDS_ADDRESS, Message, Recipient, Signer
from nudger.render import signature

MM = 72 / 25.4  # points per millimetre
A4_HEIGHT_MM = 297
OFFICER = {"name": "Jan de Vries", "first_name": "Jan", "role": "uw vaste contactpersoon", "phone": "0201234567"}
CREATED = datetime(2026, 11, 26, 9, 30, tzinfo=ZoneInfo("Europe/Amsterdam"))

pytestmark = pytest.mark.skipif(
    not Path(DEFAULT_FONT).is_file(), reason=f"{DEFAULT_FONT} missing: apt-get install fonts-dejavu-core"
)


def make_channel(tmp_path: Path, **extra: object) -> PrintChannel:
    config = Config(base_dir=tmp_path)
    return PrintChannel("print", ChannelConfig(transport="pdf", **extra), config)


def make_message(key: str = "late-rent:T1001:2026-11", *, card: bool = False, name: str = "Ayşe Kowalczyk-Łukasz"):
    return Message(
        key=key,
        rule_id="late-rent",
        kind="reminder",
        channel="print",
        recipient=Recipient(
            tenant_id=key.split(":")[1],
            name=name,
            language="nl",
            address=(name, "Kerkstraat 12 b", "1234 AB  UTRECHT"),
        ),
        signer=Signer("jdevries", OFFICER["name"], OFFICER["first_name"], OFFICER["role"], OFFICER["phone"]),
        subject="Uw huur van november",
        body="Beste mevrouw Kowalczyk-Łukasz,\n\nWe zagen uw huur van november nog niet binnenkomen.\n"
        "Lukt het niet? Bel me gerust, dan zoeken we samen een oplossing.",
        signature=signature(OFFICER, "print", "nl", "Woonstede", card=card),
        organisation="Woonstede",
        return_address="Woonstede, Postbus 100, 3500 AA  Utrecht",
        card=card,
        created=CREATED,
    )


def text_positions(pdf: Path, page: int = 0) -> list[tuple[str, float, float]]:
    """Each piece of text on a page with its (x from the left, top from the top edge) in millimetres."""
    reader = PdfReader(pdf)
    height = float(reader.pages[page].mediabox.height)
    found: list[tuple[str, float, float]] = []

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        if not text.strip():
            return
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        ascent = 0.75 * size * tm[3] * cm[3]  # from the baseline to the top of capitals, roughly
        found.append((text.strip(), x / MM, (height - y - ascent) / MM))

    reader.pages[page].extract_text(visitor_text=visit)
    return found


def where(positions: list[tuple[str, float, float]], needle: str) -> tuple[float, float]:
    hits = [(x, top) for text, x, top in positions if needle in text]
    assert hits, f"{needle!r} not found in {[t for t, _, _ in positions]}"
    return hits[0]


def all_text(pdf: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(pdf).pages)


def manifest(channel: PrintChannel) -> list[dict[str, str]]:
    with (channel.spool / "2026-11-26" / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_letter_has_the_address_in_the_window_the_date_and_the_signature(tmp_path: Path) -> None:
    channel = make_channel(tmp_path, window_left_mm=22, window_top_mm=50)
    assert channel.needs == NEEDS_ADDRESS
    receipt = channel.send(make_message())
    assert receipt.id == "print:2026-11-26/jdevries/late-rent_T1001_2026-11.pdf"
    pdf = tmp_path / "var" / "print" / "2026-11-26" / "jdevries" / "late-rent_T1001_2026-11.pdf"
    reader = PdfReader(pdf)
    width, height = (float(v) / MM for v in reader.pages[0].mediabox[2:])
    assert (round(width), round(height)) == (210, 297)

    positions = text_positions(pdf)
    x, top = where(positions, "Ayşe Kowalczyk-Łukasz")
    assert abs(top - 50) <= 5 and abs(x - 22) <= 3
    street_x, street_top = where(positions, "Kerkstraat 12 b")
    city_x, city_top = where(positions, "1234 AB  UTRECHT")
    assert top < street_top < city_top < 50 + 40  # one under the other, inside the window
    assert abs(street_x - 22) <= 3 and abs(city_x - 22) <= 3
    ret_x, ret_top = where(positions, "Woonstede, Postbus 100, 3500 AA  Utrecht")
    assert ret_top < top and abs(ret_x - 22) <= 3  # the return address on one line, above the tenant's

    text = all_text(pdf)
    for expected in (
        "26 november 2026",
        "Uw huur van november",
        "We zagen uw huur van november nog niet binnenkomen.",
        "Met vriendelijke groet,",
        "Jan de Vries",
        "uw vaste contactpersoon, Woonstede",
        "Direct nummer: 020 123 4567",
    ):
        assert expected in text
    _, date_top = where(positions, "26 november 2026")
    _, name_top = where(positions, "Jan de Vries")
    assert city_top < date_top < name_top


def test_window_offsets_are_configurable_and_english_dates_are_english(tmp_path: Path) -> None:
    channel = make_channel(tmp_path, window_left_mm=110, window_top_mm=45)
    message = make_message()
    message = replace(
        message, locale="en_GB", recipient=replace(message.recipient, language="en")
    )  # as the engine sets it
    channel.send(message)
    pdf = next((channel.spool / "2026-11-26" / "jdevries").glob("*.pdf"))
    x, top = where(text_positions(pdf), "Ayşe Kowalczyk-Łukasz")
    assert abs(top - 45) <= 5 and abs(x - 110) <= 3
    assert "26 November 2026" in all_text(pdf)


def test_names_with_dutch_polish_and_turkish_letters_survive(tmp_path: Path) -> None:
    channel = make_channel(tmp_path)
    name = "Çiğdem Şahin-Łęcka Noël Anaïs"
    channel.send(make_message(name=name))
    pdf = next((channel.spool / "2026-11-26" / "jdevries").glob("*.pdf"))
    assert name in all_text(pdf)


def test_card_is_a6_landscape_with_room_for_a_handwritten_signature(tmp_path: Path) -> None:
    channel = make_channel(tmp_path)
    receipt = channel.send(make_message("thanks:T1002:2026-11", card=True))
    pdf = channel.spool / receipt.id.removeprefix("print:")
    page = PdfReader(pdf).pages[0]
    assert (round(float(page.mediabox.width) / MM), round(float(page.mediabox.height) / MM)) == (148, 105)
    positions = text_positions(pdf)
    _, closing_top = where(positions, "Hartelijke groet,")
    _, name_top = where(positions, "Jan de Vries")
    assert name_top - closing_top >= 20  # a generous gap for the pen
    assert "We zagen uw huur" in all_text(pdf)
    assert manifest(channel)[0]["kind"] == "card"


def test_batch_per_officer_and_manifest_list_every_item_once(tmp_path: Path) -> None:
    channel = make_channel(tmp_path)
    letter, card = make_message("late-rent:T1001:2026-11"), make_message("thanks:T1002:2026-11", card=True)
    other = replace(
        make_message("late-rent:T1003:2026-11"),
        signer=Signer("pbakker", "Petra Bakker", "Petra", "incasso", "0301234567"),
    )
    for message in (letter, card, other, letter):  # the letter twice: same key, no second row
        channel.send(message)
    day = channel.spool / "2026-11-26"

    rows = manifest(channel)
    assert [r["nudge_key"] for r in rows] == [letter.key, card.key, other.key]
    assert [r["tenant_id"] for r in rows] == ["T1001", "T1002", "T1003"]
    assert [r["officer"] for r in rows] == ["jdevries", "jdevries", "pbakker"]
    assert [r["kind"] for r in rows] == ["letter", "card", "letter"]
    assert all((day / r["file"]).is_file() for r in rows)
    assert all(r["created"] == CREATED.isoformat() for r in rows)
    raw = (day / "manifest.csv").read_text(encoding="utf-8")
    assert "Ayşe" not in raw and "Kerkstraat" not in raw and "1234 AB" not in raw  # ids only

    items = sorted((day / "jdevries").glob("*.pdf"))
    assert len(items) == 2
    item_pages = sum(len(PdfReader(p).pages) for p in items)
    batch = PdfReader(day / "jdevries-batch.pdf")
    assert len(batch.pages) == item_pages
    assert "26 november 2026" in batch.pages[0].extract_text()  # in order: the letter first, then the card
    assert "Hartelijke groet," in batch.pages[-1].extract_text()
    assert len(PdfReader(day / "pbakker-batch.pdf").pages) == 1


def test_spool_files_are_private(tmp_path: Path) -> None:
    channel = make_channel(tmp_path, spool="spool")
    receipt = channel.send(make_message())
    assert channel.spool == tmp_path / "spool"
    day = channel.spool / "2026-11-26"
    for path in (channel.spool / receipt.id.removeprefix("print:"), day / "manifest.csv", day / "jdevries-batch.pdf"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (channel.spool, day, day / "jdevries"):
        assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0, folder


def test_a_failing_print_command_is_a_temporary_error(tmp_path: Path) -> None:
    channel = make_channel(tmp_path, command="false")
    with pytest.raises(TemporaryChannelError) as caught:
        channel.send(make_message())
    assert caught.value.temporary and caught.value.code == "1"
    assert "Ayşe" not in caught.value.reason
    assert (channel.spool / "2026-11-26" / "jdevries-batch.pdf").is_file()  # kept for the retry

    missing = make_channel(tmp_path, command="/nonexistent/lp -d incasso")
    with pytest.raises(TemporaryChannelError):
        missing.send(make_message())


def test_the_print_command_gets_each_item_once(tmp_path: Path) -> None:
    """Submitting the growing batch after every send would reprint it: each item goes once."""
    script = tmp_path / "fake_lp.py"
    script.write_text(
        "import sys\nwith open(sys.argv[1], 'a') as log:\n    log.write(sys.argv[-1] + '\\n')\n", encoding="utf-8"
    )
    received = tmp_path / "received.txt"
    channel = make_channel(tmp_path, command=f"{sys.executable} {script} {received}")
    first = channel.send(make_message())
    second = channel.send(make_message("thanks:T1002:2026-11", card=True))
    submitted = received.read_text(encoding="utf-8").splitlines()
    assert [Path(p).relative_to(channel.spool).as_posix() for p in submitted] == [
        first.id.removeprefix("print:"),
        second.id.removeprefix("print:"),
    ]
    batch = channel.spool / "2026-11-26" / "jdevries-batch.pdf"
    assert len(PdfReader(batch).pages) == 2  # the day's batch is still there to print by hand


def test_pictograms_are_drawn_next_to_the_direct_number(tmp_path: Path) -> None:
    plain = make_channel(tmp_path / "a").render(make_message())[0]
    drawn = make_channel(tmp_path / "b", pictograms=True).render(make_message())[0]
    assert drawn != plain
    assert "Direct nummer: 020 123 4567" in PdfReader(_write(tmp_path / "d.pdf", drawn)).pages[0].extract_text()


def test_a_missing_font_names_the_font_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"channels\.print\.font:.*fonts-dejavu-core"):
        make_channel(tmp_path, font=str(tmp_path / "nope.ttf"))
    not_a_font = _write(tmp_path / "fake.ttf", b"not a font")
    with pytest.raises(ConfigError, match=r"channels\.print\.font"):
        make_channel(tmp_path, font=str(not_a_font), font_bold=str(not_a_font))


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="window_top_mm"):
        make_channel(tmp_path, window_top_mm="fifty")
    with pytest.raises(ConfigError, match="pictograms"):
        make_channel(tmp_path, pictograms="yes")
    with pytest.raises(ConfigError, match="command"):
        make_channel(tmp_path, command="lp 'unclosed")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_print_command_that_hangs_is_uncertain_not_retried(tmp_path: Path) -> None:
    """It started and may have queued the job: trying again could print the letter twice."""
    from nudger.errors import UncertainChannelError

    channel = make_channel(tmp_path, command=f"{sys.executable} -c 'import time; time.sleep(5)'", command_timeout=1)
    with pytest.raises(UncertainChannelError) as caught:
        channel.send(make_message())
    assert caught.value.code == "timeout" and not caught.value.temporary
