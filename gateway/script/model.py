"""The one step language, as plain frozen data, plus the pure helpers that read callers' answers.

A script is an ordered list of steps in the spirit of telephony verbs (say, play, pause, gather,
branch, llm, transfer, hangup) and a fallback policy. Agent scripts and dialplan flows are both
scripts: a flow is one whose gathers are keypad menus (a Gather with branches). Nothing here does
I/O or keeps time: the runner walks the steps and feeds in answers; `match_expected` and `fill`
are pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, TypeVar

from gateway.script.consent import Consent

__all__ = [
    "BUILTIN_TOOLS",
    "BUILTIN_VARIABLES",
    "DEFAULT_DISCLOSURE",
    "AgentScript",
    "Branch",
    "ConfirmMode",
    "FallbackConfig",
    "Gather",
    "Hangup",
    "InputMode",
    "Llm",
    "NumberRange",
    "Pause",
    "Play",
    "SLOT_TYPES",
    "Say",
    "Slot",
    "SlotType",
    "Step",
    "Tool",
    "ToolRef",
    "Transfer",
    "Webhook",
    "WebhookPolicy",
    "WebhookTool",
    "best_match",
    "confirm_answer",
    "fill",
    "match_expected",
    "normalize_answer",
    "placeholders",
    "script_targets",
    "script_texts",
    "step_targets",
    "step_texts",
]

InputMode = Literal["speech", "dtmf", "both"]
# What a gather's answer is read as (gateway/script/slots.py); text: as said, or one of expect.
SlotType = Literal["text", "name", "date", "day", "time", "number", "digits", "yes_no", "choice",
                   "email", "phone"]
SLOT_TYPES: tuple[str, ...] = SlotType.__args__  # type: ignore[attr-defined]
# When to read an answer back: auto when the recogniser or the slot's parser is unsure.
ConfirmMode = Literal["auto", "always", "never"]

DEFAULT_DISCLOSURE = "You're speaking with an automated assistant."
# Tools the call session implements itself; anything else must be a webhook.
BUILTIN_TOOLS = ("transfer", "hangup", "end_conversation", "send_dtmf")
# Filled by the call session before the first step: the caller's and the dialled number.
BUILTIN_VARIABLES = ("caller", "called")

_V = TypeVar("_V")


def _frozen(mapping: Mapping[str, _V]) -> MappingProxyType[str, _V]:
    # Copy first: a proxy over the caller's own dict would still change under us.
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class Say:
    """Text to speak; `{name}` placeholders are filled from the call's variables."""

    text: str


@dataclass(frozen=True, slots=True)
class Play:
    """A recorded WAV file, resolved against the script's directory. clip: the key it was named by."""

    path: Path
    clip: str | None = None


@dataclass(frozen=True, slots=True)
class Pause:
    seconds: float

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"pause must not be negative: {self.seconds}")


@dataclass(frozen=True, slots=True)
class NumberRange:
    """A named band of numbers: `small: {below: 50}`. Unset bounds are open; say: the read-back."""

    below: float | None = None
    at_most: float | None = None
    above: float | None = None
    at_least: float | None = None
    say: str | None = None

    def holds(self, n: float) -> bool:
        return ((self.below is None or n < self.below) and (self.at_most is None or n <= self.at_most)
                and (self.above is None or n > self.above) and (self.at_least is None or n >= self.at_least))


@dataclass(frozen=True, slots=True)
class Slot:
    """A gather's slot type. ranges: for numbers, canonical value -> band (the first that holds
    wins). length: for digits, how many (None: any, at least one)."""

    type: SlotType = "text"
    ranges: Mapping[str, NumberRange] = field(default_factory=lambda: MappingProxyType({}))
    length: int | None = None

    def __post_init__(self) -> None:
        if self.type not in SLOT_TYPES:
            raise ValueError(f"unknown slot type {self.type!r}")
        object.__setattr__(self, "ranges", _frozen(self.ranges))


