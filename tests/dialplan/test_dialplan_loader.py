"""The loader turns dialplans/*.yaml into plans and points at every mistake with file:line."""

from __future__ import annotations

import textwrap
import wave
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.config import schema
from gateway.dialplan import (
    AgentAction,
    FlowAction,
    Gather,
    Hangup,
    Pause,
    Play,
    RejectAction,
    Say,
    Transfer,
    TransferAction,
    When,
    flow_texts,
    load_dialplans,
)

SHIPPED = Path(__file__).resolve().parents[2] / "dialplans"
NOON = datetime(2024, 7, 1, 16, tzinfo=UTC)


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def _errors(tmp_path: Path, text: str, name: str = "+15550100.yaml") -> list[tuple[int, str]]:
    _write(tmp_path, name, text)
    plans, errors = load_dialplans(tmp_path)
    assert all(e.path == str(tmp_path / name) for e in errors)
    if errors:
        assert not plans.plans and plans.default is None  # a broken file gives no plan
    return [(e.line, e.message) for e in errors]


# (yaml, line, part of the message); numbers: is on line 1 unless the case is about it.
# fmt: off
CASES = [
    # the file itself
    ("numbers: [1\n", 2, "invalid YAML"),
    ("numbers: ['1']\n  flow: x\n", 2, "invalid YAML"),
    ("", 1, "file is empty"),
    ("# only a comment\n", 1, "file is empty"),
    ("- flow\n", 1, "expected a mapping"),
    # top level
    ("numbers: ['1']\nflow: [{say: hi}]\nsya: x\n", 3, "unknown key 'sya' (expected one of: numbers,"),
    ("numbers: ['1']\nflow: [{say: hi}]\nflow: [{say: hi}]\n", 3, "duplicate key 'flow' (first on line 2)"),
    ("flow: [{say: hi}]\n", 1, "missing 'numbers'"),
    ("numbers: []\nflow: [{say: hi}]\n", 1, "needs at least one number"),
    ("numbers: ['1', '+1']\nflow: [{say: hi}]\n", 1, "number 1 is listed twice"),
    ("numbers:\n  - '1'\n  - '()'\nflow: [{say: hi}]\n", 3, "not a number"),
    ("numbers: ['1']\ntimezone: Mars/Olympus\nflow: [{say: hi}]\n", 2, "unknown timezone 'Mars/Olympus'"),
    ("numbers: ['1']\ntimezone: America\nflow: [{say: hi}]\n", 2, "unknown timezone"),
    ("numbers: ['1']\nring: -1\nflow: [{say: hi}]\n", 2, "must be at least 0 and at most 300"),
    ("numbers: ['1']\nring: soon\nflow: [{say: hi}]\n", 2, "expected a number, got 'soon'"),
    # actions
    ("numbers: ['1']\n", 1, "needs one of: flow, transfer, reject"),
    ("numbers: ['1']\nflow: [{say: hi}]\nreject: 404\n", 3, "only one of flow, transfer, reject"),
    ("numbers: ['1']\nflow: []\n", 2, "flow is empty"),
    ("numbers: ['1']\nflow: {say: hi}\n", 2, "expected a list, got a mapping"),
    ("numbers: ['1']\nreject: 700\n", 2, "must be at least 400 and at most 699"),
    ("numbers: ['1']\nreject: busy\n", 2, "expected a whole number"),
    ("numbers: ['1']\nreject:\n  reason: Busy\n", 3, "missing 'code'"),
    ("numbers: ['1']\nreject: {code: 486, reson: x}\n", 2, "unknown key 'reson'"),
    ("numbers: ['1']\ntransfer: bob\n", 2, "unknown transfer target 'bob'"),
    ("numbers: ['1']\ntransfer: http://example.com\n", 2, "unknown transfer target"),
    ("numbers: ['1']\ntransfer:\n  on_failure: []\n", 3, "missing 'to'"),
    ("numbers: ['1']\ntransfer:\n  to: operator\n  on_failure:\n    - sya: x\n", 5, "did you mean 'say'?"),
    # steps
    ("numbers: ['1']\nflow:\n  - say: ''\n", 3, "must not be empty"),
    ("numbers: ['1']\nflow:\n  - say:\n", 3, "expected text, got nothing"),
    ("numbers: ['1']\nflow:\n  - say: [a]\n", 3, "expected text, got a list"),
    ("numbers: ['1']\nflow:\n  - hangup\n", 3, "expected a step like {say: TEXT}"),
    ("numbers: ['1']\nflow:\n  - {}\n", 3, "empty step"),
    ("numbers: ['1']\nflow:\n  - say: hi\n    hangup: true\n", 4, "one step per list item"),
    ("numbers: ['1']\nflow:\n  - hangup: false\n", 3, "write 'hangup: true'"),
    ("numbers: ['1']\nflow:\n  - pause: 0\n", 3, "must be more than 0"),
    ("numbers: ['1']\nflow:\n  - pause: 1\n  - play: missing.wav\n", 4, "file not found"),
    ("numbers: ['1']\nflow:\n  - transfer: {to: 'sip:'}\n", 3, "unknown transfer target"),
    # gather
    ("numbers: ['1']\nflow:\n  - gather:\n      prompt: hi\n", 4, "missing 'branches'"),
    ("numbers: ['1']\nflow:\n  - gather:\n      branches: {}\n", 4, "needs at least one branch"),
    ("numbers: ['1']\nflow:\n  - gather:\n      branches:\n        a: []\n", 5, "not keypad digits"),
    ("numbers: ['1']\nflow:\n  - gather:\n      branches:\n        12: []\n", 5, "longer than digits (1)"),
    (
        "numbers: ['1']\nflow:\n  - gather:\n      digits: 2\n      branches:\n        '1#': []\n",
        6,
        "contains the terminator '#'",
    ),
    ("numbers: ['1']\nflow:\n  - gather:\n      branches:\n        1: []\n        '1': []\n", 6, "duplicate key '1'"),
    ("numbers: ['1']\nflow:\n  - gather:\n      terminator: #\n      branches: {1: []}\n", 4, "in quotes"),
    ("numbers: ['1']\nflow:\n  - gather:\n      terminator: 'x'\n      branches: {1: []}\n", 4, "terminator must"),
    ("numbers: ['1']\nflow:\n  - gather:\n      digits: 0\n      branches: {1: []}\n", 4, "at least 1"),
    ("numbers: ['1']\nflow:\n  - gather:\n      attempts: 2.5\n      branches: {1: []}\n", 4, "whole number"),
    ("numbers: ['1']\nflow:\n  - gather:\n      timeout: 0\n      branches: {1: []}\n", 4, "more than 0"),
    ("numbers: ['1']\nflow:\n  - gather:\n      branches: {1: []}\n      tries: 2\n", 5, "unknown key 'tries'"),
    ("numbers: ['1']\nflow:\n  - gather:\n      branches:\n        1:\n          - say: ''\n", 6, "must not be empty"),
    # rules
    ("numbers: ['1']\nreject: 404\nrules:\n  - reject: 480\n", 4, "missing 'when'"),
    ("numbers: ['1']\nreject: 404\nrules:\n  - when: {}\n    reject: 480\n", 4, "needs callers, days or hours"),
    ("numbers: ['1']\nreject: 404\nrules:\n  - when: {days: [sat]}\n", 4, "needs one of: flow"),
    ("numbers: ['1']\nreject: 404\nrules:\n  - when: {days: [saturday, funday]}\n    reject: 480\n", 4, "unknown day 'funday'"),
    ("numbers: ['1']\nreject: 404\nrules:\n  - when: {days: [0]}\n    reject: 480\n", 4, "unknown day '0'"),
    ("numbers: ['1']\nreject: 404\nrules:\n  - when: {days: []}\n    reject: 480\n", 4, "empty list"),
    ("numbers: ['1']\nreject: 404\nrules:\n  - when:\n      hours: [9-17]\n    reject: 480\n", 5, "expected hours like"),
    ("numbers: ['1']\nreject: 404\nrules:\n  - when: {hours: ['09:00-25:00']}\n    reject: 480\n", 4, "not a time of day"),
    ("numbers: ['1']\nreject: 404\nrules:\n  - when: {hours: ['9:00-9:00']}\n    reject: 480\n", 4, "starts where it ends"),
    ("numbers: ['1']\nreject: 404\nrules:\n  - when: {callers: ['+1*5*']}\n    reject: 480\n", 4, "expected a number, a prefix"),
    ("numbers: ['1']\nreject: 404\nrules:\n  - when: {day: [sat]}\n    reject: 480\n", 4, "did you mean 'days'?"),
    ("numbers: ['1']\nreject: 404\nrules:\n  - when: {days: [sat]}\n    reject: 200\n", 5, "at least 400"),
    ("numbers: ['1']\nreject: 404\nrules: {when: {days: sat}}\n", 3, "expected a list"),
]
# fmt: on


