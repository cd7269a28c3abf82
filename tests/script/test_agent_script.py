"""Agent scripts: the loader points at every mistake with file:line; answers match by meaning."""

from __future__ import annotations

import json
import textwrap
import wave
from pathlib import Path

import pytest

from gateway.script.model import (
    DEFAULT_DISCLOSURE,
    AgentScript,
    Branch,
    FallbackConfig,
    Gather,
    Hangup,
    Llm,
    Play,
    Say,
    ToolRef,
    Transfer,
    Webhook,
    WebhookTool,
    confirm_answer,
    fill,
    match_expected,
    normalize_answer,
    script_texts,
)
from gateway.script.loader import load_agent, load_agent_checked
from gateway.errors import ConfigError

AGENTS = Path(__file__).resolve().parents[2] / "dialplans" / "agents"


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def _write_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * 80)
    return path


def _errors(tmp_path: Path, text: str) -> list[tuple[int, str]]:
    path = _write(tmp_path / "agent.yaml", text)
    script, errors = load_agent_checked(path)
    assert all(e.path == str(path) for e in errors)
    assert (script is None) == bool(errors)  # a script with any error is not used
    return [(e.line, e.message) for e in errors]


# Four-line starts for the cases below.
GATHER = "steps:\n  - gather:\n      name: a\n      prompt: x\n"
TOOLS = "steps:\n  - llm:\n      instructions: x\n      tools:\n"

