"""Read dialplans/*.yaml into a DialplanSet, reporting every mistake with file:line.

`DialplanFile` is a file's pydantic model (its JSON Schema is `json_schema(DialplanFile)`); a
flow's steps are the step language of agent scripts (`gateway.script.steps`), with keypad menus
for gathers. A file with any error contributes no plan, so a half-understood plan never answers
calls. What needs more than one value (numbers claimed twice, one action per rule) is checked
on the plain values, also when the model found errors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, Tag, ValidationInfo, field_validator

from gateway.config import schema
from gateway.config.schema import Flag, Invalid, Lines, Number, Strict, Text, Whole, between, listed
from gateway.dialplan.model import (
    ANONYMOUS,
    Action,
    AgentAction,
    Dialplan,
    DialplanSet,
    FlowAction,
    RejectAction,
    Rule,
    TransferAction,
    When,
    normalize_number,
)
from gateway.dialplan.records_file import Recording, RedactKinds, RetentionFile, record_policy
from gateway.dialplan.transfers import OPERATOR, TransferPolicy, is_pattern, normalize_target
from gateway.errors import ConfigError
from gateway.script.model import script_targets, script_texts, step_targets, step_texts
from gateway.script.steps import StepCheck, StepFile, TransferSpec, build_steps, by_shape

__all__ = ["DialplanFile", "dialplan_files", "flow_texts", "load_dialplans"]

DEFAULT_NAME = "default"
_ACTIONS = ("flow", "transfer", "reject", "agent")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_HOURS = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
# Reason phrases from RFC 3261 and friends, for `reject: CODE` without a reason.
_REASONS = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    408: "Request Timeout", 410: "Gone", 480: "Temporarily Unavailable", 484: "Address Incomplete",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    500: "Server Internal Error", 503: "Service Unavailable", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere",
}  # fmt: skip


# -- values ---------------------------------------------------------------------------------------

def _caller(text: str) -> str:
    if text.lower() == ANONYMOUS:
        return ANONYMOUS
    is_prefix = text.endswith("*")
    number = normalize_number(text.removesuffix("*") if is_prefix else text)
    if "*" in number or (not number and not is_prefix):
        raise ValueError(f"expected a number, a prefix like +1555* or anonymous, got {text!r}")
    return number + "*" if is_prefix else number


def _days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.lower().split(","):
        first, dash, last = part.partition("-")
        start, end = _day(first), _day(last if dash else first)
        days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
    return frozenset(days)


def _day(text: str) -> int:
    name = text.strip()
    if name in _DAYS:
        return _DAYS.index(name)
    if name in _FULL_DAYS:
        return _FULL_DAYS.index(name)
    raise ValueError(f"unknown day '{name}' (use {', '.join(_DAYS)} or a range like mon-fri)")


def _hours(text: str) -> tuple[int, int]:
    match = _HOURS.match(text)
    if match is None:
        raise ValueError(f"expected hours like 09:00-17:00, got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
        raise ValueError(f"not a time of day in {text!r}")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end % 1440:
        raise ValueError(f"{text!r} starts where it ends (to match all day, leave 'hours' out)")
    return start, end


def _not_empty(items: list[Any]) -> list[Any]:
    if not items:
        raise ValueError("empty list; leave the key out to match everything")
    return items


def _allowed(text: str) -> str:
    if text.lower() == OPERATOR:
        return OPERATOR
    if not is_pattern(text):
        raise ValueError(f"not a transfer destination or pattern: {text!r} (sip:user@host, "
                         "sips:..., tel:+digits; `*` matches anything)")
    return normalize_target(text) or text


def _timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown timezone '{name}' (use an IANA name like Europe/Berlin)") from None
    return name


def _agent(text: str, info: ValidationInfo) -> str:
    from gateway.script.loader import load_agent_checked

    context = info.context or {}
    path = (Path(context.get("base", ".")) / text).resolve()
    if not path.is_file():
        raise ValueError(f"agent script not found: {path}")
    script, problems = load_agent_checked(path)
    if script is None:
        context.get("problems", []).extend(problems)  # the script's own errors, in its own file
        raise ValueError(f"agent script {path.name} has errors (listed above)")
    context.setdefault("scripts", {})[text] = script
    return text


# -- the file -------------------------------------------------------------------------------------

class RejectFile(Strict):
    code: between(Whole, at_least=400, at_most=699)
    reason: Text = Field(None)

    @field_validator("reason")
    @classmethod
    def _reason(cls, reason: str) -> str:
        if not reason.isprintable():
            raise ValueError("reason must be one line of printable text")
        return reason


Code = between(Whole, at_least=400, at_most=699)
RejectSpec = Annotated[Union[Annotated[Code, Tag("code")], Annotated[RejectFile, Tag("RejectFile")]],
                       by_shape("RejectFile", "code")]


class ActionFile(Strict):
    """Exactly one of flow, transfer, reject, agent (checked on the plain values)."""

    flow: list[StepFile] = Field(None)
    transfer: TransferSpec = Field(None)
    reject: RejectSpec = Field(None)
    agent: Annotated[Text, AfterValidator(_agent)] = Field(None)

    @field_validator("flow")
    @classmethod
    def _flow(cls, steps: list[StepFile]) -> list[StepFile]:
        if not steps:
            raise ValueError("flow is empty")
        return steps

    def action(self, base: Path, scripts: dict[str, Any]) -> Action:
        if self.flow is not None:
            return FlowAction(build_steps(self.flow, base))
        if self.transfer is not None:
            spec = self.transfer
            if isinstance(spec, str):
                return TransferAction(spec)
            return TransferAction(spec.to, build_steps(spec.on_failure, base))
        if self.agent is not None:
            return AgentAction(scripts[self.agent])
        spec = self.reject
        if isinstance(spec, int):
            return RejectAction(spec, _REASONS.get(spec, "Rejected"))
        assert spec is not None
        return RejectAction(spec.code, spec.reason or _REASONS.get(spec.code, "Rejected"))


class WhenFile(Strict):
    """All given conditions must hold; an empty `when` is refused (it would match every call)."""

    callers: Annotated[listed(Annotated[Text, AfterValidator(_caller)]), AfterValidator(_not_empty)] = []
    days: Annotated[listed(Annotated[Text, AfterValidator(_days)]), AfterValidator(_not_empty)] = []
    hours: Annotated[listed(Annotated[Text, AfterValidator(_hours)]), AfterValidator(_not_empty)] = []

    def build(self) -> When:
        days = frozenset(day for group in self.days for day in group)  # type: ignore[union-attr]
        return When(tuple(self.callers), days, tuple(self.hours))  # type: ignore[arg-type]


class RuleFile(ActionFile):
    when: WhenFile = Field(None)


class TransfersFile(Strict):
    allow: listed(Annotated[Text, AfterValidator(_allowed)]) = []
    caller_refer: Flag = False


class _Plan(Strict):
    numbers: listed(Text) = Field(None)
    timezone: Annotated[Text, AfterValidator(_timezone)] = "UTC"
    ring: between(Number, at_least=0, at_most=300) = 0.0
    rules: list[RuleFile] = []
    transfers: TransfersFile = TransfersFile()
    redact: RedactKinds = Field(None, description="PII kinds replaced by markers in everything stored")
    retention: RetentionFile = Field(None)
    recording: Recording = Field(None)

    @field_validator("numbers")
    @classmethod
    def _numbers(cls, numbers: list[str], info: ValidationInfo) -> list[str]:
        if not numbers:
            raise ValueError("needs at least one number")
        lines = (info.context or {}).get("lines", {})
        seen: dict[str, int] = {}
        for i, text in enumerate(numbers):
            number = normalize_number(text)
            if not number:
                raise Invalid(f"not a number: {text!r}", i)
            if number in seen:
                raise Invalid(f"number {number} is listed twice (also line {seen[number]})", i)
            seen[number] = lines.get(("numbers", i), 0)
        return numbers


class DialplanFile(ActionFile, _Plan):
    """A dialplan file: the numbers it answers, when, and what to do with a call (its keys are
    listed in this order: the plan's, then its action's)."""


def _check(where: str, is_default: bool, lines_out: list[Lines]):  # type: ignore[no-untyped-def]
    """Which keys a plan and its rules must have, and the flows' steps (see StepCheck)."""

    def check(value: Any, lines: Lines) -> list[ConfigError]:
        lines_out.append(lines)
        if not isinstance(value, dict):
            return []
        errors: list[ConfigError] = []

        def error(loc: tuple, message: str, key: bool = False) -> None:
            line = (lines.key_lines.get(loc) if key else None) or lines.get(loc, 0)
            errors.append(ConfigError(where, line, message))

        if is_default and "numbers" in value:
            error(("numbers",), "default.yaml takes every number without a file; give these a file of "
                  "their own", key=True)
        elif not is_default and "numbers" not in value:
            error((), "missing 'numbers' (only default.yaml may leave it out)")
        places = [((), value)]
        rules = value.get("rules")
        for i, rule in enumerate(rules if isinstance(rules, list) else ()):
            if isinstance(rule, dict):
                places.append((("rules", i), rule))
                if "when" not in rule:
                    error(("rules", i), "missing 'when' (a rule without conditions belongs at top level)")
                elif rule["when"] == {}:
                    error(("rules", i, "when"), "needs callers, days or hours (an empty 'when' would match "
                          "every call)")
        for loc, mapping in places:
            present = [key for key in mapping if key in _ACTIONS]
            if not present:
                error(loc, "needs one of: flow, transfer, reject, agent")
            elif len(present) > 1:
                error((*loc, present[1]), f"only one of flow, transfer, reject, agent (also has "
                      f"'{present[0]}')", key=True)
            transfer = mapping.get("transfer")
            check = StepCheck(where, lines, flow=True)
            errors.extend(check.run(mapping.get("flow"), (*loc, "flow")))
            if isinstance(transfer, dict):
                errors.extend(StepCheck(where, lines, flow=True).run(
                    transfer.get("on_failure"), (*loc, "transfer", "on_failure")))
        return errors

    return check