@pytest.mark.parametrize(("text", "line", "message"), CASES)
def test_error_points_at_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    errors = _errors(tmp_path, text)
    assert any(l == line and message in m for l, m in errors), errors


def test_default_must_not_list_numbers(tmp_path: Path) -> None:
    errors = _errors(tmp_path, "reject: 404\nnumbers: ['1']\n", name="default.yaml")
    assert errors == [(2, errors[0][1])] and "default.yaml takes every number" in errors[0][1]


def test_many_errors_in_one_run(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "a.yaml",
        """
        numbers: ['1']
        timezone: Nowhere/Land
        ring: x
        rules:
          - when: {days: [sat], hours: ['25:00-26:00']}
            reject: 1
        flow:
          - say: ''
          - pause: -1
          - gather:
              digits: 0
              branches: {x: []}
    """,
    )
    _write(tmp_path, "b.yaml", "numbers: ['2']\nreject: 99\n")
    _write(tmp_path, "c.yaml", "numbers: ['3']\nreject: 486\n")
    plans, errors = load_dialplans(tmp_path)
    found = sorted((Path(e.path).name, e.line) for e in errors)
    assert found == [
        ("a.yaml", 2), ("a.yaml", 3), ("a.yaml", 5), ("a.yaml", 6), ("a.yaml", 8), ("a.yaml", 9),
        ("a.yaml", 11), ("a.yaml", 12), ("b.yaml", 2),
    ]  # fmt: skip
    assert set(plans.plans) == {"3"}  # the good file still loads


