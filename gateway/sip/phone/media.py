"""Audio for the test softphone: play sources, WAV files and its frame-aligned media port.

The port's callbacks run on pjmedia's clock thread. Within one tick (one frame) the conference
bridge first reads every port (our onFrameRequested: the frame we send) and then writes every
port (our onFrameReceived: the frame we got), so both callbacks of tick k share index k:
`sent[k]` left us and `received[k]` reached us at the same instant of the call's media clock.
"""

from __future__ import annotations

import math
import time
import wave
from pathlib import Path

import numpy as np
import pjsua2 as pj

from gateway.media.framing import DEFAULT_FRAME_MS, frame_bytes
from gateway.sip import pjutil
from gateway.sip.phone.conversation import CallerScript, FrameVad, MediaLog, Replier

__all__ = [
    "SILENCE", "load_play_frames", "read_wav_8k", "split_frames", "write_wav", "write_stereo_wav",
    "FrameBank", "MediaPort",
]

RATE = pjutil.CLOCK_RATE
SILENCE = bytes(frame_bytes(DEFAULT_FRAME_MS))


def load_play_frames(spec: str | None, frame_ms: int = DEFAULT_FRAME_MS) -> list[bytes]:
    """`tone:HZ`, a WAV path, or None (silence) -> PCM16 8 kHz frames of frame_ms to loop."""
    silence = bytes(frame_bytes(frame_ms))
    if not spec:
        return [silence]
    if spec.startswith("tone:"):
        hz = float(spec[5:])
        t = np.arange(RATE) / RATE  # one second: whole cycles for integer HZ, seamless loop
        pcm = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    else:
        pcm = read_wav_8k(Path(spec))
    return split_frames(pcm.tobytes(), frame_ms) or [silence]


def split_frames(data: bytes, frame_ms: int = DEFAULT_FRAME_MS) -> list[bytes]:
    """PCM16 8 kHz bytes -> frames of frame_ms, the last one padded with silence."""
    size = frame_bytes(frame_ms)
    data += bytes(-len(data) % size)
    return [data[i : i + size] for i in range(0, len(data), size)]


def read_wav_8k(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768
    elif width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    else:
        raise ValueError(f"{path}: only 8/16-bit PCM WAV is supported")
    x = x.reshape(-1, channels).mean(axis=1)
    if rate != RATE:
        import soxr

        x = np.asarray(soxr.resample(x, rate, RATE), dtype=np.float32)  # HQ: offline, lag is harmless
    return (np.clip(x, -1, 1) * 32767).astype("<i2")


def write_wav(path: str, frames: list[bytes]) -> None:
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"".join(frames))


def write_stereo_wav(path: str, left: list[bytes], right: list[bytes]) -> None:
    """Two frame-aligned streams as one stereo WAV (left, right), the shorter padded."""
    a_pcm, b_pcm = b"".join(left), b"".join(right)
    n = max(len(a_pcm), len(b_pcm))
    a = np.frombuffer(a_pcm + bytes(n - len(a_pcm)), "<i2")
    b = np.frombuffer(b_pcm + bytes(n - len(b_pcm)), "<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.stack([a, b], axis=1).astype("<i2").tobytes())


class FrameBank:
    """Every frame a phone may send, as bytes and as a prebuilt ByteVector (no conversion on
    the clock thread). Directors and loops refer to frames by their index here; 0 is silence."""

    def __init__(self, frame_ms: int = DEFAULT_FRAME_MS) -> None:
        silence = bytes(frame_bytes(frame_ms))
        self.data: list[bytes] = [silence]
        self.vecs: list[pj.ByteVector] = [pj.ByteVector(silence)]

    def add(self, frames: list[bytes]) -> list[int]:
        first = len(self.data)
        for f in frames:
            self.data.append(f)
            self.vecs.append(pj.ByteVector(f))
        return list(range(first, len(self.data)))


class MediaPort(pj.AudioMediaPort):
    """Sends a loop or what a director (CallerScript/Replier) decides; optionally keeps both
    directions frame-aligned. Callbacks run on the clock thread and stay small."""

    def __init__(
        self,
        bank: FrameBank,
        loop: list[int],
        *,
        director: CallerScript[int] | Replier[int] | None = None,
        vad: FrameVad | None = None,
        keep: bool = False,
        frame_ms: int = DEFAULT_FRAME_MS,
    ) -> None:
        super().__init__()
        self.frame_ms = frame_ms
        self._frame_s = frame_ms / 1000
        self._frame_bytes = frame_bytes(frame_ms)
        self._silence = bytes(self._frame_bytes)
        self._vecs = bank.vecs
        self._data = bank.data
        self._loop = loop or [0]
        self._next = 0
        self.director = director
        self._vad = vad
        self._keep = keep
        self.active = True  # cleared at DISCONNECTED so the tail of silence is not recorded
        self.tick = 0  # ticks seen so far = frames sent
        self.sent: list[int] = []  # bank index per tick
        self.received: list[bytes] = []
        self.frames_received = 0
        self.t0 = math.inf  # min over ticks of monotonic() - k x frame: a tick is late, never early
        self._t_max = -math.inf  # max of the same: how late the latest tick was

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        # getattr: at teardown a callback can reach a proxy without our attributes.
        if not getattr(self, "active", False):
            return
        k = self.tick
        self.tick = k + 1
        t0 = time.monotonic() - k * self._frame_s
        if t0 < self.t0:
            self.t0 = t0
        if t0 > self._t_max:
            self._t_max = t0
        director = self.director
        if director is not None:
            idx = director.tx(k) or 0
        else:
            idx = self._loop[self._next]
            self._next = (self._next + 1) % len(self._loop)
        if self._keep:
            self.sent.append(idx)
        pjutil.write_frame_bytes(frame, self._vecs[idx])

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        if not getattr(self, "active", False):
            return
        k = self.tick - 1
        if k < 0:
            return  # the bridge sends heart-beat frames before we are connected both ways
        data = pjutil.read_frame_bytes(frame) if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO else b""
        if len(data) != self._frame_bytes:
            data = self._silence  # a NONE frame still took a tick
        self.frames_received += 1
        if self._keep:
            rec = self.received
            if len(rec) > k:
                return  # never two writes per tick with one bridge clock; keep the first
            while len(rec) < k:
                rec.append(self._silence)
            rec.append(data)
        director, vad = self.director, self._vad
        if director is not None and vad is not None:
            director.on_rx(k, vad.is_voiced(data))

    def stop(self) -> MediaLog:
        """Stop reacting to the clock and hand back what was seen (main thread)."""
        self.active = False
        data = self._data
        return MediaLog(
            sent=[data[i] for i in self.sent],
            received=list(self.received),
            ticks=self.tick,
            frame_ms=self.frame_ms,
            t0_monotonic=None if self.t0 == math.inf else self.t0,
            late_max=max(0.0, self._t_max - self.t0),
            vad=self._vad.kind if self._vad is not None else "",
        )
