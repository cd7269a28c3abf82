"""The per-call audio port (one frame per media clock tick), and a pool that never destroys a running port.

Runs on pjmedia's clock thread: keep the callbacks trivial. Destroying ports while the
clock runs crashed the process under load, so ports are parked and reused instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pjsua2 as pj

from gateway.media.framing import DEFAULT_FRAME_MS, SAMPLE_RATE
from gateway.media.playout import PlayoutBuffer

CLOCK_RATE = SAMPLE_RATE
_REST_SECONDS = 0.6  # the bridge detaches ports asynchronously; let it finish first


class CallAudioPort(pj.AudioMediaPort):
    def __init__(self) -> None:
        super().__init__()
        self.playout: PlayoutBuffer | None = None
        self.on_audio: Callable[[pj.MediaFrame], None] | None = None
        self.received = 0
        self.sent = 0

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:  # noqa: N802 (pjsua2 name)
        # getattr: at teardown a callback can reach a proxy without our attributes.
        buf = getattr(self, "playout", None)
        if buf is None:
            return
        pcm = buf.read_frame()
        if pcm is None:
            return  # size 0: the bridge sends silence
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        frame.buf = pj.ByteVector(pcm)
        frame.size = len(pcm)
        self.sent += 1

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:  # noqa: N802
        if frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO:
            return
        if not hasattr(self, "received"):
            return
        self.received += 1
        sink = self.on_audio
        if sink is not None:
            sink(frame)


class PortPool:
    """Hands out idle ports; a released port rests before reuse. pj thread only."""

    def __init__(self, frame_ms: int = DEFAULT_FRAME_MS) -> None:
        self.frame_ms = frame_ms
        self._idle: list[tuple[float, CallAudioPort]] = []
        self._all: list[CallAudioPort] = []
        self._seen = (0, 0)

    def acquire(self) -> CallAudioPort:
        now = time.monotonic()
        for i, (ready_at, port) in enumerate(self._idle):
            if ready_at <= now:
                del self._idle[i]
                return port
        port = CallAudioPort()
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.clockRate = CLOCK_RATE
        fmt.channelCount = 1
        fmt.bitsPerSample = 16
        fmt.frameTimeUsec = self.frame_ms * 1000
        port.createPort(f"call{len(self._all)}", fmt)
        self._all.append(port)
        return port

    def release(self, port: CallAudioPort) -> None:
        port.playout = None
        port.on_audio = None
        self._idle.append((time.monotonic() + _REST_SECONDS, port))

    def take_counters(self) -> tuple[int, int]:
        """Frames in/out since the last call. Only reads: the clock thread owns the counts."""
        received = sum(port.received for port in self._all)
        sent = sum(port.sent for port in self._all)
        delta = (received - self._seen[0], sent - self._seen[1])
        self._seen = (received, sent)
        return delta

    def clear(self) -> None:
        self._idle.clear()
        self._all.clear()
