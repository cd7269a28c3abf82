"""Simulated-caller scenarios for `gateway simulate`: the YAML format and its loader.

A scenario is one call to one number by a scripted or LLM persona, plus checks on what happened:

    name: booking-friday                   # default: the file name
    number: "+15550100"                    # the number to call
    goal: Book a check-up on Friday at 2 pm.   # shown in the report
    persona:
      instructions: A patient who answers briefly.   # shown in the report
      voice: joe                           # offline voice (default joe)
      speaking_rate: 1.0                   # 0.5-2.0, 1 = the voice's own pace
      noise_dbfs: -40                      # background noise under its speech (-70..-20 dBFS RMS)
      turns:                               # said in order, each once the agent has paused
        - "I would like to book an appointment."
        - {play: clips/name.wav}           # a recording instead (relative to this file)
      replies:                             # said instead of the next turn when the agent just
        - {when: "is that right", say: "Yes."}   #   asked this (fuzzy, like `asked:`)
      # llm: {base_url: "http://127.0.0.1:11434/v1", model: NAME}  # instead of turns, see below
    impatience_ms: 1500                    # talk over the agent this long after it starts
    max_turns: 8                           # never say more than this many turns
    turn_gap_ms: 2000                      # agent silence that counts as "your turn"
    hangup_after_s: 4                      # after the last turn, hang up once it is this quiet
    max_duration_s: 120                    # hang up whatever happens
    caller: "+15550199"                    # From user (default: a unique sim-... name)
    assert:
      - agent_said: friday                 # words in the transcribed agent speech (fuzzy)
      - asked: what time                   # ... in something it asked
      - transferred_to: operator           # REFER target (URI or part of it)
      - hung_up_within_turns: 6            # the agent ended the call by then
      - max_turn_ms: 12000                 # no reply to a turn started later than this
      - no_loop: true                      # no agent prompt three times in a row
      - tool_called: check_slot            # needs --records (the gateway's call records)

An LLM persona answers live instead of reading `turns:`. Each time the agent has spoken and
paused, what it said is transcribed offline (tiny.en) and sent to an OpenAI-compatible chat
completions endpoint (system prompt: the instructions and the goal; the agent speaks as "user");
the reply is rendered with the voice and said. The persona hangs up by ending a reply with
[HANGUP] (gateway/caller/persona.py), at max_turns (default 10 for an LLM) or at max_duration_s. The
API key is read from OPENAI_API_KEY; local servers such as Ollama need none. The caller stays
silent while it thinks, so that time falls before its turn and never counts towards the agent's
turn latency; the report lists each persona turn with what it heard and how long it took.

      llm:
        base_url: "http://127.0.0.1:11434/v1"   # Ollama, llama.cpp server, vLLM, api.openai.com/v1
        model: llama3.2:3b
        timeout_s: 30                        # per reply; a slower or failing server ends the scenario
        temperature: 0.7                     # optional (default: the server's)

A persona with `replies:` hears the agent live (offline recogniser) before each turn: when what
the agent just said contains a reply's `when`, that reply is said and the scripted turn waits
for the next pause; after the last turn, only replies are said, and anything else ends the call.
When a scenario says its turns as text, `gateway simulate --records FILE` reports the live word
error rate of the gateway's recogniser on them (per call and overall).

`voice`, `speaking_rate`, `noise_dbfs`, `turns`, `replies` and `llm` may also sit at the top level, and a persona may be
just its instructions text. Loading errors point at file:line. `evaluate()` judges the checks
on a finished call: words are compared after normalising (case, punctuation, number words).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (AfterValidator, Discriminator, Field, Tag, ValidationInfo, WithJsonSchema,
                      model_validator)

from gateway.caller.phone_call import CallReport, Turn
from gateway.config.schema import (Flag, Invalid, Lines, Number, OneKey, Strict, Text, Whole, between,
                                   load, matching)
from gateway.errors import ConfigError
from gateway.speech.prompts import VOICES

__all__ = [
    "CHECKS", "Check", "CheckResult", "LlmPersona", "Reply", "Scenario", "ScenarioFile", "evaluate", "heard_in",
    "load_scenario", "load_scenario_checked", "words",
]

_PERSONA_KEYS = ("voice", "speaking_rate", "noise_dbfs", "turns", "replies", "llm")  # also allowed at the top
CHECKS = ("agent_said", "asked", "transferred_to", "hung_up_within_turns", "max_turn_ms", "no_loop", "tool_called")
_MATCH = 0.8  # similarity (0-1) that counts as "said": tiny.en drops or bends a letter or two
_SAME = 0.9  # similarity of two agent turns that counts as the same prompt
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}
_NUMBER_WORDS.update(twenty="20", thirty="30", forty="40", fifty="50", hundred="100", thousand="1000")


@dataclass(frozen=True, slots=True)
class Check:
    """One `assert:` item, e.g. Check("agent_said", "friday", 31)."""

    kind: str
    value: str | int | bool
    line: int

    @property
    def label(self) -> str:
        shown = f'"{self.value}"' if isinstance(self.value, str) else str(self.value).lower()
        return f"{self.kind}: {shown}"


@dataclass(frozen=True, slots=True)
class LlmPersona:
    base_url: str
    model: str
    timeout_s: float = 30.0
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """Said when the agent has just said `when` (fuzzy), before the next scripted turn."""

    when: str
    say: str


@dataclass(frozen=True, slots=True)
class Scenario:
    path: Path
    name: str
    number: str
    goal: str = ""
    instructions: str = ""
    voice: str = "joe"
    speaking_rate: float = 1.0
    noise_dbfs: float | None = None  # white noise mixed into every turn the persona says
    turns: tuple[Turn, ...] = ()
    replies: tuple[Reply, ...] = ()
    llm: LlmPersona | None = None
    impatience_ms: int | None = None
    max_turns: int | None = None
    turn_gap_ms: int = 2000
    hangup_after_s: float = 4.0
    max_duration_s: float = 120.0
    caller: str | None = None
    checks: tuple[Check, ...] = ()

    @property
    def spoken_turns(self) -> tuple[Turn, ...]:
        """The scripted turns, cut to max_turns."""
        return self.turns if self.max_turns is None else self.turns[: self.max_turns]


def load_scenario(path: Path) -> Scenario:
    """Load one scenario; raises the first ConfigError (by line) if there is any."""
    scenario, errors = load_scenario_checked(path)
    if errors:
        raise errors[0]
    assert scenario is not None
    return scenario


def load_scenario_checked(path: Path) -> tuple[Scenario | None, list[ConfigError]]:
    """Load one scenario and every error in it, sorted by line; with errors, no scenario."""
    context: dict[str, Any] = {"base": path.parent}
    model, errors = load(path, ScenarioFile, context=context,
                         check=lambda value, lines: _across_keys(value, lines, str(path)))
    if model is None:
        return None, errors
    return model.scenario(path, context["lines"]), []


def _across_keys(data: Any, lines: Lines, where: str) -> list[ConfigError]:
    """A persona setting given twice (at the top and in persona), or no turns and no llm."""
    if not isinstance(data, dict):
        return []
    persona = data.get("persona") if isinstance(data.get("persona"), dict) else {}
    errors = [ConfigError(where, lines.key_lines[(key,)],
                          f"'{key}' is also set in persona (line {lines[('persona', key)]}); keep one")
              for key in _PERSONA_KEYS if key in data and key in persona]
    if not any(key in data or key in persona for key in ("turns", "llm")):
        line = lines[("persona",)] if "persona" in data else lines[()]
        errors.append(ConfigError(where, line, "the persona needs `turns:` (what to say, in order) or `llm:`"))
    return errors


# --- the file -------------------------------------------------------------------------


def _voice(text: str) -> str:
    if text not in VOICES:
        raise ValueError(f"unknown voice {text!r} (offline voices: {', '.join(sorted(VOICES))})")
    return text


def _url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
    return url


def _text_or(model: type) -> Any:
    """Text, or a mapping read as model (which is then the only one tried, for plain errors)."""
    return Annotated[Annotated[Text, Tag("text")] | Annotated[model, Tag("mapping")],
                     Discriminator(lambda v: "mapping" if isinstance(v, (dict, list)) else "text")]


_Number = matching(r"^\+?[0-9A-Za-z*#._-]+$", 'a number to dial, e.g. "+15550100"')  # a Request-URI user part
_Caller = matching(r"^\+?[0-9A-Za-z*#._-]+$", "a SIP user part, e.g. +15550199")
_Name = matching(r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$", "a name of letters, digits, spaces, '.', '_' and '-'")
_Voice = Annotated[Text, AfterValidator(_voice), WithJsonSchema({"type": "string", "enum": sorted(VOICES)})]
_Rate = between(Number, at_least=0.5, at_most=2.0)
_Noise = between(Number, at_least=-70.0, at_most=-20.0)


class TurnStep(OneKey):
    """A turn given as a step: `{say: TEXT}`, or `{play: FILE}` (a recording, relative to the file)."""

    shape: ClassVar[str] = "a step like {say: TEXT} or {hangup: true}"
    say: Text = Field(None)
    play: Text = Field(None)

    @model_validator(mode="after")
    def _recording(self, info: ValidationInfo) -> TurnStep:
        if self.play is not None and not (Path((info.context or {}).get("base", ".")) / self.play).resolve().is_file():
            raise Invalid(f"no such recording: {(Path(info.context['base']) / self.play).resolve()}", "play")
        return self

    def turn(self, base: Path) -> Turn:
        return Turn("say", self.say) if self.play is None else Turn("play", str((base / self.play).resolve()))


class LlmFile(Strict):
    """An LLM persona: an OpenAI-compatible chat completions server answers for the caller."""

    base_url: Annotated[Text, AfterValidator(_url)]
    model: Text
    timeout_s: between(Number, above=0, at_most=600) = 30.0
    temperature: between(Number, at_least=0, at_most=2) | None = None


class ReplyFile(Strict):
    """`{when: TEXT, say: TEXT}`: say this when the agent has just said that."""

    when: Text
    say: Text


class _Speaker(Strict):
    """How the simulated caller speaks: under `persona:`, or at the scenario's top level."""

    voice: _Voice | None = None
    speaking_rate: _Rate | None = None
    noise_dbfs: _Noise | None = None
    turns: list[_text_or(TurnStep)] | None = None
    replies: list[ReplyFile] | None = None
    llm: LlmFile | None = None