@dataclass(frozen=True, slots=True)
class Gather:
    """Ask, and take the caller's answer: spoken words or keypad digits.

    An answer gather (no branches) stores the answer in variable `name`. expect: canonical value
    -> synonyms (lowercase; the canonical itself is among them), or None for free text. slot: how
    the answer is read (name, day, time, number, ...; gateway/script/slots.py). confirm: read the
    answer back and wait for yes/no: `always`, `never`, or `auto` (when the recogniser's or the
    slot parser's confidence is low). The script's fallback policy decides what happens when
    nothing usable comes.

    A keypad menu (branches: digit string -> steps) plays its prompt steps, cut short by a key,
    collects up to max_digits (ending early at terminator) and runs the matching branch; no_input
    or no_match play before it asks again, up to `attempts` times, then `failed` plays. With a
    name, the digits are stored too. Menus take keypad input.

    prompt: text to say, or steps. timeout: seconds after the prompt before it counts as no
    input (default 5 for menus, 6 for answers); inter_digit_timeout: between keys.
    """

    name: str = ""
    prompt: str | tuple[Step, ...] = ()
    input: InputMode | None = None  # None: dtmf for menus, speech otherwise
    expect: Mapping[str, tuple[str, ...]] | None = None
    confirm: ConfirmMode | bool = False
    timeout: float | None = None
    max_digits: int = 1
    terminator: str = "#"
    inter_digit_timeout: float = 3.0
    attempts: int = 3
    branches: Mapping[str, tuple[Step, ...]] = field(default_factory=lambda: MappingProxyType({}))
    no_input: tuple[Step, ...] = ()
    no_match: tuple[Step, ...] = ()
    failed: tuple[Step, ...] = ()
    slot: Slot = Slot()
    read_back: str | None = None  # the confirmation's words, e.g. "{day} at {time}" (default: the value)

    def __post_init__(self) -> None:
        if self.confirm not in (True, False, "auto", "always", "never"):
            raise ValueError(f"confirm must be always, never or auto, got {self.confirm!r}")
        menu = bool(self.branches)
        if self.input is None:
            keyed = self.slot.type in ("digits", "phone")
            object.__setattr__(self, "input", "dtmf" if menu else "both" if keyed else "speech")
        if self.timeout is None:
            object.__setattr__(self, "timeout", 5.0 if menu else 6.0)
        if self.timeout <= 0:  # type: ignore[operator]
            raise ValueError(f"gather timeout must be positive: {self.timeout}")
        if self.max_digits < 1 or self.attempts < 1:
            raise ValueError("max_digits and attempts must be at least 1")
        if self.expect is not None:
            object.__setattr__(self, "expect", _frozen(self.expect))
        object.__setattr__(self, "branches", _frozen(self.branches))

    @property
    def menu(self) -> bool:
        return bool(self.branches)

    @property
    def confirm_mode(self) -> ConfirmMode:
        """`confirm: true` is always; false (the default) is auto."""
        if isinstance(self.confirm, bool):
            return "always" if self.confirm else "auto"
        return self.confirm

    @property
    def prompt_steps(self) -> tuple[Step, ...]:
        return (Say(self.prompt),) if isinstance(self.prompt, str) else self.prompt

    def branch(self, digits: str) -> tuple[Step, ...] | None:
        return self.branches.get(digits)


@dataclass(frozen=True, slots=True)
class Branch:
    """Run the case whose key equals the variable's value (case-insensitive), else `default`.

    Afterwards the script goes on with the step after the branch, unless the case ended the call.
    """

    variable: str
    cases: Mapping[str, tuple[Step, ...]]
    default: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "cases", _frozen(self.cases))

    def select(self, value: str | None) -> tuple[Step, ...]:
        wanted = (value or "").strip().casefold()
        for key, steps in self.cases.items():
            if key.casefold() == wanted:
                return steps
        return self.default


@dataclass(frozen=True, slots=True)
class ToolRef:
    """A tool the call session provides. `transfer` goes to the fallback's escalate_to (else operator)."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in BUILTIN_TOOLS:
            raise ValueError(f"unknown built-in tool: {self.name}")


@dataclass(frozen=True, slots=True)
class WebhookTool:
    """A tool the model may call; its JSON arguments go to url. parameters_json is a JSON Schema
    object kept as text so the dataclass stays immutable; `parameters` decodes a fresh copy."""

    name: str
    url: str
    description: str
    parameters_json: str = '{"type": "object", "properties": {}}'
    method: str = "POST"
    timeout: float = 5.0

    @property
    def parameters(self) -> dict[str, object]:
        value = json.loads(self.parameters_json)
        assert isinstance(value, dict)
        return value


Tool = ToolRef | WebhookTool


@dataclass(frozen=True, slots=True)
class Llm:
    """Free conversation with a language model until it calls end_conversation (when one of
    exit_when holds), uses another ending tool, or max_turns caller turns have passed."""

    instructions: str
    tools: tuple[Tool, ...] = ()
    exit_when: tuple[str, ...] = ()
    max_turns: int = 10

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be at least 1: {self.max_turns}")


@dataclass(frozen=True, slots=True)
class Transfer:
    """Transfer to `operator` (resolved from config) or a sip:/sips:/tel: URI; on_failure plays if it fails."""

    target: str
    on_failure: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


Step = Say | Play | Pause | Gather | Branch | Llm | Transfer | Hangup | Consent


@dataclass(frozen=True, slots=True)
class Webhook:
    """An HTTP endpoint; for context_webhook its JSON object reply fills the call's variables."""

    url: str
    timeout: float = 2.0
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class WebhookPolicy:
    """Rules for every webhook of a script. allow: networks (CIDR text) that may be reached
    although they are private, loopback or link-local; public addresses need no entry.
    secret_env: the environment variable holding the HMAC key that signs requests; only its
    name is kept, so the secret never sits in a repr, a log or a record."""

    allow: tuple[str, ...] = ()
    secret_env: str | None = None


