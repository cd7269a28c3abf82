"""Semantic endpointing: the caller's words decide how much silence ends the turn."""

from __future__ import annotations

import pytest

from gateway.conversation.turns import TurnConfig, TurnDetector, TurnEnded
from gateway.conversation.utterance import Verdict, verdict


# The mechanism at a 250 ms whole-answer silence (the shipped default is longer, see TurnConfig).
SHORT = TurnConfig(complete_silence_ms=250)


def _talk(det: TurnDetector, start: float, stop: float, until: float, frame: float = 0.02) -> list:
    """Voiced frames in [start, stop), then unvoiced ones up to `until`; every action."""
    out, t = [], start + frame
    while t <= until + 1e-9:
        out += det.on_vad(t - frame < stop - 1e-9, round(t, 3))
        t = round(t + frame, 3)
    return out


def _ended(actions: list) -> list[TurnEnded]:
    return [a for a in actions if isinstance(a, TurnEnded)]


def test_a_whole_answer_ends_the_turn_after_a_short_silence() -> None:
    det = TurnDetector(SHORT)
    det.expect("day")
    out = _talk(det, 1.0, 1.8, 1.9)
    out += det.on_transcript("Friday, please.", False, False, 1.9, until=1.86)
    out += _talk(det, 1.9, 0, 3.0)
    assert [(round(e.at, 2), e.speech_end) for e in _ended(out)] == [(2.06, 1.8)]


def test_a_hypothesis_that_arrives_late_ends_the_turn_on_arrival() -> None:
    det = TurnDetector(SHORT)
    out = _talk(det, 1.0, 1.8, 2.2)
    out += det.on_transcript("Yes.", False, False, 2.2, until=1.8)
    assert [(e.at, e.speech_end) for e in _ended(out)] == [(2.2, 1.8)]


def test_words_that_stop_mid_phrase_wait_longer_and_ignore_speech_final() -> None:
    det = TurnDetector(SHORT)
    out = _talk(det, 1.0, 1.8, 1.9)
    out += det.on_transcript("I would like to book an", False, False, 1.9, until=1.84)
    out += _talk(det, 1.9, 0, 2.3)
    out += det.on_transcript("I would like to book an", True, True, 2.3, until=1.84)
    assert not _ended(out)  # neither the 500 ms silence nor the recogniser's speech_final
    out += _talk(det, 2.3, 0, 3.0)
    assert [round(e.at, 2) for e in _ended(out)] == [2.8]  # 1000 ms after the last word


def test_speaking_again_drops_the_hypothesis() -> None:
    det = TurnDetector(SHORT)
    det.expect("day")
    out = _talk(det, 1.0, 1.8, 1.88)
    out += det.on_transcript("Friday", False, False, 1.88, until=1.8)
    assert det.verdict is Verdict.COMPLETE
    out += _talk(det, 1.88, 1.88, 1.9)
    out += _talk(det, 1.9, 2.6, 3.2)  # "... at two": onset at 1.96, before the 250 ms were up
    assert [(round(e.at, 2), e.speech_end) for e in _ended(out)] == [(3.1, 2.6)]


def test_words_from_before_the_pause_are_no_hypothesis() -> None:
    det = TurnDetector(SHORT)
    det.expect("day")
    out = _talk(det, 1.0, 2.0, 2.1)
    out += det.on_transcript("Friday", False, False, 2.1, until=1.4)  # decoded mid-speech
    assert det.verdict is None
    out += _talk(det, 2.1, 0, 3.0)
    assert [round(e.at, 2) for e in _ended(out)] == [2.5]


def test_off_keeps_silence_alone() -> None:
    det = TurnDetector(TurnConfig(complete_silence_ms=None))
    out = _talk(det, 1.0, 1.8, 1.9)
    out += det.on_transcript("Yes.", False, False, 1.9, until=1.84)
    out += _talk(det, 1.9, 0, 3.0)
    assert [round(e.at, 2) for e in _ended(out)] == [2.3]


@pytest.mark.parametrize("text, kind, words, expected", [
    ("Yes.", "yes_no", (), Verdict.COMPLETE),
    ("Yeah, that's", "yes_no", (), Verdict.INCOMPLETE),
    ("Friday, please.", "day", (), Verdict.COMPLETE),
    ("I'd like an appointment.", "day", (), Verdict.INCOMPLETE),
    ("Two pm.", "time", (), Verdict.COMPLETE),
    ("2 p.m.", "time", (), Verdict.COMPLETE),
    ("at", "time", (), Verdict.INCOMPLETE),
    ("My name is John Smith.", "name", (), Verdict.COMPLETE),
    ("My name is John.", "name", (), Verdict.UNSURE),
    ("My name is", "name", (), Verdict.INCOMPLETE),
    ("I would like to make an appointment.", "choice", ("appointment", "make an appointment"), Verdict.COMPLETE),
    ("I would like to book an", "choice", ("appointment",), Verdict.INCOMPLETE),
    ("I am calling because...", None, (), Verdict.INCOMPLETE),
    ("I need help with my account.", None, (), Verdict.UNSURE),
    ("No, thanks.", None, (), Verdict.COMPLETE),
    ("", None, (), Verdict.UNSURE),
])
def test_verdicts(text: str, kind: str | None, words: tuple[str, ...], expected: Verdict) -> None:
    assert verdict(text, kind, words) is expected
