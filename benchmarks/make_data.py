"""Synthetic tenant and payment data for nudger: the shipped example and benchmark input.

This script writes ``tenants.csv`` and ``payments.csv`` in the CSV contract that nudger imports
(see the ``TENANT_FIELDS`` / ``PAYMENT_FIELDS`` headers below).  It is used for two things:

* the small example in ``examples/`` (64 tenants, the first 14 of which are fixed edge cases
  that tests and documentation rely on), and
* benchmark input of any size (100,000 tenants give about 2.4 million payment rows).

All data is fictional: phone numbers only use the obviously fake ranges 06-1234xxxx,
06-5555xxxx and 0xx 555 0xxx, e-mail addresses only the reserved ``example.nl`` and
``example.com`` domains.  Output is deterministic for a given seed, reference day and tenant
count, and the first *k* tenants of a larger run are identical to a run with ``--tenants k``.
Rows are streamed to disk one at a time, so memory use does not grow with the tenant count.

It takes the column names from ``nudger.data`` (one contract), so run it with the Python that
has nudger installed (``pip install -e .``):

  python benchmarks/make_data.py --tenants 100000 --out /tmp/bench100k

Regenerate the shipped example (from the repository root) with exactly:

  python benchmarks/make_data.py --tenants 64 --out examples --seed 2026 --reference-day 2026-11-30

``tests/test_make_data.py`` checks that ``examples/*.csv`` still equal the generator's output, so
after changing this file, rerun the command above and commit the regenerated CSV files with it.

Payment model, per tenant and per rent month (the rent for a month is due on ``due_day`` of that
month, clamped to the month's length; the months covered are the ``months`` months ending with
the reference day's month, from the move-in month on):

* on time: the full rent, paid 0-6 days before the due date;
* late: the full rent, paid 3-25 days after the due date;
* unpaid: no payment, or a partial one.  Unpaid months are always the most recent due months,
  ``arrears`` is the sum still owed and ``arrears_since`` the due date of the oldest month that
  is not fully paid;
* payment arrangement: on ``arrangement_day`` of every month since the arrangement started, an
  extra ``arrangement_amount`` is paid towards the oldest month still being paid off (that
  month is the payment's ``for_month``); ``arrangement_until`` is the last day of the month in
  which the remaining arrears will be paid off.

No payment lies after the reference day.
"""

from __future__ import annotations

import argparse
import csv
import sys
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from random import Random
from typing import TextIO

from nudger.data import PAYMENT_COLUMNS, TENANT_COLUMNS

# The column contract lives in nudger.data (one place); the generator writes exactly those columns.
TENANT_FIELDS: tuple[str, ...] = TENANT_COLUMNS
PAYMENT_FIELDS: tuple[str, ...] = PAYMENT_COLUMNS

DEFAULT_SEED = 2026
DEFAULT_REFERENCE_DAY = date(2026, 11, 30)
DEFAULT_MONTHS = 24
FIRST_TENANT_NUMBER = 1001
OFFICERS: tuple[str, ...] = ("fatima", "jan", "sanne", "ahmed")
EDGE_CASE_COUNT = 14

ON_TIME = "on_time"
LATE = "late"
UNPAID = "unpaid"

# --------------------------------------------------------------------------------------------
# Names.  Each group: (weight, female first names, male first names, surnames (female, male)).
# --------------------------------------------------------------------------------------------

_NameGroup = tuple[int, tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]