@dataclass(frozen=True, slots=True)
class FallbackConfig:
    """When to give up on a question. escalate_to None: apologise and hang up instead of transferring.

    low_confidence: recogniser confidence below this asks again, as a no-match would.
    """

    max_no_input: int = 2
    max_no_match: int = 2
    max_failures: int = 3
    low_confidence: float = 0.5
    escalate_to: str | None = None

    def __post_init__(self) -> None:
        if min(self.max_no_input, self.max_no_match, self.max_failures) < 1:
            raise ValueError("fallback limits must be at least 1")
        if not 0.0 <= self.low_confidence <= 1.0:
            raise ValueError(f"low_confidence must be within 0..1: {self.low_confidence}")


@dataclass(frozen=True, slots=True)
class AgentScript:
    """One agent. disclosure None: none is played. clips: phrase text or clip key -> recording.
    end_of_turn_ms / barge_in_min_ms None: the gateway's defaults. variables: names the context
    webhook may fill, with the value used when it does not. webhooks: what its webhooks may reach
    and how their requests are signed."""

    name: str
    path: str
    disclosure: str | None = DEFAULT_DISCLOSURE
    voice: str | None = None
    language: str = "en"
    vocabulary: tuple[str, ...] = ()
    end_of_turn_ms: int | None = None
    barge_in_min_ms: int | None = None
    clips: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))
    fallback: FallbackConfig = FallbackConfig()
    context_webhook: Webhook | None = None
    steps: tuple[Step, ...] = ()
    variables: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    webhooks: WebhookPolicy = WebhookPolicy()

    def __post_init__(self) -> None:
        object.__setattr__(self, "clips", _frozen(self.clips))
        object.__setattr__(self, "variables", _frozen(self.variables))

    def clip_for(self, text: str) -> Path | None:
        """The recording that replaces synthesis of exactly this text (or clip key), if any."""
        return self.clips.get(text.strip())


