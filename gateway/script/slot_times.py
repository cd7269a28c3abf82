"""Times of day and days as callers say them, from words already normalised by `slots.answer_text`
(lowercase, number words as digits, "p.m." as "pm").

`parse_time` gives every reading of a time, most likely first: "2 pm" is one, "2" is 2 pm then
2 am (a bare hour is read in business hours first), "1400" and "14 hundred" are 14:00. `parse_date`
gives the days mentioned: weekdays (the next one from today; "next" skips this week's), "today",
"tomorrow", "the day after tomorrow", and calendar dates through dateparser; a day said after
"not" is left out, so "Friday, not Thursday" is Friday.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

__all__ = ["WEEKDAYS", "parse_date", "parse_time", "spoken_date", "spoken_time", "weekday_of"]

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# What a small recogniser writes for them, and how people shorten them.
_DAY_WORDS = {name: i for i, name in enumerate(WEEKDAYS)} | {
    "mon": 0, "tue": 1, "tues": 1, "wed": 2, "weds": 2, "wednsday": 2, "wensday": 2, "thu": 3,
    "thur": 3, "thurs": 3, "thirsday": 3, "fri": 4, "sat": 5, "sun": 6,
}  # fmt: skip
_PM_WORDS = re.compile(r"\b(?:pm|afternoon|evening|tonight|night)\b")
_AM_WORDS = re.compile(r"\b(?:am|morning)\b")
_NOON = re.compile(r"\b(?:noon|midday|lunch ?time)\b")
_MIDNIGHT = re.compile(r"\bmidnight\b")
_CLOCK = re.compile(r"(?<![\d.])(\d{1,2})(?:[:.](\d{2})|\s+(\d{2})(?!\d))?(?:\s*(am|pm))?(?![\d:])")
_MILITARY = re.compile(r"\b(\d{1,2})(?:00|\s*hundred)(?:\s+hours)?\b|\b([01]\d|2[0-3])([0-5]\d)\b")
_PAST = re.compile(r"\b(half|quarter|\d{1,2})\s+(?:minutes?\s+)?(past|after|to|before|til|till)\s+(\d{1,2})\b")
_MINUTES = {"half": 30, "quarter": 15}


def _hour_readings(hour: int, minute: int, said: str, explicit: str | None) -> list[tuple[int, int]]:
    if explicit == "pm" or (explicit is None and _PM_WORDS.search(said)):
        return [((hour % 12) + 12, minute)]
    if explicit == "am" or (explicit is None and _AM_WORDS.search(said)):
        return [(hour % 12, minute)]
    if hour == 0 or hour > 12:
        return [(hour % 24, minute)]
    # A bare hour: in business hours first (7 to 11 in the morning, 12 to 6 in the afternoon).
    day, night = (hour % 12, minute), ((hour % 12) + 12, minute)
    return [day, night] if 7 <= hour <= 11 else [night, day] if hour == 12 or hour <= 6 else [day, night]


def parse_time(said: str) -> list[tuple[int, int]]:
    """The readings of the time of day said, most likely first; [] when none is said."""
    if _NOON.search(said):
        return [(12, 0)]
    if _MIDNIGHT.search(said):
        return [(0, 0)]
    past = _PAST.search(said)
    if past:
        minutes = _MINUTES.get(past.group(1)) or int(past.group(1))
        hour = int(past.group(3))
        if past.group(2) in ("to", "before", "til", "till"):
            hour, minutes = (hour - 1) % 24 or 12, 60 - minutes
        if 0 < minutes < 60 and hour <= 23:
            return _hour_readings(hour, minutes, said, None)
    military = _MILITARY.search(said)
    if military and not re.search(r"\b[ap]m\b", said):
        hour = int(military.group(1) or military.group(2))
        minute = int(military.group(3) or 0) if military.group(2) else 0
        if hour <= 23:
            return [(hour, minute)] if hour > 12 or hour == 0 else _hour_readings(hour, minute, said, None)
    for m in _CLOCK.finditer(said):
        hour, minute = int(m.group(1)), int(m.group(2) or m.group(3) or 0)
        if hour > 23 or minute > 59 or _date_number(said, m):
            continue
        return _hour_readings(hour, minute, said, m.group(4))
    return []


def _date_number(said: str, m: re.Match[str]) -> bool:
    """The number is a day of the month ("the 13th", "June 13"), not an hour."""
    after = said[m.end():m.end() + 3]
    before = said[max(0, m.start() - 10):m.start()]
    return bool(re.match(r"(st|nd|rd|th)\b", after) or re.search(
        r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\s*$", before))


def spoken_time(hour: int, minute: int) -> str:
    """As a receptionist says it: "2 pm", "9:30 am", "noon", "midnight"."""
    if (hour, minute) == (12, 0):
        return "noon"
    if (hour, minute) == (0, 0):
        return "midnight"
    shown = hour % 12 or 12
    clock = f"{shown}" if minute == 0 else f"{shown}:{minute:02d}"
    return f"{clock} {'pm' if hour >= 12 else 'am'}"


def weekday_of(day: date) -> str:
    return WEEKDAYS[day.weekday()]


def _coming(today: date, weekday: int) -> date:
    return today + timedelta(days=(weekday - today.weekday()) % 7)


def parse_date(said: str, today: date) -> list[date]:
    """The distinct days the words name (after dropping ones said after "not"), in order."""
    words = said.split()
    found: list[date] = []
    for i, word in enumerate(words):
        prev = words[i - 1] if i else ""
        negated = prev in ("not", "no") or (i >= 2 and words[i - 2] == "not")
        day: date | None = None
        if word in ("today", "tonight"):
            day = today
        elif word == "tomorrow":
            day = today + timedelta(days=2 if prev == "after" else 1)
            if prev == "after":
                found = [d for d in found if d != today]  # "the day after tomorrow" named no today
        elif word.rstrip("s") in _DAY_WORDS or word in _DAY_WORDS:
            weekday = _DAY_WORDS.get(word, _DAY_WORDS.get(word.rstrip("s")))
            assert weekday is not None
            day = _coming(today, weekday)
            if prev == "next" and day != today and _same_week(day, today):
                day += timedelta(days=7)  # "next Friday", said on a Tuesday: not this week's
            if day == today and prev != "this":
                day += timedelta(days=7)  # "Monday", said on a Monday, is next week's
        if day is not None and not negated and day not in found:
            found.append(day)
    if not found:
        found = _calendar(said, today)
    return found


def _same_week(day: date, today: date) -> bool:
    return day.isocalendar()[:2] == today.isocalendar()[:2]


_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*"
_CALENDAR = re.compile(rf"\b(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)?(?:\s+of)?\s+{_MONTHS}\b|\b{_MONTHS}\s+(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)?\b"
                       r"|\bthe\s+\d{1,2}(?:st|nd|rd|th)\b|\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b")


def _calendar(said: str, today: date) -> list[date]:
    """A calendar date ("June 13", "the 13th", "13th of June"), through dateparser, in the future."""
    m = _CALENDAR.search(said)
    if m is None:
        return []
    import dateparser  # imported on first use: it loads its language data (about 0.1 s)

    text = m.group(0)
    base = datetime(today.year, today.month, today.day, 12)
    parsed = dateparser.parse(text, languages=["en"], settings={
        "RELATIVE_BASE": base, "PREFER_DATES_FROM": "future", "PREFER_DAY_OF_MONTH": "first",
        "REQUIRE_PARTS": ["day"]})
    if parsed is None:
        return []
    day = parsed.date()
    if day < today:  # "the 3rd" said on the 20th: next month's
        day = (day.replace(day=1) + timedelta(days=32)).replace(day=day.day) if day.month == today.month else day
    return [day] if day >= today else []


def spoken_date(day: date, today: date) -> str:
    """"tomorrow, Thursday the 12th", "Friday the 13th", "Monday, July 7"."""
    name = weekday_of(day).capitalize()
    nth = _ordinal(day.day)
    if day == today:
        return f"today, {name} the {nth}"
    if day == today + timedelta(days=1):
        return f"tomorrow, {name} the {nth}"
    if day.month == today.month and day.year == today.year:
        return f"{name} the {nth}"
    return f"{name}, {day.strftime('%B')} {nth}"


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
