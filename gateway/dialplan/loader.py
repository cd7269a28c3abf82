"""Read dialplans/*.yaml into a DialplanSet, reporting every mistake with file:line.

A file with any error contributes no plan, so a half-understood plan never answers calls.
"""

from __future__ import annotations

import re
import wave
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.config import yamlfile
from gateway.dialplan.model import (
    ANONYMOUS,
    Action,
    Dialplan,
    DialplanSet,
    AgentAction,
    FlowAction,
    Gather,
    Hangup,
    Pause,
    Play,
    RejectAction,
    Rule,
    Say,
    Step,
    Transfer,
    TransferAction,
    When,
    normalize_number,
)
from gateway.dialplan.transfers import OPERATOR, TransferPolicy, is_pattern, normalize_target
from gateway.errors import ConfigError
from gateway.config.yamlfile import Errors, Fields, Node, step_key

__all__ = ["dialplan_files", "flow_texts", "load_dialplans"]

_T = TypeVar("_T")

DEFAULT_NAME = "default"
_TOP_KEYS = ("numbers", "timezone", "ring", "rules", "transfers", "flow", "transfer", "reject", "agent")
_TRANSFERS_KEYS = ("allow", "caller_refer")
_ACTION_KEYS = ("flow", "transfer", "reject", "agent")
_RULE_KEYS = ("when", *_ACTION_KEYS)
_WHEN_KEYS = ("callers", "days", "hours")
_STEP_KEYS = ("say", "play", "pause", "gather", "transfer", "hangup")
_GATHER_KEYS = (
    "prompt", "digits", "terminator", "timeout", "inter_digit_timeout", "attempts",
    "branches", "no_input", "no_match", "failed",
)  # fmt: skip
_TRANSFER_KEYS = ("to", "on_failure")
_REJECT_KEYS = ("code", "reason")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_HOURS = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
_DIGITS = re.compile(r"^[0-9*#]+$")
_SIP_URI = re.compile(r"^(sips?):([^\s<>\"]+)$", re.IGNORECASE)
_TEL_URI = re.compile(r"^(tel):(\+?[0-9*#().\-]+(?:;[^\s<>\"]*)?)$", re.IGNORECASE)
# Reason phrases from RFC 3261 and friends, for `reject: CODE` without a reason.
_REASONS = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    408: "Request Timeout", 410: "Gone", 480: "Temporarily Unavailable", 484: "Address Incomplete",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    500: "Server Internal Error", 503: "Service Unavailable", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere",
}  # fmt: skip


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
    errors = Errors()
    plans: dict[str, Dialplan] = {}
    claimed: dict[str, str] = {}  # number -> "file:line" of the file that has it
    default: Dialplan | None = None
    for path in dialplan_files(directory):
        file_errors = Errors()
        loaded = file_errors.attempt(_load_file, path, file_errors)
        if loaded is not None and not file_errors:
            plan, number_nodes = loaded
            for number, node in zip(plan.numbers, number_nodes):
                if number in claimed:
                    file_errors.add(node.error(f"number {number} is already in {claimed[number]}"))
            if plan.name == DEFAULT_NAME and default is not None:
                file_errors.add(ConfigError(plan.path, 0, f"a second default plan ({default.path})"))
        errors.items.extend(file_errors)
        if loaded is None or file_errors:
            continue
        plan, number_nodes = loaded
        if plan.name == DEFAULT_NAME:
            default = plan
        for number, node in zip(plan.numbers, number_nodes):
            claimed[number] = f"{plan.path}:{node.line}"
            plans[number] = plan
    return DialplanSet(plans, default), list(errors)


def flow_texts(plans: DialplanSet) -> set[str]:
    """Every text a plan may speak, so prompts can be rendered before the first call."""
    texts: set[str] = set()
    for plan in plans.all():
        for action in (plan.action, *(rule.action for rule in plan.rules)):
            if isinstance(action, FlowAction):
                _collect_texts(action.steps, texts)
            elif isinstance(action, TransferAction):
                _collect_texts(action.on_failure, texts)
            elif isinstance(action, AgentAction):
                from gateway.script.model import script_texts

                texts |= script_texts(action.script)  # type: ignore[arg-type]
    return texts


def _collect_texts(steps: Iterable[Step], texts: set[str]) -> None:
    for step in steps:
        if isinstance(step, Say):
            texts.add(step.text)
        elif isinstance(step, Transfer):
            _collect_texts(step.on_failure, texts)
        elif isinstance(step, Gather):
            for part in (step.prompt, step.no_input, step.no_match, step.failed):
                _collect_texts(part, texts)
            for branch in step.branches.values():
                _collect_texts(branch, texts)


