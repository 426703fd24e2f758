"""Unit tests for nudger/conditions.py and nudger/render.py: the sandbox, the filters and the signatures."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from types import SimpleNamespace

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from nudger.conditions import SCOPE_NAMES, build_scope, compile_condition
from nudger.facts import Facts, Payment, TenantRecord
from nudger.render import Rendered, display_phone, make_env, render_text, signature

NBSP = "\u00a0"
RENT = Decimal("612.45")


@pytest.fixture(scope="module")
def env():
    return make_env()


def facts(
    *, january_late: bool = True, arrears: str = "0", today: date = date(2026, 11, 15), extra: tuple = ()
) -> Facts:
    jan_paid = date(2026, 1, 9) if january_late else date(2026, 1, 1)
    rec = TenantRecord(
        tenant_id="T-1",
        name="Anna de Vries",
        first_name="Anna",
        language="nl",
        officer="fatima",
        rent=RENT,
        arrears=Decimal(arrears),
        arrears_since=date(2026, 10, 2) if Decimal(arrears) > 0 else None,
        move_in=date(2019, 5, 1),
        payments=[Payment(jan_paid, RENT, (2026, 1)), *extra],
    )
    return Facts(rec, today)


OFFICER = SimpleNamespace(
    key="fatima",
    name="Fatima el Amrani",
    first_name="Fatima",
    role="uw vaste contactpersoon",
    role_en="your contact person",
    phone="+31 20 555 0101",
    email="f.elamrani@example.nl",
)


def scope(f: Facts | None = None, language: str = "nl") -> dict:
    return build_scope(f or facts(), OFFICER, language)


def condition(env, source: str):
    cond, problem = compile_condition(env, source, SCOPE_NAMES)
    assert problem == ""
    assert cond is not None
    return cond


# --- conditions ----------------------------------------------------------------------------------


def test_condition_sees_the_facts(env):
    cond = condition(env, "arrears == 0 and rent > 600 and tenant.first_name == 'Anna'")
    assert cond(scope()) is True
    assert cond(scope(facts(arrears="100"))) is False


def test_condition_can_call_late_in(env):
    cond = condition(env, "late_in(1, 2026)")
    assert cond(scope(facts(january_late=True))) is True
    assert cond(scope(facts(january_late=False))) is False


def test_condition_can_use_today_year(env):
    cond = condition(env, "late_in(1, today.year)")
    assert cond(scope(facts(today=date(2026, 11, 15)))) is True
    # a year later the condition looks at January 2027, paid on time
    on_time_2027 = (Payment(date(2027, 1, 1), RENT, (2027, 1)),)
    assert cond(scope(facts(today=date(2027, 11, 15), extra=on_time_2027))) is False


def test_condition_on_dates_and_amounts(env):
    cond = condition(env, "months_behind >= 1 and arrears_days > 30 and rent_due.day == 1")
    assert cond(scope(facts(arrears="700", today=date(2026, 11, 15)))) is True
    assert cond(scope(facts(arrears="500", today=date(2026, 11, 15)))) is False


def test_calling_a_method_is_refused(env):
    cond = condition(env, "tenant.name.upper() == 'ANNA DE VRIES'")
    with pytest.raises(SecurityError):
        cond(scope())


def test_calling_a_builtin_through_an_attribute_is_refused(env):
    cond = condition(env, "rent_due.replace(day=2) == rent_due")
    with pytest.raises(SecurityError):
        cond(scope())


def test_python_internals_are_blocked(env):
    cond = condition(env, "''.__class__")
    with pytest.raises(SecurityError):
        cond(scope())
    cond = condition(env, "late_in._fn")
    with pytest.raises(SecurityError):
        cond(scope())


def test_no_globals_such_as_range_or_dict(env):
    cond, problem = compile_condition(env, "range(3)", SCOPE_NAMES)
    assert cond is None
    assert "range" in problem


def test_unknown_names_are_rejected_by_name(env):
    cond, problem = compile_condition(env, "arreas > 0 and huur > 500", SCOPE_NAMES)
    assert cond is None
    assert problem == "unknown name(s) arreas, huur"


def test_unreadable_condition_is_rejected(env):
    cond, problem = compile_condition(env, "arrears >", SCOPE_NAMES)
    assert cond is None
    assert "cannot be read" in problem


def test_event_is_only_allowed_when_given(env):
    cond, problem = compile_condition(env, "event.count >= 3", SCOPE_NAMES)
    assert cond is None and "event" in problem
    cond, problem = compile_condition(env, "event.count >= 3", SCOPE_NAMES | {"event"})
    assert problem == ""
    assert cond({**scope(), "event": {"name": "on_time_streak", "at": date(2026, 11, 1), "count": 3}}) is True


def test_scope_has_every_documented_name():
    assert set(scope()) == set(SCOPE_NAMES)


def test_officer_role_in_english():
    assert build_scope(facts(), OFFICER, "en")["officer"]["role"] == "your contact person"
    assert build_scope(facts(), OFFICER, "nl")["officer"]["role"] == "uw vaste contactpersoon"


# --- templates and filters -----------------------------------------------------------------------


def render(env, source: str, locale: str = "nl_NL", **values) -> str:
    return render_text(env.from_string(source), {**scope(), **values}, locale)


def test_money_in_dutch(env):
    assert render(env, "{{ x | money }}", x=Decimal("1234.56")) == f"€{NBSP}1.234,56"
    assert render(env, "{{ rent | money }}") == f"€{NBSP}612,45"


def test_money_in_english(env):
    assert render(env, "{{ x | money }}", "en_GB", x=Decimal("1234.56")) == "€1,234.56"


def test_money_is_not_rounded_through_float(env):
    assert render(env, "{{ x | money }}", x=Decimal("0.105")) in (f"€{NBSP}0,11", f"€{NBSP}0,10")
    assert render(env, "{{ x | money }}", x=Decimal("1000000.01")) == f"€{NBSP}1.000.000,01"


def test_long_date(env):
    assert render(env, "{{ d | date }}", d=date(2026, 11, 26)) == "26 november 2026"
    assert render(env, "{{ d | date }}", "en_GB", d=date(2026, 11, 26)) == "26 November 2026"
    assert render(env, "{{ d | date }}", d=datetime(2026, 3, 1, 10, 0)) == "1 maart 2026"


def test_weekday(env):
    assert render(env, "{{ d | weekday }}", d=date(2026, 11, 26)) == "donderdag"
    assert render(env, "{{ d | weekday }}", "en_GB", d=date(2026, 11, 26)) == "Thursday"


def test_time(env):
    assert render(env, "{{ t | time }}", t=time(9, 5)) == "09:05"
    assert render(env, "{{ t | time }}", t="18:30") == "18:30"


def test_locale_defaults_to_dutch(env):
    assert env.from_string("{{ d | date }}").render(d=date(2026, 11, 26)) == "26 november 2026"


def test_none_renders_empty_not_none(env):
    assert render(env, "[{{ installment | money }}][{{ installment_due | date }}]") == "[][]"


def test_text_with_facts(env):
    text = render(env, "Hoi {{ tenant.first_name }},\nop {{ rent_due | date }} is de huur weer aan de beurt.   \n")
    assert text == "Hoi Anna,\nop 1 december 2026 is de huur weer aan de beurt."


def test_unknown_name_in_a_text_is_an_error_not_a_blank(env):
    with pytest.raises(UndefinedError):
        render(env, "Hoi {{ tenant_name }}")
    with pytest.raises(UndefinedError):
        render(env, "Hoi {{ tenant.frist_name }}")


def test_text_cannot_call_methods(env):
    with pytest.raises(SecurityError):
        render(env, "{{ tenant.name.upper() }}")
    with pytest.raises(SecurityError):
        render(env, "{{ ''.__class__.__mro__ }}")


def test_text_cannot_change_the_scope(env):
    with pytest.raises(SecurityError):
        render(env, "{{ tenant.update({'name': 'x'}) }}")


# --- signatures ----------------------------------------------------------------------------------


SIGNER = {
    "name": "Fatima el Amrani",
    "first_name": "Fatima",
    "role": "uw vaste contactpersoon",
    "phone": "+31 20 555 0101",
    "email": "f.elamrani@example.nl",
}
ORG = "Woonstichting Voorbeeld"


def test_phone_numbers_are_shown_as_people_write_them_here():
    assert display_phone("+31 20 555 0101") == "020 555 0101"
    assert display_phone("+44 20 7946 0958") == "+44 20 7946 0958"
    assert display_phone("bel de receptie") == "bel de receptie"


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_short_signature_for_sms_and_whatsapp(channel):
    assert signature(SIGNER, channel, "nl", ORG) == "Groet, Fatima\nuw vaste contactpersoon, 020 555 0101"
    assert signature(SIGNER, channel, "en", ORG).startswith("Best wishes, Fatima\n")


def test_email_signature_has_name_role_organisation_phone_and_address():
    assert signature(SIGNER, "email", "nl", ORG) == (
        "Met vriendelijke groet,\n\nFatima el Amrani\nuw vaste contactpersoon, Woonstichting Voorbeeld\n"
        "Direct nummer: 020 555 0101\nf.elamrani@example.nl"
    )
    assert signature(SIGNER, "email", "en", ORG).startswith("Kind regards,\n\nFatima el Amrani\n")
    assert "Direct line: 020 555 0101" in signature(SIGNER, "email", "en", ORG)


def test_letter_signature_has_no_email_address():
    sig = signature(SIGNER, "print", "nl", ORG)
    assert sig.startswith("Met vriendelijke groet,\n\nFatima el Amrani\n")
    assert "020 555 0101" in sig
    assert "@" not in sig


def test_card_leaves_room_to_sign_by_hand():
    assert signature(SIGNER, "print", "nl", ORG, card=True) == "Hartelijke groet,\n\n\nFatima el Amrani"
    assert signature(SIGNER, "print", "en", ORG, card=True) == "Warm wishes,\n\n\nFatima el Amrani"


def test_call_tasks_are_not_signed():
    assert signature(SIGNER, "call", "nl", ORG) == ""


def test_signature_without_phone_or_role():
    bare = {"name": "Jan de Boer", "first_name": "Jan"}
    assert signature(bare, "sms", "nl", ORG) == "Groet, Jan"
    assert signature(bare, "email", "nl", ORG) == "Met vriendelijke groet,\n\nJan de Boer"


def test_unknown_language_signs_in_dutch():
    assert signature(SIGNER, "sms", "tr", ORG).startswith("Groet, Fatima")


def test_rendered_full_adds_the_signature_after_a_blank_line():
    assert Rendered("", "Hoi Anna,", "Groet, Fatima").full == "Hoi Anna,\n\nGroet, Fatima"
    assert Rendered("", "Bel Anna.", "").full == "Bel Anna."