class PersonaFile(_Speaker):
    instructions: Text = ""


class CheckItem(OneKey):
    """One `assert:` item."""

    shape: ClassVar[str] = f"a check like {{agent_said: TEXT}} ({', '.join(CHECKS)})"
    agent_said: Text = Field(None)
    asked: Text = Field(None)
    transferred_to: Text = Field(None)
    hung_up_within_turns: between(Whole, at_least=0) = Field(None)
    max_turn_ms: between(Whole, at_least=1) = Field(None)
    no_loop: Flag = Field(None)
    tool_called: Text = Field(None)


class ScenarioFile(_Speaker):
    """A scenario file (scenarios/*.yaml). The persona's voice, rate, noise, turns and llm may
    also sit at the top level."""

    name: _Name | None = None
    number: _Number = Field(description="the number to call")
    goal: Text = ""
    persona: _text_or(PersonaFile) | None = None
    impatience_ms: between(Whole, at_least=0, at_most=60000) | None = None
    max_turns: between(Whole, at_least=1, at_most=100) | None = None
    turn_gap_ms: between(Whole, at_least=200, at_most=10000) = 2000
    hangup_after_s: between(Number, above=0, at_most=60) = 4.0
    max_duration_s: between(Number, at_least=5, at_most=3600) = 120.0
    caller: _Caller | None = None
    checks: list[CheckItem] = Field([], alias="assert")

    def scenario(self, path: Path, lines: Mapping[tuple[str | int, ...], int]) -> Scenario:
        persona = self.persona if isinstance(self.persona, PersonaFile) else PersonaFile()

        def either(key: str, default: Any) -> Any:
            value = getattr(self, key)
            value = getattr(persona, key) if value is None else value
            return default if value is None else value

        turns = [TurnStep(say=turn) if isinstance(turn, str) else turn for turn in either("turns", [])]
        checks = tuple(Check(c.key, c.value, lines.get(("assert", i, c.key), 0)) for i, c in enumerate(self.checks))
        llm = either("llm", None)
        return Scenario(
            path=path, name=self.name or path.stem, number=self.number, goal=self.goal,
            instructions=self.persona if isinstance(self.persona, str) else persona.instructions,
            voice=either("voice", "joe"), speaking_rate=either("speaking_rate", 1.0),
            noise_dbfs=either("noise_dbfs", None), turns=tuple(t.turn(path.parent) for t in turns),
            replies=tuple(Reply(r.when, r.say) for r in either("replies", [])),
            llm=None if llm is None else LlmPersona(llm.base_url, llm.model, timeout_s=llm.timeout_s,
                                                    temperature=llm.temperature),
            impatience_ms=self.impatience_ms, max_turns=self.max_turns, turn_gap_ms=self.turn_gap_ms,
            hangup_after_s=self.hangup_after_s, max_duration_s=self.max_duration_s, caller=self.caller,
            checks=checks,
        )


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: Check
    status: str  # "PASS" | "FAIL" | "NOT CHECKABLE"
    evidence: str