# (yaml, line, part of the message)
# fmt: off
CASES = [
    # the file itself
    ("steps: [1\n", 2, "invalid YAML"),
    ("", 1, "file is empty"),
    ("- say: hi\n", 1, "expected a mapping"),
    ("name: x\n", 1, "missing 'steps'"),
    ("steps: []\n", 1, "steps is empty"),
    ("steps: {say: hi}\n", 1, "expected a list, got a mapping"),
    # top level
    ("steps: [{say: hi}]\nvoise: joe\n", 2, "unknown key 'voise' (expected one of: name,"),
    ("steps: [{say: hi}]\nvoise: joe\n", 2, "did you mean 'voice'?"),
    ("steps: [{say: hi}]\nname: 'a b'\n", 2, "expected a name of letters, digits"),
    ("steps: [{say: hi}]\ndisclosure:\n", 2, "write 'disclosure: false'"),
    ("steps: [{say: hi}]\nlanguage: english!\n", 2, "expected a language tag"),
    ("steps: [{say: hi}]\nvocabulary: [a, [b]]\n", 2, "expected text, got a list"),
    ("steps: [{say: hi}]\nend_of_turn_ms: 50\n", 2, "at least 100 and at most 5000"),
    ("steps: [{say: hi}]\nbarge_in_min_ms: fast\n", 2, "expected a whole number, got 'fast'"),
    ("steps: [{say: hi}]\nfallback:\n  max_no_input: 0\n", 3, "at least 1"),
    ("steps: [{say: hi}]\nfallback:\n  low_confidence: 2\n", 3, "at most 1"),
    ("steps: [{say: hi}]\nfallback:\n  max_failure: 3\n", 3, "did you mean 'max_failures'?"),
    ("steps: [{say: hi}]\nfallback:\n  escalate_to: bob\n", 3, "unknown transfer target 'bob'"),
    ("steps: [{say: hi}]\ncontext_webhook: {url: 'ftp://x/y'}\n", 2, "expected an http:// or https:// URL"),
    ("steps: [{say: hi}]\ncontext_webhook:\n  url: 'http:///nohost'\n", 3, "expected an http:// or https:// URL"),
    ("steps: [{say: hi}]\ncontext_webhook:\n  timeout: 2\n", 3, "missing 'url'"),
    ("steps: [{say: hi}]\ncontext_webhook:\n  url: http://h/c\n  timeout: 0\n", 4, "more than 0"),
    ("steps: [{say: hi}]\ncontext_webhook:\n  url: http://h/c\n  method: FETCH\n", 4, "method must be one of"),
    ("steps: [{say: hi}]\nvariables:\n  caller: x\n", 3, "'caller' is built in"),
    ("steps: [{say: hi}]\nvariables:\n  first-name: x\n", 3, "variable names use letters"),
    # clips
    ("steps: [{say: hi}]\nclips:\n  hello: missing.wav\n", 3, "file not found"),
    ("steps: [{say: hi}]\nclips:\n  hello: {text: Hello}\n", 3, "missing 'file'"),
    ("steps: [{say: hi}]\nclips:\n  hello: {txt: Hello, file: a.wav}\n", 3, "did you mean 'text'?"),
    ("steps:\n  - play: nothing.wav\n", 2, "file not found"),
    # steps
    ("steps:\n  - say: ''\n", 2, "must not be empty"),
    ("steps:\n  - say:\n", 2, "expected text, got nothing"),
    ("steps:\n  - hangup\n", 2, "expected a step like {say: TEXT}"),
    ("steps:\n  - {}\n", 2, "empty step"),
    ("steps:\n  - sya: hi\n", 2, "did you mean 'say'?"),
    ("steps:\n  - say: hi\n    hangup: true\n", 3, "one step per list item"),
    ("steps:\n  - hangup: false\n", 2, "write 'hangup: true'"),
    ("steps:\n  - transfer: bob\n", 2, "unknown transfer target 'bob'"),
    ("steps:\n  - transfer:\n      on_failure: []\n", 3, "missing 'to'"),
    ("steps:\n  - transfer:\n      to: operator\n      on_failure:\n        - sya: x\n", 5, "did you mean 'say'?"),
    # gather
    ("steps:\n  - gather:\n      prompt: Name?\n", 3, "missing 'name'"),
    ("steps:\n  - gather:\n      name: who\n", 3, "missing 'prompt'"),
    ("steps:\n  - gather: {name: 1st, prompt: x}\n", 2, "gather names use letters"),
    ("steps:\n  - gather: {name: called, prompt: x}\n", 2, "'called' is built in"),
    ("steps:\n  - gather: {name: a, prompt: x}\n  - gather:\n      name: a\n      prompt: y\n", 4,
     "gather 'a' is already on line 2"),
    ("steps:\n  - gather: {name: a, prompt: x, input: voice}\n", 2, "input must be speech, dtmf or both"),
    ("steps:\n  - gather: {name: a, prompt: x, confirm: maybe}\n", 2, "expected true or false"),
    ("steps:\n  - gather: {name: a, prompt: x, timeout: 0}\n", 2, "more than 0"),
    ("steps:\n  - gather: {name: a, prompt: x, retries: 2}\n", 2, "unknown key 'retries'"),
    ("steps:\n  - gather: {name: a, prompt: x, expect: []}\n", 2, "needs at least one value"),
    (GATHER + "      expect:\n        - yes\n        - '?!'\n", 7, "has no words or digits"),
    (GATHER + "      expect:\n        tuesday: [tue]\n        thursday: [thu, tue]\n", 7,
     "'tue' already means 'tuesday' (line 6)"),
    (GATHER + "      expect:\n        '2': [deux]\n        pair: [two]\n", 7,
     "'two' already means '2' (line 6)"),  # number words are read as digits
    (GATHER + "      input: dtmf\n      expect:\n        billing: ['1']\n        sales: [sales]\n", 8,
     "needs a keypad synonym"),
    # variables
    ("steps:\n  - say: Hello {nmae}\n", 2, "'{nmae}': unknown variable"),
    ("steps:\n  - gather: {name: name, prompt: x}\n  - say: Hello {nmae}\n", 3, "did you mean 'name'?"),
    ("steps:\n  - say: Hello {name}\n  - gather: {name: name, prompt: x}\n", 2,
     "'{name}' comes before 'name' is gathered (line 3)"),
    ("steps:\n  - gather: {name: a, prompt: 'You said {a}?'}\n", 2, "comes before 'a' is gathered"),
    ("steps:\n  - gather: {name: a, prompt: x}\n  - branch:\n      variable: a\n      cases:\n"
     + "        x: [{gather: {name: b, prompt: y}}]\n  - say: '{b}'\n", 7,
     "'b' is only gathered on some paths to here (line 6)"),
    ("steps:\n  - say: hi\n  - branch:\n      variable: mood\n      cases: {good: []}\n", 4,
     "branch on 'mood': unknown variable"),
    ("steps:\n  - gather: {name: a, prompt: x, expect: [yes, no]}\n  - branch:\n      variable: a\n"
     + "      cases:\n        yes: []\n        maybe: []\n", 7, "case 'maybe' is never a value of 'a' (expects: yes, no)"),
    ("steps:\n  - branch:\n      variable: caller\n      cases: {}\n", 4, "needs at least one case"),
    ("steps:\n  - branch:\n      cases: {x: []}\n", 3, "missing 'variable'"),
    ("steps:\n  - llm:\n      tools: [hangup]\n", 3, "missing 'instructions'"),
    ("steps:\n  - llm:\n      instructions: Help {who}.\n", 3, "'{who}': unknown variable"),
    # llm
    (TOOLS + "        - hang_up\n", 5, "unknown tool 'hang_up' (built in: transfer, hangup, end_conversation,"),
    (TOOLS + "        - hang_up\n", 5, "did you mean 'hangup'?"),
    ("steps:\n  - llm:\n      instructions: x\n      tools: [hangup, transfer, hangup]\n", 4,
     "tool 'hangup' is already listed"),
    ("steps:\n  - llm:\n      instructions: x\n      max_turns: 0\n", 4, "at least 1"),
    (TOOLS + "        - {hook: {name: a}}\n", 5, "unknown key 'hook'"),
    (TOOLS + "        - webhook:\n            name: check\n            url: 'localhost:80/x'\n"
     + "            description: d\n", 7, "expected an http:// or https:// URL"),
    (TOOLS + "        - webhook:\n            name: check\n            url: http://h/x\n", 6,
     "missing 'description'"),
    (TOOLS + "        - webhook:\n            name: 'check slot'\n            url: http://h/x\n"
     + "            description: d\n", 6, "tool names use letters"),
    (TOOLS + "        - webhook:\n            name: hangup\n            url: http://h/x\n"
     + "            description: d\n", 6, "'hangup' is a built-in tool"),
    (TOOLS + "        - webhook:\n            name: a\n            url: http://h/x\n            description: d\n"
     + "            parameters: [x]\n", 9, "parameters must be a JSON Schema object"),
    (TOOLS + "        - webhook:\n            name: a\n            url: http://h/x\n            description: d\n"
     + "            parameters: {type: string}\n", 9, "must have type: object"),
]
# fmt: on


