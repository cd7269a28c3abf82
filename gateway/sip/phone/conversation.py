"""Frame-indexed turn-taking for the test phone, and wire-level timing from its two streams.

Pure code (no pjsua2): the softphone's media port calls it from pjmedia's clock thread, one
call per tick (one frame: 20 ms, or 10 ms with --frame-ms 10) and direction. Time is the tick
index `k` of the call's media clock, never wall time. Within tick k the bridge first asks the
port for the frame it sends (`tx(k)`), then hands it the frame it received (`on_rx(k, voiced)`),
so sent frame k and received frame k share one clock instant.

Conventions (used by the JSON, the tests and `gateway call`):
  - a voiced frame k covers [k, k+1) x frame_ms; speech "starts" at the start of its first voiced
    frame and "ends" at the end of its last one;
  - `latency_ms` of a caller turn = start of the far end's first voiced frame after the turn
    minus the end of the turn's last voiced frame (0 = the reply begins the instant speech ends);
  - the reference replier starts its reply after exactly `delay_frames` unvoiced frames received
    after the caller's last voiced frame, so by the same measure its own gap is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from gateway.media.framing import DEFAULT_FRAME_MS, SAMPLE_RATE, check_frame_ms, frame_bytes

__all__ = [
    "FRAME_MS", "FRAME_BYTES", "FrameVad", "CallerScript", "Replier", "TurnRecord", "TurnRequest",
    "ReplyRecord", "voiced_flags", "segments", "analyse_turns",
]

FRAME_MS = DEFAULT_FRAME_MS  # the default; everything below takes frame_ms where it matters
FRAME_BYTES = frame_bytes(FRAME_MS)  # PCM16 mono 8 kHz
RATE = SAMPLE_RATE
T = TypeVar("T")


# --- VAD ----------------------------------------------------------------------------


class FrameVad:
    """Voiced/unvoiced per frame (`frame_ms`: 20 or 10), causal.

    "energy": RMS at or above `threshold_dbfs`. Frame-exact edges on a digital line.
    "webrtc": energy as above AND the loud stretch has been confirmed as speech by webrtcvad
    (latched until the energy drops). webrtcvad alone is no good for timing: it keeps saying
    "voiced" ~80 ms after a sound stops and stops flagging a steady tone after ~100 ms; gated
    by energy, the edges stay exact and line noise is not taken for speech.
    "auto": webrtc when `import webrtcvad` works, energy otherwise.
    """

    def __init__(self, kind: str = "auto", *, threshold_dbfs: float = -45.0, aggressiveness: int = 2,
                 frame_ms: int = FRAME_MS) -> None:
        if kind not in ("auto", "energy", "webrtc"):
            raise ValueError(f"VAD kind must be auto, energy or webrtc, not {kind!r}")
        self._webrtc: Any = None
        if kind != "energy":
            try:
                import webrtcvad

                self._webrtc = webrtcvad.Vad(aggressiveness)
            except ImportError:
                self._webrtc = None
        self.kind = "webrtc" if self._webrtc is not None else "energy"
        self.threshold_dbfs = threshold_dbfs
        self.frame_ms = check_frame_ms(frame_ms)
        self.frame_bytes = frame_bytes(frame_ms)
        amp = 32768.0 * 10 ** (threshold_dbfs / 20)
        self._min_sumsq = amp * amp * (self.frame_bytes // 2)
        self._aggressiveness = aggressiveness
        self._latched = False

    def fresh(self) -> FrameVad:
        """A new detector with the same settings (no state carried over)."""
        return FrameVad(self.kind, threshold_dbfs=self.threshold_dbfs, aggressiveness=self._aggressiveness,
                        frame_ms=self.frame_ms)

    def loud(self, frame: bytes) -> bool:
        if len(frame) != self.frame_bytes:
            return False
        x = np.frombuffer(frame, "<i2").astype(np.float32)
        return float(np.dot(x, x)) >= self._min_sumsq

    def is_voiced(self, frame: bytes) -> bool:
        loud = self.loud(frame)
        if self._webrtc is None:
            return loud
        speech = len(frame) == self.frame_bytes and bool(self._webrtc.is_speech(frame, RATE))  # keep its state fed
        if not loud:
            self._latched = False
            return False
        self._latched = self._latched or speech
        return self._latched


def voiced_flags(frames: Sequence[bytes], vad: FrameVad) -> list[bool]:
    """Offline flags with the same detector, plus hindsight: a loud stretch confirmed as speech
    partway through counts as voiced from its first loud frame."""
    v = vad.fresh()
    flags: list[bool] = []
    run_start: int | None = None
    for k, frame in enumerate(frames):
        voiced = v.is_voiced(frame)
        loud = voiced or (v.kind == "webrtc" and v.loud(frame))
        if not loud:
            run_start = None
        elif run_start is None:
            run_start = k
        if voiced and run_start is not None and run_start < k and not flags[k - 1]:
            for j in range(run_start, k):
                flags[j] = True
        flags.append(voiced)
    return flags


def segments(flags: Sequence[bool], merge_frames: int = 10) -> list[tuple[int, int]]:
    """Voiced stretches as (first, last) frame indices, inclusive; gaps shorter than
    `merge_frames` unvoiced frames are bridged (pauses inside a sentence)."""
    out: list[tuple[int, int]] = []
    for k, voiced in enumerate(flags):
        if not voiced:
            continue
        if out and k - out[-1][1] - 1 < merge_frames:
            out[-1] = (out[-1][0], k)
        else:
            out.append((k, k))
    return out


# --- the caller's side ----------------------------------------------------------------


@dataclass
class TurnRecord:
    """When the script played one turn (tick indices; end exclusive) and why it started."""

    index: int
    start: int
    end: int | None = None
    trigger: str = ""  # "pause" | "barge-in" | "no-greeting" | "no-reply"


@dataclass(frozen=True)
class TurnRequest:
    """A live script's call for its next turn: the far end's audio in ticks [heard_from, at)
    is what the turn answers; `at` is when the far end yielded the floor."""

    index: int
    heard_from: int
    at: int
    trigger: str


class CallerScript(Generic[T]):
    """Plays `turns` one at a time, each once, and listens in between.

    A turn starts when the far end has spoken and then been silent for `gap_frames`, or
    `barge_frames` after the far end started speaking (to interrupt it on purpose). Before
    the first turn the far end gets `greeting_frames` to start talking (then we speak first).
    After the last turn, once the far end has replied and then been silent for
    `hangup_frames`, `finished` is set ("done"); if it does not start replying to a turn
    within `reply_frames`, too ("no reply"). Never before tick `not_before`. With no turns at
    all it only listens. The owner hangs up when it sees `finished`.

    `live`: turns beyond `turns` are produced while the call runs. When one is due the script
    sets `wanted` and stays silent until the owner hands it over with `supply()` (or ends the
    call with `close()`); the turn then starts at the next tick. Its thinking time therefore
    lies before the turn and never counts towards the far end's reply latency.
    """

    def __init__(
        self,
        turns: Sequence[Sequence[T]],
        *,
        gap_frames: int,
        hangup_frames: int,
        barge_frames: int | None = None,
        greeting_frames: int = 150,
        reply_frames: int = 750,
        not_before: int = 0,
        live: bool = False,
    ) -> None:
        self._turns = [list(t) for t in turns]
        self._live = live
        self.wanted: TurnRequest | None = None
        self._closing: str | None = None
        self._heard_from = 0  # tick the caller last took the floor (a live turn answers what followed)
        self._gap = max(1, gap_frames)
        self._hangup = max(1, hangup_frames)
        self._barge = barge_frames
        self._greeting = greeting_frames
        self._reply_wait = max(1, reply_frames)
        self._not_before = not_before  # no hangup before this tick (e.g. DTMF still to send)
        self.records: list[TurnRecord] = []
        self.finished: str | None = None  # why the call should end, once it should
        self._speaking: TurnRecord | None = None
        self._listen_from = 0  # received frames before this tick belong to an earlier phase
        self._onset: int | None = None  # far end's first voiced frame in this listening phase
        self._last_voiced: int | None = None

    def on_rx(self, k: int, voiced: bool) -> None:
        if not voiced or k < self._listen_from or self._speaking is not None:
            return
        if self._onset is None:
            self._onset = k
        self._last_voiced = k

    def tx(self, k: int) -> T | None:
        rec = self._speaking
        if rec is not None:
            turn = self._turns[rec.index]
            if k - rec.start < len(turn):
                return turn[k - rec.start]
            rec.end = k
            self._speaking = None
            self._listen(k)
        if self.finished is not None:
            return None
        if self._closing is not None:
            self.finished = self._closing
            return None
        want = self.wanted
        if want is not None:  # a live turn is being produced: silent until it arrives
            if len(self._turns) <= want.index:
                return None
            self.wanted = None
            return self._start(k, want.trigger)
        trigger = self._trigger(k)
        if trigger is None:
            return None
        if trigger.startswith("hangup:"):
            if k >= self._not_before:
                self.finished = trigger[7:]
            return None
        heard_from, self._heard_from = self._heard_from, k
        if len(self.records) >= len(self._turns):  # live: ask the owner for it
            self.wanted = TurnRequest(len(self.records), heard_from, k, trigger)
            return None
        return self._start(k, trigger)

    def supply(self, frames: Sequence[T], *, last: bool = False) -> None:
        """The owner's answer to `wanted` (any thread): the next turn; `last`: no more after it."""
        if last:
            self._live = False
        self._turns.append(list(frames))  # one append: the clock thread sees all of it or nothing

    def close(self, why: str) -> None:
        """The owner has no more turns and wants the call ended now (any thread)."""
        self._live = False
        self._closing = why

    def _start(self, k: int, trigger: str) -> T | None:
        rec = TurnRecord(len(self.records), k, trigger=trigger)
        self.records.append(rec)
        self._speaking = rec
        return self.tx(k)

    def _listen(self, k: int) -> None:
        self._listen_from = k
        self._onset = self._last_voiced = None

    def _trigger(self, k: int) -> str | None:
        more = self._live or len(self.records) < len(self._turns)
        onset, last = self._onset, self._last_voiced
        if onset is None:
            waited = k - self._listen_from
            if not self.records:  # nobody has said anything yet
                if waited < self._greeting:
                    return None
                return "no-greeting" if more else "hangup:no reply"
            return "hangup:no reply" if waited >= self._reply_wait else None
        assert last is not None
        quiet = k - 1 - last  # unvoiced frames received since the far end's last voiced one
        if more and self._barge is not None and k >= onset + self._barge:
            return "barge-in"
        if more and quiet >= self._gap:
            return "pause"
        if not more and quiet >= self._hangup:
            return "hangup:done"
        return None