# -- loading --------------------------------------------------------------------------------------

def dialplan_files(directory: Path) -> list[Path]:
    """The dialplan files of a directory, sorted. Dotfiles are editors' swap and lock files."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
    )


def load_dialplans(directory: Path) -> tuple[DialplanSet, list[ConfigError]]:
    """Load every *.yaml/*.yml; default.yaml takes numbers no other file claims."""
    if not directory.is_dir():
        return DialplanSet(), [ConfigError(str(directory), 0, "dialplan directory not found")]
    errors: list[ConfigError] = []
    plans: dict[str, Dialplan] = {}
    claimed: dict[str, str] = {}  # number -> "file:line" of the file that has it
    default: Dialplan | None = None
    for path in dialplan_files(directory):
        plan, lines, file_errors = _load_file(path)
        if plan is not None:
            for i, number in enumerate(plan.numbers):
                if number in claimed:
                    line = lines.get(("numbers", i), lines.get(("numbers",), 0))
                    file_errors.append(ConfigError(plan.path, line, f"number {number} is already in {claimed[number]}"))
            if plan.name == DEFAULT_NAME and default is not None:
                file_errors.append(ConfigError(plan.path, 0, f"a second default plan ({default.path})"))
        errors.extend(file_errors)
        if plan is None or file_errors:
            continue
        if plan.name == DEFAULT_NAME:
            default = plan
        for i, number in enumerate(plan.numbers):
            claimed[number] = f"{plan.path}:{lines.get(('numbers', i), lines.get(('numbers',), 0))}"
            plans[number] = plan
    return DialplanSet(plans, default), errors


def _load_file(path: Path) -> tuple[Dialplan | None, Lines, list[ConfigError]]:
    base = path.parent.resolve()
    context: dict[str, Any] = {"base": base, "problems": [], "scripts": {}}
    lines: list[Lines] = []
    check = _check(str(path), path.stem == DEFAULT_NAME, lines)
    model, errors = schema.load(path, DialplanFile, context=context, check=check)
    errors = context["problems"] + errors
    found = lines[0] if lines else Lines()
    if model is None or errors:
        return None, found, errors
    scripts = context["scripts"]
    action = model.action(base, scripts)
    rules = tuple(Rule(rule.when.build(), rule.action(base, scripts), found.get(("rules", i), 0))
                  for i, rule in enumerate(model.rules))
    numbers = tuple(normalize_number(n) for n in model.numbers or ())
    policy = TransferPolicy(tuple(model.transfers.allow), model.transfers.caller_refer)
    actions = (action, *(rule.action for rule in rules))
    policy = policy.with_targets(tuple(t for a in actions for t in _action_targets(a)))
    plan = Dialplan(path.stem, str(path), numbers, model.timezone, model.ring, rules, action, policy,
                    record_policy(model.redact, model.retention, model.recording))
    return plan, found, []


def _action_targets(action: Action) -> tuple[str, ...]:
    """Destinations an action's own steps transfer to: allowed by construction."""
    if isinstance(action, TransferAction):
        return (action.target, *step_targets(action.on_failure))
    if isinstance(action, FlowAction):
        return step_targets(action.steps)
    if isinstance(action, AgentAction):
        return script_targets(action.script)
    return ()


def flow_texts(plans: DialplanSet) -> set[str]:
    """Every text a plan may speak, so prompts can be rendered before the first call."""
    texts: set[str] = set()
    for plan in plans.all():
        for action in (plan.action, *(rule.action for rule in plan.rules)):
            if isinstance(action, FlowAction):
                texts |= step_texts(action.steps)
            elif isinstance(action, TransferAction):
                texts |= step_texts(action.on_failure)
            elif isinstance(action, AgentAction):
                texts |= script_texts(action.script)
    return texts
