"""Unit tests for nudger/tone.py: the tone guard behind `nudger check` (RULEBOOK.md, "What `nudger check` guards")."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from support import OFFICERS_YAML

from nudger.config import load_config
from nudger.tone import Segments, check_all, readability, sms_segments, syllables, words_for

ROOT = Path(__file__).resolve().parents[1]
TODAY = date(2026, 11, 30)
FILE = "rules/tone.yaml"

CONFIG = """\
timezone: Europe/Amsterdam
rules: rules
organisation:
  name: Woonstichting Voorbeeld
whatsapp_templates:
  herinnering:
    content_sid: HX00000000000000000000000000000001
"""

OFFICERS = OFFICERS_YAML

# The layout of every rule file below (`rule_file`); the tests assert these line numbers.
#  1 id: tone-test
#  2 kind: ...
#  3 trigger:
#  4   before: rent_due
#  5   days: 2
#  6 channels: ...
#  7 subject:              (without a subject, `text:` moves up to line 7)
#  8   nl: Even over de huur
#  9   en: About the rent
# 10 text:
# 11   nl: "..."
# 12   en: "..."
# 13 (extra fields, e.g. `when:` or `whatsapp_template:`)
LINE = {"nl": 11, "en": 12}
CHANNELS_LINE, WHEN_LINE = 6, 13

# a clean text in each language: a question (so a reminder invites a reply), short, simple words
CLEAN = {"nl": "Lukt dat zo?", "en": "Is that all right?"}


def rule_file(
    nl: str, en: str, *, kind: str = "reminder", channels: str = "[email]", subject: bool = True, extra: str = ""
) -> str:
    lines = ["id: tone-test", f"kind: {kind}", "trigger:", "  before: rent_due", "  days: 2", f"channels: {channels}"]
    if subject:
        lines += ["subject:", "  nl: Even over de huur", "  en: About the rent"]
    lines += ["text:", f"  nl: {json.dumps(nl, ensure_ascii=False)}", f"  en: {json.dumps(en, ensure_ascii=False)}"]
    return "\n".join(lines) + "\n" + extra


def make_folder(folder: Path, rule: str, config: str = CONFIG) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(config, encoding="utf-8")
    (folder / "rules").mkdir()
    (folder / "rules" / "officers.yaml").write_text(OFFICERS, encoding="utf-8")
    (folder / "rules" / "tone.yaml").write_text(rule, encoding="utf-8")
    return folder


def check(folder: Path, rule: str, config: str = CONFIG):
    make_folder(folder, rule, config)
    book, findings = check_all(load_config(folder / "config.yaml"), TODAY)
    assert book is not None, [str(f) for f in findings]  # the structure is sound: only the tone guard speaks
    return findings


def check_text(folder: Path, lang: str, text: str, **kwargs):
    """Check a rule whose `lang` text is `text` (the other language gets a clean text)."""
    nl, en = (text, CLEAN["en"]) if lang == "nl" else (CLEAN["nl"], text)
    return check(folder, rule_file(nl, en, **kwargs))


def where(findings) -> list[tuple[str, str, int]]:
    return [(f.level, f.file, f.line) for f in findings]


def about(findings, *words: str):
    return [f for f in findings if all(w in f.message for w in words)]


def strs(findings) -> list[str]:
    return [str(f) for f in findings]


# --- the checks, each with a passing and a failing text, in Dutch and English --------------------------------


def test_the_clean_texts_pass(tmp_path):
    findings = check(tmp_path, rule_file(CLEAN["nl"], CLEAN["en"]))
    assert strs(findings) == []


READABILITY = {
    "nl": (
        "De huur is op tijd betaald. Dank u wel. Lukt dat zo?",
        "Uw huurbetaling is vertraagd door administratieve omstandigheden. Lukt dat?",
    ),
    "en": (
        "The rent is paid on time. Thank you. Is that all right?",
        "Your accommodation payment experienced considerable administrative complications. Is that all right?",
    ),
}


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_readability_below_the_floor_is_an_error(tmp_path, lang):
    good, bad = READABILITY[lang]
    assert strs(check_text(tmp_path / "good", lang, good)) == []
    findings = check_text(tmp_path / "bad", lang, bad)
    found = about(findings, "readability")
    assert where(found) == [("error", FILE, LINE[lang])]
    name = "Flesch-Douma" if lang == "nl" else "Flesch"
    score = readability(bad, lang).score
    assert score < 60
    shown = re.fullmatch(rf"text `{lang}`: readability {name} (\S+) is below 60 \(B1\)", found[0].message)
    assert shown and abs(float(shown[1]) - score) < 1, found[0].message
    assert "shorter sentences" in found[0].fix
    assert found[0].rule == "tone-test"


def test_the_score_in_the_readability_message_is_below_the_floor(tmp_path):
    # 16 words, 2 sentences, 29 syllables: 206.835 - 0.93 * 8 - 77 * 29/16 = 59.8, just below 60.
    # The message must not say "60 is below 60".
    text = "Wij regelen de betalingen van de woningen graag. Kunt u de huurbetaling samen met mij regelen?"
    r = readability(text, "nl")
    assert (r.words, r.sentences, r.syllables, r.score) == (16, 2, 29, 59.8)
    found = about(check_text(tmp_path, "nl", text), "readability")
    assert where(found) == [("error", FILE, LINE["nl"])]
    shown = re.search(r"Flesch-Douma (\S+) is below 60", found[0].message)
    assert shown, found[0].message
    assert float(shown[1]) < 60, found[0].message


SENTENCES = {  # 15 words pass, 16 words are one too many
    "nl": (
        "Wij zien dat de huur van deze maand nog niet binnen is, bel me even.",
        "Wij zien dat de huur van deze maand nog niet binnen is, bel me maar even.",
    ),
    "en": (
        "We see that the rent for this month is not in yet, so call me.",
        "We see that the rent for this month is not in yet, so just call me.",
    ),
}


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_a_sentence_of_more_than_15_words_is_an_error(tmp_path, lang):
    good, bad = SENTENCES[lang]
    assert len(good.split()) == 15 and len(bad.split()) == 16
    assert strs(check_text(tmp_path / "good", lang, good)) == []
    found = about(check_text(tmp_path / "bad", lang, bad), "sentence of")
    assert where(found) == [("error", FILE, LINE[lang])]
    assert found[0].message.startswith(f'text `{lang}`: a sentence of 16 words (more than 15): "{bad[:20]}')
    assert found[0].fix == "split it into two sentences"


# 4 syllables pass, 5 are too many: huur-be-ta-ling (4), ad-mi-ni-stra-tie (5); con-ver-sa-tion (4),
# op-por-tu-ni-ty (5). Names (a capital letter) are spared however long they are.
LONG_WORDS = {
    "nl": (
        "Fijn dat Montgomery-Whitfield u over de huurbetaling belt. Lukt dat?",
        "Dat regelt de administratie. Lukt dat?",
    ),
    "en": (
        "Soon Maximiliano will call you for a conversation. Is that all right with you?",
        "That is a great opportunity. Is that all right?",
    ),
}
NAMES = {"nl": "Montgomery-Whitfield", "en": "Maximiliano"}  # mont-go-me-ry-whit-field / max-i-m-il-iano
WORDS = {"nl": ("huurbetaling", "administratie"), "en": ("conversation", "opportunity")}


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_a_word_of_more_than_4_syllables_is_a_warning(tmp_path, lang):
    good, bad = LONG_WORDS[lang]
    four, five = WORDS[lang]
    assert (syllables(four, lang), syllables(five, lang)) == (4, 5)
    assert syllables(NAMES[lang], lang) > 4  # long, but a name
    assert strs(check_text(tmp_path / "good", lang, good)) == []
    found = about(check_text(tmp_path / "bad", lang, bad), "long word")
    assert where(found) == [("warning", FILE, LINE[lang])]
    assert found[0].message.startswith(f"text `{lang}`: long word(s) {five} in ")
    assert "shorter, everyday word" in found[0].fix


def test_a_long_word_at_the_start_of_a_sentence_is_a_warning_too(tmp_path):
    # Only names are spared; an ordinary word is no shorter for standing first in its sentence.
    text = "Verantwoordelijkheid is lastig. Lukt dat?"
    found = about(check_text(tmp_path, "nl", text), "long word")
    assert where(found) == [("warning", FILE, LINE["nl"])], strs(check_text(tmp_path / "again", "nl", text))
    assert "Verantwoordelijkheid" in found[0].message


THREATS = [
    ("nl", "Anders komt de deurwaarder. Lukt dat?", "deurwaarder"),
    ("nl", "Deurwaarder: dat willen we niet. Lukt dat?", "Deurwaarder"),
    ("nl", "Dan moet u niet wachten, u moet vandaag betalen. Lukt dat?", "u moet"),
    ("nl", "U MOET betalen. Lukt dat?", "U MOET"),
    ("nl", "Daarom dient u te betalen. Lukt dat?", "dient u"),
    ("en", "You must pay today. Is that all right?", "You must"),
    ("en", "YOU MUST pay today. Is that all right?", "YOU MUST"),
    ("en", "Otherwise the bailiff will come. Is that all right?", "bailiff"),
]


@pytest.mark.parametrize(("lang", "text", "phrase"), THREATS)
def test_threats_and_commands_are_errors(tmp_path, lang, text, phrase):
    found = about(check_text(tmp_path, lang, text), "threatens or commands")
    assert where(found) == [("error", FILE, LINE[lang])]
    assert found[0].message == f"text `{lang}`: `{phrase}` threatens or commands"
    assert "invite the tenant" in found[0].fix


NOT_THREATS = [
    ("nl", "Zullen we kijken wat we moeten doen?"),
    ("nl", "Zullen we kijken wat er nu moet gebeuren?"),  # "nu moet" holds "u moet", but not as whole words
    ("nl", "Zit de deurwaarderij nu in uw straat?"),  # not the whole word
    ("en", "Is the courtyard clean again?"),  # "court" is a threat only as a whole word
    ("en", "Do you mustard your fries?"),
]


@pytest.mark.parametrize(("lang", "text"), NOT_THREATS)
def test_threats_match_whole_words_only(tmp_path, lang, text):
    assert strs(check_text(tmp_path, lang, text)) == []


def test_a_threat_in_the_subject_counts_too(tmp_path):
    rule = rule_file(CLEAN["nl"], CLEAN["en"]).replace("Even over de huur", "Brief van de deurwaarder")
    found = about(check(tmp_path, rule), "threatens")
    assert [(f.level, f.line, f.message) for f in found] == [
        ("error", LINE["nl"], "text `nl`: `deurwaarder` threatens or commands")
    ]


OFFICIALESE = [  # (language, text, the officialese word, its plain word, the text in plain words)
    ("nl", "Indien het niet lukt, bel me dan?", "indien", "als", "Als het niet lukt, bel me dan?"),
    ("nl", "Heeft u mijn brief ontvangen?", "ontvangen", "krijgen", "Heeft u mijn brief gekregen?"),
    ("en", "Could you pay prior to Monday?", "prior to", "before", "Could you pay before Monday?"),
    ("en", "When does the work commence?", "commence", "start", "When does the work start?"),
]


@pytest.mark.parametrize(("lang", "text", "word", "plain", "good"), OFFICIALESE)
def test_officialese_is_a_warning_with_the_plain_word(tmp_path, lang, text, word, plain, good):
    found = about(check_text(tmp_path / "bad", lang, text), "officialese")
    assert where(found) == [("warning", FILE, LINE[lang])]
    assert found[0].message == f"text `{lang}`: `{word}` is officialese"
    assert found[0].fix == f"write `{plain}`"
    assert strs(check_text(tmp_path / "good", lang, good)) == []


CAPITALS = {
    "nl": ("Staat uw IBAN goed, of wilt u het via SMS doen?", "Wilt u de huur NU betalen?", "NU"),
    "en": ("Is your IBAN right, or shall we use SMS?", "Could you pay the rent TODAY?", "TODAY"),
}


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_words_in_capitals_are_an_error_except_allowed_abbreviations(tmp_path, lang):
    good, bad, shouted = CAPITALS[lang]
    assert strs(check_text(tmp_path / "good", lang, good)) == []
    found = about(check_text(tmp_path / "bad", lang, bad), "capitals")
    assert where(found) == [("error", FILE, LINE[lang])]
    assert found[0].message == f"text `{lang}`: word(s) in capitals: {shouted}"
    assert found[0].fix == "write them in small letters"


EXCLAMATIONS = {
    "nl": ("Dank u wel, knap gedaan!", "Dank u wel! Knap gedaan!"),
    "en": ("Thank you, well done!", "Thank you! Well done!"),
}


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_more_than_one_exclamation_mark_is_an_error(tmp_path, lang):
    good, bad = EXCLAMATIONS[lang]
    assert strs(check_text(tmp_path / "good", lang, good, kind="appreciation")) == []
    found = about(check_text(tmp_path / "bad", lang, bad, kind="appreciation"), "exclamation")
    assert where(found) == [("error", FILE, LINE[lang])]
    assert found[0].message == f"text `{lang}`: 2 exclamation marks"
    assert found[0].fix == "use at most one"


INVITES = {  # (without a question or offer, with an offer to talk, with a question)
    "nl": (
        "Op 1 december is de huur er weer.",
        "Op 1 december is de huur er weer. Bel me gerust.",
        "Op 1 december is de huur er weer. Lukt dat?",
    ),
    "en": (
        "Your rent is due on 1 December.",
        "Your rent is due on 1 December. Just let me know.",
        "Your rent is due on 1 December. Is that all right?",
    ),
}


@pytest.mark.parametrize("kind", ["reminder", "check-in"])
@pytest.mark.parametrize("lang", ["nl", "en"])
def test_a_reminder_or_check_in_must_invite_a_reply(tmp_path, lang, kind):
    bare, offer, question = INVITES[lang]
    found = about(check_text(tmp_path / "bare", lang, bare, kind=kind), "invite")
    assert where(found) == [("warning", FILE, LINE[lang])]
    assert found[0].message == f"text `{lang}`: the text does not invite a reply"
    assert "ask a question or offer to talk" in found[0].fix
    assert strs(check_text(tmp_path / "offer", lang, offer, kind=kind)) == []
    assert strs(check_text(tmp_path / "question", lang, question, kind=kind)) == []


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_an_appreciation_needs_no_question(tmp_path, lang):
    text = {"nl": "De huur is op tijd betaald. Dank u wel.", "en": "The rent is paid on time. Thank you."}[lang]
    assert strs(check_text(tmp_path, lang, text, kind="appreciation")) == []


ASKS = {
    "nl": (
        "Kunt u de huur vandaag betalen? Dank u wel.",
        "Kunt u de huur vandaag betalen? Wilt u ook uw nieuwe nummer geven?",
    ),
    "en": (
        "Could you pay the rent today? Thank you.",
        "Could you pay the rent today? Would you also give me your new number?",
    ),
}


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_more_than_one_ask_is_a_warning(tmp_path, lang):
    good, bad = ASKS[lang]
    assert strs(check_text(tmp_path / "good", lang, good)) == []
    found = about(check_text(tmp_path / "bad", lang, bad), "requests")
    assert where(found) == [("warning", FILE, LINE[lang])]
    first, second = bad.split("? ")
    assert found[0].message.startswith(f'text `{lang}`: 2 requests in one message: "{first}?" / "{second[:20]}')
    assert "one ask per message" in found[0].fix


SELF_SIGNED = {
    "nl": ("Lukt dat zo?\nGroet van het hele huis.", "Lukt dat zo?\nWoonstichting Voorbeeld"),
    "en": ("Is that all right?\nThe whole house says hi.", "Is that all right?\nWoonstichting Voorbeeld"),
}


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_a_text_signed_by_the_organisation_is_a_warning(tmp_path, lang):
    good, bad = SELF_SIGNED[lang]
    assert strs(check_text(tmp_path / "good", lang, good)) == []
    found = about(check_text(tmp_path / "bad", lang, bad), "signs itself")
    assert where(found) == [("warning", FILE, LINE[lang])]
    assert found[0].message == f"text `{lang}`: the text signs itself with the organisation, not a person"
    assert "officer's name" in found[0].fix


# Long texts for SMS: simple, short sentences (readable), only the length matters. With the signature
# ("Groet, Fatima" and a line with role and phone) the GSM-7 version fits 2 segments (at most 306 septets);
# one `ë` makes it UCS-2, where 2 segments hold only 134 characters.
SMS = {
    "nl": ("Dank u wel. " + "De huur is op tijd betaald. " * 5 + "Wat een goede {}.", "ideeen", "ideeën"),
    "en": ("Thank you. " + "The rent is paid on time. " * 6 + "{} says thank you too.", "Zoe", "Zoë"),
}


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_an_sms_over_2_segments_is_an_error_naming_the_character_that_forces_ucs2(tmp_path, lang):
    template, plain, special = SMS[lang]
    good, bad = template.format(plain), template.format(special)
    assert 160 < sms_segments(good).units < 306 - 60  # two GSM-7 segments, with room for the signature
    clean = check_text(tmp_path / "good", lang, good, channels="[sms]", kind="appreciation", subject=False)
    assert strs(clean) == []
    found = about(
        check_text(tmp_path / "bad", lang, bad, channels="[sms]", kind="appreciation", subject=False), "SMS takes"
    )
    assert where(found) == [("error", FILE, LINE[lang] - 3)]  # no subject: the texts are 3 lines up
    match = re.fullmatch(
        rf"text `{lang}` \(sms\): the SMS takes (\d+) segments \((\d+) UCS-2 characters with the signature\); "
        r"`ë` needs UCS-2, which halves the room",
        found[0].message,
    )
    assert match, found[0].message
    count, units = int(match[1]), int(match[2])
    assert units > len(bad) + len("Groet, Fatima")  # the signature counts
    assert count == math.ceil(units / 67) > 2  # 67 UCS-2 characters per segment of a long SMS
    assert "2 segments" in found[0].fix


def test_a_whatsapp_rule_without_template_is_an_error(tmp_path):
    bad = rule_file(CLEAN["nl"], CLEAN["en"], channels="[whatsapp]")
    found = about(check(tmp_path / "bad", bad), "WhatsApp")
    assert where(found) == [("error", FILE, CHANNELS_LINE)]
    assert found[0].message == "the rule can reach WhatsApp but names no approved template"
    assert "whatsapp_template" in found[0].fix
    good = bad + "whatsapp_template: herinnering\n"
    assert strs(check(tmp_path / "good", good)) == []


def test_a_rule_without_channels_can_reach_whatsapp(tmp_path):
    rule = rule_file(CLEAN["nl"], CLEAN["en"]).replace("channels: [email]", "channels: preferred")
    found = about(check(tmp_path, rule), "WhatsApp")
    assert where(found) == [("error", FILE, CHANNELS_LINE)]


@pytest.mark.parametrize("channel", ["email", "print"])
def test_an_email_or_letter_without_subject_is_a_warning(tmp_path, channel):
    bad = rule_file(CLEAN["nl"], CLEAN["en"], channels=f"[{channel}]", subject=False)
    findings = check(tmp_path / "bad", bad)
    assert where(findings) == [("warning", FILE, 7)]  # the line of `text:`
    assert findings[0].message == "e-mails and letters need a subject or heading"
    assert "subject:" in findings[0].fix
    good = rule_file(CLEAN["nl"], CLEAN["en"], channels=f"[{channel}]")
    assert strs(check(tmp_path / "good", good)) == []
    # an SMS rule needs no subject
    assert strs(check(tmp_path / "sms", rule_file(CLEAN["nl"], CLEAN["en"], channels="[sms]", subject=False))) == []


def test_a_condition_false_for_every_sample_is_a_warning(tmp_path):
    # the Dutch sample tenant owes 3703.68, the English one nothing
    never = rule_file(CLEAN["nl"], CLEAN["en"], extra="when: arrears > 5000\n")
    findings = check(tmp_path / "never", never)
    assert where(findings) == [("warning", FILE, WHEN_LINE)]
    assert findings[0].message == "the condition `arrears > 5000` is false for every sample tenant"
    assert findings[0].fix == "check it with `nudger plan --rule tone-test`"
    sometimes = rule_file(CLEAN["nl"], CLEAN["en"], extra="when: arrears > 3000\n")
    assert strs(check(tmp_path / "sometimes", sometimes)) == []


# --- sms_segments ---------------------------------------------------------------------------------------------


def test_sms_segments_gsm7():
    assert (sms_segments("a" * 160).count, sms_segments("a" * 160).encoding) == (1, "GSM-7")
    assert sms_segments("a" * 161).count == 2
    assert sms_segments("a" * 306).count == 2
    assert sms_segments("a" * 307).count == 3
    assert sms_segments("a" * 307).units == 307
    assert sms_segments("a" * 307).forced_by == ""


def test_sms_segments_ucs2():
    assert sms_segments("ë" * 70) == Segments(1, "UCS-2", 70, "ë")
    assert sms_segments("ë" * 71).count == 2
    assert sms_segments("ë" * 134).count == 2
    assert sms_segments("ë" * 135).count == 3


def test_the_euro_sign_counts_as_two_septets():
    assert (sms_segments("€" * 80).count, sms_segments("€" * 80).units) == (1, 160)
    assert (sms_segments("€" * 81).count, sms_segments("€" * 81).units) == (2, 162)
    assert sms_segments("€" * 81).encoding == "GSM-7"


def test_one_e_trema_switches_to_ucs2():
    text = "a" * 100 + "ë" + "a" * 50
    seg = sms_segments(text)
    assert (seg.encoding, seg.units, seg.count, seg.forced_by) == ("UCS-2", 151, 3, "ë")
    assert sms_segments(text.replace("ë", "e")).count == 1  # 151 septets


# --- readability, computed by hand ------------------------------------------------------------------------------
# Flesch-Douma (nl): 206.835 - 0.93 * words/sentences - 77 * syllables/words
# Flesch (en):       206.835 - 1.015 * words/sentences - 84.6 * syllables/words
# Syllables as Pyphen hyphenates: be-taald, be-ta-len, hap-py, pay-ment; the other words have one.


def test_flesch_douma_of_one_dutch_sentence():
    # "De huur is betaald."  4 words, 1 sentence; de 1 + huur 1 + is 1 + be-taald 2 = 5 syllables
    # 206.835 - 0.93 * 4 - 77 * 5/4 = 206.835 - 3.72 - 96.25 = 106.865 -> 106.9
    r = readability("De huur is betaald.", "nl")
    assert (r.words, r.sentences, r.syllables) == (4, 1, 5)
    assert r.score == 106.9


def test_flesch_douma_of_two_dutch_sentences():
    # "Dank u wel. Wij betalen de huur op tijd."  3 + 6 = 9 words, 2 sentences
    # syllables: dank u wel = 3; wij 1 + be-ta-len 3 + de 1 + huur 1 + op 1 + tijd 1 = 8; 11 in all
    # 206.835 - 0.93 * 9/2 - 77 * 11/9 = 206.835 - 4.185 - 94.111 = 108.539 -> 108.5
    r = readability("Dank u wel. Wij betalen de huur op tijd.", "nl")
    assert (r.words, r.sentences, r.syllables, r.sentence_lengths) == (9, 2, 11, (3, 6))
    assert r.score == 108.5


def test_flesch_of_one_english_sentence():
    # "The rent is paid."  4 words, 1 sentence, 4 syllables
    # 206.835 - 1.015 * 4 - 84.6 * 1 = 206.835 - 4.06 - 84.6 = 118.175 -> 118.2
    r = readability("The rent is paid.", "en")
    assert (r.words, r.sentences, r.syllables) == (4, 1, 4)
    assert r.score == 118.2


def test_flesch_of_two_english_sentences():
    # "Thank you so much. We are happy with your payment."  4 + 6 = 10 words, 2 sentences
    # syllables: thank you so much = 4; we 1 + are 1 + hap-py 2 + with 1 + your 1 + pay-ment 2 = 8; 12 in all
    # 206.835 - 1.015 * 10/2 - 84.6 * 12/10 = 206.835 - 5.075 - 101.52 = 100.24 -> 100.2
    r = readability("Thank you so much. We are happy with your payment.", "en")
    assert (r.words, r.sentences, r.syllables, r.sentence_lengths) == (10, 2, 12, (4, 6))
    assert r.score == 100.2


def test_a_greeting_line_joins_the_next_sentence():
    # "Beste Maria," on its own line is not a sentence of its own
    r = readability("Beste Maria,\nde huur is betaald.", "nl")
    assert (r.sentences, r.words) == (1, 6)


# --- words_for: the shipped lists, extended by config.yaml ---------------------------------------------------------


def test_extra_threats_in_the_config_are_added_and_flagged(tmp_path):
    text = "Komt de zwartepiet ook langs?"
    plain = check_text(tmp_path / "plain", "nl", text)
    assert strs(plain) == []  # not a shipped threat

    extended = CONFIG + "tone:\n  threats:\n    nl: [zwartepiet]\n"
    folder = make_folder(tmp_path / "extended", rule_file(text, CLEAN["en"]), extended)
    config = load_config(folder / "config.yaml")
    words = words_for(config)
    assert "zwartepiet" in words.threats["nl"]
    assert {"deurwaarder", "u moet", "dient u"} <= set(words.threats["nl"])  # the shipped ones stay
    assert "zwartepiet" not in words.threats["en"]
    _, findings = check_all(config, TODAY)
    assert [(f.level, f.line, f.message) for f in findings] == [
        ("error", LINE["nl"], "text `nl`: `zwartepiet` threatens or commands")
    ]


# --- the CLI ------------------------------------------------------------------------------------------------------


def nudger_check(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nudger.cli", "check", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_exit_codes_and_json(tmp_path):
    clean = make_folder(tmp_path / "clean", rule_file(CLEAN["nl"], CLEAN["en"]))
    result = nudger_check(clean)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rules, 0 error(s), 0 warning(s)" in result.stdout

    error = make_folder(tmp_path / "error", rule_file("Anders komt de deurwaarder. Lukt dat?", CLEAN["en"]))
    result = nudger_check(error, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["rules"], report["errors"], report["warnings"]) == (1, 1, 0)
    assert report["findings"] == [
        {
            "file": FILE,
            "line": LINE["nl"],
            "level": "error",
            "rule": "tone-test",
            "message": "text `nl`: `deurwaarder` threatens or commands",
            "fix": "ask instead: invite the tenant to talk or reply",
        }
    ]

    warned = make_folder(tmp_path / "warned", rule_file("Indien het niet lukt, bel me dan?", CLEAN["en"]))
    result = nudger_check(warned)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{FILE}:{LINE['nl']}: warning: text `nl`: `indien` is officialese: write `als`" in result.stdout
    assert "1 rules, 0 error(s), 1 warning(s)" in result.stdout
    result = nudger_check(warned, "--strict", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["errors"], report["warnings"]) == (0, 1)
    assert set(report["findings"][0]) == {"file", "line", "level", "rule", "message", "fix"}


def test_the_shipped_rulebook_passes_check_strict(tmp_path):
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    result = nudger_check(tmp_path, "--strict")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 error(s), 0 warning(s)" in result.stdout