@pytest.mark.parametrize(("text", "line", "message"), CASES)
def test_error_points_at_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    errors = _errors(tmp_path, text)
    assert any(l == line and message in m for l, m in errors), errors


def test_many_errors_in_one_run_sorted_by_line(tmp_path: Path) -> None:
    errors = _errors(
        tmp_path,
        """
        name: ok
        language: 42x
        fallback: {max_no_input: 0, escalate_to: bob}
        steps:
          - say: Hi {who}
          - gather:
              name: day
              prompt: Which day?
              timeout: -1
          - gather: {name: day, prompt: again}
          - llm:
              instructions: x
              tools: [dial]
          - hangup: yes please
    """,
    )
    assert [line for line, _ in errors] == [2, 3, 3, 5, 9, 10, 13, 14]


def test_load_agent_raises_the_first_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.yaml", "steps:\n  - say: ''\n  - hangup: false\n")
    with pytest.raises(ConfigError) as caught:
        load_agent(path)
    assert str(caught.value) == f"{path}:2: must not be empty"


def test_full_script(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    greeting = _write_wav(tmp_path / "clips" / "greeting.wav")
    beep = _write_wav(tmp_path / "beep.wav")
    path = _write(
        tmp_path / "booking.yaml",
        """
        name: booking
        disclosure: "This call may be recorded."
        voice: joe
        language: en-GB
        vocabulary: [Tuesday, appointment, tuesday]
        end_of_turn_ms: 500
        barge_in_min_ms: 250
        clips:
          greeting: {text: "Thanks for calling.", file: clips/greeting.wav}
          beep: beep.wav
        fallback: {max_no_input: 3, max_no_match: 1, max_failures: 4, low_confidence: 0.4, escalate_to: "TEL:+15550100"}
        context_webhook: {url: "http://127.0.0.1:8080/context", timeout: 1.5, method: get}
        variables: {customer: there, plan: }
        steps:
          - say: "Thanks for calling."
          - play: greeting
          - play: beep.wav
          - gather:
              name: day
              prompt: "Which day, {customer}?"
              input: both
              expect: {Monday: [Mon], tuesday: tue, wednesday: }
              confirm: true
              timeout: 4
          - gather: {name: note, prompt: "Anything else?"}
          - branch:
              variable: day
              cases:
                monday: [{say: "Mondays are busy."}]
                tuesday: [{transfer: {to: "sip:tue@example.com", on_failure: [{say: Sorry}]}}]
              default: [{say: "See you on {day}."}]
          - llm:
              instructions: "You help {customer} with {plan}."
              tools:
                - transfer
                - webhook:
                    name: check_slot
                    url: https://example.com/slots
                    description: Is a slot free?
                    parameters: {properties: {day: {type: string, enum: [yes, no]}}, required: [day]}
                    timeout: 3
              exit_when: the caller is done
              max_turns: 4
          - hangup: true
    """,
    )
    script = load_agent(path)
    assert isinstance(script, AgentScript)
    assert (script.name, script.path, script.disclosure) == (
        "booking",
        str(path),
        "This call may be recorded.",
    )
    assert (script.voice, script.language, script.vocabulary) == ("joe", "en-GB", ("Tuesday", "appointment"))
    assert (script.end_of_turn_ms, script.barge_in_min_ms) == (500, 250)
    assert dict(script.clips) == {"greeting": greeting, "Thanks for calling.": greeting, "beep": beep}
    assert script.clip_for(" Thanks for calling. ") == greeting and script.clip_for("Bye") is None
    assert script.fallback == FallbackConfig(3, 1, 4, 0.4, "tel:+15550100")
    assert script.context_webhook == Webhook("http://127.0.0.1:8080/context", 1.5, "GET")
    assert dict(script.variables) == {"customer": "there", "plan": ""}
    say, play_clip, play_file, day, note, branch, llm, hangup = script.steps
    assert say == Say("Thanks for calling.")
    assert play_clip == Play(greeting, "greeting") and play_file == Play(beep)
    assert isinstance(day, Gather) and day.expect is not None
    assert (day.name, day.prompt, day.input, day.confirm, day.timeout) == (
        "day",
        "Which day, {customer}?",
        "both",
        True,
        4,
    )
    assert dict(day.expect) == {
        "Monday": ("monday", "mon"),
        "tuesday": ("tuesday", "tue"),
        "wednesday": ("wednesday",),
    }
    assert note == Gather("note", "Anything else?")
    assert isinstance(branch, Branch)
    assert branch.select("MONDAY") == (Say("Mondays are busy."),)
    assert branch.select("tuesday") == (Transfer("sip:tue@example.com", (Say("Sorry"),)),)
    assert branch.select(None) == branch.select("friday") == (Say("See you on {day}."),)
    assert isinstance(llm, Llm) and (llm.exit_when, llm.max_turns) == (("the caller is done",), 4)
    transfer, webhook, end = llm.tools
    assert transfer == ToolRef("transfer") and end == ToolRef("end_conversation")  # added for exit_when
    assert isinstance(webhook, WebhookTool)
    assert (webhook.name, webhook.url, webhook.method, webhook.timeout) == (
        "check_slot", "https://example.com/slots", "POST", 3,
    )  # fmt: skip
    assert webhook.parameters == {
        "type": "object",
        "properties": {"day": {"type": "string", "enum": ["yes", "no"]}},  # YAML 1.1 booleans stay text
        "required": ["day"],
    }
    assert hangup == Hangup()


def test_clip_errors(tmp_path: Path) -> None:
    _write_wav(tmp_path / "a.wav")
    _write_wav(tmp_path / "b.wav")
    (tmp_path / "notes.txt").write_text("not audio")
    errors = _errors(
        tmp_path,
        """
        clips:
          hello: {text: Hello there., file: a.wav}
          again: {text: Hello there., file: b.wav}
          same: {text: Hello there., file: a.wav}
          notes: notes.txt
        steps:
          - play: hello
          - play: notes   # reported once, at the clip
          - play: b.wav
    """,
    )
    assert errors == [
        (3, "'Hello there.' already names the clip on line 2"),
        (5, f"not a WAV file: {tmp_path / 'notes.txt'}"),
    ]


def test_a_gather_reports_all_its_mistakes(tmp_path: Path) -> None:
    text = "steps:\n  - gather:\n      name: a\n      input: keys\n      timeout: 0\n"
    assert [line for line, _ in _errors(tmp_path, text)] == [3, 4, 5]


def test_defaults_and_disclosure_switch(tmp_path: Path) -> None:
    plain = load_agent(_write(tmp_path / "plain.yaml", "steps: [{say: hi}]\n"))
    assert plain.name == "plain" and plain.disclosure == DEFAULT_DISCLOSURE and plain.language == "en"
    assert plain.fallback == FallbackConfig() and plain.fallback.escalate_to is None
    assert plain.context_webhook is None and plain.end_of_turn_ms is None
    off = load_agent(_write(tmp_path / "off.yaml", "disclosure: false\nsteps: [{say: hi}]\n"))
    assert off.disclosure is None
    short = load_agent(
        _write(tmp_path / "short.yaml", "context_webhook: https://crm/x\nsteps: [{say: hi}]\n")
    )
    assert short.context_webhook == Webhook("https://crm/x", 2.0, "POST")


def test_variables_follow_the_paths_of_a_branch(tmp_path: Path) -> None:
    text = """
        steps:
          - say: "Calling from {caller} to {called}."
          - gather: {name: kind, prompt: "Sales or support?", expect: [sales, support]}
          - branch:
              variable: kind
              cases:
                sales:
                  - gather: {name: company, prompt: "Which company?"}
                  - say: "Thanks, {company}."
              default:
                - gather: {name: company, prompt: "Which company?"}
          - say: "Bye, {company}."
    """
    assert _errors(tmp_path, text) == [
        (11, "gather 'company' is already on line 8"),
        (12, "'{company}': 'company' is only gathered on some paths to here (line 8)"),
    ]


# -- answers ----------------------------------------------------------------------

DAYS = Gather(
    "day",
    "Which day?",
    expect={
        "monday": ("monday", "mon"),
        "tuesday": ("tuesday", "tue"),
        "tuesday morning": ("tuesday morning",),
        "wednesday": ("wednesday",),
    },
)
TIMES = Gather(
    "time", "What time?", expect={"9 am": ("9 am", "nine"), "2 pm": ("two pm",), "2:30 pm": ("2:30",)}
)
KEYS = Gather(
    "menu", "Press 1 or 2.", input="dtmf", expect={"billing": ("billing", "1"), "sales": ("sales", "2")}
)

# fmt: off
MATCHES = [
    (DAYS, "uh, Tuesday please", "tuesday"),
    (DAYS, "TUESDAY!", "tuesday"),
    (DAYS, "tue", "tuesday"),
    (DAYS, "Tuesday morning if possible", "tuesday morning"),  # the longer phrase wins
    (DAYS, "Tuesday or Wednesday", None),                        # two answers: ask again
    (DAYS, "monday", "monday"),
    (DAYS, "Mon.", "monday"),
    (DAYS, "lemonade", None),                                    # "mon" only as a whole word
    (DAYS, "Thursday", None),
    (DAYS, "", None),
    (TIMES, "two pm", "2 pm"),
    (TIMES, "2 PM", "2 pm"),
    (TIMES, "2pm", "2 pm"),
    (TIMES, "at 2 p.m. please", "2 pm"),
    (TIMES, "nine a.m.", "9 am"),
    (TIMES, "9", "9 am"),
    (TIMES, "two thirty", "2:30 pm"),
    (TIMES, "ten", None),
    (KEYS, "1", "billing"),
    (KEYS, "one", "billing"),
    (KEYS, "2", "sales"),
    (KEYS, "12", None),
    (Gather("name", "Name?"), "  Alice Smith ", "Alice Smith"),      # free text
    (Gather("name", "Name?"), "   ", None),
]
# fmt: on


@pytest.mark.parametrize(("gather", "transcript", "expected"), MATCHES)
def test_match_expected(gather: Gather, transcript: str, expected: str | None) -> None:
    assert match_expected(gather, transcript) == expected


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("Two P.M.", "2 pm"),
        ("twenty-five", "25"),
        ("five hundred and ten people", "510 people"),
        ("under ten thousand", "under 10000"),
        ("1,000 dollars", "1000 dollars"),
        ("two three four", "2 3 4"),  # digits said one by one stay apart
        ("I don't know", "i dont know"),
        ("007", "007"),
        ("one and two", "1 and 2"),
    ],
)
def test_normalize_answer(text: str, normal: str) -> None:
    assert normalize_answer(text) == normal