# --- the reference far end ------------------------------------------------------------


@dataclass
class ReplyRecord:
    heard_end: int  # the caller's last voiced frame received before this reply
    start: int
    end: int | None = None  # tick after the last frame played
    stopped: bool = False  # cut short because the caller talked over it
    frame_ms: int = FRAME_MS

    def to_json(self) -> dict[str, Any]:
        ms = self.frame_ms
        return {
            "heard_end_s": _s(self.heard_end + 1, ms),
            "start_s": _s(self.start, ms),
            "gap_ms": (self.start - self.heard_end - 1) * ms,
            "end_s": _s(self.end, ms) if self.end is not None else None,
            "stopped": self.stopped,
        }


class Replier(Generic[T]):
    """Answers speech with a fixed reply, by the frame clock: plays `greeting` once at the
    start, then `reply` after exactly `delay_frames` unvoiced frames following each burst of
    caller speech. With `stop_frames`, a greeting or reply is cut off once the caller has
    spoken `stop_frames` consecutive voiced frames over it (barge-in)."""

    def __init__(
        self, reply: Sequence[T], *, delay_frames: int, greeting: Sequence[T] = (), stop_frames: int | None = None,
        frame_ms: int = FRAME_MS,
    ) -> None:
        self._frame_ms = frame_ms
        self._reply = list(reply)
        self._greeting = list(greeting)
        self._delay = max(0, delay_frames)
        self._stop = stop_frames
        self.records: list[ReplyRecord] = []
        self._playing: list[T] | None = self._greeting or None
        self._pos = 0
        self._heard = False  # caller speech since the current reply started
        self._last_voiced = -1
        self._run = 0  # consecutive voiced frames received

    def on_rx(self, k: int, voiced: bool) -> None:
        if voiced:
            self._heard = True
            self._last_voiced = k
            self._run += 1
        else:
            self._run = 0

    def tx(self, k: int) -> T | None:
        if self._playing is not None and self._stop is not None and self._run >= self._stop:
            self._end(k, stopped=True)
        if self._playing is None and self._reply and self._heard and k - self._last_voiced - 1 >= self._delay:
            self.records.append(ReplyRecord(self._last_voiced, k, frame_ms=self._frame_ms))
            self._playing, self._pos, self._heard = self._reply, 0, False
        if self._playing is None:
            return None
        if self._pos >= len(self._playing):
            self._end(k, stopped=False)
            return self.tx(k)
        frame = self._playing[self._pos]
        self._pos += 1
        return frame

    def _end(self, k: int, *, stopped: bool) -> None:
        if self._playing is self._reply and self.records and self.records[-1].end is None:
            self.records[-1].end = k
            self.records[-1].stopped = stopped
        self._playing = None


