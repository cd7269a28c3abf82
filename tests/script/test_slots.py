"""Typed slots: natural answers, as callers and recognisers give them, read into values and read-backs."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.script.loader import load_agent, load_agent_checked
from gateway.script.model import Gather, NumberRange, Slot
from gateway.script.slots import SlotValue, parse_slot, parse_yes_no
from gateway.script.slot_times import parse_time, spoken_time
from tests.support.gateway import REPO

WEDNESDAY = date(2025, 6, 11)
AGENTS = REPO / "dialplans" / "agents"


def read(kind: str, text: str, expect=None, **slot) -> SlotValue | None:
    return parse_slot(Slot(kind, **slot), text, expect, today=WEDNESDAY)


@pytest.mark.parametrize("text, name", [
    ("My name is John Smith.", "John Smith"),
    ("It's Maria Garcia.", "Maria Garcia"),
    ("this is bob", "Bob"),
    ("Um, yes, my name is Ana Lopez, please.", "Ana Lopez"),
    ("I'm Peter Brown.", "Peter Brown"),
    ("John Smith here.", "John Smith"),
    ("call me Sam", "Sam"),
])
def test_names_lose_their_lead_in(text: str, name: str) -> None:
    value = read("name", text)
    assert value is not None and (value.value, value.spoken, value.confidence) == (name, name, 1.0)


def test_a_long_sentence_is_an_unsure_name_and_digits_are_none() -> None:
    unsure = read("name", "well I was wondering whether you could help")
    assert unsure is not None and unsure.confidence < 0.5
    assert read("name", "12 Main Street") is None and read("name", "  ") is None


@pytest.mark.parametrize("text, value, spoken", [
    ("Two pm.", "14:00", "2 pm"),
    ("2 p.m.", "14:00", "2 pm"),
    ("fourteen hundred", "14:00", "2 pm"),
    ("two in the afternoon", "14:00", "2 pm"),
    ("nine thirty in the morning", "09:30", "9:30 am"),
    ("noon", "12:00", "noon"),
    ("quarter to three", "14:45", "2:45 pm"),
    ("1430", "14:30", "2:30 pm"),
])
def test_times_as_people_say_them(text: str, value: str, spoken: str) -> None:
    got = read("time", text)
    assert got is not None and (got.value, got.spoken) == (value, spoken)


def test_a_bare_hour_is_read_in_business_hours_and_is_less_sure() -> None:
    eleven, two = read("time", "eleven"), read("time", "at two")
    assert eleven is not None and eleven.value == "11:00" and eleven.confidence < 1
    assert two is not None and two.value == "14:00"
    assert parse_time("7") == [(7, 0), (19, 0)] and spoken_time(0, 0) == "midnight"


OFFERED = {"9 am": ("9 am", "morning"), "11 am": ("11 am", "late morning"),
           "2 pm": ("2 pm", "afternoon"), "4 pm": ("4 pm", "late afternoon")}


@pytest.mark.parametrize("text, slot", [
    ("Two pm.", "2 pm"), ("fourteen hundred", "2 pm"), ("two", "2 pm"), ("two in the afternoon", "2 pm"),
    ("eleven", "11 am"), ("nine", "9 am"), ("4 o'clock", "4 pm"), ("late morning", "11 am"),
    ("in the morning", "9 am"), ("11 11", "11 am"),  # the recogniser said it twice
])
def test_a_time_among_those_offered(text: str, slot: str) -> None:
    got = read("time", text, OFFERED)
    assert got is not None and got.value == slot and got.confidence == 1.0


def test_a_time_not_offered_is_no_match() -> None:
    assert read("time", "three", OFFERED) is None and read("time", "whenever", OFFERED) is None


@pytest.mark.parametrize("text, day", [
    ("Friday, please.", "friday"), ("tomorrow", "thursday"), ("next Tuesday", "tuesday"),
    ("Friday, not Thursday", "friday"), ("thurs", "thursday"), ("the day after tomorrow", "friday"),
])
def test_days(text: str, day: str) -> None:
    got = read("day", text)
    assert got is not None and (got.value, got.spoken) == (day, day.capitalize())


def test_two_days_are_ambiguous_and_closed_days_do_not_match() -> None:
    week = {d: () for d in ("monday", "tuesday", "wednesday", "thursday", "friday")}
    assert read("day", "Tuesday or Wednesday") is None
    assert read("day", "Saturday", week) is None
    assert read("day", "Saturday") is not None


@pytest.mark.parametrize("text, iso, spoken", [
    ("tomorrow", "2025-06-12", "tomorrow, Thursday the 12th"),
    ("June 13th", "2025-06-13", "Friday the 13th"),
    ("the 20th", "2025-06-20", "Friday the 20th"),
    ("next Monday", "2025-06-16", "Monday the 16th"),
    ("the second of July", "2025-07-02", "Wednesday, July 2nd"),
])
def test_dates_from_the_dialplans_today(text: str, iso: str, spoken: str) -> None:
    got = read("date", text)
    assert got is not None and (got.value, got.spoken) == (iso, spoken)


def test_next_weekday_said_early_in_the_week_is_next_weeks() -> None:
    monday = date(2025, 6, 9)
    got = parse_slot(Slot("date"), "next Friday", None, today=monday)
    assert got is not None and got.value == "2025-06-20"
    got = parse_slot(Slot("date"), "Friday", None, today=monday)
    assert got is not None and got.value == "2025-06-13"


SIZE = Slot("number", {"small": NumberRange(below=50), "medium": NumberRange(below=500),
                       "large": NumberRange(at_least=500)})
SIZE_WORDS = {"small": ("small", "just me"), "medium": ("medium", "a few hundred"), "large": ("large",)}


@pytest.mark.parametrize("text, band", [
    ("about twenty people", "small"), ("under fifty", "small"), ("fifty", "medium"),
    ("under five hundred", "medium"), ("over 500", "large"), ("two thousand", "large"),
    ("just me", "small"), ("between ten and twenty", "small"), ("1,200", "large"),
])
def test_numbers_fall_into_ranges(text: str, band: str) -> None:
    got = parse_slot(SIZE, text, SIZE_WORDS)
    assert got is not None and got.value == band


def test_plain_numbers_and_money() -> None:
    assert read("number", "about twenty people") == SlotValue("20", "20")
    assert read("number", "ten k").value == "10000"  # type: ignore[union-attr]
    assert read("number", "twenty or thirty").confidence < 0.5  # type: ignore[union-attr]
    assert read("number", "no idea") is None


def test_digits_spoken_or_keyed_with_a_length() -> None:
    assert read("digits", "one two three four", length=4) == SlotValue("1234", "1 2 3 4")
    assert read("digits", "oh four double five") == SlotValue("0455", "0 4 5 5")
    assert read("digits", "one two three", length=4) is None
    assert parse_slot(Slot("digits", length=4), "1234", None, keyed=True) == SlotValue("1234", "1 2 3 4")


def test_phone_and_email_are_read_back() -> None:
    phone = read("phone", "five five five, zero one, nine nine")
    assert phone is not None and phone.value == "5550199" and phone.confidence < 0.5
    plus = read("phone", "plus four four seven seven zero zero nine zero zero one two three")
    assert plus is not None and plus.value == "+447700900123"
    email = read("email", "my email is john dot smith at example dot com")
    assert email is not None and email.value == "john.smith@example.com"
    assert email.spoken == "john dot smith at example dot com" and email.confidence < 0.5
    assert read("email", "john smith") is None


@pytest.mark.parametrize("text, answer", [
    ("Yes.", "yes"), ("Yes, that's right.", "yes"), ("yeah", "yes"), ("correct", "yes"),
    ("No, Thursday.", "no"), ("nope", "no"), ("that's not right", "no"), ("not sure", None),
    ("Thursday", None), ("1", "yes"), ("2", "no"),
])
def test_yes_no(text: str, answer: str | None) -> None:
    assert parse_yes_no(text) == answer


def test_choice_and_text() -> None:
    expect = {"billing": ("billing", "invoice"), "technical": ("technical", "router")}
    assert read("choice", "a question about my invoice", expect) == SlotValue("billing", "billing")
    assert read("choice", "the invoice and the router", expect) is None
    assert read("text", "My parcel never arrived.") == SlotValue("My parcel never arrived.", "My parcel never arrived")


def test_gather_files_take_types_ranges_and_confirm_modes(tmp_path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("""\
steps:
  - gather:
      name: size
      type: number
      prompt: How many?
      ranges: {small: {below: 50}, large: {at_least: 50, say: "fifty or more"}}
      confirm: never
  - gather: {name: pin, type: digits, digits: 4, prompt: "Your PIN?"}
  - gather: {name: when, type: time, prompt: "When?", confirm: always, read_back: "{size} at {when}"}
  - branch: {variable: size, cases: {small: [{say: Small.}]}}
