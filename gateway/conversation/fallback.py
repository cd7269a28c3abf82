"""What to do when asking the caller something goes wrong: one explicit state machine per gather.

Sans-IO: time is an argument and the no-input timer is data (`next_deadline()` / `on_timer(now)`).

States: PROMPTING (our prompt plays; silence does not count) -> `listen(now)` -> LISTENING (the
no-input clock runs) -> `on_speech(now)` -> ANSWERING (the caller talks, a recogniser works) ->
`on_answer(kind, now)` -> a Decision, and back to PROMPTING or LISTENING, or DONE.

A call never goes silent: every caller-side outcome is answered with Accept, Reprompt, Escalate or
Close; provider trouble goes Retry -> SwitchProvider -> Apologize(then Escalate or Close), and after
a Retry or SwitchProvider the no-input clock is armed, so the machine moves on even if the
replacement provider never reports back.

Counting rules (per gather)
- `max_no_input` / `max_no_match`: how many of that failure are reprompted; one more gives up.
- `max_total_failures`: the same across no_input, no_match and low_confidence together.
  When both limits trip at once, the per-kind reason is reported.
- A match below `low_confidence_threshold` counts as low_confidence: "Did you say X?". The
  session reports the caller's reply as usual: a yes as match with text X, a no as no_match.
- Provider errors are not the caller's fault and have their own budget: the first one retries the
  current (first) provider once, each further one switches to the next configured provider,
  and when none is left the caller hears a recorded apology and is escalated (or the call closed).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "Accept",
    "AnswerKind",
    "Apologize",
    "Close",
    "Decision",
    "Escalate",
    "FallbackPolicy",
    "GatherState",
    "GiveUpReason",
    "PolicyConfig",
    "Reprompt",
    "RepromptKind",
    "Retry",
    "SwitchProvider",
    "reprompt_text",
]

AnswerKind = Literal["match", "no_match", "low_confidence", "no_input", "provider_error"]
RepromptKind = Literal["no_input", "no_match", "low_confidence"]
GiveUpReason = Literal["no_input", "no_match", "too_many_failures", "provider_error"]

_KINDS: frozenset[str] = frozenset(get_args(AnswerKind))


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Limits for one gather. has_transfer_target False: give up with Close instead of Escalate."""

    max_no_input: int = 2
    max_no_match: int = 2
    max_total_failures: int = 3
    low_confidence_threshold: float = 0.5
    has_transfer_target: bool = False
    providers: tuple[str, ...] = ()
    no_input_timeout: float = 5.0  # seconds of silence after the prompt finished

    def __post_init__(self) -> None:
        if min(self.max_no_input, self.max_no_match, self.max_total_failures) < 0:
            raise ValueError("fallback limits must not be negative")
        if not 0.0 <= self.low_confidence_threshold <= 1.0:
            raise ValueError(f"low_confidence_threshold must be within 0..1: {self.low_confidence_threshold}")
        if self.no_input_timeout <= 0:
            raise ValueError(f"no_input_timeout must be positive: {self.no_input_timeout}")
        object.__setattr__(self, "providers", tuple(self.providers))


@dataclass(frozen=True, slots=True)
class Accept:
    """The answer stands; the gather is over."""

    text: str = ""
    confidence: float = 1.0


@dataclass(frozen=True, slots=True)
class Reprompt:
    """Ask again. attempt: how many of this kind so far (1 = first reprompt), to vary the wording.
    heard: for low_confidence, what to confirm."""

    kind: RepromptKind
    attempt: int
    heard: str = ""

    @property
    def text(self) -> str:
        """Default wording; a dialplan's own no_input/no_match steps take precedence."""
        return reprompt_text(self.kind, self.attempt, self.heard)


@dataclass(frozen=True, slots=True)
class Escalate:
    """Transfer to a human."""

    reason: GiveUpReason


@dataclass(frozen=True, slots=True)
class Close:
    """Polite goodbye, then hang up (no transfer target configured)."""

    reason: GiveUpReason


@dataclass(frozen=True, slots=True)
class Retry:
    """Try the same provider once more."""

    provider: str


@dataclass(frozen=True, slots=True)
class SwitchProvider:
    """Use the next configured provider from now on."""

    provider: str


@dataclass(frozen=True, slots=True)
class Apologize:
    """Play the recorded apology (no provider needed), then do `then`."""

    then: Escalate | Close


Decision = Accept | Reprompt | Escalate | Close | Retry | SwitchProvider | Apologize


class GatherState(enum.Enum):
    PROMPTING = "prompting"  # a prompt or reprompt is playing
    LISTENING = "listening"  # the no-input clock runs
    ANSWERING = "answering"  # the caller is talking or a provider is working
    DONE = "done"


_NO_INPUT = (
    "Sorry, I didn't hear anything. Could you say that again?",
    "Sorry, I still can't hear you. Please say your answer now.",
)
_NO_MATCH = (
    "Sorry, I didn't understand that. Could you say it another way?",
    "Sorry, I can't help with that here. Could you put it differently?",
)