# --- analysis -------------------------------------------------------------------------


def _s(k: int, frame_ms: int) -> float:
    return round(k * frame_ms / 1000, 3)


def analyse_turns(
    sent: Sequence[bool],
    received: Sequence[bool],
    turns: Sequence[TurnRecord],
    *,
    merge_frames: int = 10,
    frame_ms: int = FRAME_MS,
) -> dict[str, Any]:
    """Per-turn timing from the frame-aligned voiced flags of both directions (frames of `frame_ms`).

    Returns {"turns": [...], "segments": {"caller": [[start_s, end_s]...], "far_end": [...]}}.
    A turn's reply is the first far-end speech segment that starts after the turn's last
    voiced frame and before the next turn's first one. barge_in_stop_ms is set when the turn
    began while the far end held the floor, i.e. inside a far-end segment or in a pause of
    it shorter than `merge_frames` (the turn gap): the end of that segment minus the turn's
    onset, 0 if the far end had already gone quiet (it paused, heard us, and never resumed).
    """
    far = segments(received, merge_frames)
    onsets: list[int | None] = []
    ends: list[int | None] = []
    for rec in turns:
        stop = rec.end if rec.end is not None else len(sent)
        voiced = [k for k in range(rec.start, min(stop, len(sent))) if sent[k]]
        onsets.append(voiced[0] if voiced else None)
        ends.append(voiced[-1] if voiced else None)
    out: list[dict[str, Any]] = []
    for i, rec in enumerate(turns):
        onset, last = onsets[i], ends[i]
        limit = next((o for o in onsets[i + 1 :] if o is not None), None)
        item: dict[str, Any] = {
            "index": i + 1,
            "trigger": rec.trigger,
            "sent_start_s": _s(onset, frame_ms) if onset is not None else None,
            "sent_end_s": _s(last + 1, frame_ms) if last is not None else None,
            "reply_start_s": None,
            "reply_end_s": None,
            "latency_ms": None,
            "barge_in_stop_ms": None,
        }
        if last is not None:
            reply = next((seg for seg in far if seg[0] > last and (limit is None or seg[0] < limit)), None)
            if reply is not None:
                item["reply_start_s"], item["reply_end_s"] = _s(reply[0], frame_ms), _s(reply[1] + 1, frame_ms)
                item["latency_ms"] = (reply[0] - last - 1) * frame_ms
        if onset is not None:
            talking = next((seg for seg in reversed(far) if seg[0] <= onset), None)
            if talking is not None and onset - talking[1] - 1 < merge_frames:
                item["barge_in_stop_ms"] = max(0, talking[1] + 1 - onset) * frame_ms
        out.append(item)
    mine = segments(sent, merge_frames)
    return {
        "turns": out,
        "segments": {
            "caller": [[_s(a, frame_ms), _s(b + 1, frame_ms)] for a, b in mine],
            "far_end": [[_s(a, frame_ms), _s(b + 1, frame_ms)] for a, b in far],
        },
    }


@dataclass
class MediaLog:
    """Everything one call's media port saw, as plain data (safe to keep after pj objects die)."""

    sent: list[bytes] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)
    ticks: int = 0  # frames the call's media clock ran for
    frame_ms: int = FRAME_MS
    t0_monotonic: float | None = None  # best estimate of tick 0's time.monotonic()
    late_max: float = 0.0  # seconds: the latest any tick ran after its slot (a starved clock thread)
    vad: str = "energy"