def test_duplicate_number_across_files_names_both(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", "numbers: ['+15550100']\nreject: 486\n")
    _write(tmp_path, "b.yaml", "numbers:\n  - '2'\n  - '1 555 0100'\nreject: 480\n")
    plans, errors = load_dialplans(tmp_path)
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'b.yaml'}:3: number 15550100 is already in {tmp_path / 'a.yaml'}:1"
    ]
    assert set(plans.plans) == {"15550100"} and plans.plans["15550100"].name == "a"


def test_full_plan(tmp_path: Path) -> None:
    _write_wav(tmp_path / "hello.wav", width=2)
    _write(
        tmp_path,
        "+15550100.yaml",
        """
        numbers: ["+1 555 0100", 15550101]
        timezone: Europe/Berlin
        ring: 1.5
        rules:
          - when: {days: "fri-mon", hours: ["22:00-06:00", "12:00-13:00"], callers: ["+49*", Anonymous]}
            transfer: {to: "SIP:night@example.com", on_failure: [{say: Sorry}]}
          - when: {days: "sat,sun"}
            reject: 480
        flow:
          - play: hello.wav
          - pause: 0.5
          - gather:
              prompt: {say: Pick}
              digits: 2
              terminator: ""
              timeout: 4
              inter_digit_timeout: 2
              attempts: 1
              branches:
                1: [{say: yes}]
                "*9": [{transfer: "tel:+1-555-0199"}]
              failed: [{hangup: true}]
    """,
    )
    plans, errors = load_dialplans(tmp_path)
    assert errors == []
    plan = plans.plans["15550100"]
    assert plans.plans["15550101"] is plan and plans.default is None
    assert (plan.name, plan.timezone, plan.ring_seconds) == ("+15550100", "Europe/Berlin", 1.5)
    night, weekend = plan.rules
    assert night.when == When(("49*", "anonymous"), frozenset({4, 5, 6, 0}), ((1320, 360), (720, 780)))
    assert night.action == TransferAction("sip:night@example.com", (Say("Sorry"),))
    assert (night.line, weekend.line) == (5, 7)
    assert weekend.action == RejectAction(480, "Temporarily Unavailable")
    assert plan.action == FlowAction((
        Play((tmp_path / "hello.wav").resolve()),
        Pause(0.5),
        Gather(
            prompt=(Say("Pick"),), max_digits=2, terminator="", timeout=4.0, inter_digit_timeout=2.0,
            attempts=1, branches={"1": (Say("yes"),), "*9": (Transfer("tel:+1-555-0199"),)},
            failed=(Hangup(),),
        ),
    ))  # fmt: skip


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"RIFF nonsense"), "not a PCM WAV file"),
        (lambda p: _write_wav(p, width=3), "24-bit"),
    ],
)
def test_bad_wav(tmp_path: Path, make: object, message: str) -> None:
    make(tmp_path / "x.wav")  # type: ignore[operator]
    errors = _errors(tmp_path, "numbers: ['1']\nflow:\n  - play: x.wav\n")
    assert len(errors) == 1 and errors[0][0] == 3 and message in errors[0][1]


