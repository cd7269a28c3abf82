"""Routing is pure: plans, dialled number, caller and a timezone-aware `now` in, Route out."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.dialplan import (
    NOT_FOUND,
    Dialplan,
    DialplanSet,
    FlowAction,
    Gather,
    Hangup,
    RejectAction,
    Route,
    Rule,
    Say,
    Step,
    TransferAction,
    When,
    normalize_number,
    route,
)

NY = ZoneInfo("America/New_York")

OPEN = FlowAction((Say("Hello."), Hangup()))
CLOSED = RejectAction(480, "Temporarily Unavailable")
WEEKEND = RejectAction(486, "Busy Here")
NIGHT = TransferAction("sip:night@example.com")
VIP = TransferAction("operator")
HIDDEN = RejectAction(433, "Anonymity Disallowed")

MAIN = Dialplan(
    name="main",
    path="main.yaml",
    numbers=("15550100",),
    timezone="America/New_York",
    ring_seconds=2.0,
    rules=(
        Rule(When(callers=("anonymous",)), HIDDEN, 1),
        Rule(When(callers=("15559999", "44*")), VIP, 2),
        Rule(When(days=frozenset({5, 6})), WEEKEND, 3),
        Rule(When(hours=((22 * 60, 6 * 60),)), NIGHT, 4),
        Rule(When(days=frozenset(range(5)), hours=((9 * 60, 17 * 60),)), OPEN, 5),
    ),
    action=CLOSED,
)
DEFAULT = Dialplan(name="default", path="default.yaml", action=RejectAction(404, "Not Found"))
PLANS = DialplanSet({"15550100": MAIN}, DEFAULT)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+15550100", "15550100"),
        ("15550100", "15550100"),
        ("+1 (555) 010-0", "15550100"),
        ("  +1.555.0100 ", "15550100"),
        ("tel:+15550100", "15550100"),
        ("sip:+15550100@carrier.example;user=phone", "15550100"),
        ("SIPS:15550100@host", "15550100"),
        ('"Alice" <sip:+15550100@host>;tag=abc', "15550100"),
        ("sip:Sales@example.com", "sales"),
        ("Anonymous", "anonymous"),
        ("", ""),
    ],
)
def test_normalize_number(raw: str, expected: str) -> None:
    assert normalize_number(raw) == expected


def _utc(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


# 2024-07-01 is a Monday (EDT, UTC-4); 2024-01-15 is a Monday (EST, UTC-5).
@pytest.mark.parametrize(
    ("dialled", "caller", "now", "expected"),
    [
        # number forms
        ("+15550100", "+15551234", _utc(2024, 7, 1, 14), OPEN),
        ("15550100", "15551234", _utc(2024, 7, 1, 14), OPEN),
        ("sip:+1-555-0100@gw", "sip:+15551234@carrier", _utc(2024, 7, 1, 14), OPEN),
        # callers: exact, prefix, anonymous (first matching rule wins over business hours)
        ("+15550100", "+15559999", _utc(2024, 7, 1, 14), VIP),
        ("+15550100", "+442079460000", _utc(2024, 7, 1, 14), VIP),
        ("+15550100", "+4", _utc(2024, 7, 1, 14), OPEN),
        ("+15550100", "anonymous", _utc(2024, 7, 1, 14), HIDDEN),
        ("+15550100", "sip:anonymous@anonymous.invalid", _utc(2024, 7, 1, 14), HIDDEN),
        ("+15550100", "", _utc(2024, 7, 1, 14), HIDDEN),
        # business hours in New York: 13:30 UTC is 09:30 in summer but 08:30 in winter
        ("+15550100", "+15551234", _utc(2024, 7, 1, 13, 30), OPEN),
        ("+15550100", "+15551234", _utc(2024, 1, 15, 13, 30), CLOSED),
        ("+15550100", "+15551234", _utc(2024, 1, 15, 14, 0), OPEN),
        # 17:00 local is the (excluded) end of the range
        ("+15550100", "+15551234", _utc(2024, 7, 1, 20, 59), OPEN),
        ("+15550100", "+15551234", _utc(2024, 7, 1, 21, 0), CLOSED),
        # overnight 22:00-06:00 local: either side of midnight, not at 06:00
        ("+15550100", "+15551234", _utc(2024, 7, 2, 2, 30), NIGHT),  # Mon 22:30
        ("+15550100", "+15551234", _utc(2024, 7, 2, 9, 59), NIGHT),  # Tue 05:59
        ("+15550100", "+15551234", _utc(2024, 7, 2, 10, 0), CLOSED),  # Tue 06:00
        # weekend by the plan's clock, not UTC's: Sat 03:30 UTC is still Fri 23:30 local
        ("+15550100", "+15551234", _utc(2024, 7, 6, 3, 30), NIGHT),
        ("+15550100", "+15551234", _utc(2024, 7, 6, 4, 30), WEEKEND),  # Sat 00:30
        ("+15550100", "+15551234", _utc(2024, 7, 7, 15), WEEKEND),
        ("+15550100", "+15551234", _utc(2024, 7, 8, 3, 59), WEEKEND),  # Sun 23:59
        ("+15550100", "+15551234", _utc(2024, 7, 8, 4, 0), NIGHT),  # Mon 00:00
        # unknown number: the default plan
        ("+15559876", "+15551234", _utc(2024, 7, 1, 14), RejectAction(404, "Not Found")),
        ("", "+15551234", _utc(2024, 7, 1, 14), RejectAction(404, "Not Found")),
    ],
)
def test_route(dialled: str, caller: str, now: datetime, expected: object) -> None:
    assert route(PLANS, dialled, caller, now).action == expected


def test_route_reports_plan_and_ring() -> None:
    assert route(PLANS, "+15550100", "+15551234", _utc(2024, 7, 1, 14)) == Route(
        "main", OPEN, 2.0, timezone="America/New_York")  # the agent reads dates in the plan's zone
    assert route(PLANS, "+1999", "x", _utc(2024, 7, 1, 14)) == Route("default", DEFAULT.action, 0.0)


def test_no_default_plan_rejects_404() -> None:
    plans = DialplanSet({"15550100": MAIN})
    assert route(plans, "+15559876", "+15551234", _utc(2024, 7, 1, 14)) == NOT_FOUND
    assert NOT_FOUND == Route("none", RejectAction(404, "Not Found"), 0)


def test_same_instant_in_any_offset_routes_alike() -> None:
    instant = _utc(2024, 1, 15, 13, 30)
    for zone in (UTC, NY, ZoneInfo("Asia/Tokyo")):
        assert route(PLANS, "+15550100", "+15551234", instant.astimezone(zone)).action == CLOSED


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        route(PLANS, "+15550100", "+15551234", datetime(2024, 7, 1, 14))


@pytest.mark.parametrize(
    ("when", "caller", "local", "matches"),
    [
        (When(), "15551234", datetime(2024, 7, 1, 3, tzinfo=UTC), True),
        (When(callers=("1555*",)), "anonymous", datetime(2024, 7, 1, 3, tzinfo=UTC), False),
        (When(callers=("*",)), "15551234", datetime(2024, 7, 1, 3, tzinfo=UTC), True),
        (When(callers=("*",)), "", datetime(2024, 7, 1, 3, tzinfo=UTC), False),
        (When(hours=((0, 1440),)), "1", datetime(2024, 7, 1, 23, 59, tzinfo=UTC), True),
        (When(hours=((540, 720), (780, 1020))), "1", datetime(2024, 7, 1, 12, 30, tzinfo=UTC), False),
        (When(hours=((540, 720), (780, 1020))), "1", datetime(2024, 7, 1, 13, tzinfo=UTC), True),
        (When(days=frozenset({0}), callers=("1",)), "1", datetime(2024, 7, 2, tzinfo=UTC), False),
    ],
)
def test_when(when: When, caller: str, local: datetime, matches: bool) -> None:
    assert when.matches(caller, local) is matches


def test_values_are_frozen() -> None:
    branches: dict[str, tuple[Step, ...]] = {"1": (Hangup(),)}
    gather = Gather(prompt=(Say("Press 1."),), branches=branches)
    branches["2"] = ()  # the caller's dict changing later must not reach the plan
    assert gather.branch("2") is None and gather.branch("1") == (Hangup(),)
    with pytest.raises(TypeError):
        gather.branches["3"] = ()  # type: ignore[index]
    with pytest.raises(AttributeError):
        MAIN.timezone = "UTC"  # type: ignore[misc]
    with pytest.raises(ValueError):
        RejectAction(200, "OK")