def _load_file(path: Path, errors: Errors) -> tuple[Dialplan, tuple[Node, ...]] | None:
    root = yamlfile.load(path)
    top = root.fields(_TOP_KEYS, errors)
    base = path.parent.resolve()
    is_default = path.stem == DEFAULT_NAME
    number_nodes = errors.attempt(_numbers, top, is_default)
    timezone = errors.attempt(_timezone, top.get("timezone"))
    ring = errors.attempt(_ring, top.get("ring"))
    rules = errors.attempt(_rules, top.get("rules"), base, errors)
    action = errors.attempt(_action, top, base, errors)
    transfers = errors.attempt(_transfers, top.get("transfers"), errors)
    if errors or number_nodes is None or timezone is None or ring is None:
        return None
    if rules is None or action is None or transfers is None:
        return None
    numbers = tuple(normalize_number(n.as_str()) for n in number_nodes)
    actions = (action, *(rule.action for rule in rules))
    transfers = transfers.with_targets(tuple(t for a in actions for t in _action_targets(a)))
    plan = Dialplan(path.stem, str(path), numbers, timezone, ring, rules, action, transfers)
    return plan, number_nodes


def _transfers(node: Node | None, errors: Errors) -> TransferPolicy:
    if node is None:
        return TransferPolicy()
    fields = node.fields(_TRANSFERS_KEYS, errors)
    allow: list[str] = []
    if (items := fields.get("allow")) is not None:
        for item in items.as_list(single=True):
            text = item.as_str().strip()
            if text.lower() == OPERATOR:
                allow.append(OPERATOR)
                continue
            if not is_pattern(text):
                raise item.error(f"not a transfer destination or pattern: {text!r} (sip:user@host, "
                                 "sips:..., tel:+digits; `*` matches anything)")
            allow.append(normalize_target(text) or text)
    caller = fields.get("caller_refer")
    return TransferPolicy(tuple(allow), caller.as_bool() if caller is not None else False)


def _action_targets(action: Action) -> list[str]:
    """Destinations an action's own steps transfer to: allowed by construction."""
    if isinstance(action, TransferAction):
        return [action.target, *_step_targets(action.on_failure)]
    if isinstance(action, FlowAction):
        return _step_targets(action.steps)
    if isinstance(action, AgentAction):
        from gateway.script.model import script_targets

        return list(script_targets(action.script))  # type: ignore[arg-type]
    return []


def _step_targets(steps: Iterable[Step]) -> list[str]:
    found: list[str] = []
    for step in steps:
        if isinstance(step, Transfer):
            found += [step.target, *_step_targets(step.on_failure)]
        elif isinstance(step, Gather):
            for part in (step.prompt, step.no_input, step.no_match, step.failed,
                         *step.branches.values()):
                found += _step_targets(part)
    return found


def _numbers(top: Fields, is_default: bool) -> tuple[Node, ...]:
    node = top.get("numbers")
    if is_default:
        if node is not None:
            message = "default.yaml takes every number without a file; give these a file of their own"
            raise top.key_error("numbers", message)
        return ()
    if node is None:
        raise top.node.error("missing 'numbers' (only default.yaml may leave it out)")
    items = node.as_list(single=True)
    if not items:
        raise node.error("needs at least one number")
    seen: dict[str, int] = {}
    for item in items:
        number = normalize_number(item.as_str())
        if not number:
            raise item.error(f"not a number: {item.describe()}")
        if number in seen:
            raise item.error(f"number {number} is listed twice (also line {seen[number]})")
        seen[number] = item.line
    return items


def _timezone(node: Node | None) -> str:
    if node is None:
        return "UTC"
    name = node.as_str()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise node.error(f"unknown timezone '{name}' (use an IANA name like Europe/Berlin)") from None
    return name


def _ring(node: Node | None) -> float:
    return 0.0 if node is None else node.as_float(at_least=0, at_most=300)


def _rules(node: Node | None, base: Path, errors: Errors) -> tuple[Rule, ...]:
    if node is None:
        return ()
    rules = (errors.attempt(_rule, item, base, errors) for item in node.as_list())
    return tuple(rule for rule in rules if rule is not None)


def _rule(node: Node, base: Path, errors: Errors) -> Rule:
    fields = node.fields(_RULE_KEYS, errors)
    when_node = fields.get("when")
    if when_node is None:
        errors.add(node.error("missing 'when' (a rule without conditions belongs at top level)"))
    when = None if when_node is None else errors.attempt(_when, when_node, errors)
    action = _action(fields, base, errors)
    return Rule(when or When(), action, node.line)