@pytest.mark.parametrize(
    ("transcript", "answer"),
    [("Yes", True), ("yeah that's right", True), ("no", False), ("nope, wrong", False), ("not right", False),
     ("I'm not sure", None), ("no idea", None), ("yes no", None), ("banana", None)],
)  # fmt: skip
def test_confirm_answer(transcript: str, answer: bool | None) -> None:
    assert confirm_answer(transcript) is answer


@pytest.mark.parametrize(
    ("text", "variables", "filled"),
    [
        ("Great, {caller_name}, see you {day}.", {"caller_name": "Ana", "day": "monday"}, "Great, Ana, see you monday."),
        ("Hi {name}", {}, "Hi {name}"),                       # missing: left visible
        ("Hi {name}", {"name": None}, "Hi {name}"),
        ("Slot {n} of {n}", {"n": 2}, "Slot 2 of 2"),
        ("Literal {not a var} and {}", {"not": "x"}, "Literal {not a var} and {}"),
        ("{a}{b}", {"a": "{b}", "b": "x"}, "{b}x"),           # values are not filled again
    ],
)  # fmt: skip
def test_fill(text: str, variables: dict[str, object], filled: str) -> None:
    assert fill(text, variables) == filled


def test_model_rejects_impossible_values() -> None:
    with pytest.raises(ValueError):
        ToolRef("dial")
    with pytest.raises(ValueError):
        FallbackConfig(low_confidence=1.5)
    with pytest.raises(ValueError):
        Llm("x", max_turns=0)
    expect = {"a": ("a",)}
    gather = Gather("x", "y", expect=expect)
    expect["b"] = ("b",)
    assert gather.expect is not None and set(gather.expect) == {"a"}  # a copy, frozen


