"""Typed slots: what a caller's natural answer means, as a value to store and a phrase to read back.

`parse_slot(slot, text, expect, today=...)` reads one answer ("My name is John Smith.", "two in
the afternoon", "about twenty people", "no, Thursday") for one slot type and gives a SlotValue:
the canonical `value` (what the variable holds and branches compare), the `spoken` read-back
("John Smith", "Friday", "2 pm") and the parser's own `confidence` (0..1; low when the answer
was ambiguous and should be confirmed). None: the answer holds no such value. Pure: the date
the caller means "tomorrow" from is an argument, taken in the dialplan's time zone by the caller.

Number words are read by text2num (its `alpha2digit`), dates beyond weekdays by dateparser;
both are tolerant of the recogniser's spellings ("2 p.m.", "two pm", "14:00" alike).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from text_to_num import alpha2digit

from gateway.script.model import Slot, best_match
from gateway.script.slot_times import parse_date, parse_time, spoken_date, spoken_time, weekday_of

__all__ = ["SlotValue", "answer_text", "parse_slot", "parse_yes_no", "spoken_digits"]

# Confidence of values a person would read back anyway: one wrong letter or digit is a wrong value.
_SPELLED = 0.4
_AMBIGUOUS = 0.4


@dataclass(frozen=True, slots=True)
class SlotValue:
    value: str
    spoken: str
    confidence: float = 1.0


Expect = Mapping[str, tuple[str, ...]] | None


def answer_text(text: str, once: bool = True) -> str:
    """Lowercase words and digits: a.m. -> am, number words -> digits ("two pm" -> "2 pm")."""
    t = text.casefold().replace("’", "'")
    t = re.sub(r"\b([ap])\.\s?m\b\.?", r"\1m", t)
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)  # 1,000
    t = re.sub(r"o'?\s?clock", " oclock", t)
    t = re.sub(r"[^\w\s:@.+'-]|_", " ", t)
    t = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", t)  # keep 2.5 and 14.30
    t = t.replace("'", "")
    t = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", t)  # twenty-five
    try:
        t = alpha2digit(t, "en", threshold=0)
    except Exception:  # vendor edge: an odd input must not end the call
        pass
    # A small recogniser may repeat itself ("11 11", "no no"): a word said twice in a row is one.
    words = t.split()
    return " ".join(w for i, w in enumerate(words) if not once or i == 0 or w != words[i - 1])


# --- yes / no -------------------------------------------------------------------------------------

_YES = ("yes", "yeah", "yep", "yup", "ya", "correct", "right", "sure", "exactly", "absolutely", "of course",
        "please do", "go ahead", "that's it", "perfect", "affirmative", "ok", "okay", "alright", "fine")
_NO = ("no", "nope", "nah", "wrong", "incorrect", "not right", "not correct", "not quite", "negative",
       "actually", "not really")
_UNSURE = ("not sure", "dont know", "don't know", "no idea", "maybe")


def parse_yes_no(text: str) -> str | None:
    """'yes', 'no', or None when it is neither, both, or unsure. The first word decides
    "no, Thursday"; "not sure" is not "sure"."""
    words = re.sub(r"[^\w\s']", " ", text.casefold()).replace("'", "").split()
    said = " ".join(words)
    if not words or any(_has(said, u.replace("'", "")) for u in _UNSURE):
        return None
    first = words[0]
    if first in ("1", "one") and len(words) == 1:
        return "yes"
    if first in ("2", "two") and len(words) == 1:
        return "no"
    if first in ("no", "nope", "nah", "wrong", "actually", "incorrect"):
        return "no"
    no = any(_has(said, n) for n in _NO) or re.search(r"\bnot\b", said) is not None
    for phrase in _NO:  # "not right" holds no "right"
        said = re.sub(rf"\b{re.escape(phrase)}\b", " ", said)
    yes = any(_has(said, y.replace("'", "")) for y in _YES)
    if yes and no:
        return None
    return "yes" if yes else "no" if no else None


def _has(said: str, phrase: str) -> bool:
    return re.search(rf"\b{re.escape(phrase)}\b", said) is not None


# --- the parsers ----------------------------------------------------------------------------------

def parse_slot(slot: Slot, text: str, expect: Expect = None, *, today: date | None = None,
               keyed: bool = False) -> SlotValue | None:
    """What the answer means for this slot, or None. keyed: the text is keypad digits."""
    text = text.strip()
    if not text:
        return None
    kind = slot.type
    if kind in ("text", "choice") and expect is None:
        return SlotValue(text, text.rstrip("."))
    if kind in ("text", "choice"):
        return _choice(expect, text)
    if kind == "yes_no":
        if expect is not None and (picked := _choice(expect, text)):
            return picked
        value = parse_yes_no(text)
        return None if value is None else SlotValue(value, value)
    if kind == "name":
        return _name(text)
    if kind == "digits":
        return _digits(text, slot.length, keyed)
    if kind == "phone":
        return _phone(text, keyed)
    if kind == "email":
        return _email(text)
    if kind == "number":
        return _number(slot, answer_text(text), expect)
    if kind == "time":
        return _time(answer_text(text), expect)
    return _day(kind, answer_text(text), expect, today or date.today())


def _choice(expect: Mapping[str, tuple[str, ...]], text: str) -> SlotValue | None:
    value = best_match(expect, text)
    return None if value is None else SlotValue(value, value)


_NAME_LEAD = re.compile(
    r"^(?:(?:uh|um|er|erm|hi|hello|yes|yeah|sure|ok|okay|well|oh)\b[\s,]*)*"
    r"(?:(?:my|the)\s+(?:full\s+|first\s+)?name(?:\s+is|'s|s)?|name(?:\s+is|'s)?|it\s+is|it's|its|this\s+is|"
    r"i\s+am|i'm|im|call\s+me|you\s+can\s+call\s+me|speaking|they\s+call\s+me)\b[\s,:]*",
    re.IGNORECASE)
_NAME_TAIL = re.compile(r"[\s,]*\b(?:please|thanks|thank\s+you|here|speaking)\b.*$", re.IGNORECASE)


def _name(text: str) -> SlotValue | None:
    rest = _NAME_LEAD.sub("", text.strip(" .,!?"), count=1)
    rest = _NAME_TAIL.sub("", rest)
    words = [w.strip(".,!?\"") for w in re.split(r"\s+", rest) if w.strip(".,!?\"")]
    if not words or any(any(ch.isdigit() for ch in w) for w in words):
        return None
    name = " ".join(w[:1].upper() + w[1:] for w in words[:4])
    # One to three words is a name; more is probably a sentence the lead-ins did not cover.
    return SlotValue(name, name, 1.0 if len(words) <= 3 else _AMBIGUOUS)


_DIGIT_WORDS = {"oh": "0", "o": "0", "zero": "0", "nought": "0"}


def _digit_string(text: str) -> str:
    """Every digit said or keyed, in order: "oh four one, double five" -> "04155"."""
    words = answer_text(text, once=False).replace("-", " ").split()  # "5 5 5" is three digits
    out, repeat = [], 1
    for w in words:
        if w in ("double", "triple"):
            repeat = 2 if w == "double" else 3
            continue
        digits = _DIGIT_WORDS.get(w, w)
        if digits.isdigit():
            out.append(digits[0] * repeat + digits[1:] if repeat > 1 else digits)
        repeat = 1
    return "".join(out)


def spoken_digits(digits: str, group: int = 0) -> str:
    """Digits read one by one ("1 2 3 4"), in groups of `group` with a pause between."""
    if group <= 0:
        return " ".join(digits)
    parts = [digits[i:i + group] for i in range(0, len(digits), group)]
    return ", ".join(" ".join(p) for p in parts)


def _digits(text: str, length: int | None, keyed: bool) -> SlotValue | None:
    digits = re.sub(r"\D", "", text) if keyed else _digit_string(text)
    if not digits or (length is not None and len(digits) != length):
        return None
    return SlotValue(digits, spoken_digits(digits, 4 if len(digits) > 6 else 0))


def _phone(text: str, keyed: bool) -> SlotValue | None:
    plus = not keyed and bool(re.search(r"(^|\s)(\+|plus)\s*\d|\bplus\b", text.casefold()))
    digits = re.sub(r"\D", "", text) if keyed else _digit_string(text)
    if not 7 <= len(digits) <= 15:
        return None
    value = ("+" if plus else "") + digits
    groups = [digits[:-4][i:i + 3] for i in range(0, len(digits) - 4, 3)] + [digits[-4:]]
    spoken = ", ".join(" ".join(g) for g in groups)
    return SlotValue(value, ("plus " if plus else "") + spoken, _SPELLED)


_EMAIL = re.compile(r"^[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}$")


def _email(text: str) -> SlotValue | None:
    t = text.casefold().strip(" .!?")
    t = re.sub(r"^(?:(?:my|the)\s+)?(?:e-?mail|address)(?:\s+address)?\s+is\s+|^it's\s+|^its\s+", "", t)
    for word, mark in (("at", "@"), ("dot", "."), ("period", "."), ("underscore", "_"), ("dash", "-"),
                       ("hyphen", "-"), ("plus", "+")):
        t = re.sub(rf"\s*\b{word}\b\s*", mark, t)
    t = re.sub(r"\s+", "", t)
    if not _EMAIL.match(t):
        return None
    local, domain = t.split("@")
    spoken = f"{_spell(local)} at {_spell(domain)}"
    return SlotValue(t, spoken, _SPELLED)


def _spell(part: str) -> str:
    return re.sub(r"\.", " dot ", part).replace("_", " underscore ").replace("-", " dash ")


# --- numbers --------------------------------------------------------------------------------------

_NUM = r"\d+(?:\.\d+)?"
_SCALE = {"k": 1e3, "thousand": 1e3, "grand": 1e3, "million": 1e6, "m": 1e6, "mil": 1e6, "hundred": 1e2}
_LESS = re.compile(r"\b(?:under|below|less\s+than|fewer\s+than|not\s+even|beneath|lower\s+than)\s*(?:a\s+|an\s+|about\s+|around\s+)?$")
_MORE = re.compile(r"\b(?:over|above|more\s+than|greater\s+than|bigger\s+than|beyond|upwards\s+of|north\s+of)\s*(?:a\s+|an\s+|about\s+|around\s+)?$")


def _numbers(said: str) -> list[tuple[float, str]]:
    """Each number in the words with what comes just before it: (value, lead-in)."""
    out = []
    for m in re.finditer(rf"\$?({_NUM})\s*(k|thousand|grand|million|mil|m|hundred)?\b", said):
        n = float(m.group(1)) * _SCALE.get(m.group(2) or "", 1)
        out.append((n, said[max(0, m.start() - 24):m.start()]))
    return out


def _number(slot: Slot, said: str, expect: Expect) -> SlotValue | None:
    found = _numbers(said)
    between = re.search(rf"\b(?:between\s+)?\$?({_NUM})\s*(?:and|to|-)\s*\$?({_NUM})\s*(k|thousand|million)?\b", said)
    confidence = 1.0
    if between and len(found) >= 2:
        scale = _SCALE.get(between.group(3) or "", 1)
        n = (float(between.group(1)) * scale + float(between.group(2)) * scale) / 2
    elif found:
        n, lead = found[0]
        if len(found) > 1:
            confidence = _AMBIGUOUS  # "20 or 30": which one?
    else:
        n = None
    if slot.ranges:
        if n is not None:
            if found and not (between and len(found) >= 2):
                lead = found[0][1]  # "under 50" lies below 50, "over 500" above 500
                n = n - 0.5 if _LESS.search(lead) else n + 0.5 if _MORE.search(lead) else n
            for key, band in slot.ranges.items():
                if band.holds(n):
                    return SlotValue(key, band.say or key, confidence)
        return _choice(expect, said) if expect is not None else None
    if n is None:
        return _choice(expect, said) if expect is not None else None
    shown = f"{n:g}" if n != int(n) else str(int(n))
    if expect is not None:
        return _choice(expect, shown) or _choice(expect, said)
    return SlotValue(shown, shown, confidence)


# --- times and days -------------------------------------------------------------------------------

def _time(said: str, expect: Expect) -> SlotValue | None:
    options = parse_time(said)
    if not options:
        return _choice(expect, said) if expect is not None else None
    if expect is None:
        (hour, minute), confidence = options[0], (1.0 if len(options) == 1 else 0.7)
        return SlotValue(f"{hour:02d}:{minute:02d}", spoken_time(hour, minute), confidence)
    offered = {}
    for key, synonyms in expect.items():
        for phrase in (key, *synonyms):
            times = parse_time(answer_text(phrase))
            if len(times) == 1 or (times and re.search(r"\b[ap]m\b|:|oclock", answer_text(phrase))):
                offered.setdefault(times[0], key)
    picked = [offered[t] for t in options if t in offered]
    if picked:
        return SlotValue(picked[0], picked[0], 1.0)
    return _choice(expect, said)


def _day(kind: str, said: str, expect: Expect, today: date) -> SlotValue | None:
    days = parse_date(said, today)
    if len(days) != 1:
        return (_choice(expect, said) if expect is not None else None) if not days else None
    day = days[0]
    name = weekday_of(day)
    if kind == "day":
        if expect is not None:
            keys = {k.casefold(): k for k in expect}
            if name not in keys:
                return None
            return SlotValue(keys[name], keys[name].capitalize())
        return SlotValue(name, name.capitalize())
    if expect is not None and day.isoformat() not in expect and name not in expect:
        return None
    spoken = spoken_date(day, today)
    return SlotValue(day.isoformat(), spoken, 1.0 if day - today <= timedelta(days=366) else _AMBIGUOUS)
