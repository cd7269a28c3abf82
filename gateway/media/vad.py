"""Voice activity detection on the call's 8 kHz frames (20 or 10 ms), and speech segmentation on top.

webrtcvad costs ~2 µs per frame, so it runs inline on every inbound frame. `Segmenter` is
sans-IO: it counts frames instead of reading a clock, so the stream's timeline is exact and
tests need no sleeps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from gateway.media.audio import SAMPLE_RATE
from gateway.media.framing import DEFAULT_FRAME_MS, check_frame_ms, frame_bytes

__all__ = ["FRAME_BYTES", "FRAME_SECONDS", "Vad", "Segment", "Segmenter"]

# The Segmenter's frame (recognisers re-frame whatever the call delivers to this size).
FRAME_SECONDS = DEFAULT_FRAME_MS / 1000
FRAME_BYTES = frame_bytes(DEFAULT_FRAME_MS)  # 320: PCM16 mono


class Vad:
    """webrtcvad on PCM16 8 kHz frames of `frame_ms` (20 or 10). Aggressiveness 0 (lenient) .. 3 (strict).

    A frame quieter than `floor_dbfs` (RMS) is never speech. webrtcvad alone keeps saying
    "voiced" for ~80 ms after a sound stops, which would delay every end of turn by as much;
    a line's noise floor is far below the floor, and where noise is louder the gate is simply
    open and webrtcvad decides alone. `floor_dbfs=None`: webrtcvad alone (segmenting for a
    recogniser, where that tail bridges the pauses between words).
    """

    def __init__(self, aggressiveness: int = 2, floor_dbfs: float | None = -50.0,
                 frame_ms: int = DEFAULT_FRAME_MS) -> None:
        if not 0 <= aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0..3, not {aggressiveness}")
        self.aggressiveness = aggressiveness
        self._vad = webrtcvad.Vad(aggressiveness)
        self.frame_bytes = frame_bytes(check_frame_ms(frame_ms))
        amplitude = 0.0 if floor_dbfs is None else 32768.0 * 10 ** (floor_dbfs / 20)
        self._min_energy = amplitude * amplitude * (self.frame_bytes // 2)

    def is_speech(self, frame: bytes) -> bool:
        if len(frame) != self.frame_bytes:
            # webrtcvad accepts 10/20/30 ms; insisting on the call's frame catches framing bugs early.
            raise ValueError(f"VAD frame must be {self.frame_bytes} bytes, not {len(frame)}")
        speech = self._vad.is_speech(frame, SAMPLE_RATE)  # always: it keeps state across frames
        if not speech or not self._min_energy:
            return bool(speech)
        x = np.frombuffer(frame, "<i2").astype(np.float32)
        return float(np.dot(x, x)) >= self._min_energy


@dataclass(frozen=True, slots=True)
class Segment:
    """One stretch of speech, ready to transcribe."""

    pcm: bytes              # pre-roll + speech + the silence that ended it (PCM16 8 kHz)
    start: float            # stream seconds where speech began (pre-roll excluded)
    end: float              # stream seconds where the last voiced frame ended
    ended_by_silence: bool  # False: cut because it grew too long; the speaker is still talking


class Segmenter:
    """Cuts a frame stream into speech segments.

    Onset: `onset_frames` voiced frames among the last `onset_window`, so one noisy frame
    does not open a segment and one unvoiced frame does not delay a real onset. The
    `preroll` before onset is kept because the VAD fires a little after a soft start.
    End: `hangover` seconds without a voiced frame, or `max_length` reached. Segments with
    less than `min_speech` seconds of voiced frames are dropped (clicks, line noise): Whisper
    tends to invent words for them. webrtcvad itself holds "voiced" ~80 ms after a sound
    stops, so a 20 ms click reads as 100 ms; one-syllable words read as 400 ms or more.
    """

    def __init__(
        self,
        vad: Vad | None = None,
        *,
        preroll: float = 0.2,
        hangover: float = 0.36,
        max_length: float = 20.0,
        min_speech: float = 0.2,
        onset_frames: int = 3,
        onset_window: int = 5,
    ) -> None:
        if not 1 <= onset_frames <= onset_window:
            raise ValueError("need 1 <= onset_frames <= onset_window")
        self.vad = vad or Vad()
        self._preroll_frames = max(onset_window, _frames(preroll))
        self._hangover_frames = max(1, _frames(hangover))
        self._max_frames = max(self._hangover_frames + 1, _frames(max_length))
        self._min_voiced = _frames(min_speech)
        self._onset_frames = onset_frames
        self._onset_window = onset_window
        self._recent: deque[tuple[bytes, bool]] = deque(maxlen=self._preroll_frames)
        self._frames: list[bytes] = []  # the segment in progress, pre-roll included
        self._in_speech = False
        self._voiced = 0     # voiced frames in the current segment
        self._trailing = 0   # unvoiced frames since the last voiced one
        self._start = 0      # frame index of speech onset
        self._last_voiced = 0
        self._index = 0      # frames seen so far

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def now(self) -> float:
        """Stream seconds of audio pushed so far."""
        return self._index * FRAME_SECONDS

    @property
    def speech_seconds(self) -> float:
        """Length of the segment in progress since onset (0 when idle)."""
        return (self._index - self._start) * FRAME_SECONDS if self._in_speech else 0.0

    @property
    def silence_seconds(self) -> float:
        """Unvoiced time since the last voiced frame of the segment in progress (0 when idle)."""
        return self._trailing * FRAME_SECONDS if self._in_speech else 0.0

    @property
    def end(self) -> float:
        """End of the last voiced frame of the segment in progress, in stream seconds."""
        return self._last_voiced * FRAME_SECONDS

    @property
    def start(self) -> float:
        """Onset of the segment in progress, in stream seconds."""
        return self._start * FRAME_SECONDS

    def snapshot(self) -> bytes:
        """Audio of the segment in progress so far (for interim transcripts)."""
        return b"".join(self._frames)

    def push(self, frame: bytes) -> Segment | None:
        """Feed one 20 ms frame; returns a Segment when one ends with this frame."""
        voiced = self.vad.is_speech(frame)
        self._index += 1
        if not self._in_speech:
            self._recent.append((frame, voiced))
            window = list(self._recent)[-self._onset_window :]
            if sum(v for _, v in window) >= self._onset_frames:
                first = next(i for i, (_, v) in enumerate(window) if v)
                self._begin(self._index - len(window) + first)
            return None
        self._frames.append(frame)
        if voiced:
            self._voiced += 1
            self._trailing = 0
            self._last_voiced = self._index
        else:
            self._trailing += 1
        if self._trailing >= self._hangover_frames:
            return self._finish(ended_by_silence=True)
        if self._index - self._start >= self._max_frames:
            segment = self._finish(ended_by_silence=False)
            # Still talking: carry on at once, with no gap and no pre-roll to repeat.
            self._in_speech = True
            self._start = self._last_voiced = self._index
            return segment
        return None

    def flush(self) -> Segment | None:
        """End the segment in progress now (end of input)."""
        if not self._in_speech:
            return None
        return self._finish(ended_by_silence=True)

    def _begin(self, onset: int) -> None:
        self._in_speech = True
        self._frames = [f for f, _ in self._recent]
        self._voiced = sum(v for _, v in self._recent if v)
        self._trailing = 0
        self._start = onset
        self._last_voiced = self._index
        self._recent.clear()

    def _finish(self, *, ended_by_silence: bool) -> Segment | None:
        frames, voiced = self._frames, self._voiced
        start, end = self._start, self._last_voiced
        self._frames, self._voiced, self._trailing, self._in_speech = [], 0, 0, False
        if voiced < self._min_voiced:
            return None
        return Segment(
            pcm=b"".join(frames),
            start=start * FRAME_SECONDS,
            end=end * FRAME_SECONDS,
            ended_by_silence=ended_by_silence,
        )


def _frames(seconds: float) -> int:
    return max(0, round(seconds / FRAME_SECONDS))