""")
    script = load_agent(path)
    size, pin, when = (step for step in script.steps if isinstance(step, Gather))
    assert size.slot.type == "number" and size.slot.ranges["large"] == NumberRange(at_least=50, say="fifty or more")
    assert size.confirm_mode == "never" and when.confirm_mode == "always" and pin.confirm_mode == "auto"
    assert (pin.slot.length, pin.max_digits, pin.input) == (4, 4, "both")
    assert when.read_back == "{size} at {when}"


@pytest.mark.parametrize("gather, line, message", [
    ("{name: a, prompt: x, type: dat}", 2, "type must be one of"),
    ("{name: a, prompt: x, type: time, ranges: {small: {below: 5}}}", 2, "ranges belong to number slots"),
    ("{name: a, prompt: x, type: number, ranges: {small: {}}}", 2, "range 'small' needs a bound"),
    ("{name: a, prompt: x, type: choice}", 2, "a choice needs 'expect'"),
    ("{name: a, prompt: x, confirm: sometimes}", 2, "always, never or auto"),
    ("{name: a, prompt: x, read_back: '{b}'}", 2, "'{b}': unknown variable"),
])
def test_slot_mistakes_are_reported_at_their_line(tmp_path, gather: str, line: int, message: str) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(f"steps:\n  - gather: {gather}\n")
    _, errors = load_agent_checked(path)
    assert errors and errors[0].line == line and message in str(errors[0]), errors


def test_branch_cases_are_checked_against_typed_values(tmp_path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("""\
steps:
  - gather: {name: ok, type: yes_no, prompt: "Shall I?"}
  - branch: {variable: ok, cases: {yes: [{say: Fine.}], maybe: [{say: Hm.}]}}