# -- answers ----------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Dropped without a gap so "a.m." reads "am", "don't" "dont" and "1,000" "1000"; other marks split words.
_JOINERS = re.compile(r"(?<!\d)\.|\.(?!\d)|['’]|(?<=\d),(?=\d{3}\b)")
_SPLITTERS = re.compile(r"[^\w\s*#]|_")
_DIGIT_LETTER = re.compile(r"(?<=\d)(?=[^\W\d_])|(?<=[^\W\d_])(?=\d)")
_UNITS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_NUMBER_WORDS = {word: n for n, word in enumerate(_UNITS)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
# "unsure" exists so "not sure" is not read as "sure": the longer phrase wins.
_YES_NO = {
    "yes": ("yes", "yeah", "yep", "yup", "correct", "right", "sure", "exactly", "1"),
    "no": ("no", "nope", "nah", "wrong", "incorrect", "not right", "not correct", "2"),
    "unsure": ("not sure", "dont know", "no idea", "maybe"),
}


def normalize_answer(text: str) -> str:
    """Lowercase words separated by single spaces, number words as digits ("Two P.M." -> "2 pm")."""
    text = _JOINERS.sub("", text.casefold())
    text = _DIGIT_LETTER.sub(" ", _SPLITTERS.sub(" ", text))
    return " ".join(_numbers_as_digits(text.split()))


def _numbers_as_digits(words: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(words):
        end, value = _number(words, i)
        if value is None or (end == i + 1 and words[i].isdigit()):
            end = i + 1  # not a number, or digits already: keep as written ("007")
            out.append(words[i])
        else:
            out.append(str(value))
        i = end
    return out


# Small grammar for spoken numbers below a million: "two", "twenty five", "five hundred and
# ten", "10 thousand". Neighbouring units stay apart: "two three" is two numbers, as in PINs.
def _number(words: list[str], i: int) -> tuple[int, int | None]:
    return _scaled(words, i, "thousand", 1000, lambda w, k: _scaled(w, k, "hundred", 100, _below_100))


def _scaled(
    words: list[str],
    i: int,
    scale: str,
    factor: int,
    part: Callable[[list[str], int], tuple[int, int | None]],
) -> tuple[int, int | None]:
    end, value = part(words, i)
    if value is None or end >= len(words) or words[end] != scale:
        return end, value
    rest_at = end + 2 if end + 1 < len(words) and words[end + 1] == "and" else end + 1
    rest_end, rest = part(words, rest_at)
    if rest is None or rest >= factor:
        return end + 1, value * factor
    return rest_end, value * factor + rest


def _below_100(words: list[str], i: int) -> tuple[int, int | None]:
    if i >= len(words):
        return i, None
    word = words[i]
    if word.isascii() and word.isdigit() and len(word) <= 3:
        return i + 1, int(word)
    value = _NUMBER_WORDS.get(word)
    if value is None:
        return i, None
    unit = _NUMBER_WORDS.get(words[i + 1], 0) if i + 1 < len(words) else 0
    if value >= 20 and 1 <= unit <= 9:  # "twenty five" -> 25
        return i + 2, value + unit
    return i + 1, value


def match_expected(gather: Gather, transcript: str) -> str | None:
    """The canonical value whose synonym the caller said as a whole word or phrase, else None.

    Free-text gathers return the stripped transcript (None when empty). When several values are
    mentioned ("Tuesday or Wednesday") the answer is ambiguous and None asks again, except that
    a longer phrase wins over a value it contains ("tuesday morning" over "tuesday").
    """
    if gather.expect is None:
        return transcript.strip() or None
    return _best_match(gather.expect, transcript)


def confirm_answer(transcript: str) -> bool | None:
    """A yes/no reply to "I heard X, is that right?"; None when it is neither (or both)."""
    value = _best_match(_YES_NO, transcript)
    return None if value in (None, "unsure") else value == "yes"


def best_match(expect: Mapping[str, Iterable[str]], transcript: str) -> str | None:
    """The one canonical value whose synonym the transcript says (see match_expected)."""
    return _best_match(expect, transcript)


def _best_match(expect: Mapping[str, Iterable[str]], transcript: str) -> str | None:
    words = normalize_answer(transcript).split()
    spans: list[tuple[int, int, str]] = []  # (start, end, canonical)
    for canonical, synonyms in expect.items():
        for synonym in synonyms:
            phrase = normalize_answer(synonym).split()
            spans.extend((start, start + len(phrase), canonical) for start in _find(words, phrase))
    kept = {
        value
        for start, end, value in spans
        if not any(s <= start and end <= e and (e - s) > (end - start) for s, e, v in spans if v != value)
    }
    return kept.pop() if len(kept) == 1 else None


def _find(words: list[str], phrase: list[str]) -> Iterable[int]:
    if not phrase:
        return ()
    n = len(phrase)
    return (i for i in range(len(words) - n + 1) if words[i : i + n] == phrase)


def placeholders(text: str) -> tuple[str, ...]:
    """The variable names a text refers to as {name}, in order."""
    return tuple(_PLACEHOLDER.findall(text))


def fill(text: str, variables: Mapping[str, object]) -> str:
    """Replace {name} with the variable's value; unknown or None ones stay visible as {name}."""

    def value(match: re.Match[str]) -> str:
        found = variables.get(match.group(1))
        return match.group(0) if found is None else str(found)

    return _PLACEHOLDER.sub(value, text)


def script_texts(script: AgentScript) -> set[str]:
    """Every fixed text the script may speak, so prompts can be rendered before the first call.
    Texts with placeholders differ per call and are left out."""
    texts = step_texts(script.steps)
    if script.disclosure is not None:
        texts.add(script.disclosure)
    return {text for text in texts if not placeholders(text) and script.clip_for(text) is None}


def script_targets(script: AgentScript) -> tuple[str, ...]:
    """Every destination the script may transfer to (`operator` for the configured one)."""
    targets = list(step_targets(script.steps, script.fallback.escalate_to or "operator"))
    if script.fallback.escalate_to:
        targets.append(script.fallback.escalate_to)
    return tuple(dict.fromkeys(targets))


def _inner(step: Step) -> Iterable[tuple[Step, ...]]:
    """The step lists inside a step."""
    if isinstance(step, Transfer):
        yield step.on_failure
    elif isinstance(step, Branch):
        yield from (*step.cases.values(), step.default)
    elif isinstance(step, Gather):
        yield from (step.prompt_steps, *step.branches.values(), step.no_input, step.no_match, step.failed)


def step_texts(steps: Iterable[Step]) -> set[str]:
    """Every text the steps may say, on every path."""
    texts: set[str] = set()
    for step in steps:
        if isinstance(step, Say):
            texts.add(step.text)
        for inner in _inner(step):
            texts |= step_texts(inner)
    return texts


def step_targets(steps: Iterable[Step], escalate: str = "operator") -> tuple[str, ...]:
    """Every destination the steps may transfer to; a model's transfer tool goes to escalate."""
    targets: list[str] = []
    for step in steps:
        if isinstance(step, Transfer):
            targets.append(step.target)
        elif isinstance(step, Llm) and any(getattr(t, "name", "") == "transfer" for t in step.tools):
            # The model's transfer tool has no destination argument: it goes where this says.
            targets.append(escalate)
        for inner in _inner(step):
            targets += step_targets(inner, escalate)
    return tuple(dict.fromkeys(targets))
