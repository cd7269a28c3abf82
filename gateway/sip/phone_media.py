"""Audio for the test softphone: play sources, WAV files and its frame-aligned media port.

The port's callbacks run on pjmedia's clock thread. Within one 20 ms tick the conference
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

from gateway.sip import pjutil
from gateway.sip.conversation import CallerScript, FrameVad, MediaLog, Replier

__all__ = [
    "SILENCE", "load_play_frames", "read_wav_8k", "split_frames", "write_wav", "write_stereo_wav",
    "FrameBank", "MediaPort",
]

RATE = pjutil.CLOCK_RATE
FRAME_BYTES = pjutil.FRAME_BYTES
FRAME_S = pjutil.PTIME_MS / 1000
SILENCE = bytes(FRAME_BYTES)


def load_play_frames(spec: str | None) -> list[bytes]:
    """`tone:HZ`, a WAV path, or None (silence) -> 20 ms PCM16 8 kHz frames to loop."""
    if not spec:
        return [SILENCE]
    if spec.startswith("tone:"):
        hz = float(spec[5:])
        t = np.arange(RATE) / RATE  # one second: whole cycles for integer HZ, seamless loop
        pcm = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    else:
        pcm = read_wav_8k(Path(spec))
    return split_frames(pcm.tobytes()) or [SILENCE]


def split_frames(data: bytes) -> list[bytes]:
    """PCM16 8 kHz bytes -> 20 ms frames, the last one padded with silence."""
    data += bytes(-len(data) % FRAME_BYTES)
    return [data[i : i + FRAME_BYTES] for i in range(0, len(data), FRAME_BYTES)]


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
    n = max(len(left), len(right))
    a = np.frombuffer(b"".join(left) + SILENCE * (n - len(left)), "<i2")
    b = np.frombuffer(b"".join(right) + SILENCE * (n - len(right)), "<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.stack([a, b], axis=1).astype("<i2").tobytes())


class FrameBank:
    """Every frame a phone may send, as bytes and as a prebuilt ByteVector (no conversion on
    the clock thread). Directors and loops refer to frames by their index here; 0 is silence."""

    def __init__(self) -> None:
        self.data: list[bytes] = [SILENCE]
        self.vecs: list[pj.ByteVector] = [pj.ByteVector(SILENCE)]

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
    ) -> None:
        super().__init__()
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
        self.t0 = math.inf  # min over ticks of monotonic() - k x 20 ms: a tick is late, never early
        self._t_max = -math.inf  # max of the same: how late the latest tick was

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        # getattr: at teardown a callback can reach a proxy without our attributes.
        if not getattr(self, "active", False):
            return
        k = self.tick
        self.tick = k + 1
        t0 = time.monotonic() - k * FRAME_S
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
        if len(data) != FRAME_BYTES:
            data = SILENCE  # a NONE frame still took 20 ms
        self.frames_received += 1
        if self._keep:
            rec = self.received
            if len(rec) > k:
                return  # never two writes per tick with one 20 ms bridge; keep the first
            while len(rec) < k:
                rec.append(SILENCE)
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
            t0_monotonic=None if self.t0 == math.inf else self.t0,
            late_max=max(0.0, self._t_max - self.t0),
            vad=self._vad.kind if self._vad is not None else "",
        )