def _same(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((n, n) for n in names)


# fmt: off
_NAME_GROUPS: dict[str, _NameGroup] = {
    "dutch": (
        50,
        ("Sanne", "Anouk", "Lotte", "Femke", "Eva", "Sophie", "Inge", "Marieke", "Els", "Gerda",
         "Ingrid", "Petra", "Joke", "Annelies", "Zoë", "Chloë", "Anaïs", "Noor", "Fenna", "Lieke",
         "Anna Maria", "Maria Dolores"),
        ("Jan", "Kees", "Henk", "Pieter", "Daan", "Bram", "Thijs", "Sem", "Wim", "Gert", "Joost",
         "Ruud", "Lars", "Niels", "Jeroen", "Sven", "Hendrik", "Jan Willem", "Johannes Cornelis"),
        _same("de Vries", "Jansen", "de Jong", "van den Berg", "Bakker", "Visser", "Smit",
              "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks",
              "van Leeuwen", "Dekker", "Brouwer", "de Wit", "Dijkstra", "van der Meer", "Kok",
              "Jacobs", "van Dijk", "Verhoeven", "van 't Hof", "Schouten",
              "van den Bosch-Wijnaldum", "van der Linden-Pinas", "Jansen-Kaya"),
    ),
    "moroccan": (
        14,
        ("Fatima", "Khadija", "Nadia", "Samira", "Houda", "Salma", "Imane", "Fatima Zahra"),
        ("Mohamed", "Youssef", "Ahmed", "Karim", "Said", "Mustafa", "Bilal", "Hamza",
         "Mohamed Amine"),
        _same("El Idrissi", "El Amrani", "Bouzid", "Benali", "Azzouzi", "El Khatib", "Ouahabi",
              "Boukhari", "Ait Taleb", "Amrani", "de Vries-El Amrani"),
    ),
    "turkish": (
        11,
        ("Ayşe", "Elif", "Zeynep", "Fatma", "Emine", "Büşra", "Gülşen"),
        ("Mehmet", "Mustafa", "Emre", "Burak", "Hüseyin", "Bülent", "Oğuz"),
        _same("Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Öztürk", "Aydın", "Arslan", "Doğan",
              "Koç"),
    ),
    "surinamese": (
        10,
        ("Priya", "Sharmila", "Shanti", "Roshni", "Gina", "Marcia", "Jenny", "Sri Devi"),
        ("Ravi", "Rajesh", "Clyde", "Romano", "Dennis", "Glenn", "Sunil"),
        _same("Ramdin", "Sewtahal", "Jagessar", "Ramautar", "Biharie", "Kasanwirjo", "Pinas",
              "Wijngaarde", "Doelwijt", "Kromodimedjo", "Sumter", "Sedney"),
    ),
    "polish": (
        7,
        ("Małgorzata", "Agnieszka", "Katarzyna", "Joanna", "Ewa", "Magdalena"),
        ("Piotr", "Tomasz", "Krzysztof", "Paweł", "Łukasz", "Marek"),
        (("Kowalska", "Kowalski"), ("Wiśniewska", "Wiśniewski"), ("Nowak", "Nowak"),
         ("Wójcik", "Wójcik"), ("Kamińska", "Kamiński"), ("Lewandowska", "Lewandowski"),
         ("Zielińska", "Zieliński"), ("Szymańska", "Szymański")),
    ),
    "international": (
        8,
        ("Emily", "Sarah", "Laura", "Olivia", "Maria", "Ana", "Siobhan"),
        ("James", "David", "Daniel", "Marco", "Luca", "Pedro", "Seán"),
        _same("Clarke", "Smith", "Rossi", "García", "Silva", "O'Brien", "Murphy", "Fernández",
              "Papadopoulos", "Nguyen"),
    ),
}
_GROUP_NAMES = tuple(_NAME_GROUPS)
_GROUP_WEIGHTS = tuple(g[0] for g in _NAME_GROUPS.values())

# --------------------------------------------------------------------------------------------
# Addresses.  City: (weight, postcode number ranges).
# --------------------------------------------------------------------------------------------

_CITIES: dict[str, tuple[int, tuple[tuple[int, int], ...]]] = {
    "Amsterdam": (72, ((1011, 1109),)),
    "Diemen": (4, ((1111, 1113),)),
    "Amstelveen": (4, ((1181, 1189),)),
    "Zaandam": (4, ((1501, 1509),)),
    "Almere": (4, ((1311, 1364),)),
    "Haarlem": (3, ((2011, 2037),)),
    "Den Haag": (4, ((2491, 2599),)),
    "Utrecht": (3, ((3511, 3585),)),
    "Rotterdam": (2, ((3011, 3089),)),
}
_CITY_NAMES = tuple(_CITIES)
_CITY_WEIGHTS = tuple(c[0] for c in _CITIES.values())
_LANDLINE_AREA = {"Den Haag": "070", "Utrecht": "030", "Rotterdam": "010", "Haarlem": "023",
                  "Zaandam": "075", "Almere": "036"}

_STREETS: tuple[str, ...] = (
    "Kinkerstraat", "Javastraat", "Burgemeester de Vlugtlaan", "Admiraal de Ruijterweg",
    "Bos en Lommerweg", "Jan Evertsenstraat", "Osdorpplein", "Bijlmerdreef", "Kraaiennest",
    "Van Woustraat", "Ferdinand Bolstraat", "Eerste van Swindenstraat",
    "Tweede Oosterparkstraat", "Insulindeweg", "Molukkenstraat", "Mercatorplein", "Hoofdweg",
    "Plein '40-'45", "Kerkstraat", "Dorpsstraat", "Stationsweg", "Schoolstraat", "Julianalaan",
    "Wilhelminastraat", "Beatrixlaan", "Prinses Irenestraat", "Laan van Meerdervoort",
    "Lange Hilleweg", "Meeuwenlaan", "Nieuwendammerdijk", "Slotermeerlaan", "Robert Fruinstraat",
    "Dapperstraat", "Pretoriusstraat", "Transvaalkade", "Reigersbos", "Gaasperdammerweg",
)
# Forbidden letter pairs in real Dutch postcodes.
_BAD_POSTCODE_LETTERS = frozenset({"SA", "SD", "SS"})
_LETTERS = "ABCDEFGHJKLMNPRSTVWXZ"
# fmt: on

# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _month_index(d: date) -> int:
    return d.year * 12 + d.month - 1


def _month_start(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def _month_label(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _days_in_month(index: int) -> int:
    nxt = _month_start(index + 1)
    return (nxt - timedelta(days=1)).day


def _day_in_month(index: int, day: int) -> date:
    return date(index // 12, index % 12 + 1, min(day, _days_in_month(index)))


def _money(cents: int, dutch: bool) -> str:
    text = f"{cents // 100}.{cents % 100:02d}"
    return text.replace(".", ",") if dutch else text


def _ascii_slug(text: str) -> str:
    text = text.translate(str.maketrans({"ı": "i", "ł": "l", "Ł": "L", "ø": "o", "ß": "ss"}))
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _weighted(rng: Random, options: tuple[str, ...], weights: tuple[int, ...]) -> str:
    return rng.choices(options, weights)[0]


def _mobile(rng: Random) -> str:
    digits = rng.choice(("1234", "5555")) + f"{rng.randrange(10000):04d}"
    style = rng.random()
    if style < 0.35:
        return f"06 {digits}"
    if style < 0.65:
        return f"06{digits}"
    if style < 0.85:
        return f"+316{digits}"
    return f"+31 6 {digits[:4]} {digits[4:]}"


def _landline(rng: Random, city: str) -> str:
    return f"{_LANDLINE_AREA.get(city, '020')} 555 0{rng.randrange(1000):03d}"


def _email(rng: Random, first_name: str, surname: str, number: int) -> str:
    first = _ascii_slug(first_name.split()[0])
    last = _ascii_slug(surname)
    style = rng.random()
    if style < 0.45:
        local = f"{first}.{last}"
    elif style < 0.65:
        local = f"{first[0]}.{last}"
    elif style < 0.85:
        local = f"{first}{last}{number % 100:02d}"
    else:
        local = f"{first}.{last}{number}"
    domain = "example.nl" if rng.random() < 0.6 else "example.com"
    return f"{local}@{domain}"


def _house_number(rng: Random) -> str:
    number = rng.randint(1, 160) if rng.random() < 0.9 else rng.randint(161, 420)
    style = rng.random()
    if style < 0.62:
        return str(number)
    if style < 0.70:
        return f"{number}-{rng.choice('ABCD')}"
    if style < 0.75:
        return f"{number}{rng.choice('ABC')}"
    if style < 0.83:
        return f"{number} hs"
    if style < 0.95:
        return f"{number} {rng.choice(('I', 'II', 'III', 'IV'))}"
    return f"{number}-{rng.randint(1, 4)}"


def _postcode(rng: Random, city: str) -> str:
    low, high = rng.choice(_CITIES[city][1])
    while True:
        letters = rng.choice(_LETTERS) + rng.choice(_LETTERS)
        if letters not in _BAD_POSTCODE_LETTERS:
            return f"{rng.randint(low, high)} {letters}"


# --------------------------------------------------------------------------------------------
# Tenant model
# --------------------------------------------------------------------------------------------


@dataclass
class _Tenant:
    number: int
    first_name: str
    surname: str
    language: str
    phone: str
    email: str
    whatsapp_opt_in: str
    street: str
    house_number: str
    postcode: str
    city: str
    officer: str
    rent: int  # cents
    dutch_money: bool
    due_day: int
    move_in: date
    preferred: str
    # month index -> LATE / UNPAID; everything else is paid on time.
    kinds: dict[int, str] = field(default_factory=dict)
    # month index -> cents paid for an otherwise unpaid month.
    partial: dict[int, int] = field(default_factory=dict)
    # (amount in cents, day of month, month index of the first arrangement payment)
    arrangement: tuple[int, int, int] | None = None

    @property
    def tenant_id(self) -> str:
        return f"T-{self.number}"

    def due_date(self, month: int) -> date:
        return _day_in_month(month, self.due_day)


def _preferred_channels(rng: Random, phone_kind: str, email: str, whatsapp: str) -> str:
    if rng.random() < 0.10:
        return ""
    has_mobile = phone_kind == "mobile"
    options: list[str] = []
    if has_mobile and whatsapp == "ja":
        options.append("whatsapp")
    if has_mobile:
        options.append("sms")
    if email:
        options.append("email")
    if phone_kind and rng.random() < 0.15:
        options.append("call")
    if not options or rng.random() < 0.05:
        options.append("print")
    if rng.random() < 0.02:  # a few implausible preferences, as in real exports
        options.insert(0, rng.choice(("sms", "whatsapp", "email")))
    if len(options) > 1 and rng.random() < 0.3:
        rng.shuffle(options)
    chosen = list(dict.fromkeys(options))[: rng.choice((1, 1, 2, 2, 2, 3))]
    return ";".join(chosen)


def _random_tenant(rng: Random, number: int, reference_day: date, months: int) -> _Tenant:
    group = _NAME_GROUPS[_weighted(rng, _GROUP_NAMES, _GROUP_WEIGHTS)]
    female = rng.random() < 0.5
    first_name = rng.choice(group[1] if female else group[2])
    surname = rng.choice(group[3])[0 if female else 1]
    international = group is _NAME_GROUPS["international"]

    roll = rng.random()
    if roll < (0.70 if international else 0.02):
        language = "en"
    elif roll > 0.94:
        language = ""
    else:
        language = "nl"

    city = _weighted(rng, _CITY_NAMES, _CITY_WEIGHTS)
    roll = rng.random()
    phone_kind = "mobile" if roll < 0.80 else "landline" if roll < 0.86 else ""
    phone = _mobile(rng) if phone_kind == "mobile" else _landline(rng, city) if phone_kind == "landline" else ""
    email = _email(rng, first_name, surname, number) if rng.random() < 0.85 else ""
    roll = rng.random()
    if phone_kind == "mobile":
        whatsapp = "ja" if roll < 0.5 else "nee" if roll < 0.75 else ""
    else:
        whatsapp = "nee" if roll < 0.3 else ""

    roll = rng.random()
    due_day = 1 if roll < 0.80 else 5 if roll < 0.86 else 15 if roll < 0.91 else 27 if roll < 0.95 else 28

    reference_month = _month_index(reference_day)
    first_month = reference_month - months + 1
    if rng.random() < 0.06:  # recent: moved in within the window, on the first of a month
        move_in = _month_start(rng.randint(first_month, reference_month))
    else:
        start = date(1985, 1, 1).toordinal()
        end = _month_start(first_month).toordinal() - 1
        move_in = date.fromordinal(rng.randint(start, end))

    tenant = _Tenant(
        number=number,
        first_name=first_name,
        surname=surname,
        language=language,
        phone=phone,
        email=email,
        whatsapp_opt_in=whatsapp,
        street=rng.choice(_STREETS),
        house_number=_house_number(rng),
        postcode=_postcode(rng, city),
        city=city,
        officer=rng.choice(OFFICERS),
        rent=rng.randint(450_00, 950_00),
        dutch_money=rng.random() < 0.35,
        due_day=due_day,
        move_in=move_in,
        preferred=_preferred_channels(rng, phone_kind, email, whatsapp),
    )
    _random_behaviour(rng, tenant, reference_day, months)
    return tenant


def _due_months(tenant: _Tenant, reference_day: date, months: int) -> list[int]:
    """Month indexes in the window whose rent is already due on the reference day."""
    reference_month = _month_index(reference_day)
    first = max(reference_month - months + 1, _month_index(tenant.move_in))
    return [m for m in range(first, reference_month + 1) if tenant.due_date(m) <= reference_day]


def _random_behaviour(rng: Random, tenant: _Tenant, reference_day: date, months: int) -> None:
    due = _due_months(tenant, reference_day, months)
    lateable = [m for m in due if (reference_day - tenant.due_date(m)).days >= 3]
    roll = rng.random()
    if roll < 0.55:
        late_chance = 0.02
    elif roll < 0.80:
        late_chance = 0.15
    else:
        late_chance = 0.45
    for m in lateable:
        if rng.random() < late_chance:
            tenant.kinds[m] = LATE

    roll = rng.random()
    if roll < 0.10 and due:  # in arrears
        unpaid = due[-rng.choice((1, 1, 1, 2, 2, 3)) :]
        for m in unpaid:
            tenant.kinds[m] = UNPAID
        if rng.random() < 0.3:
            tenant.partial[unpaid[0]] = rng.randint(10, 70) * tenant.rent // 10_000 * 100
    elif roll < 0.13 and len(due) >= 4:  # arrears with a payment arrangement
        debt_months = rng.choice((1, 2, 2, 3))
        gap = rng.randint(1, min(4, len(due) - debt_months))  # months paid normally since
        last_unpaid = len(due) - 1 - gap
        first_unpaid = max(0, last_unpaid - debt_months + 1)
        for m in due[first_unpaid : last_unpaid + 1]:
            tenant.kinds[m] = UNPAID
        start = due[last_unpaid] + rng.randint(1, gap)
        amount = rng.choice((25, 50, 50, 75, 75, 100)) * 100
        tenant.arrangement = (amount, rng.choice((1, 1, 1, 5, 15, 28)), start)


# --------------------------------------------------------------------------------------------
# Fixed edge cases (T-1001 .. T-1014).  Dates are relative to the reference day; with the
# default reference day 2026-11-30 they give exactly the dates documented in the comments.
# --------------------------------------------------------------------------------------------


def _reset(tenant: _Tenant, reference_day: date, months: int, rng: Random) -> None:
    """Plain on-time payer living there since before the window, due on the 1st."""
    tenant.kinds.clear()
    tenant.partial.clear()
    tenant.arrangement = None
    tenant.language = "nl"
    tenant.due_day = 1
    first_month = _month_index(reference_day) - months + 1
    tenant.move_in = date.fromordinal(
        rng.randint(date(1990, 1, 1).toordinal(), _month_start(first_month - 12).toordinal())
    )


def _rename(tenant: _Tenant, rng: Random, first_name: str, surname: str) -> None:
    tenant.first_name = first_name
    tenant.surname = surname
    if tenant.email:
        tenant.email = _email(rng, first_name, surname, tenant.number)


def _contact(tenant: _Tenant, rng: Random, *, phone: str, email: bool, whatsapp: str, preferred: str) -> None:
    tenant.phone = _mobile(rng) if phone == "mobile" else phone
    tenant.email = _email(rng, tenant.first_name, tenant.surname, tenant.number) if email else ""
    tenant.whatsapp_opt_in = whatsapp
    tenant.preferred = preferred


def _recent(reference_day: date, *offsets: int) -> list[int]:
    """Month indexes ``offsets`` months before the reference month."""
    reference_month = _month_index(reference_day)
    return [reference_month - offset for offset in offsets]


def _edge_case(k: int, tenant: _Tenant, rng: Random, reference_day: date, months: int) -> None:
    _reset(tenant, reference_day, months, rng)
    ref_month = _month_index(reference_day)
    if k == 0:  # T-1001: late in 2026-06, 2026-08, 2026-10; WhatsApp opted in
        _rename(tenant, rng, "Mohamed", "El Idrissi")
        _contact(tenant, rng, phone="mobile", email=True, whatsapp="ja", preferred="whatsapp;sms")
        tenant.officer = "fatima"
        for m in _recent(reference_day, 5, 3, 1):
            tenant.kinds[m] = LATE
    elif k == 1:  # T-1002: no phone, no e-mail: letters only
        _rename(tenant, rng, "Henk", "Jansen")
        _contact(tenant, rng, phone="", email=False, whatsapp="", preferred="print")
        tenant.officer = "jan"
    elif k == 2:  # T-1003: prefers WhatsApp but did not opt in
        _rename(tenant, rng, "Ayşe", "Yılmaz")
        _contact(tenant, rng, phone="mobile", email=True, whatsapp="nee", preferred="whatsapp;sms")
    elif k == 3:  # T-1004: English, late twice (2026-06, 2026-09)
        _rename(tenant, rng, "Emily", "Clarke")
        _contact(tenant, rng, phone="mobile", email=True, whatsapp="", preferred="email;sms")
        tenant.language = "en"
        tenant.officer = "ahmed"
        for m in _recent(reference_day, 5, 2):
            tenant.kinds[m] = LATE
    elif k == 4:  # T-1005: July 2026 unpaid; arrangement 75.00 on the 1st since October 2026
        _rename(tenant, rng, "Anaïs", "Brouwer")
        _contact(tenant, rng, phone="mobile", email=True, whatsapp="nee", preferred="sms")
        tenant.rent = 600_00
        tenant.dutch_money = False
        (july,) = _recent(reference_day, 4)
        tenant.kinds[july] = UNPAID
        tenant.arrangement = (75_00, 1, july + 3)  # -> arrears 450.00 until 2027-05-31
    elif k == 5:  # T-1006: officer sanne (absent around the reference day), late 2026-07, -09
        _rename(tenant, rng, "Priya", "Ramdin")
        _contact(tenant, rng, phone="mobile", email=True, whatsapp="", preferred="sms")
        tenant.officer = "sanne"
        for m in _recent(reference_day, 4, 2):
            tenant.kinds[m] = LATE
    elif k == 6:  # T-1007: one month in arrears (November 2026); officers pause by hand
        _rename(tenant, rng, "Kees", "Bakker")
        _contact(tenant, rng, phone="mobile", email=True, whatsapp="ja", preferred="whatsapp;email")
        for m in _due_months(tenant, reference_day, months)[-1:]:
            tenant.kinds[m] = UNPAID
    elif k == 7:  # T-1008: first arrears ever: due on the 27th, November 2026 unpaid
        _rename(tenant, rng, "Małgorzata", "Kowalska")
        _contact(tenant, rng, phone="mobile", email=True, whatsapp="ja", preferred="whatsapp;sms")
        tenant.due_day = 27
        for m in _due_months(tenant, reference_day, months)[-1:]:
            tenant.kinds[m] = UNPAID
    elif k == 8:  # T-1009: two months behind since 2026-10-01
        _rename(tenant, rng, "Sanne", "de Vries")
        _contact(tenant, rng, phone="", email=True, whatsapp="", preferred="email")
        for m in _due_months(tenant, reference_day, months)[-2:]:
            tenant.kinds[m] = UNPAID
    elif k == 9:  # T-1010: always on time for all 24 months
        _rename(tenant, rng, "Youssef", "Amrani")
        _contact(tenant, rng, phone="mobile", email=False, whatsapp="", preferred="sms")
    elif k == 10:  # T-1011: late in January 2025 and January 2026 only
        _rename(tenant, rng, "Gerda", "van der Meer")
        _contact(tenant, rng, phone="mobile", email=True, whatsapp="nee", preferred="sms;email")
        for m in range(ref_month - months + 1, ref_month + 1):
            if m % 12 == 0 and tenant.due_date(m) + timedelta(days=3) <= reference_day:
                tenant.kinds[m] = LATE
    elif k == 11:  # T-1012: landline only, yet prefers SMS (tests check the fallback)
        _rename(tenant, rng, "Wim", "Visser")
        _contact(tenant, rng, phone="020 555 0123", email=False, whatsapp="", preferred="sms")
        tenant.city = "Amsterdam"
        tenant.postcode = _postcode(rng, "Amsterdam")
    elif k == 12:  # T-1013: long name
        tenant.first_name = "Maria Dolores"
        tenant.surname = "van den Bosch-Wijnaldum"
        _contact(tenant, rng, phone="mobile", email=True, whatsapp="", preferred="email")
        tenant.house_number = "140 II"
    elif k == 13:  # T-1014: moved in on 2026-09-01, on time since
        _rename(tenant, rng, "Lars", "Hendriks")
        _contact(tenant, rng, phone="mobile", email=True, whatsapp="ja", preferred="whatsapp;email")
        tenant.move_in = _month_start(ref_month - 2)


# --------------------------------------------------------------------------------------------
# Payments and rows
# --------------------------------------------------------------------------------------------


def _payments(
    tenant: _Tenant, rng: Random, reference_day: date, months: int
) -> tuple[list[tuple[date, int, int]], dict[int, int]]:
    """Payments as (paid_on, cents, month index), and cents still owed per month."""
    payments: list[tuple[date, int, int]] = []
    owed: dict[int, int] = {}
    reference_month = _month_index(reference_day)
    first = max(reference_month - months + 1, _month_index(tenant.move_in))
    rent = tenant.rent
    for month in range(first, reference_month + 1):
        due = tenant.due_date(month)
        kind = tenant.kinds.get(month, ON_TIME)
        if kind == UNPAID:
            paid = tenant.partial.get(month, 0)
            if paid:
                slack = max(0, min(20, (reference_day - due).days))
                payments.append((due + timedelta(days=rng.randint(-3, slack)), paid, month))
            owed[month] = rent - paid
            continue
        if kind == LATE and (reference_day - due).days >= 3:
            paid_on = due + timedelta(days=rng.randint(3, min(25, (reference_day - due).days)))
        else:
            paid_on = due - timedelta(days=rng.randint(0, 6))
        if paid_on <= reference_day:
            payments.append((paid_on, rent, month))

    if tenant.arrangement is not None and owed:
        amount, day, start = tenant.arrangement
        for month in range(start, reference_month + 1):
            paid_on = _day_in_month(month, day)
            if paid_on > reference_day or not owed:
                break
            oldest = min(owed)
            payment = min(amount, sum(owed.values()))
            payments.append((paid_on, payment, oldest))
            while payment and owed:
                oldest = min(owed)
                applied = min(payment, owed[oldest])
                owed[oldest] -= applied
                payment -= applied
                if owed[oldest] == 0:
                    del owed[oldest]
    payments.sort()
    return payments, owed


def _arrangement_until(tenant: _Tenant, remaining: int, reference_day: date) -> date:
    assert tenant.arrangement is not None
    amount, day, _start = tenant.arrangement
    month = _month_index(reference_day)
    if _day_in_month(month, day) <= reference_day:
        month += 1
    month += -(-remaining // amount) - 1  # the month of the last payment
    return _month_start(month + 1) - timedelta(days=1)


def _tenant_row(tenant: _Tenant, owed: dict[int, int], reference_day: date) -> list[str]:
    arrears = sum(owed.values())
    dutch = tenant.dutch_money
    arrangement = ["", "", ""]
    if tenant.arrangement is not None and arrears:
        amount, day, _start = tenant.arrangement
        until = _arrangement_until(tenant, arrears, reference_day)
        arrangement = [_money(amount, dutch), str(day), until.isoformat()]
    return [
        tenant.tenant_id,
        f"{tenant.first_name} {tenant.surname}",
        tenant.first_name,
        tenant.language,
        tenant.phone,
        tenant.email,
        tenant.whatsapp_opt_in,
        tenant.street,
        tenant.house_number,
        tenant.postcode,
        tenant.city,
        tenant.officer,
        _money(tenant.rent, dutch),
        str(tenant.due_day),
        _money(arrears, dutch) if arrears else "0",
        tenant.due_date(min(owed)).isoformat() if arrears else "",
        *arrangement,
        tenant.preferred,
        tenant.move_in.isoformat(),
    ]


def iter_tenants(
    n: int,
    *,
    seed: int = DEFAULT_SEED,
    reference_day: date = DEFAULT_REFERENCE_DAY,
    months: int = DEFAULT_MONTHS,
    edge_cases: bool = True,
) -> Iterator[tuple[list[str], list[list[str]]]]:
    """Yield (tenant row, payment rows) per tenant, lazily, in tenant_id order."""
    if n < 0:
        raise ValueError("n must not be negative")
    if months < 1:
        raise ValueError("months must be at least 1")
    rng = Random(seed)
    for i in range(n):
        number = FIRST_TENANT_NUMBER + i
        tenant = _random_tenant(rng, number, reference_day, months)
        if edge_cases and i < EDGE_CASE_COUNT:
            _edge_case(i, tenant, rng, reference_day, months)
        payments, owed = _payments(tenant, rng, reference_day, months)
        tenant_id = tenant.tenant_id
        payment_rows = [
            [
                tenant_id,
                paid_on.isoformat(),
                _money(cents, rng.random() < 0.3),
                _month_label(month),
            ]
            for paid_on, cents, month in payments
        ]
        yield _tenant_row(tenant, owed, reference_day), payment_rows


def _open_csv(path: Path) -> tuple[TextIO, Callable[[list[str]], object]]:
    handle = path.open("w", encoding="utf-8", newline="")
    writer = csv.writer(handle, lineterminator="\n")
    return handle, writer.writerow


def generate(
    n: int,
    out_dir: Path,
    *,
    seed: int = DEFAULT_SEED,
    reference_day: date = DEFAULT_REFERENCE_DAY,
    months: int = DEFAULT_MONTHS,
    edge_cases: bool = True,
) -> None:
    """Write ``tenants.csv`` and ``payments.csv`` for ``n`` tenants into ``out_dir``.

    Rows are streamed to disk as they are generated.  With ``edge_cases`` the first 14 tenants
    (T-1001 .. T-1014) are the fixed edge cases documented in this module.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tenants_handle, write_tenant = _open_csv(out_dir / "tenants.csv")
    try:
        payments_handle, write_payment = _open_csv(out_dir / "payments.csv")
        try:
            write_tenant(list(TENANT_FIELDS))
            write_payment(list(PAYMENT_FIELDS))
            for tenant_row, payment_rows in iter_tenants(
                n, seed=seed, reference_day=reference_day, months=months, edge_cases=edge_cases
            ):
                write_tenant(tenant_row)
                for row in payment_rows:
                    write_payment(row)
        finally:
            payments_handle.close()
    finally:
        tenants_handle.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write synthetic tenants.csv and payments.csv for nudger.")
    parser.add_argument("--tenants", type=int, required=True, help="number of tenants")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument(
        "--reference-day",
        type=date.fromisoformat,
        default=DEFAULT_REFERENCE_DAY,
        help="the 'today' of the data set, YYYY-MM-DD (default %(default)s)",
    )
    parser.add_argument("--months", type=int, default=DEFAULT_MONTHS, help="months of payment history")
    parser.add_argument(
        "--no-edge-cases",
        action="store_true",
        help="make T-1001 .. T-1014 random too instead of the fixed edge cases",
    )
    args = parser.parse_args(argv)
    if args.tenants < 0:
        parser.error("--tenants must not be negative")
    if args.months < 1:
        parser.error("--months must be at least 1")
    generate(
        args.tenants,
        args.out,
        seed=args.seed,
        reference_day=args.reference_day,
        months=args.months,
        edge_cases=not args.no_edge_cases,
    )
    print(f"wrote {args.out / 'tenants.csv'} and {args.out / 'payments.csv'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