# -- shipped examples ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["booking", "support", "leads"])
def test_examples_load_without_errors(name: str) -> None:
    script, errors = load_agent_checked(AGENTS / f"{name}.yaml")
    assert errors == [] and script is not None and script.name == name
    assert script.disclosure and script.steps
    assert all("{" not in text for text in script_texts(script))


def test_booking_example_walkthrough() -> None:
    script = load_agent(AGENTS / "booking.yaml")
    gathers = {step.name: step for step in script.steps if isinstance(step, Gather)}
    assert match_expected(gathers["intent"], "can I talk to a person") == "person"
    assert match_expected(gathers["day"], "uh, Tuesday please") == "tuesday"
    assert match_expected(gathers["time"], "two pm") == "2 pm"
    # A typed name: read back only when the recogniser is unsure, not on every call.
    assert gathers["caller_name"].slot.type == "name" and gathers["caller_name"].confirm_mode == "auto"
    assert gathers["caller_name"].expect is None
    branch = next(step for step in script.steps if isinstance(step, Branch))
    assert isinstance(branch.select("person")[-1], Transfer)
    said = [step.text for step in script.steps if isinstance(step, Say)]
    variables = {"caller_name": "Ana", "day": "tuesday", "time": "2 pm"}
    assert "Great, Ana. You're booked for tuesday at 2 pm." in " ".join(
        fill(text, variables) for text in said
    )


