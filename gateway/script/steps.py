"""The step language as written in YAML, the same in agent scripts and dialplan flows: pydantic
file models for each step, built into the frozen steps of `gateway.script.model`.

Validators read from the context: `base` (the file's directory, for WAV files), `clip_keys`
(names a `play` may give instead of a file). What needs the whole file (variables used before
they are gathered, gather names used twice, synonyms that clash, keys a gather must have in a
flow or a script) is `StepCheck`, a pass over the plain values that runs also when the models
found errors, so one run reports every mistake.
"""

from __future__ import annotations

import difflib
import json
import re
import wave
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Union
from urllib.parse import urlsplit

import jsonschema
from pydantic import AfterValidator, Discriminator, Field, Tag, ValidationInfo, field_validator

from gateway.config.schema import Invalid, Lines, Number, OneKey, Strict, Text, Whole, between, listed
from gateway.errors import ConfigError
from gateway.script.consent import ANSWERS, ConsentFile, consent_variable
from gateway.script.slot_file import ConfirmSpec, Ranges, SlotTypeText, build_slot, typed_values
from gateway.script.model import (
    BUILTIN_TOOLS,
    BUILTIN_VARIABLES,
    Branch,
    Gather,
    Hangup,
    Llm,
    Pause,
    Play,
    Say,
    Step,
    Tool,
    ToolRef,
    Transfer,
    WebhookTool,
    normalize_answer,
    placeholders,
)

__all__ = ["StepCheck", "StepFile", "TransferSpec", "build_steps", "by_shape", "check_wav", "method", "target",
           "url"]

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what LLM function-calling APIs accept
_KEYPAD = re.compile(r"^[0-9*#]+$")
_SIP_URI = re.compile(r"^(sips?):([^\s<>\"]+)$", re.IGNORECASE)
_TEL_URI = re.compile(r"^(tel):(\+?[0-9*#().\-]+(?:;[^\s<>\"]*)?)$", re.IGNORECASE)
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_INPUTS = ("speech", "dtmf", "both")
_STEP_KEYS = ("say", "play", "pause", "gather", "branch", "llm", "transfer", "hangup", "consent")
_SCRIPT_ONLY = ("branch", "llm")


# -- values shared by scripts and dialplans ---------------------------------------------------------

def check_wav(path: Path) -> Path:
    """The one check for recordings: a PCM WAV of 8 or 16 bits that exists (what the player reads)."""
    try:
        with path.open("rb") as file:
            if file.read(4) != b"RIFF":
                raise ValueError(f"not a WAV file: {path}")
            file.seek(0)
            with wave.open(file, "rb") as wav:
                width = wav.getsampwidth()
    except FileNotFoundError:
        raise ValueError(f"file not found: {path}") from None
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from None
    except (wave.Error, EOFError) as error:
        raise ValueError(f"not a PCM WAV file: {path} ({error or 'truncated'})") from None
    if width not in (1, 2):
        raise ValueError(f"{path} is {8 * width}-bit; use 8 or 16-bit PCM")
    return path


def target(text: str) -> str:
    if text.lower() == "operator":
        return "operator"
    match = _SIP_URI.match(text) or _TEL_URI.match(text)
    if match is None:
        raise ValueError(f"unknown transfer target {text!r} (use operator, or a sip:, sips: or tel: URI)")
    return f"{match.group(1).lower()}:{match.group(2)}"


def url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in text):
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return text


def method(text: str) -> str:
    if text.upper() not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {text.upper()!r}")
    return text.upper()


Target = Annotated[Text, AfterValidator(target)]
Url = Annotated[Text, AfterValidator(url)]
Method = Annotated[Text, AfterValidator(method)]


