"""What a dialplan says, as plain frozen data, and the pure `route()` that reads it.

The steps of a flow are the one step language of `gateway.script.model` (re-exported here).

Time comes in as an argument (a timezone-aware `now`), so routing is testable without clocks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TypeVar
from zoneinfo import ZoneInfo

from gateway.compliance.policy import RecordPolicy
from gateway.dialplan.transfers import TransferPolicy
from gateway.script.model import AgentScript, Gather, Hangup, Pause, Play, Say, Step, Transfer

__all__ = [
    "ANONYMOUS",
    "NOT_FOUND",
    "Action",
    "AgentAction",
    "Dialplan",
    "DialplanSet",
    "FlowAction",
    "Gather",
    "Hangup",
    "Pause",
    "Play",
    "RejectAction",
    "Route",
    "Rule",
    "Say",
    "Step",
    "Transfer",
    "TransferAction",
    "When",
    "normalize_number",
    "route",
]

ANONYMOUS = "anonymous"
# What carriers put in From when the caller withheld their number.
_WITHHELD = frozenset({"", ANONYMOUS, "restricted", "private", "unavailable", "unknown"})
_SEPARATORS = re.compile(r"[\s\-.()]")
_SCHEME = re.compile(r"^(?:tel|sips?):", re.IGNORECASE)


_V = TypeVar("_V")


def _frozen(mapping: Mapping[str, _V]) -> MappingProxyType[str, _V]:
    # Copy first: a proxy over the caller's own dict would still change under us.
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class FlowAction:
    """Answer and run steps: a script without disclosure, whose gathers are keypad menus."""

    steps: tuple[Step, ...]

    def script(self, plan: str) -> AgentScript:
        return AgentScript(plan, plan, disclosure=None, steps=self.steps)


@dataclass(frozen=True, slots=True)
class TransferAction:
    target: str
    on_failure: tuple[Step, ...] = ()

    def script(self, plan: str) -> AgentScript:
        return AgentScript(plan, plan, disclosure=None, steps=(Transfer(self.target, self.on_failure),))


@dataclass(frozen=True, slots=True)
class RejectAction:
    code: int
    reason: str

    def __post_init__(self) -> None:
        if not 400 <= self.code <= 699:
            raise ValueError(f"reject code must be 400-699, got {self.code}")


@dataclass(frozen=True, slots=True)
class AgentAction:
    """Answer and hold a conversation with an agent script (loaded and checked with the plan)."""

    script: AgentScript


Action = FlowAction | TransferAction | RejectAction | AgentAction


@dataclass(frozen=True, slots=True)
class When:
    """Conditions of a rule; an empty field matches everything, all given fields must match.

    callers: normalised numbers; a trailing `*` is a prefix; `anonymous` matches a withheld caller.
    days: 0=Mon..6=Sun. hours: half-open minute-of-day ranges; start > end wraps past midnight.
    """

    callers: tuple[str, ...] = ()
    days: frozenset[int] = frozenset()
    hours: tuple[tuple[int, int], ...] = ()

    def matches(self, caller: str, local: datetime) -> bool:
        """caller is normalised; local is the call's time in the plan's timezone."""
        if self.callers and not any(_caller_matches(p, caller) for p in self.callers):
            return False
        if self.days and local.weekday() not in self.days:
            return False
        minute = local.hour * 60 + local.minute
        return not self.hours or any(_in_range(minute, s, e) for s, e in self.hours)


@dataclass(frozen=True, slots=True)
class Rule:
    when: When
    action: Action
    line: int


@dataclass(frozen=True, slots=True)
class Route:
    """What to do with one call. ring_seconds > 0: send 180 Ringing and act after that long."""

    dialplan: str
    action: Action
    ring_seconds: float
    transfers: TransferPolicy = TransferPolicy()
    records: RecordPolicy = RecordPolicy()
    timezone: str = "UTC"  # the dialplan's: callers' "tomorrow" and "at two" are read in it


NOT_FOUND = Route("none", RejectAction(404, "Not Found"), 0.0)


@dataclass(frozen=True, slots=True)
class Dialplan:
    name: str
    path: str
    numbers: tuple[str, ...] = ()
    timezone: str = "UTC"
    ring_seconds: float = 0.0
    rules: tuple[Rule, ...] = ()
    action: Action = RejectAction(404, "Not Found")
    # Where this plan's calls may be transferred (its own transfer steps' targets included).
    transfers: TransferPolicy = TransferPolicy()
    # What its calls' records redact and keep, and whether they are recorded.
    records: RecordPolicy = RecordPolicy()

    def route(self, caller: str, now: datetime) -> Route:
        """First matching rule wins, else the plan's own action. now must be timezone-aware."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        local = now.astimezone(ZoneInfo(self.timezone))
        who = normalize_number(caller)
        action = next((r.action for r in self.rules if r.when.matches(who, local)), self.action)
        return Route(self.name, action, self.ring_seconds, self.transfers, self.records, self.timezone)


@dataclass(frozen=True, slots=True)
class DialplanSet:
    """Normalised dialled number -> plan; `default` takes every other number."""

    plans: Mapping[str, Dialplan] = field(default_factory=lambda: MappingProxyType({}))
    default: Dialplan | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "plans", _frozen(self.plans))

    def all(self) -> tuple[Dialplan, ...]:
        """Each plan once (a plan with several numbers appears once), default last."""
        unique = {id(p): p for p in self.plans.values()}
        if self.default is not None:
            unique[id(self.default)] = self.default
        return tuple(unique.values())

    def route(self, dialled: str, caller: str, now: datetime) -> Route:
        return route(self, dialled, caller, now)


def normalize_number(s: str) -> str:
    """Reduce a number or SIP user to one comparable form: "+1 (555) 0100", "tel:+15550100" and
    "sip:15550100@host;user=phone" all give "15550100"; names like "Sales" give "sales"."""
    text = s.strip()
    if "<" in text and ">" in text:  # a whole header value: `"Alice" <sip:...>;tag=x`
        text = text[text.index("<") + 1 : text.index(">")]
    text = _SCHEME.sub("", text.strip())
    text = text.split(";", 1)[0].split("@", 1)[0]
    text = _SEPARATORS.sub("", text).removeprefix("+")
    return text if text.isascii() and text.isdigit() else text.lower()


def route(plans: DialplanSet, dialled: str, caller: str, now: datetime) -> Route:
    """Pick the plan for the dialled number (else the default) and let it choose the action."""
    plan = plans.plans.get(normalize_number(dialled), plans.default)
    if plan is None:
        return NOT_FOUND
    return plan.route(caller, now)


def _caller_matches(pattern: str, caller: str) -> bool:
    if caller in _WITHHELD:
        return pattern == ANONYMOUS
    if pattern.endswith("*"):
        return caller.startswith(pattern[:-1])
    return caller == pattern


def _in_range(minute: int, start: int, end: int) -> bool:
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end
