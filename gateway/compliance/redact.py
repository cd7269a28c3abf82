"""PII redaction: card numbers, US SSNs, phone numbers, email addresses and dates of birth, in
digits or spoken as words, replaced by typed markers (`[CARD]`, `[SSN]`, ...).

Recognisers write numbers both ways ("4111 1111 ..." or "four one one one ..."), so digits are
read as runs of digit tokens (digits, digit words, "double"/"triple") with spaces and light
punctuation between them. A card is any run of 13 or more digits: Luhn only raises confidence,
since one misheard digit must not leak the other fifteen. Spans are offsets in the original text
so a recording can be toned out where the words were said.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("card", "ssn", "phone", "email", "dob")
MARKERS = {kind: f"[{kind.upper()}]" for kind in KINDS}

_WORD_DIGITS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "niner": "9"}
_REPEAT = {"double": 2, "triple": 3}
_TOKEN = re.compile(r"\d+|[A-Za-z]+|[^\sA-Za-z\d]")
_SEPARATORS = set("-.,()+")
_SSN_WORDS = re.compile(r"\b(social|security|ssn|s\.?s\.?n)\b", re.IGNORECASE)
_PHONE_WORDS = re.compile(r"\b(phone|number|call|reach|cell|mobile|text|fax|dial)\b", re.IGNORECASE)
_CARD_WORDS = re.compile(r"\b(card|visa|mastercard|amex|credit|debit)\b", re.IGNORECASE)
_BIRTH_WORDS = re.compile(r"\b(born|birth|birthday|dob|d\.?\s?o\.?\s?b)\b", re.IGNORECASE)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_TLD = r"(?:com|net|org|edu|gov|io|co|uk|us|de|info|biz|me)"
_SPOKEN_EMAIL = re.compile(
    r"\b[\w]+(?:\s*(?:\.|\bdot\b|\bunderscore\b|\bdash\b)\s*[\w]+)*\s+(?:\bat\b|@)\s+[\w-]+"
    r"(?:\s*(?:\.|\bdot\b)\s*[\w-]+)*\s*(?:\.|\bdot\b)\s*" + _TLD + r"\b", re.IGNORECASE)
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
          r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_ORDINAL_WORDS = (r"(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|"
                  r"twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|"
                  r"nineteenth|twentieth|thirtieth|twenty[\s-]\w+|thirty[\s-]first)")
_DAY = rf"(?:\d{{1,2}}(?:st|nd|rd|th)?|{_ORDINAL_WORDS})"
_YEAR = (r"(?:\d{4}|'\d{2}|(?:nineteen|two\s+thousand(?:\s+and)?|twenty)(?:[\s-]+(?:oh|"
         r"ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|"
         r"thirty|forty|fifty|sixty|seventy|eighty|ninety|one|two|three|four|five|six|seven|eight|"
         r"nine)){0,2})")
_DATES = [
    re.compile(r"\b\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})\b"),
    re.compile(r"\b\d{4}-\d{2}-\d{2}\b"),
    re.compile(rf"\b{_MONTH}\s+(?:the\s+)?{_DAY},?\s+(?:of\s+)?{_YEAR}\b", re.IGNORECASE),
    re.compile(rf"\b(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}\b", re.IGNORECASE),
]
_CONTEXT_CHARS = 60


@dataclass(frozen=True, slots=True)
class Span:
    kind: str
    start: int
    end: int
    confident: bool = True  # a card run that fails Luhn is still redacted, with less confidence


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_pii(text: str, kinds: Iterable[str] = KINDS) -> list[Span]:
    """PII spans in text, in order, not overlapping."""
    wanted = set(kinds)
    spans: list[Span] = []

    def add(kind: str, start: int, end: int, confident: bool = True) -> None:
        if kind in wanted and not any(s.start < end and start < s.end for s in spans):
            spans.append(Span(kind, start, end, confident))

    for pattern in (_EMAIL, _SPOKEN_EMAIL):
        for m in pattern.finditer(text):
            add("email", m.start(), m.end())
    for pattern in _DATES:
        for m in pattern.finditer(text):
            if _BIRTH_WORDS.search(_before(text, m.start())) or _BIRTH_WORDS.search(text[m.end():m.end() + 20]):
                add("dob", m.start(), m.end())
    for start, end, digits, grouping in _digit_runs(text):
        if any(s.start < end and start < s.end for s in spans):
            continue
        n, context, after = len(digits), _before(text, start), text[end:end + 30]
        if n >= 13:
            add("card", start, end, luhn(digits))
        elif 8 <= n <= 12 and _CARD_WORDS.search(context) and all(g == 4 for g in grouping[:-1]):
            add("card", start, end, False)  # part of a card number, read with a pause in it
        elif n == 9 and (grouping == [3, 2, 4] or _SSN_WORDS.search(context) or _SSN_WORDS.search(after)):
            add("ssn", start, end)
        elif n == 10 or (n == 11 and digits[0] == "1") or (text[start] == "+" and 8 <= n <= 15):
            add("phone", start, end)
        elif n == 7 and _PHONE_WORDS.search(context):
            add("phone", start, end)
        elif n in (6, 8) and _BIRTH_WORDS.search(context):
            add("dob", start, end)
    return sorted(spans, key=lambda s: s.start)


def redact(text: str, kinds: Iterable[str] = KINDS) -> str:
    out, pos = [], 0
    for span in find_pii(text, kinds):
        out += [text[pos:span.start], MARKERS[span.kind]]
        pos = span.end
    return "".join(out) + text[pos:]


def redact_value(value: Any, kinds: Iterable[str] = KINDS, *, names: Iterable[str] = ()) -> Any:
    """A JSON-like value with every string redacted; keys in names (values gathered on purpose,
    e.g. a card number for a payment tool) are replaced by their marker whatever they hold."""
    kinds, names = tuple(kinds), frozenset(names)
    if isinstance(value, str):
        return redact(value, kinds)
    if isinstance(value, Mapping):
        return {k: ("[REDACTED]" if k in names else redact_value(v, kinds, names=names)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, kinds, names=names) for v in value]
    return value


def _before(text: str, start: int) -> str:
    return text[max(0, start - _CONTEXT_CHARS):start]


def _digit_runs(text: str) -> list[tuple[int, int, str, list[int]]]:
    """(start, end, digits, digits per group) of each run of digit tokens."""
    runs: list[tuple[int, int, str, list[int]]] = []
    tokens = list(_TOKEN.finditer(text))
    i = 0
    while i < len(tokens):
        digits, groups, start, end, j, gap = "", [], -1, -1, i, 0
        repeat = 1
        while j < len(tokens):
            tok = tokens[j].group()
            low = tok.lower()
            if tok.isdigit() or low in _WORD_DIGITS:
                value = tok if tok.isdigit() else _WORD_DIGITS[low]
                if low in ("o", "oh") and not digits:
                    break  # "oh, ..." opens a sentence; it is zero only inside a number
                digits += value * repeat
                if tok.isdigit() and (not groups or gap or text[tokens[j - 1].end():tokens[j].start()]):
                    groups.append(len(value))
                elif tok.isdigit():
                    groups[-1] += len(value)
                if start < 0:
                    start = tokens[j].start()
                    if j > 0 and tokens[j - 1].group() in "+(" and tokens[j - 1].end() == start:
                        start = tokens[j - 1].start()
                end = tokens[j].end()
                repeat, gap = 1, 0
            elif low in _REPEAT and j + 1 < len(tokens):
                repeat = _REPEAT[low]
                if start < 0:
                    start = tokens[j].start()
            elif tok in _SEPARATORS and digits and gap < 2:
                gap += 1
            else:
                break
            j += 1
        if digits:
            if start > 0 and text[start - 1] == "(" and text[start] != "(":
                start -= 1
            runs.append((start, end, digits, groups))
        i = max(j, i + 1)
    return runs
