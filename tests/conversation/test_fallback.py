"""FallbackPolicy: sequences of answers in, decisions out; the no-input timer on an injected clock."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from gateway.conversation.fallback import (
    Accept,
    AnswerKind,
    Apologize,
    Close,
    Decision,
    Escalate,
    FallbackPolicy,
    GatherState,
    PolicyConfig,
    Reprompt,
    Retry,
    SwitchProvider,
    reprompt_text,
)

TRANSFER = PolicyConfig(has_transfer_target=True, providers=("deepgram", "local"))
NO_TRANSFER = PolicyConfig(has_transfer_target=False, providers=("deepgram", "local"))

# An input is a kind, or (kind, text, confidence) for answers that carry a transcript.
Input = str | tuple[str, str, float]

CASES: dict[str, tuple[PolicyConfig, tuple[Input, ...], tuple[Decision, ...]]] = {
    "match at once": (TRANSFER, (("match", "billing", 0.9),), (Accept("billing", 0.9),)),
    "no_input x3 with a transfer target escalates": (
        TRANSFER,
        ("no_input", "no_input", "no_input"),
        (Reprompt("no_input", 1), Reprompt("no_input", 2), Escalate("no_input")),
    ),
    "no_input x3 without a transfer target closes": (
        NO_TRANSFER,
        ("no_input", "no_input", "no_input"),
        (Reprompt("no_input", 1), Reprompt("no_input", 2), Close("no_input")),
    ),
    "no_match x3 closes": (
        NO_TRANSFER,
        ("no_match", "no_match", "no_match"),
        (Reprompt("no_match", 1), Reprompt("no_match", 2), Close("no_match")),
    ),
    "reprompt then match": (
        TRANSFER,
        ("no_input", ("match", "yes", 0.8)),
        (Reprompt("no_input", 1), Accept("yes", 0.8)),
    ),
    "mixed failures: the fourth exceeds the total": (
        TRANSFER,
        ("no_input", "no_match", "no_input", "no_match"),
        (
            Reprompt("no_input", 1),
            Reprompt("no_match", 1),
            Reprompt("no_input", 2),
            Escalate("too_many_failures"),
        ),
    ),
    "per-kind limit is reported before the total": (
        PolicyConfig(max_no_input=1, max_total_failures=1),
        ("no_input", "no_input"),
        (Reprompt("no_input", 1), Close("no_input")),
    ),
    "low confidence asks to confirm, a yes is a match": (
        TRANSFER,
        (("low_confidence", "billing", 0.3), ("match", "billing", 1.0)),
        (Reprompt("low_confidence", 1, "billing"), Accept("billing", 1.0)),
    ),
    "a match below the threshold is low confidence": (
        TRANSFER,
        (("match", "billing", 0.49),),
        (Reprompt("low_confidence", 1, "billing"),),
    ),
    "a match at the threshold is accepted": (
        TRANSFER,
        (("match", "billing", 0.5),),
        (Accept("billing", 0.5),),
    ),
    "low confidence, then a no, then nothing": (
        NO_TRANSFER,
        (("match", "billing", 0.2), "no_match", "no_input", "no_input"),
        (
            Reprompt("low_confidence", 1, "billing"),
            Reprompt("no_match", 1),
            Reprompt("no_input", 1),
            Close("too_many_failures"),
        ),
    ),
    "repeated low confidence ends on the total": (
        TRANSFER,
        (("low_confidence", "a", 0.1),) * 4,
        (
            Reprompt("low_confidence", 1, "a"),
            Reprompt("low_confidence", 2, "a"),
            Reprompt("low_confidence", 3, "a"),
            Escalate("too_many_failures"),
        ),
    ),
    "provider_error x3: retry, switch, apologize and escalate": (
        TRANSFER,
        ("provider_error", "provider_error", "provider_error"),
        (Retry("deepgram"), SwitchProvider("local"), Apologize(Escalate("provider_error"))),
    ),
    "provider_error x3 without a transfer target: apologize and close": (
        NO_TRANSFER,
        ("provider_error", "provider_error", "provider_error"),
        (Retry("deepgram"), SwitchProvider("local"), Apologize(Close("provider_error"))),
    ),
    "provider_error with one provider: retry, then apologize": (
        PolicyConfig(has_transfer_target=True, providers=("local",)),
        ("provider_error", "provider_error"),
        (Retry("local"), Apologize(Escalate("provider_error"))),
    ),
    "provider_error with three providers walks the list": (
        PolicyConfig(providers=("a", "b", "c")),
        ("provider_error",) * 4,
        (Retry("a"), SwitchProvider("b"), SwitchProvider("c"), Apologize(Close("provider_error"))),
    ),
    "provider_error with no provider configured apologizes at once": (
        PolicyConfig(),
        ("provider_error",),
        (Apologize(Close("provider_error")),),
    ),
    "provider errors do not count as caller failures": (
        TRANSFER,
        ("no_input", "provider_error", "no_input", ("match", "ok", 0.9)),
        (Reprompt("no_input", 1), Retry("deepgram"), Reprompt("no_input", 2), Accept("ok", 0.9)),
    ),
}


def _feed(policy: FallbackPolicy, item: Input, now: float) -> Decision:
    if isinstance(item, str):
        return policy.on_answer(item, now)  # type: ignore[arg-type]
    kind, text, confidence = item
    return policy.on_answer(kind, now, text=text, confidence=confidence)  # type: ignore[arg-type]


@pytest.mark.parametrize(("config", "inputs", "expected"), CASES.values(), ids=CASES.keys())
def test_sequence(config: PolicyConfig, inputs: tuple[Input, ...], expected: tuple[Decision, ...]) -> None:
    policy = FallbackPolicy(config)
    decisions = [_feed(policy, item, float(i)) for i, item in enumerate(inputs)]
    assert decisions == list(expected)
    terminal = isinstance(expected[-1], Accept | Escalate | Close | Apologize)
    assert policy.done is terminal
    if terminal:
        assert policy.outcome == expected[-1] and policy.next_deadline() is None


def test_a_gather_starts_with_its_prompt_playing() -> None:
    policy = FallbackPolicy()
    assert policy.state is GatherState.PROMPTING and policy.next_deadline() is None
    assert policy.on_timer(1e9) is None


def test_silence_is_detected_by_the_machine() -> None:
    policy = FallbackPolicy(PolicyConfig(no_input_timeout=4.0, has_transfer_target=True))
    policy.listen(10.0)
    assert policy.state is GatherState.LISTENING and policy.next_deadline() == 14.0
    assert policy.on_timer(13.9) is None
    assert policy.on_timer(14.0) == Reprompt("no_input", 1)
    assert policy.state.name == "PROMPTING" and policy.next_deadline() is None
    assert policy.on_timer(100.0) is None  # no clock while the reprompt plays
    policy.listen(20.0)
    assert policy.on_timer(24.0) == Reprompt("no_input", 2)
    policy.listen(30.0)
    assert policy.on_timer(34.5) == Escalate("no_input")
    assert policy.done and policy.next_deadline() is None


def test_caller_speech_stops_the_no_input_clock() -> None:
    policy = FallbackPolicy(PolicyConfig(no_input_timeout=4.0))
    policy.listen(10.0)
    policy.on_speech(13.0)
    assert policy.state is GatherState.ANSWERING and policy.next_deadline() is None
    assert policy.on_timer(20.0) is None
    assert policy.on_answer("match", 21.0, text="yes") == Accept("yes")


def test_retry_arms_the_clock_so_a_silent_provider_cannot_stall_the_call() -> None:
    policy = FallbackPolicy(PolicyConfig(providers=("deepgram",), no_input_timeout=5.0))
    policy.on_speech(1.0)
    assert policy.on_answer("provider_error", 2.0) == Retry("deepgram")
    assert policy.next_deadline() == 7.0
    assert policy.on_timer(7.0) == Reprompt("no_input", 1)


def test_switch_provider_changes_the_current_provider() -> None:
    policy = FallbackPolicy(TRANSFER)
    assert policy.provider == "deepgram"
    policy.on_answer("provider_error", 1.0)
    assert policy.provider == "deepgram"
    policy.on_answer("provider_error", 2.0)
    assert policy.provider == "local"
    assert FallbackPolicy().provider is None


def test_a_finished_gather_refuses_more_input() -> None:
    policy = FallbackPolicy()
    policy.on_answer("match", 1.0, text="yes")
    with pytest.raises(RuntimeError):
        policy.on_answer("no_input", 2.0)
    with pytest.raises(RuntimeError):
        policy.listen(2.0)


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError):
        FallbackPolicy().on_answer("maybe", 1.0)  # type: ignore[arg-type]


FAILURES: tuple[AnswerKind, ...] = ("no_input", "no_match", "low_confidence", "provider_error")


@pytest.mark.parametrize("config", [TRANSFER, NO_TRANSFER, PolicyConfig()], ids=["transfer", "close", "bare"])
def test_the_call_never_goes_silent(config: PolicyConfig) -> None:
    # Every sequence of failures ends within a bounded number of answers, and every decision
    # before the end tells the session something to say or do.
    bound = config.max_total_failures + 1 + len(config.providers) + 1
    for seq in itertools.product(FAILURES, repeat=bound):
        policy = FallbackPolicy(config)
        for i, kind in enumerate(seq):
            decision = policy.on_answer(kind, float(i))
            assert isinstance(decision, Reprompt | Retry | SwitchProvider | Escalate | Close | Apologize)
            if policy.done:
                assert isinstance(decision, Escalate | Close | Apologize)
                break
        assert policy.done, seq


@pytest.mark.parametrize(
    ("kind", "attempt", "heard", "text"),
    [
        ("no_input", 1, "", "Sorry, I didn't hear anything. Could you say that again?"),
        ("no_input", 2, "", "Sorry, I still can't hear you. Please say your answer now."),
        ("no_input", 9, "", "Sorry, I still can't hear you. Please say your answer now."),
        ("no_match", 1, "", "Sorry, I didn't understand that. Could you say it another way?"),
        ("low_confidence", 1, "billing", "Did you say billing?"),
        ("low_confidence", 1, "  ", "Sorry, could you repeat that?"),
    ],
)
def test_reprompt_wording(kind: str, attempt: int, heard: str, text: str) -> None:
    assert reprompt_text(kind, attempt, heard) == text  # type: ignore[arg-type]
    assert Reprompt(kind, attempt, heard).text == text  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_no_input": -1}, {"low_confidence_threshold": 1.5}, {"no_input_timeout": 0.0}],
)
def test_config_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PolicyConfig(**kwargs)  # type: ignore[arg-type]


def test_decisions_are_frozen_values() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Escalate("no_input").reason = "no_match"  # type: ignore[misc]
    assert PolicyConfig(providers=["a"]).providers == ("a",)  # type: ignore[arg-type]