def test_support_example_sends_technical_calls_to_the_operator() -> None:
    script = load_agent(AGENTS / "support.yaml")
    topic = next(step for step in script.steps if isinstance(step, Gather))
    assert match_expected(topic, "my internet is not working") == "technical"
    assert match_expected(topic, "2") == "technical"
    assert match_expected(topic, "a question about my invoice") == "billing"
    branch = next(step for step in script.steps if isinstance(step, Branch))
    assert any(
        isinstance(step, Transfer) and step.target == "operator" for step in branch.select("technical")
    )
    assert script.context_webhook is not None and "customer" in script.variables


def test_leads_example_works_without_an_llm() -> None:
    script = load_agent(AGENTS / "leads.yaml")
    gathers = {step.name: step for step in script.steps if isinstance(step, Gather)}
    assert set(gathers) >= {"company_size", "budget", "timeline"}
    assert match_expected(gathers["company_size"], "a few hundred people") == "medium"
    assert match_expected(gathers["budget"], "up to ten thousand I guess") == "mid"
    assert match_expected(gathers["timeline"], "in three months") == "quarter"
    # Everything the caller hears in order without the llm step still ends the call politely.
    rest = [step for step in script.steps if not isinstance(step, Llm)]
    assert isinstance(rest[-1], Hangup) and isinstance(rest[-2], Say)
    json.dumps([t.name for s in script.steps if isinstance(s, Llm) for t in s.tools])  # plain names