def _when(node: Node, errors: Errors) -> When:
    fields = node.fields(_WHEN_KEYS, errors)
    if not node.pairs():
        raise node.error("needs callers, days or hours (an empty 'when' would match every call)")
    callers = _each(fields.get("callers"), _caller, errors)
    days = _each(fields.get("days"), _days, errors)
    hours = _each(fields.get("hours"), _hours, errors)
    return When(tuple(callers), frozenset(day for group in days for day in group), tuple(hours))


def _each(node: Node | None, read_item: Callable[[Node], _T], errors: Errors) -> list[_T]:
    """Read a list (or one lone value) item by item, recording every bad item."""
    if node is None:
        return []
    items = errors.attempt(node.as_list, single=True)
    if items is not None and not items:
        errors.add(node.error("empty list; leave the key out to match everything"))
    values = (errors.attempt(read_item, item) for item in items or ())
    return [value for value in values if value is not None]


def _caller(node: Node) -> str:
    text = node.as_str()
    if text.lower() == ANONYMOUS:
        return ANONYMOUS
    is_prefix = text.endswith("*")
    number = normalize_number(text.removesuffix("*") if is_prefix else text)
    if "*" in number or (not number and not is_prefix):
        raise node.error(f"expected a number, a prefix like +1555* or anonymous, got {text!r}")
    return number + "*" if is_prefix else number


def _days(node: Node) -> frozenset[int]:
    days: set[int] = set()
    for part in node.as_str().lower().split(","):
        first, dash, last = part.partition("-")
        start, end = _day(node, first), _day(node, last if dash else first)
        days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
    return frozenset(days)


def _day(node: Node, text: str) -> int:
    name = text.strip()
    if name in _DAYS:
        return _DAYS.index(name)
    if name in _FULL_DAYS:
        return _FULL_DAYS.index(name)
    raise node.error(f"unknown day '{name}' (use {', '.join(_DAYS)} or a range like mon-fri)")