def _shown(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return "nothing" if value is None else repr(str(value).lower() if isinstance(value, bool) else str(value))


def by_shape(mapping: str, other: str) -> Any:
    """A discriminator for `X or {mapping}` values: the member named by the value's shape."""
    return Discriminator(lambda value: mapping if isinstance(value, dict) else other)


def _suggest(name: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


# -- steps ----------------------------------------------------------------------------------------

class TransferTo(Strict):
    to: Target
    on_failure: list[StepFile] = []


TransferSpec = Annotated[Union[Annotated[Target, Tag("target")], Annotated[TransferTo, Tag("TransferTo")]],
                         by_shape("TransferTo", "target")]
Steps = list["StepFile"]
Expect = Annotated[Union[Annotated[list[Text], Tag("list")],
                         Annotated[dict[str, Union[listed(Text), None]], Tag("dict")]],
                   by_shape("dict", "list")]
Prompt = Annotated[Union[Annotated[Text, Tag("text")], Annotated[listed("StepFile"), Tag("steps")]],
                   Discriminator(lambda v: "steps" if isinstance(v, (dict, list)) else "text")]


class GatherFile(Strict):
    """An answer (name, prompt, type, input, expect, confirm) or a keypad menu (branches and the rest)."""

    name: Text = Field(None)
    prompt: Prompt = Field(None)
    type: SlotTypeText = Field(None)
    input: Text = Field(None)
    expect: Expect | None = None
    ranges: Ranges = Field(None)
    confirm: ConfirmSpec = False
    read_back: Text = Field(None)
    timeout: between(Number, above=0, at_most=120) = Field(None)
    digits: between(Whole, at_least=1, at_most=32) = 1
    terminator: Any = "#"
    inter_digit_timeout: between(Number, above=0, at_most=60) = 3.0
    attempts: between(Whole, at_least=1, at_most=10) = 3
    branches: dict[str, Steps] = Field(None)
    no_input: Steps = []
    no_match: Steps = []
    failed: Steps = []

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not IDENTIFIER.match(name):
            raise ValueError(f"gather names use letters, digits and '_', got {name!r}")
        if name in BUILTIN_VARIABLES:
            raise ValueError(f"'{name}' is built in; pick another name")
        return name

    @field_validator("input")
    @classmethod
    def _input(cls, mode: str) -> str:
        if mode not in _INPUTS:
            raise ValueError(f"input must be speech, dtmf or both, got {mode!r}")
        return mode

    @field_validator("terminator")
    @classmethod
    def _terminator(cls, value: Any) -> str:
        if value is None:  # `terminator: #` reads as nothing: an unquoted # starts a comment
            raise ValueError('write the terminator in quotes, like terminator: "#"')
        text = str(value).strip()
        if isinstance(value, (dict, list, bool)) or text not in ("", "#", "*", *"0123456789"):
            raise ValueError(f'terminator must be one key (0-9, * or #) or "", got {_shown(value)}')
        return text

    @field_validator("branches")
    @classmethod
    def _branches(cls, branches: dict[str, Steps], info: ValidationInfo) -> dict[str, Steps]:
        if not branches:
            raise ValueError('needs at least one branch, like "1": [{say: ...}]')
        digits, terminator = info.data.get("digits"), info.data.get("terminator")
        for key in branches:
            if not _KEYPAD.match(key):
                raise Invalid(f"branch '{key}' is not keypad digits (0-9, *, #)", key)
            if digits is not None and len(key) > digits:
                raise Invalid(f"branch '{key}' is longer than digits ({digits})", key)
            if terminator and terminator in key:
                raise Invalid(f"branch '{key}' contains the terminator '{terminator}'", key)
        return branches


class BranchFile(Strict):
    variable: Text
    cases: dict[str, Steps]
    default: Steps = []

    @field_validator("cases")
    @classmethod
    def _cases(cls, cases: dict[str, Steps]) -> dict[str, Steps]:
        if not cases:
            raise ValueError('needs at least one case, like "yes": [{say: ...}]')
        return cases


class WebhookToolFile(Strict):
    name: Text
    url: Url
    method: Method = "POST"
    description: Text  # the model picks tools by it: a missing one is a mistake, not a default
    parameters: Any = None
    timeout: between(Number, above=0, at_most=30) = 5.0

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _TOOL_NAME.match(name):
            raise ValueError(f"tool names use letters, digits, '_' and '-' (at most 64), got {name!r}")
        if name in BUILTIN_TOOLS:
            raise ValueError(f"'{name}' is a built-in tool; give the webhook another name")
        return name

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: Any) -> str:
        if not isinstance(value, dict):
            raise ValueError(f"parameters must be a JSON Schema object (a mapping), got {_shown(value)}")
        if value.get("type", "object") != "object":
            raise ValueError("parameters must have type: object (the tool's arguments)")
        schema = {"type": "object", **value}
        try:  # the model's arguments are checked against it on every call
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as error:
            raise ValueError(f"parameters is not a valid JSON Schema: {error.message}") from None
        return json.dumps(schema, sort_keys=True)


class WebhookToolSpec(Strict):
    webhook: WebhookToolFile


def _builtin_tool(name: str) -> str:
    if name not in BUILTIN_TOOLS:
        built_in = ", ".join(BUILTIN_TOOLS)
        message = f"unknown tool '{name}' (built in: {built_in}; others are {{webhook: {{...}}}})"
        raise ValueError(message + _suggest(name, BUILTIN_TOOLS))
    return name


ToolSpec = Annotated[Union[Annotated[Annotated[Text, AfterValidator(_builtin_tool)], Tag("builtin")],
                           Annotated[WebhookToolSpec, Tag("WebhookToolSpec")]],
                     by_shape("WebhookToolSpec", "builtin")]


class LlmFile(Strict):
    instructions: Text
    tools: list[ToolSpec] = []
    exit_when: listed(Text) = []
    max_turns: between(Whole, at_least=1, at_most=100) = 10


def _play(text: str, info: ValidationInfo) -> str:
    context = info.context or {}
    if text not in context.get("clip_keys", ()):
        check_wav(Path(context.get("base", ".")) / text)
    return text


def _hangup(value: Any) -> bool:
    if value is not True:
        raise ValueError(f"write 'hangup: true', got {_shown(value)}")
    return True


class StepFile(OneKey):
    """One step: `{say: TEXT}`, `{play: FILE.wav or clip}`, `{pause: SECONDS}`, `{gather: ...}`,
    `{branch: ...}`, `{llm: ...}`, `{transfer: TARGET or {to, on_failure}}`, `{hangup: true}`."""

    shape: ClassVar[str] = "a step like {say: TEXT} or {hangup: true}"
    say: Text = Field(None)
    play: Annotated[Text, AfterValidator(_play)] = Field(None)
    pause: between(Number, above=0, at_most=300) = Field(None)
    gather: GatherFile = Field(None)
    branch: BranchFile = Field(None)
    llm: LlmFile = Field(None)
    transfer: TransferSpec = Field(None)
    hangup: Annotated[Any, AfterValidator(_hangup)] = Field(None)
    consent: ConsentFile = Field(None)


TransferTo.model_rebuild()
GatherFile.model_rebuild()
BranchFile.model_rebuild()


# -- building -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Builder:
    """Turns validated step files into steps; base and clips resolve `play`."""

    base: Path
    clips: Mapping[str, Path] = field(default_factory=dict)

    def steps(self, items: list[StepFile] | None) -> tuple[Step, ...]:
        return tuple(self.step(item) for item in items or ())

    def step(self, item: StepFile) -> Step:
        key, value = item.key, item.value
        if key == "say":
            return Say(value)
        if key == "play":
            return Play(self.clips[value], value) if value in self.clips else Play(self.base / value)
        if key == "pause":
            return Pause(value)
        if key == "gather":
            return self.gather(value)
        if key == "branch":
            return Branch(value.variable, {k: self.steps(v) for k, v in value.cases.items()},
                          self.steps(value.default))
        if key == "llm":
            return self.llm(value)
        if key == "consent":
            return value.build()
        if key == "transfer":
            if isinstance(value, str):
                return Transfer(value)
            return Transfer(value.to, self.steps(value.on_failure))
        return Hangup()

    def gather(self, g: GatherFile) -> Gather:
        expect = None if g.expect is None else _expect(g.expect)
        if g.branches is None:
            slot = build_slot(g.type, g.ranges, g.digits if "digits" in g.model_fields_set else None)
            return Gather(g.name or "", g.prompt or "", g.input, expect, g.confirm, g.timeout,  # type: ignore[arg-type]
                          max_digits=slot.length or 1, slot=slot, read_back=g.read_back)
        prompt = (Say(g.prompt),) if isinstance(g.prompt, str) else self.steps(g.prompt)
        return Gather(
            name=g.name or "", prompt=prompt, input=g.input, expect=expect, confirm=g.confirm,  # type: ignore[arg-type]
            timeout=g.timeout, max_digits=g.digits, terminator=g.terminator,
            inter_digit_timeout=g.inter_digit_timeout, attempts=g.attempts,
            branches={k: self.steps(v) for k, v in g.branches.items()},
            no_input=self.steps(g.no_input), no_match=self.steps(g.no_match), failed=self.steps(g.failed),
        )

    def llm(self, spec: LlmFile) -> Llm:
        tools: dict[str, Tool] = {}
        for item in spec.tools:
            if isinstance(item, str):
                tool: Tool = ToolRef(item)
            else:
                hook = item.webhook
                tool = WebhookTool(hook.name, hook.url, hook.description, method=hook.method,
                                   timeout=hook.timeout,
                                   **({"parameters_json": hook.parameters} if hook.parameters else {}))
            tools.setdefault(tool.name, tool)
        if spec.exit_when and "end_conversation" not in tools:
            tools["end_conversation"] = ToolRef("end_conversation")  # exit_when is signalled through it
        return Llm(spec.instructions, tuple(tools.values()), tuple(spec.exit_when), spec.max_turns)


def build_steps(items: list[StepFile] | None, base: Path, clips: Mapping[str, Path] | None = None,
                ) -> tuple[Step, ...]:
    return Builder(base, clips or {}).steps(items)


def _expect(spec: list[str] | dict[str, list[str] | None]) -> dict[str, tuple[str, ...]]:
    """value -> synonyms; each value is its own first synonym."""
    entries = {v: [] for v in spec} if isinstance(spec, list) else spec
    return {str(k).strip(): tuple(dict.fromkeys(s.casefold() for s in (str(k).strip(), *(v or ()))))
            for k, v in entries.items()}


# -- the whole-file pass --------------------------------------------------------------------------

Loc = tuple[str | int, ...]


@dataclass(slots=True)
class _Use:
    """A variable read at a point of the steps, checked once every gather is known."""

    loc: Loc
    name: str
    known: frozenset[str]
    cases: tuple[tuple[int, str], ...] = ()  # for a branch: (line, key) of its cases


@dataclass(slots=True)
class StepCheck:
    """What the step models cannot see alone. flow: the steps of a dialplan, whose gathers are
    keypad menus and which have no branch or llm steps. declared: variables known from the start,
    None when they could not be read (then uses are not checked)."""

    where: str
    lines: Lines
    flow: bool = False
    declared: frozenset[str] | None = frozenset(BUILTIN_VARIABLES)
    errors: list[ConfigError] = field(default_factory=list)
    gathered: dict[str, int] = field(default_factory=dict)  # name -> line, whole file
    expects: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    uses: list[_Use] = field(default_factory=list)

    def run(self, items: Any, loc: Loc) -> list[ConfigError]:
        self.steps(items, loc, set(self.declared or ()))
        if self.declared is not None:
            self._check_uses()
        return self.errors

    def error(self, loc: Loc, message: str, key: bool = False) -> None:
        line = (self.lines.key_lines.get(loc) if key else None) or self.lines.get(loc, 0)
        self.errors.append(ConfigError(self.where, line, message))

    def steps(self, items: Any, loc: Loc, known: set[str]) -> None:
        if isinstance(items, dict):
            self.step(items, loc, known)
        elif isinstance(items, list):
            for i, item in enumerate(items):
                self.step(item, (*loc, i), known)

    def step(self, item: Any, loc: Loc, known: set[str]) -> None:
        if not isinstance(item, dict):
            return
        keys = [key for key in item if key in _STEP_KEYS]
        if len(keys) != 1:
            return  # reported by the model
        key = keys[0]
        value, at = item[key], (*loc, key)
        if self.flow and key in _SCRIPT_ONLY:
            self.error(at, f"{key} steps belong in agent scripts (a dialplan's `agent:`)", key=True)
        elif key == "say":
            self.text(value, at, known)
        elif key == "transfer" and isinstance(value, dict):
            self.steps(value.get("on_failure"), (*at, "on_failure"), set(known))
        elif key == "gather" and isinstance(value, dict):
            self.gather(value, at, known)
        elif key == "branch" and isinstance(value, dict):
            self.branch(value, at, known)
        elif key == "llm" and isinstance(value, dict):
            self.llm(value, at, known)
        elif key == "consent" and isinstance(value, dict):
            known.add(consent_variable(value))
            self.expects[consent_variable(value)] = ANSWERS

    def text(self, text: Any, loc: Loc, known: set[str]) -> None:
        if isinstance(text, str):
            self.uses.extend(_Use(loc, name, frozenset(known)) for name in placeholders(text))

    def gather(self, g: dict, at: Loc, known: set[str]) -> None:
        menu = "branches" in g
        if self.flow and not menu:
            self.error(at, "missing 'branches'")
        if self.flow and g.get("input") in ("speech", "both"):
            self.error((*at, "input"), "gathers in a dialplan take keypad input (input: dtmf)")
        if not menu and not self.flow:
            for key in ("name", "prompt"):
                if key not in g:
                    self.error(at, f"missing '{key}'")
        prompt = g.get("prompt")
        if isinstance(prompt, (dict, list)):
            self.steps(prompt, (*at, "prompt"), set(known))
        else:
            self.text(prompt, (*at, "prompt"), known)
        for part in ("no_input", "no_match", "failed"):
            self.steps(g.get(part), (*at, part), set(known))
        branches = g.get("branches")
        for key, steps in branches.items() if isinstance(branches, dict) else ():
            self.steps(steps, (*at, "branches", key), set(known))
        expect = self.expect(g.get("expect"), (*at, "expect"), g.get("input"))
        name = g.get("name")
        if not isinstance(name, str) or not IDENTIFIER.match(name) or name in BUILTIN_VARIABLES:
            return  # reported by the model
        if name in self.gathered:
            self.error((*at, "name"), f"gather '{name}' is already on line {self.gathered[name]}")
            return
        self.gathered[name] = self.lines.get((*at, "name"), 0)
        self.text(g.get("read_back"), (*at, "read_back"), {*known, name})
        self.expects[name] = tuple(branches) if isinstance(branches, dict) else self.values(g, at, expect)
        known.add(name)

    def values(self, g: dict, at: Loc, expect: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """The values a typed answer may take, where they are few (for branch cases)."""
        values, problems = typed_values(g, expect)
        for key, message in problems:
            self.error((*at, key) if key else at, message, key=bool(key))
        return values

    def expect(self, spec: Any, at: Loc, mode: Any) -> tuple[str, ...] | None:
        """The canonical values, checking that no synonym means two of them."""
        entries: list[tuple[Loc, bool, list[tuple[Loc, Any]]]]  # (loc, is a key, synonyms)
        if isinstance(spec, list):
            entries = [((*at, i), False, []) for i in range(len(spec))]
            values = [str(v).strip() for v in spec]
        elif isinstance(spec, dict):
            entries = []
            for key, synonyms in spec.items():
                items = synonyms if isinstance(synonyms, list) else [] if synonyms is None else [synonyms]
                loc = (*at, key)
                entries.append((loc, True, [((*loc, i) if isinstance(synonyms, list) else loc, s)
                                            for i, s in enumerate(items)]))
            values = [str(k).strip() for k in spec]
        else:
            return None
        if not entries:
            self.error(at, "needs at least one value; write 'expect: null' for free text")
            return ()
        owner: dict[str, tuple[str, int]] = {}  # normalised synonym -> (value, line)
        for (loc, is_key, synonyms), canonical in zip(entries, values):
            said: list[str] = []
            for where, synonym in ((loc, canonical), *synonyms):
                if isinstance(synonym, (dict, list)) or synonym is None:
                    continue
                text = str(synonym).strip().casefold()
                line = (self.lines.key_lines.get(where) if is_key and where == loc else None) \
                    or self.lines.get(where, 0)
                spoken = normalize_answer(text)
                said.append(spoken)
                if not spoken:
                    self.errors.append(ConfigError(self.where, line, f"{text!r} has no words or digits to match"))
                elif spoken in owner and owner[spoken][0] != canonical:
                    other, first = owner[spoken]
                    self.errors.append(ConfigError(self.where, line, f"{text!r} already means {other!r} (line {first})"))
                else:
                    owner.setdefault(spoken, (canonical, line))
            if mode == "dtmf" and not any(_KEYPAD.match(s) for s in said):
                self.error(loc, f'with input: dtmf, {canonical!r} needs a keypad synonym like "1"', key=is_key)
        return tuple(values)

    def branch(self, b: dict, at: Loc, known: set[str]) -> None:
        cases = b.get("cases")
        cases = cases if isinstance(cases, dict) else {}
        # Gather names are unique, so nothing gathered in a case is known on every path after it.
        for key, steps in cases.items():
            self.steps(steps, (*at, "cases", key), set(known))
        self.steps(b.get("default"), (*at, "default"), set(known))
        variable = b.get("variable")
        if isinstance(variable, str):
            keys = tuple((self.lines.key_lines.get((*at, "cases", k), 0), k) for k in cases)
            self.uses.append(_Use((*at, "variable"), variable.strip(), frozenset(known), keys))

    def llm(self, spec: dict, at: Loc, known: set[str]) -> None:
        self.text(spec.get("instructions"), (*at, "instructions"), known)
        tools = spec.get("tools")
        seen: dict[str, int] = {}
        for i, tool in enumerate(tools if isinstance(tools, list) else ()):
            hook = tool.get("webhook") if isinstance(tool, dict) else None
            name = tool if isinstance(tool, str) else hook.get("name") if isinstance(hook, dict) else None
            if not isinstance(name, str):
                continue
            line = self.lines.get((*at, "tools", i), 0)
            if name in seen:
                self.errors.append(ConfigError(self.where, line, f"tool '{name}' is already listed on line {seen[name]}"))
            else:
                seen[name] = line

    def _check_uses(self) -> None:
        for use in self.uses:
            line = self.lines.get(use.loc, 0)
            if use.name not in use.known:
                self.errors.append(ConfigError(self.where, line, self._no_value(use, line)))
            elif use.cases and (expect := self.expects.get(use.name)) is not None:
                values = {value.casefold() for value in expect}
                for key_line, key in use.cases:
                    if key.casefold() not in values:
                        message = f"case {key!r} is never a value of '{use.name}' (expects: {', '.join(expect)})"
                        self.errors.append(ConfigError(self.where, key_line, message))

    def _no_value(self, use: _Use, line: int) -> str:
        what = f"branch on '{use.name}'" if use.cases else f"'{{{use.name}}}'"
        gathered = self.gathered.get(use.name)
        if gathered is None:
            hint = _suggest(use.name, sorted({*use.known, *self.gathered}))
            return f"{what}: unknown variable; gather it first or declare it under variables{hint}"
        if gathered >= line:
            return f"{what} comes before '{use.name}' is gathered (line {gathered})"
        return f"{what}: '{use.name}' is only gathered on some paths to here (line {gathered})"