# --- the checks -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Said:
    """One stretch of agent speech, with the number of caller turns begun before it."""

    start: float
    text: str
    after_turns: int


def _words(text: str) -> list[str]:
    t = text.lower().replace("a.m.", "am").replace("p.m.", "pm").replace("'", "")
    t = re.sub(r"(\d)([a-z])", r"\1 \2", re.sub(r"(\d),(\d{3})", r"\1\2", t))
    return [_NUMBER_WORDS.get(w, w) for w in re.sub(r"[^a-z0-9]+", " ", t).split()]


def words(text: str) -> list[str]:
    """Lowercase words, number words as digits: how checks (and word error rates) compare text."""
    return _words(text)


def heard_in(needle: str, text: str) -> bool:
    """Whether text says needle, as fuzzily as `agent_said:` judges it."""
    return _closest(needle, [(0.0, text)])[0] >= _MATCH


def _closest(needle: str, texts: Sequence[tuple[float, str]]) -> tuple[float, float, str, str]:
    """Best (similarity, start, words, text) of needle's normalised words within any of texts."""
    want = " ".join(_words(needle))
    n = len(want.split())
    best = (0.0, 0.0, "", "")
    for start, text in texts:
        words = _words(text)
        for size in {max(1, n - 1), n, n + 1}:
            for i in range(max(1, len(words) - size + 1)):
                got = " ".join(words[i:i + size])
                score = SequenceMatcher(None, want, got).ratio() if len(want) > 4 else float(want == got)
                if score > best[0]:
                    best = (score, start, got, text)
    return best


