"""The call's audio between WebRTC and the pipeline: 48 kHz Opus frames (or 8 kHz G.711, as the
far end negotiated) ↔ the pipeline's 8 kHz mono PCM frames.

Each direction has one soxr streaming resampler for the whole call: re-creating it per frame
would click at every frame edge and cost a filter set-up each time. They run in soxr's
variable-rate mode (`vr=True`) at HQ: the same 80 dB stop band, but a steady frame out per frame
in after about 25 ms, where the fixed-rate HQ stream holds 7 frames (140 ms) and then releases
them in one burst. The outbound track is its own
20 ms clock (the SIP path has pjmedia's): the agent's audio leaves at the rate it is spoken, never
in a burst, and silence fills the gaps, as on a phone line.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable

import av
import numpy as np
import soxr
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.media.framing import SAMPLE_RATE
from gateway.media.playout import PlayoutBuffer

OPUS_RATE = 48000
PACKET_MS = 20
_PACKET = OPUS_RATE * PACKET_MS // 1000  # samples per outbound frame
_LATE_RESET = 0.1  # seconds behind the clock after which it starts again instead of catching up


def _stream(in_rate: int, out_rate: int) -> soxr.ResampleStream:
    return soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ", vr=True)


class Downsampler:
    """Received frames (any rate, mono or stereo s16) → pipeline frames of frame_samples."""

    def __init__(self, frame_samples: int, rate: int = SAMPLE_RATE) -> None:
        self._rate = rate
        self._frame_bytes = frame_samples * 2
        self._in_rate = 0
        self._stream: soxr.ResampleStream | None = None
        self._pending = bytearray()

    def push(self, frame: av.AudioFrame) -> list[bytes]:
        samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))
        mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1).astype(np.int16)
        if frame.sample_rate != self._in_rate:  # set once per call (a codec change re-sets it)
            self._in_rate = frame.sample_rate
            self._stream = None if frame.sample_rate == self._rate else _stream(frame.sample_rate, self._rate)
        out = mono if self._stream is None else self._stream.resample_chunk(mono)
        self._pending += out.astype(np.int16).tobytes()
        size = self._frame_bytes
        count = len(self._pending) // size
        frames = [bytes(self._pending[i * size:(i + 1) * size]) for i in range(count)]
        del self._pending[:count * size]
        return frames


class PacedTrack(MediaStreamTrack):
    """The agent's side of the call: pipeline audio from a PlayoutBuffer, resampled to 48 kHz,
    handed to aiortc's encoder one 20 ms frame per tick of its own clock."""

    kind = "audio"

    def __init__(self, playout: PlayoutBuffer, rate: int = SAMPLE_RATE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._playout = playout
        self._silence = bytes(playout.frame_bytes)
        self._up = _stream(rate, OPUS_RATE)
        self._fifo = np.zeros(0, dtype=np.int16)
        self._clock = clock
        self._start: float | None = None
        self._pts = 0
        self._first_pts = 0  # pts at the clock's (re)start
        self.frames_out = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        if self._start is None:
            self._start = now
        else:
            self._pts += _PACKET
            due = self._start + (self._pts - self._first_pts) / OPUS_RATE
            if now - due > _LATE_RESET:  # the loop stalled: start the clock again, no burst
                self._start, self._first_pts = now, self._pts
            elif due > now:
                await asyncio.sleep(due - now)
        samples = self._next_samples()
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = OPUS_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, OPUS_RATE)
        self.frames_out += 1
        return frame

    def _next_samples(self) -> np.ndarray:
        while len(self._fifo) < _PACKET:
            pcm = self._playout.read_frame() or self._silence
            chunk = self._up.resample_chunk(np.frombuffer(pcm, dtype=np.int16))
            self._fifo = np.concatenate((self._fifo, chunk.astype(np.int16)))
        out, self._fifo = self._fifo[:_PACKET], self._fifo[_PACKET:]
        return out