def reprompt_text(kind: RepromptKind, attempt: int, heard: str = "") -> str:
    """Default reprompt wording; later attempts reuse the last variant."""
    if kind == "low_confidence":
        return f"Did you say {heard.strip()}?" if heard.strip() else "Sorry, could you repeat that?"
    variants = _NO_INPUT if kind == "no_input" else _NO_MATCH
    return variants[min(max(attempt, 1), len(variants)) - 1]


class FallbackPolicy:
    """Decides, answer by answer, how one gather proceeds. Not reusable: make one per gather."""

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self._config = config or PolicyConfig()
        self._state = GatherState.PROMPTING
        self._deadline: float | None = None
        self._no_input = 0
        self._no_match = 0
        self._low_confidence = 0
        self._failures = 0
        self._provider_errors = 0
        self._provider_index = 0
        self._outcome: Decision | None = None

    @property
    def config(self) -> PolicyConfig:
        return self._config

    @property
    def state(self) -> GatherState:
        return self._state

    @property
    def done(self) -> bool:
        return self._state is GatherState.DONE

    @property
    def outcome(self) -> Decision | None:
        """The final decision once DONE."""
        return self._outcome

    @property
    def provider(self) -> str | None:
        """The provider currently in use, or None when none is configured."""
        providers = self._config.providers
        return providers[self._provider_index] if providers else None

    @property
    def failures(self) -> int:
        return self._failures

    # -- inputs ----------------------------------------------------------------

    def listen(self, now: float) -> None:
        """The prompt finished playing: the caller's silence counts from now."""
        self._check_open()
        self._state = GatherState.LISTENING
        self._deadline = now + self._config.no_input_timeout

    def on_speech(self, now: float) -> None:
        """The caller started talking: stop the no-input clock; the result comes via on_answer."""
        self._check_open()
        self._state = GatherState.ANSWERING
        self._deadline = None

    def on_answer(self, kind: AnswerKind, now: float, *, text: str = "", confidence: float = 1.0) -> Decision:
        """The outcome of one attempt. For match, text/confidence are the recogniser's."""
        self._check_open()
        if kind not in _KINDS:
            raise ValueError(f"unknown answer kind {kind!r}")
        self._deadline = None
        if kind == "match" and confidence < self._config.low_confidence_threshold:
            kind = "low_confidence"
        if kind == "match":
            return self._finish(Accept(text, confidence))
        if kind == "provider_error":
            return self._on_provider_error(now)
        return self._on_failure(kind, text)

    # -- timers ----------------------------------------------------------------

    def next_deadline(self) -> float | None:
        return self._deadline

    def on_timer(self, now: float) -> Decision | None:
        """The caller's silence outlasted no_input_timeout: decide as for a no_input answer."""
        if self._deadline is None or now < self._deadline:
            return None
        return self.on_answer("no_input", now)

    # -- internals -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state is GatherState.DONE:
            raise RuntimeError(f"this gather already finished with {self._outcome!r}")

    def _on_failure(self, kind: RepromptKind, text: str) -> Decision:
        cfg = self._config
        self._failures += 1
        exhausted: GiveUpReason | None = None
        if kind == "no_input":
            self._no_input += 1
            attempt = self._no_input
            if attempt > cfg.max_no_input:
                exhausted = "no_input"
        elif kind == "no_match":
            self._no_match += 1
            attempt = self._no_match
            if attempt > cfg.max_no_match:
                exhausted = "no_match"
        else:
            # No limit of its own: a confirmation is a mishearing, not a caller failure, but it
            # still counts toward the total so confirm-loops end.
            self._low_confidence += 1
            attempt = self._low_confidence
        if exhausted is None and self._failures > cfg.max_total_failures:
            exhausted = "too_many_failures"
        if exhausted is not None:
            return self._give_up(exhausted)
        self._state = GatherState.PROMPTING
        return Reprompt(kind, attempt, text if kind == "low_confidence" else "")

    def _on_provider_error(self, now: float) -> Decision:
        providers = self._config.providers
        self._provider_errors += 1
        n = self._provider_errors
        decision: Decision
        if n == 1 and providers:
            decision = Retry(providers[self._provider_index])
        elif n - 1 < len(providers):
            self._provider_index = n - 1
            decision = SwitchProvider(providers[n - 1])
        else:
            give_up: Escalate | Close
            give_up = Escalate("provider_error") if self._config.has_transfer_target else Close("provider_error")
            return self._finish(Apologize(give_up))
        # Backstop: if the replacement never reports, the caller's silence still moves us on.
        self._state = GatherState.LISTENING
        self._deadline = now + self._config.no_input_timeout
        return decision

    def _give_up(self, reason: GiveUpReason) -> Decision:
        if self._config.has_transfer_target:
            return self._finish(Escalate(reason))
        return self._finish(Close(reason))

    def _finish(self, decision: Decision) -> Decision:
        self._state = GatherState.DONE
        self._deadline = None
        self._outcome = decision
        return decision
