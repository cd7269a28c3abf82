"""TurnDetector: timelines of caller VAD frames, agent audio and ASR results on an injected clock.

Times in a timeline are integer milliseconds (no float drift in the schedule). A VAD frame is
delivered when it ends: the frame ending at t covers [t - 20, t) and is voiced when that start
falls inside a speech interval.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from gateway.conversation.turns import (
    ConfirmBargeIn,
    PausePlayout,
    ResumePlayout,
    TurnAction,
    TurnConfig,
    TurnDetector,
    TurnEnded,
    TurnStarted,
    TurnState,
)

DEFAULTS = TurnConfig()
Event = Callable[[TurnDetector, float], list[TurnAction]]


@dataclass(frozen=True, slots=True)
class Case:
    speech: tuple[tuple[int, int], ...]
    expected: tuple[tuple[object, ...], ...]
    agent: tuple[int, int] | None = None
    interruptible: bool = True
    # (ms, text, is_final, speech_final)
    transcripts: tuple[tuple[int, str, bool, bool], ...] = ()
    config: TurnConfig = DEFAULTS
    until: int = 7000


def _fmt(action: TurnAction) -> tuple[object, ...]:
    values = (round(v, 3) for v in dataclasses.astuple(action))
    return (type(action).__name__, *values)


def _fmts(actions: list[TurnAction]) -> list[tuple[object, ...]]:
    return [_fmt(a) for a in actions]


def _fire_timers(det: TurnDetector, t: float, out: list[TurnAction]) -> None:
    # What the asyncio shell does: timers due strictly before the next input fire first.
    while (deadline := det.next_deadline()) is not None and deadline < t - 1e-9:
        out += det.on_timer(deadline)


def _transcript(text: str, is_final: bool, speech_final: bool) -> Event:
    return lambda det, t: det.on_transcript(text, is_final, speech_final, t)


def run(case: Case) -> list[tuple[object, ...]]:
    det = TurnDetector(case.config)
    det.set_interruptible(case.interruptible)
    events: list[tuple[int, Event]] = []
    if case.agent is not None:
        start, stop = case.agent
        events.append((start, lambda d, t: d.agent_speaking(True, t)))
        events.append((stop, lambda d, t: d.agent_speaking(False, t)))
    for ms, text, final, speech_final in case.transcripts:
        events.append((ms, _transcript(text, final, speech_final)))
    events.sort(key=lambda e: e[0])

    out: list[TurnAction] = []
    frame = case.config.frame_ms
    for end in range(frame, case.until + 1, frame):
        while events and events[0][0] <= end:
            ms, event = events.pop(0)
            _fire_timers(det, ms / 1000, out)
            out += event(det, ms / 1000)
        _fire_timers(det, end / 1000, out)
        voiced = any(s <= end - frame < e for s, e in case.speech)
        out += det.on_vad(voiced, end / 1000)
    _fire_timers(det, math.inf, out)
    return _fmts(out)


AGENT = (3000, 6000)

CASES = {
    "speech 1.00-2.10 then silence: turn ends at 2.60": Case(
        speech=((1000, 2100),),
        expected=(("TurnStarted", 1.06, 1.0), ("TurnEnded", 2.6, 1.0, 2.1)),
    ),
    "end silence is configurable (800 ms)": Case(
        speech=((1000, 2100),),
        config=TurnConfig(end_silence_ms=800),
        expected=(("TurnStarted", 1.06, 1.0), ("TurnEnded", 2.9, 1.0, 2.1)),
    ),
    "a pause shorter than the end silence keeps one turn": Case(
        speech=((1000, 2000), (2300, 3000)),
        expected=(("TurnStarted", 1.06, 1.0), ("TurnEnded", 3.5, 1.0, 3.0)),
    ),
    "jitter: lone unvoiced frames inside speech do not end it": Case(
        speech=((1000, 1400), (1420, 1800), (1820, 2100)),
        expected=(("TurnStarted", 1.06, 1.0), ("TurnEnded", 2.6, 1.0, 2.1)),
    ),
    "jitter: lone voiced frames in silence start nothing": Case(
        speech=((500, 520), (1500, 1540), (3000, 3020), (4000, 4040)),
        expected=(),
    ),
    "jitter: a voiced blip in trailing silence does not stretch the turn": Case(
        speech=((1000, 2100), (2300, 2320)),
        expected=(("TurnStarted", 1.06, 1.0), ("TurnEnded", 2.6, 1.0, 2.1)),
    ),
    "speech_final from ASR ends the turn early": Case(
        speech=((1000, 2100),),
        transcripts=((2300, "I need help", True, True),),
        expected=(("TurnStarted", 1.06, 1.0), ("TurnEnded", 2.3, 1.0, 2.1)),
    ),
    "speech_final while the VAD still hears speech is ignored": Case(
        speech=((1000, 2100),),
        transcripts=((2000, "I need", True, True),),
        expected=(("TurnStarted", 1.06, 1.0), ("TurnEnded", 2.6, 1.0, 2.1)),
    ),
    "a final without speech_final does not end the turn": Case(
        speech=((1000, 2100),),
        transcripts=((2300, "I need help", True, False),),
        expected=(("TurnStarted", 1.06, 1.0), ("TurnEnded", 2.6, 1.0, 2.1)),
    ),
    "cough during agent audio: pause, then resume": Case(
        speech=((4000, 4120),),
        agent=AGENT,
        expected=(("PausePlayout", 4.02), ("ResumePlayout", 4.32)),
    ),
    "barge-in: pause, confirm after 250 ms of speech, turn ends after 500 ms silence": Case(
        speech=((4000, 5000),),
        agent=AGENT,
        expected=(
            ("PausePlayout", 4.02),
            ("ConfirmBargeIn", 4.26),
            ("TurnStarted", 4.26, 4.0),
            ("TurnEnded", 5.5, 4.0, 5.0),
        ),
    ),
    "barge-in: a lone unvoiced frame delays confirmation until speech is heard again": Case(
        speech=((4000, 4200), (4220, 5000)),
        agent=AGENT,
        expected=(
            ("PausePlayout", 4.02),
            ("ConfirmBargeIn", 4.28),
            ("TurnStarted", 4.28, 4.0),
            ("TurnEnded", 5.5, 4.0, 5.0),
        ),
    ),
    "barge-in: ASR words confirm a short burst": Case(
        speech=((4000, 4120),),
        agent=AGENT,
        transcripts=((4100, "no", False, False),),
        expected=(
            ("PausePlayout", 4.02),
            ("ConfirmBargeIn", 4.1),
            ("TurnStarted", 4.1, 4.0),
            ("TurnEnded", 4.62, 4.0, 4.12),
        ),
    ),
    "barge-in: late ASR words after the resume still confirm the burst": Case(
        speech=((4000, 4120),),
        agent=AGENT,
        transcripts=((4400, "stop", True, False),),
        expected=(
            ("PausePlayout", 4.02),
            ("ResumePlayout", 4.32),
            ("ConfirmBargeIn", 4.4),
            ("TurnStarted", 4.4, 4.0),
            ("TurnEnded", 4.62, 4.0, 4.12),
        ),
    ),
    "barge-in: late words with speech_final end the turn at once": Case(
        speech=((4000, 4120),),
        agent=AGENT,
        transcripts=((4400, "stop", True, True),),
        expected=(
            ("PausePlayout", 4.02),
            ("ResumePlayout", 4.32),
            ("ConfirmBargeIn", 4.4),
            ("TurnStarted", 4.4, 4.0),
            ("TurnEnded", 4.4, 4.0, 4.12),
        ),
    ),
    "words long after a resumed cough do not barge in": Case(
        speech=((4000, 4120),),
        agent=AGENT,
        transcripts=((4700, "hm", True, False),),
        expected=(("PausePlayout", 4.02), ("ResumePlayout", 4.32)),
    ),
    "words without caller speech never barge in": Case(
        speech=(),
        agent=AGENT,
        transcripts=((4000, "hello", False, False), (4500, "hello", True, True)),
        expected=(),
    ),
    "a late final of the previous turn does not interrupt the answer": Case(
        speech=((1000, 2100),),
        agent=AGENT,
        transcripts=((3100, "I need help", True, True),),
        expected=(("TurnStarted", 1.06, 1.0), ("TurnEnded", 2.6, 1.0, 2.1)),
    ),
    "non-interruptible: no pause, speech that ends before the agent is dropped": Case(
        speech=((4000, 5000),),
        agent=AGENT,
        interruptible=False,
        transcripts=((4500, "hello?", False, False),),
        expected=(),
    ),
    "non-interruptible: still talking when the agent stops, the turn starts then": Case(
        speech=((4000, 5000),),
        agent=(3000, 4500),
        interruptible=False,
        expected=(("TurnStarted", 4.5, 4.0), ("TurnEnded", 5.5, 4.0, 5.0)),
    ),
    "non-interruptible: quiet for less than the end silence when the agent stops": Case(
        speech=((4000, 4400),),
        agent=(3000, 4600),
        interruptible=False,
        expected=(("TurnStarted", 4.6, 4.0), ("TurnEnded", 4.9, 4.0, 4.4)),
    ),
    "agent audio starting while the caller has the floor is stopped at once": Case(
        speech=((1000, 2000), (2700, 3500)),
        agent=AGENT,
        expected=(
            ("TurnStarted", 1.06, 1.0),
            ("TurnEnded", 2.5, 1.0, 2.0),
            ("TurnStarted", 2.76, 2.7),
            ("PausePlayout", 3.0),
            ("ConfirmBargeIn", 3.0),
            ("TurnEnded", 4.0, 2.7, 3.5),
        ),
    ),
    "speech right after the agent finishes is an ordinary turn": Case(
        speech=((6100, 6600),),
        agent=AGENT,
        until=7500,
        expected=(("TurnStarted", 6.16, 6.1), ("TurnEnded", 7.1, 6.1, 6.6)),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_timeline(case: Case) -> None:
    assert run(case) == list(case.expected)


def _frames(det: TurnDetector, start_ms: int, end_ms: int, voiced: bool) -> list[TurnAction]:
    out: list[TurnAction] = []
    for t in range(start_ms + 20, end_ms + 1, 20):
        out += det.on_vad(voiced, t / 1000)
    return out


def test_silence_is_detected_by_the_timer_without_more_frames() -> None:
    det = TurnDetector()
    assert det.next_deadline() is None
    _frames(det, 1000, 2100, True)
    _frames(det, 2100, 2120, False)  # one unvoiced frame, then the stream stalls
    assert det.next_deadline() == pytest.approx(2.6)
    assert det.on_timer(2.59) == []
    assert _fmts(det.on_timer(2.6)) == [("TurnEnded", 2.6, 1.0, 2.1)]
    assert det.next_deadline() is None and det.state is TurnState.IDLE


def test_paused_playout_resumes_on_the_timer() -> None:
    det = TurnDetector()
    det.agent_speaking(True, 3.0)
    assert _fmts(_frames(det, 4000, 4120, True)) == [("PausePlayout", 4.02)]
    assert det.state is TurnState.PENDING
    _frames(det, 4120, 4140, False)
    assert det.next_deadline() == pytest.approx(4.32)
    assert det.on_timer(4.32) == [ResumePlayout(4.32)]
    assert det.next_deadline() is None


def test_one_voiced_frame_pauses_and_silence_resumes() -> None:
    # The pause costs a false start only resume_silence_ms; waiting for onset_ms would add
    # two frames to every real barge-in.
    det = TurnDetector()
    det.agent_speaking(True, 3.0)
    assert _fmts(_frames(det, 4000, 4020, True)) == [("PausePlayout", 4.02)]
    assert _fmts(_frames(det, 4020, 4220, False)) == [("ResumePlayout", 4.22)]
    assert det.state is TurnState.IDLE


def test_pause_onset_is_configurable() -> None:
    det = TurnDetector(TurnConfig(pause_onset_ms=60))
    det.agent_speaking(True, 3.0)
    assert _frames(det, 4000, 4040, True) == []
    assert _fmts(_frames(det, 4040, 4060, True)) == [("PausePlayout", 4.06)]


def test_agent_stopping_during_a_pending_barge_in_hands_the_floor_to_the_caller() -> None:
    det = TurnDetector()
    det.agent_speaking(True, 3.0)
    _frames(det, 4000, 4100, True)
    assert _fmts(det.agent_speaking(False, 4.1)) == [("TurnStarted", 4.1, 4.0)]
    assert det.state is TurnState.TURN


def test_agent_speaking_repeats_are_ignored() -> None:
    det = TurnDetector()
    assert det.agent_speaking(True, 1.0) == []
    assert det.agent_speaking(True, 1.5) == []
    assert det.agent_is_speaking
    assert det.agent_speaking(False, 2.0) == []
    assert det.agent_speaking(False, 2.5) == []


def test_barge_in_minimum_below_onset_confirms_at_onset() -> None:
    det = TurnDetector(TurnConfig(barge_in_min_ms=0))
    det.agent_speaking(True, 3.0)
    out = _frames(det, 4000, 4060, True)
    assert [type(a) for a in out] == [PausePlayout, ConfirmBargeIn, TurnStarted]


def test_interruptibility_applies_to_speech_detected_after_the_change() -> None:
    det = TurnDetector()
    det.set_interruptible(False)
    det.agent_speaking(True, 3.0)
    assert _frames(det, 3000, 3600, True) == []
    _frames(det, 3600, 4200, False)
    det.set_interruptible(True)
    assert det.interruptible
    assert _fmts(_frames(det, 4200, 4260, True)) == [("PausePlayout", 4.22)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frame_ms": 0},
        {"onset_ms": 0},
        {"end_silence_ms": -1},
        {"barge_in_min_ms": -1},
        {"resume_silence_ms": 600},
    ],
)
def test_config_rejects_nonsense(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        TurnConfig(**kwargs)


def test_actions_are_frozen_values() -> None:
    action = TurnEnded(2.6, 1.0, 2.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        action.at = 3.0  # type: ignore[misc]
    assert action == TurnEnded(2.6, 1.0, 2.1)
