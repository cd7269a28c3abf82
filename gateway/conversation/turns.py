"""Turn-taking for one call, sans-IO: who has the floor, and when the caller's turn is over.

Every input carries `now` (seconds on a monotonic clock, the call's audio clock) and returns the
actions it caused. Timers are data: the asyncio shell arms `next_deadline()` and calls
`on_timer(now)`; nothing here sleeps or reads a clock.

Inputs
    on_vad(speaking, now)   one raw VAD decision per frame (`frame_ms`, 20 or 10) of the CALLER's
                            inbound stream. `now` is when the frame ended: it covers [now - frame, now).
                            The gateway never mixes its own playout into that stream, so agent
                            audio cannot be mistaken for caller speech and no echo gate is needed.
    on_transcript(...)      ASR interim/final results, used as evidence, never as a trigger.
                            With `until` (the end of the speech the words cover, on this clock)
                            they are also a hypothesis for semantic endpointing.
    expect(kind, words)     what the question now asked expects (utterance.KINDS), or None.
    agent_speaking(b, now)  agent audio started (True) or finished/was cleared (False). A paused
                            playout is still "speaking": only the end of the audio counts.
    set_interruptible(b)    whether the agent step now playing may be barged into.

Smoothing (raw frames in, hysteresis here): speech starts after `onset_ms` of consecutive voiced
frames; once speaking, silence starts at the first unvoiced frame and is cancelled only by another
`onset_ms` run of voiced frames. So a lone unvoiced frame inside speech cannot end it, and a lone
voiced blip cannot start speech nor stretch the trailing silence of a turn.

Decisions worth knowing
- A turn ends `end_silence_ms` after the caller's last speech, or earlier on an ASR final with
  `speech_final` and words, but only once the VAD also hears silence (the VAD has the last word
  while the caller is audibly talking).
- Semantic endpointing: a hypothesis that covers the caller's speech up to the current silence
  (`until` at or after its start, less a frame of VAD slack) is judged by `utterance.verdict`
  against what was asked. A whole answer ends the turn after `complete_silence_ms` instead of
  `end_silence_ms`; words that stop mid-phrase wait `incomplete_silence_ms`, and then an ASR
  `speech_final` does not end the turn early either. The caller talking again drops the
  hypothesis. `complete_silence_ms=None` turns this off (silence alone, as before).
- Barge-in: caller speech over interruptible agent audio pauses playout at once (PausePlayout),
  after `pause_onset_ms` of voiced frames (one 20 ms frame by default: the wire goes quiet within
  a frame or two of the caller's onset, and a false start costs only a short pause). It stays
  20 ms with 10 ms frames: the same evidence, so no more false pauses from a lone click. It is confirmed when the burst has lasted `barge_in_min_ms` since its first voiced frame or
  ASR produced words; only then is a turn started (ConfirmBargeIn then TurnStarted). If the caller
  is silent for `resume_silence_ms` first, playout resumes where it paused (ResumePlayout).
- Words that arrive after such a resume (ASR lags the audio) still confirm that burst while the
  agent is talking and the burst ended less than `end_silence_ms` ago: a short "no" is real speech.
- Words with no caller speech heard by the VAD never barge in: the VAD gates, ASR confirms. This
  also keeps a late final from the previous turn from interrupting the answer to it.
- Non-interruptible agent audio (e.g. the AI disclosure): caller speech over it is tracked but
  produces nothing. If the caller is still speaking (or less than `end_silence_ms` quiet) when the
  agent audio ends, a turn starts then, with `speech_start` at the real onset; speech that ended
  earlier is dropped. Changing interruptibility affects speech detected after the change.
- Agent audio starting while the caller already has the floor (a new turn began while the agent
  was thinking) is interrupted at once if interruptible: PausePlayout and ConfirmBargeIn together.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.conversation.utterance import Verdict, verdict

__all__ = [
    "ConfirmBargeIn",
    "PausePlayout",
    "ResumePlayout",
    "TurnAction",
    "TurnConfig",
    "TurnDetector",
    "TurnEnded",
    "TurnStarted",
    "TurnState",
]

# Frame times are sums of floats (1.00 + k * 0.02): compare durations with a microsecond of slack.
_EPS = 1e-6
# A recogniser's VAD and ours disagree on where speech ended by a frame or a few.
_UNTIL_SLACK = 0.1


@dataclass(frozen=True, slots=True)
class TurnConfig:
    """Timing of turn-taking, in milliseconds. Per-dialplan values: `dataclasses.replace(...)`."""

    frame_ms: int = 20
    onset_ms: int = 60
    pause_onset_ms: int = 20
    end_silence_ms: int = 500
    barge_in_min_ms: int = 250
    resume_silence_ms: int = 200
    # Semantic endpointing (None: off): silence after a whole answer, and after words that
    # stop mid-phrase. 250 ms is about the gap between two speakers, but callers pause that long
    # at a comma ("My balance, please."): 400 ms lets them finish.
    complete_silence_ms: int | None = 400
    incomplete_silence_ms: int = 1000

    def __post_init__(self) -> None:
        for name in ("frame_ms", "onset_ms", "pause_onset_ms", "end_silence_ms", "resume_silence_ms",
                     "incomplete_silence_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.barge_in_min_ms < 0:
            raise ValueError(f"barge_in_min_ms must not be negative, got {self.barge_in_min_ms}")
        if self.complete_silence_ms is not None and self.complete_silence_ms <= 0:
            raise ValueError(f"complete_silence_ms must be positive, got {self.complete_silence_ms}")
        if self.resume_silence_ms > self.end_silence_ms:
            # A paused agent must resume before the caller's turn could have ended.
            raise ValueError("resume_silence_ms must not exceed end_silence_ms")


@dataclass(frozen=True, slots=True)
class TurnStarted:
    """The caller has the floor. speech_start: first voiced frame of the burst (at or before `at`)."""

    at: float
    speech_start: float


@dataclass(frozen=True, slots=True)
class TurnEnded:
    """The caller finished: run the agent. speech_end: start of the trailing silence."""

    at: float
    speech_start: float
    speech_end: float


@dataclass(frozen=True, slots=True)
class PausePlayout:
    """Caller onset over the agent: pause playout now (the wire goes quiet at the next tick)."""

    at: float


@dataclass(frozen=True, slots=True)
class ConfirmBargeIn:
    """Real caller speech over the agent: cancel generation and clear playout."""

    at: float


@dataclass(frozen=True, slots=True)
class ResumePlayout:
    """The onset was a cough or an "mm-hm": resume playout where it paused."""

    at: float


TurnAction = TurnStarted | TurnEnded | PausePlayout | ConfirmBargeIn | ResumePlayout


class TurnState(enum.Enum):
    IDLE = "idle"  # the caller is not speaking (as far as turns go)
    TURN = "turn"  # TurnStarted sent, TurnEnded not yet
    PENDING = "pending"  # onset over interruptible agent audio: paused, not yet confirmed
    IGNORED = "ignored"  # caller speech over non-interruptible agent audio


class TurnDetector:
    """Sans-IO turn-taking state machine for one call; see the module docstring for the rules."""

    def __init__(self, config: TurnConfig | None = None) -> None:
        cfg = config or TurnConfig()
        self._config = cfg
        self._frame = cfg.frame_ms / 1000
        self._onset = cfg.onset_ms / 1000
        self._pause_onset = cfg.pause_onset_ms / 1000
        self._end_silence = cfg.end_silence_ms / 1000
        self._barge_min = cfg.barge_in_min_ms / 1000
        self._resume_silence = cfg.resume_silence_ms / 1000
        self._complete_silence = None if cfg.complete_silence_ms is None else cfg.complete_silence_ms / 1000
        self._incomplete_silence = cfg.incomplete_silence_ms / 1000
        self._expect: tuple[str | None, tuple[str, ...]] = (None, ())
        self._verdict: Verdict | None = None  # of the hypothesis covering the current silence
        self.last_verdict: Verdict | None = None  # the one that ended the last turn
        self._state = TurnState.IDLE
        self._agent_speaking = False
        self._interruptible = True
        self._run_start: float | None = None  # start of the current run of voiced frames
        self._speech_start = 0.0  # first voiced frame of the current burst
        self._quiet_since: float | None = None  # start of silence inside the current burst
        # (start, end) of a burst resumed over agent audio: late ASR words may still confirm it.
        self._recent: tuple[float, float] | None = None

    @property
    def config(self) -> TurnConfig:
        return self._config

    @property
    def state(self) -> TurnState:
        return self._state

    @property
    def agent_is_speaking(self) -> bool:
        return self._agent_speaking

    @property
    def interruptible(self) -> bool:
        return self._interruptible

    # -- inputs ----------------------------------------------------------------

    def on_vad(self, speaking: bool, now: float) -> list[TurnAction]:
        """One raw VAD decision for the caller frame that ended at `now`."""
        out: list[TurnAction] = []
        frame_start = now - self._frame
        if speaking:
            if self._run_start is None:
                self._run_start = frame_start
            over_agent = self._state is TurnState.IDLE and self._can_barge_in()
            if now - self._run_start + _EPS >= (self._pause_onset if over_agent else self._onset):
                self._on_onset(self._run_start, now, out)
            if self._state is TurnState.PENDING and self._quiet_since is None and self._long_enough(now):
                self._confirm(now, out)
        else:
            self._run_start = None
            if self._state is not TurnState.IDLE and self._quiet_since is None:
                self._quiet_since = frame_start
        # After the frame, not before: a voiced run completing on this frame must cancel the
        # silence before its deadline is judged.
        self._expire(now, out)
        return out

    @property
    def verdict(self) -> Verdict | None:
        """How complete the caller's words up to the current silence are (None: no hypothesis)."""
        return self._verdict

    def expect(self, kind: str | None, words: Sequence[str] = ()) -> None:
        """What the question now asked expects: an utterance kind, and a choice's words."""
        self._expect = (kind, tuple(words))

    def on_transcript(self, text: str, is_final: bool, speech_final: bool, now: float,
                      until: float | None = None) -> list[TurnAction]:
        out: list[TurnAction] = []
        self._expire(now, out)
        if not text.strip():
            return out  # recognisers send empty results on silence; they prove nothing
        if self._state is TurnState.PENDING:
            self._confirm(now, out)
        elif self._state is TurnState.IDLE and self._recent is not None and self._can_barge_in():
            self._speech_start, self._quiet_since = self._recent
            self._confirm(now, out)
        if until is not None:
            self._judge(text, until)
            self._expire(now, out)  # a shorter silence may be over already
        if self._state is TurnState.TURN and is_final and speech_final and self._quiet_since is not None:
            if until is None or self._verdict is not Verdict.INCOMPLETE:
                self._end_turn(now, self._quiet_since, out)
        return out

    def agent_speaking(self, started: bool, now: float) -> list[TurnAction]:
        """Agent audio started, or finished / was cleared. Repeats are ignored."""
        out: list[TurnAction] = []
        self._expire(now, out)
        if started == self._agent_speaking:
            return out
        self._agent_speaking = started
        if started:
            if self._state is TurnState.TURN and self._interruptible:
                out.append(PausePlayout(now))
                out.append(ConfirmBargeIn(now))
            return out
        self._recent = None  # nothing left to interrupt
        if self._state in (TurnState.PENDING, TurnState.IGNORED):
            self._state = TurnState.TURN
            out.append(TurnStarted(now, self._speech_start))
        return out

    def set_interruptible(self, interruptible: bool) -> None:
        """Whether caller speech may barge into the agent step now playing."""
        self._interruptible = interruptible

    # -- timers ----------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """Earliest time at which `on_timer` would act, or None."""
        if self._quiet_since is None:
            return None
        if self._state is TurnState.TURN:
            return self._quiet_since + self._turn_silence()
        if self._state is TurnState.PENDING:
            return self._quiet_since + self._resume_silence
        return None  # IGNORED bursts expire silently on the next input

    def on_timer(self, now: float) -> list[TurnAction]:
        out: list[TurnAction] = []
        self._expire(now, out)
        return out

    # -- internals -------------------------------------------------------------

    def _judge(self, text: str, until: float) -> None:
        if self._complete_silence is None or self._state is not TurnState.TURN:
            return
        if self._quiet_since is None or until + _UNTIL_SLACK < self._quiet_since:
            return  # the caller is talking, or the words stop before the current silence
        kind, words = self._expect
        self._verdict = verdict(text, kind, words)

    def _turn_silence(self) -> float:
        if self._verdict is Verdict.COMPLETE and self._complete_silence is not None:
            return min(self._complete_silence, self._end_silence)
        if self._verdict is Verdict.INCOMPLETE:
            return max(self._incomplete_silence, self._end_silence)
        return self._end_silence

    def _long_enough(self, now: float) -> bool:
        return now - self._speech_start + _EPS >= self._barge_min

    def _can_barge_in(self) -> bool:
        return self._agent_speaking and self._interruptible

    def _on_onset(self, run_start: float, now: float, out: list[TurnAction]) -> None:
        if self._state is not TurnState.IDLE:
            self._quiet_since = None  # the caller kept talking
            self._verdict = None
            return
        self._speech_start = run_start
        self._quiet_since = None
        self._recent = None  # a new burst supersedes the resumed one
        if not self._agent_speaking:
            self._state = TurnState.TURN
            out.append(TurnStarted(now, run_start))
        elif self._interruptible:
            self._state = TurnState.PENDING
            out.append(PausePlayout(now))
        else:
            self._state = TurnState.IGNORED

    def _confirm(self, now: float, out: list[TurnAction]) -> None:
        self._state = TurnState.TURN
        self._recent = None
        out.append(ConfirmBargeIn(now))
        out.append(TurnStarted(now, self._speech_start))

    def _end_turn(self, now: float, speech_end: float, out: list[TurnAction]) -> None:
        out.append(TurnEnded(now, self._speech_start, speech_end))
        self._state = TurnState.IDLE
        self._quiet_since = None
        self.last_verdict, self._verdict = self._verdict, None

    def _expire(self, now: float, out: list[TurnAction]) -> None:
        if self._recent is not None and now + _EPS >= self._recent[1] + self._end_silence:
            self._recent = None
        quiet = self._quiet_since
        if quiet is None:
            return
        if self._state is TurnState.TURN:
            if now + _EPS >= quiet + self._turn_silence():
                self._end_turn(now, quiet, out)
        elif self._state is TurnState.PENDING:
            if now + _EPS >= quiet + self._resume_silence:
                out.append(ResumePlayout(now))
                self._recent = (self._speech_start, quiet)
                self._state = TurnState.IDLE
                self._quiet_since = None
        elif self._state is TurnState.IGNORED and now + _EPS >= quiet + self._end_silence:
            self._state = TurnState.IDLE
            self._quiet_since = None