def test_shipped_dialplans_load_cleanly() -> None:
    plans, errors = load_dialplans(SHIPPED)
    assert errors == []
    agent = plans.route("+1 555 0100", "+15551234", NOON)
    assert agent.dialplan == "+15550100" and isinstance(agent.action, AgentAction)
    demo = plans.route("+1 555 0101", "+15551234", NOON)
    assert demo.dialplan == "+15550101" and isinstance(demo.action, FlowAction)
    assert demo.action.steps[0] == Say("Thanks for calling the demo line.")
    gather = demo.action.steps[1]
    assert isinstance(gather, Gather) and set(gather.branches) == {"0", "1", "2"}
    operator = plans.route("15550142", "+15551234", NOON).action
    assert isinstance(operator, TransferAction) and operator.target == "operator"
    assert plans.route("+15559999", "+15551234", NOON).action == RejectAction(404, "Not Found")
    texts = flow_texts(plans)
    assert "Thanks for calling the demo line." in texts and "Goodbye." in texts
    assert all(text.strip() for text in texts)


def test_flow_texts_walks_every_branch(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "default.yaml",
        """
        rules:
          - when: {callers: [anonymous]}
            transfer: {to: operator, on_failure: [{say: A}]}
        flow:
          - gather:
              prompt: B
              branches: {1: [{transfer: {to: operator, on_failure: [{say: C}]}}]}
              no_input: [{say: D}]
              no_match: [{say: E}]
              failed: [{say: F}]
    """,
    )
    plans, errors = load_dialplans(tmp_path)
    assert errors == [] and flow_texts(plans) == set("ABCDEF")


def test_missing_directory(tmp_path: Path) -> None:
    plans, errors = load_dialplans(tmp_path / "nope")
    assert len(errors) == 1 and "not found" in errors[0].message and plans.default is None


def test_editor_files_are_ignored(tmp_path: Path) -> None:
    _write(tmp_path, ".default.yaml.swp", "{{{")
    _write(tmp_path, ".#default.yaml", "{{{")
    _write(tmp_path, "notes.txt", "{{{")
    _write(tmp_path, "default.yml", "reject: 603\n")
    plans, errors = load_dialplans(tmp_path)
    assert errors == [] and plans.default is not None
    assert plans.default.action == RejectAction(603, "Decline")


def test_yaml_reads_strings_as_written(tmp_path: Path) -> None:
    value, _lines = schema.located("a: yes\nb: 0155\nc: 9:30\nd: +1555\ne: true\n", "x.yaml")
    assert [value[k] for k in "abcd"] == ["yes", "0155", "9:30", "+1555"]
    assert value["e"] is True  # only true/false are flags


class _Count(schema.Strict):
    n: schema.Whole


def test_yaml_errors(tmp_path: Path) -> None:
    _model, errors = schema.load(tmp_path / "absent.yaml", _Count)
    assert errors[0].line == 0 and "cannot read" in errors[0].message
    (tmp_path / "bad.yaml").write_bytes(b"a: 1\nb: \xff\n")
    _model, errors = schema.load(tmp_path / "bad.yaml", _Count)
    assert str(errors[0]).endswith("bad.yaml:2: not valid UTF-8 text")
    assert str(schema.load_text("a: 1\nb: 2\n c: 3\n", "x", _Count)[1][0]).startswith("x:3: invalid YAML")
    assert str(schema.load_text("a: !secret x\n", "x", _Count)[1][0]) == "x:1: cannot read value tagged !secret"
    assert [str(e) for e in schema.load_text("n: 1.5\n", "x", _Count)[1]] == [
        "x:1: expected a whole number, got '1.5'"]


def _write_wav(path: Path, width: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(width)
        wav.setframerate(8000)
        wav.writeframes(b"\0" * width * 80)