def _hours(node: Node) -> tuple[int, int]:
    text = node.as_str()
    match = _HOURS.match(text)
    if match is None:
        raise node.error(f"expected hours like 09:00-17:00, got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
        raise node.error(f"not a time of day in {text!r}")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end % 1440:
        raise node.error(f"{text!r} starts where it ends (to match all day, leave 'hours' out)")
    return start, end


def _action(fields: Fields, base: Path, errors: Errors) -> Action:
    present = fields.present(*_ACTION_KEYS)
    if not present:
        raise fields.node.error("needs one of: flow, transfer, reject, agent")
    if len(present) > 1:
        raise fields.key_error(present[1], f"only one of flow, transfer, reject, agent (also has '{present[0]}')")
    name = present[0]
    node = fields.values[name]
    if name == "flow":
        if not node.as_list():
            raise node.error("flow is empty")
        return FlowAction(_steps(node, base, errors))
    if name == "transfer":
        target, on_failure = _transfer(node, base, errors)
        return TransferAction(target, on_failure)
    if name == "agent":
        return _agent(node, base, errors)
    return _reject(node, errors)


def _agent(node: Node, base: Path, errors: Errors) -> AgentAction:
    from gateway.script.loader import load_agent_checked

    path = (base / node.as_str()).resolve()
    if not path.is_file():
        raise node.error(f"agent script not found: {path}")
    script, problems = load_agent_checked(path)
    for problem in problems:
        errors.add(problem)
    if script is None:
        raise node.error(f"agent script {path.name} has errors (listed above)")
    return AgentAction(script)


def _reject(node: Node, errors: Errors) -> RejectAction:
    if node.kind == "mapping":
        fields = node.fields(_REJECT_KEYS, errors)
        code_node, reason_node = fields.require("code"), fields.get("reason")
    else:
        code_node, reason_node = node, None
    code = code_node.as_int(at_least=400, at_most=699)
    reason = _REASONS.get(code, "Rejected") if reason_node is None else reason_node.as_str()
    if not reason.isprintable():
        raise node.error("reason must be one line of printable text")
    return RejectAction(code, reason)


def _steps(node: Node, base: Path, errors: Errors, *, loose: bool = False) -> tuple[Step, ...]:
    """A list of steps; loose (prompts) also takes one step mapping or a plain string to say."""
    if loose and node.kind == "scalar" and not node.is_null:
        return (Say(node.as_str()),)
    items = node.as_list() if not (loose and node.kind == "mapping") else (node,)
    steps = (errors.attempt(_step, item, base, errors) for item in items)
    return tuple(step for step in steps if step is not None)


def _step(node: Node, base: Path, errors: Errors) -> Step | None:
    found = step_key(node, _STEP_KEYS, errors)
    if found is None:
        return None  # only unknown keys: already reported
    name, value = found
    if name == "say":
        return Say(value.as_str())
    if name == "play":
        return Play(_wav(value, base))
    if name == "pause":
        return Pause(value.as_float(above=0, at_most=300))
    if name == "gather":
        return _gather(value, base, errors)
    if name == "transfer":
        return Transfer(*_transfer(value, base, errors))
    if not (value.kind == "scalar" and value.value is True):
        raise value.error(f"write 'hangup: true', got {value.describe()}")
    return Hangup()


def _wav(node: Node, base: Path) -> Path:
    path = base / node.as_str()
    try:
        with wave.open(str(path), "rb") as wav:
            width = wav.getsampwidth()
    except FileNotFoundError:
        raise node.error(f"file not found: {path}") from None
    except OSError as error:
        raise node.error(f"cannot read {path}: {error.strerror or error}") from None
    except (wave.Error, EOFError) as error:
        raise node.error(f"not a PCM WAV file: {path} ({error or 'truncated'})") from None
    if width not in (1, 2):
        raise node.error(f"{path} is {8 * width}-bit; use 8 or 16-bit PCM")
    return path


def _transfer(node: Node, base: Path, errors: Errors) -> tuple[str, tuple[Step, ...]]:
    if node.kind != "mapping":
        return _target(node), ()
    fields = node.fields(_TRANSFER_KEYS, errors)
    target = _target(fields.require("to"))
    failure = fields.get("on_failure")
    return target, () if failure is None else _steps(failure, base, errors)


def _target(node: Node) -> str:
    text = node.as_str()
    if text.lower() == "operator":
        return "operator"
    match = _SIP_URI.match(text) or _TEL_URI.match(text)
    if match is None:
        raise node.error(f"unknown transfer target {text!r} (use operator, or a sip:, sips: or tel: URI)")
    return f"{match.group(1).lower()}:{match.group(2)}"


def _gather(node: Node, base: Path, errors: Errors) -> Gather:
    fields = node.fields(_GATHER_KEYS, errors)

    def opt(name: str, read: Callable[[Node], _T], default: _T) -> _T:
        part = fields.get(name)
        value = None if part is None else errors.attempt(read, part)
        return default if value is None else value

    digits = opt("digits", lambda n: n.as_int(at_least=1, at_most=32), 1)
    terminator = opt("terminator", _terminator, "#")
    timeout = opt("timeout", lambda n: n.as_float(above=0, at_most=120), 5.0)
    inter = opt("inter_digit_timeout", lambda n: n.as_float(above=0, at_most=60), 3.0)
    attempts = opt("attempts", lambda n: n.as_int(at_least=1, at_most=10), 3)

    def steps(name: str, loose: bool = False) -> tuple[Step, ...]:
        part = fields.get(name)
        return () if part is None else _steps(part, base, errors, loose=loose)

    branches_node = fields.require("branches")
    branch_fields = branches_node.fields(None, errors)
    if not branch_fields:
        raise branches_node.error('needs at least one branch, like "1": [{say: ...}]')
    branches: dict[str, tuple[Step, ...]] = {}
    for key, value in branch_fields.values.items():
        where = branch_fields.keys[key]
        if not _DIGITS.match(key):
            errors.add(where.error(f"branch '{key}' is not keypad digits (0-9, *, #)"))
        elif len(key) > digits:
            errors.add(where.error(f"branch '{key}' is longer than digits ({digits})"))
        elif terminator and terminator in key:
            errors.add(where.error(f"branch '{key}' contains the terminator '{terminator}'"))
        branches[key] = _steps(value, base, errors)
    return Gather(
        prompt=steps("prompt", loose=True),
        max_digits=digits,
        terminator=terminator,
        timeout=timeout,
        inter_digit_timeout=inter,
        attempts=attempts,
        branches=branches,
        no_input=steps("no_input"),
        no_match=steps("no_match"),
        failed=steps("failed"),
    )


def _terminator(node: Node) -> str:
    if node.is_null:  # `terminator: #` reads as nothing: an unquoted # starts a comment
        raise node.error('write the terminator in quotes, like terminator: "#"')
    text = node.as_str(empty=True)
    if text not in ("", "#", "*", *"0123456789"):
        raise node.error(f'terminator must be one key (0-9, * or #) or "", got {text!r}')
    return text