""")
    _, errors = load_agent_checked(path)
    assert len(errors) == 1 and "case 'maybe' is never a value of 'ok'" in str(errors[0])


def test_shipped_agents_read_natural_answers() -> None:
    booking = {s.name: s for s in load_agent(AGENTS / "booking.yaml").steps if isinstance(s, Gather)}
    leads = {s.name: s for s in load_agent(AGENTS / "leads.yaml").steps if isinstance(s, Gather)}

    def answer(g: Gather, text: str) -> str | None:
        got = parse_slot(g.slot, text, g.expect, today=WEDNESDAY)
        return None if got is None else got.value

    assert answer(booking["caller_name"], "My name is John Smith.") == "John Smith"
    assert answer(booking["day"], "tomorrow") == "thursday"
    assert answer(booking["day"], "Saturday") is None
    assert [answer(booking["time"], t) for t in ("Two pm.", "2 p.m.", "fourteen hundred", "eleven")] == [
        "2 pm", "2 pm", "2 pm", "11 am"]
    assert answer(leads["company_size"], "about twenty people") == "small"
    assert answer(leads["company_size"], "we have two hundred people") == "medium"
    assert answer(leads["budget"], "maybe five hundred dollars") == "low"
    assert answer(leads["budget"], "up to ten thousand") == "mid"
    assert answer(leads["budget"], "Under a thousand.") == "low"
    assert leads["budget"].confirm_mode == "always"