def _excerpt(text: str, got: str, width: int = 90) -> str:
    """Up to `width` characters of text around where the matched words start."""
    if len(text) <= width:
        return text
    first = got.split()[0] if got else ""
    at = max(0, text.lower().find(first) - width // 3) if first and first in text.lower() else 0
    at = text.find(" ", at) + 1 if at else 0  # from the start of a word
    end = min(len(text), at + width)
    return ("..." if at else "") + text[at:end].strip() + ("..." if end < len(text) else "")


def _agent_turns(said: list[_Said]) -> list[_Said]:
    """Agent speech grouped by the caller turn it follows (turn 0: before the caller spoke)."""
    out: list[_Said] = []
    for s in said:
        if out and out[-1].after_turns == s.after_turns:
            out[-1] = _Said(out[-1].start, f"{out[-1].text} {s.text}", s.after_turns)
        else:
            out.append(s)
    return out


def _questions(said: list[_Said], caller_turns: int) -> list[tuple[float, str]]:
    """Sentences ending in '?', and what the agent said last before each caller turn."""
    out: list[tuple[float, str]] = []
    for turn in _agent_turns(said):
        sentences = [s for s in re.split(r"(?<=[.?!])\s+", turn.text.strip()) if s]
        out += [(turn.start, s) for s in sentences if s.endswith("?")]
        if sentences and not sentences[-1].endswith("?") and turn.after_turns < caller_turns:
            out.append((turn.start, sentences[-1]))
    return out


def evaluate(sc: Scenario, report: CallReport, *, records: Path | None = None,
             record: dict[str, Any] | None = None) -> list[CheckResult]:
    call = report.call
    turns = call.get("turns") or []
    starts = [t["sent_start_s"] for t in turns if t.get("sent_start_s") is not None]
    segs = (call.get("segments") or {}).get("far_end") or []
    said = [_Said(s, report.far_end_text[i] or "", sum(1 for c in starts if c < s))
            for i, (s, _e) in enumerate(segs) if i < len(report.far_end_text) and report.far_end_text[i]]
    disc = call.get("disconnect") or {}
    results: list[CheckResult] = []
    for check in sc.checks:
        if not report.answered:
            results.append(CheckResult(check, "FAIL", f"call not answered: {call.get('status')} {call.get('reason')}"))
            continue
        status, evidence = _judge(check, call, said, len(starts), disc, report.transcript_note, records, record)
        results.append(CheckResult(check, status, evidence))
    return results


def _judge(check: Check, call: dict[str, Any], said: list[_Said], played: int, disc: dict[str, Any],
           note: str | None, records: Path | None, record: dict[str, Any] | None) -> tuple[str, str]:
    kind, value = check.kind, check.value
    if kind in ("agent_said", "asked", "no_loop") and note:
        return "NOT CHECKABLE", note
    if kind in ("agent_said", "asked"):
        texts = [(s.start, s.text) for s in said] if kind == "agent_said" else _questions(said, played)
        score, at, got, where = _closest(str(value), texts)
        if score >= _MATCH:
            return "PASS", f'heard "{got}" at {at:.2f} s: "{_excerpt(where, got)}"'
        what = "heard" if kind == "agent_said" else "asked"
        closest = f'; closest: "{got}" ({score:.0%}) at {at:.2f} s: "{_excerpt(where, got)}"' if got else ""
        return "FAIL", f"not {what} in {len(texts)} transcribed stretch(es){closest}"
    if kind == "transferred_to":
        tr = call.get("transfer")
        if not tr:
            return "FAIL", "no transfer: the agent sent no REFER"
        new = tr.get("new_call") or {}
        leg = f"new call {new.get('status')} {new.get('reason') or ''}".strip() if new else "not followed"
        ok = str(value).lower() in str(tr.get("target", "")).lower()
        return ("PASS" if ok else "FAIL"), f"REFER to {tr.get('target')} ({leg})"
    if kind == "hung_up_within_turns":
        after = f"after {disc.get('after_s')} s and {played} caller turn(s)"
        if disc.get("by") != "remote":
            why = next((t for _, t in reversed(call.get("events") or []) if t.startswith("hangup (")), "hangup")
            return "FAIL", f"the agent did not hang up: we ended the call ({why}) {after}"
        return ("PASS" if played <= int(value) else "FAIL"), f"the agent hung up {after}"
    if kind == "max_turn_ms":
        slow = [f"turn {t['index']}: {t['latency_ms']} ms" for t in call.get("turns") or []
                if t.get("latency_ms") is not None and t["latency_ms"] > int(value)]
        silent = [f"turn {t['index']}: no reply" for t in call.get("turns") or []
                  if t.get("latency_ms") is None and disc.get("by") != "remote"]
        lat = [t["latency_ms"] for t in call.get("turns") or [] if t.get("latency_ms") is not None]
        if slow or silent:
            return "FAIL", ", ".join(slow + silent)
        return "PASS", f"slowest reply {max(lat):.0f} ms" if lat else "no turns answered"
    if kind == "no_loop":
        if not value:
            return "PASS", "not checked (no_loop: false)"
        agent = [(t.after_turns, " ".join(_words(t.text))) for t in _agent_turns(said)]
        for i in range(len(agent) - 2):
            first = agent[i][1]
            if first and all(SequenceMatcher(None, first, a[1]).ratio() >= _SAME for a in agent[i + 1:i + 3]):
                turns = f"after caller turns {agent[i][0]}-{agent[i + 2][0]}"
                return "FAIL", f'the agent said "{first}" three times in a row ({turns})'
        return "PASS", f"{len(agent)} agent turn(s), no prompt three times in a row"
    # tool_called
    if records is None:
        return "NOT CHECKABLE", "not checkable without --records FILE (the gateway's call records)"
    if record is None:
        return "NOT CHECKABLE", f"not checkable: no record of this call in {records}"
    tools = [str(t.get("name")) for t in record.get("transcript") or [] if t.get("who") == "tool"]
    ok = str(value) in tools
    return ("PASS" if ok else "FAIL"), f"tools called: {', '.join(tools) or 'none'} (call {record.get('call_id')})"
