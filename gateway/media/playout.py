"""Outbound audio queue between asyncio producers and pjmedia's clock thread.

The producer (TTS, clips) writes PCM at whatever pace it likes; the clock thread
pulls exactly one frame every 20 ms and sends silence when it gets None. Barge-in
is `clear()`: the wire goes quiet at the next tick.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

__all__ = ["PlayoutBuffer"]


class PlayoutBuffer:
    """Thread-safe FIFO of PCM bytes handed out in fixed-size frames.

    Chunks are kept as written (a deque plus a read offset into the head chunk),
    so a read costs one frame-sized copy no matter how much audio is queued.

    While a stream is open (`begin_stream()` .. `end_stream()`), a trailing partial
    frame is held back until more audio arrives: padding it would put a gap in the
    middle of speech. Outside a stream the last partial frame is zero-padded.
    """

    def __init__(self, frame_bytes: int = 320, on_drained: Callable[[], None] | None = None) -> None:
        if frame_bytes <= 0 or frame_bytes % 2:
            raise ValueError(f"frame_bytes must be a positive even number, got {frame_bytes}")
        self._frame_bytes = frame_bytes
        self._on_drained = on_drained
        self._lock = threading.Lock()
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # read position inside self._chunks[0]
        self._queued = 0
        self._streaming = False
        self._paused = False
        self.frames_out = 0
        self.underruns = 0
        self.played_bytes = 0

    @property
    def frame_bytes(self) -> int:
        return self._frame_bytes

    @property
    def queued_bytes(self) -> int:
        with self._lock:
            return self._queued

    @property
    def streaming(self) -> bool:
        return self._streaming

    @property
    def paused(self) -> bool:
        return self._paused

    # -- producer side ---------------------------------------------------------

    def write(self, pcm: bytes) -> None:
        """Append audio. The bytes are copied, so callers may reuse their buffer."""
        if not pcm:
            return
        data = bytes(pcm)
        with self._lock:
            self._chunks.append(data)
            self._queued += len(data)

    def begin_stream(self) -> None:
        """More audio is coming: an empty buffer now counts as an underrun."""
        with self._lock:
            self._streaming = True

    def end_stream(self) -> None:
        """No more audio for this stream: the tail may now be padded and played."""
        with self._lock:
            self._streaming = False

    def clear(self) -> int:
        """Drop all queued audio, end the stream and unpause; returns bytes dropped.

        Idempotent. Unpausing too means nothing of the interrupted playout survives:
        the next write plays without a separate resume().
        """
        with self._lock:
            dropped = self._queued
            self._chunks.clear()
            self._offset = 0
            self._queued = 0
            self._streaming = False
            self._paused = False
        return dropped

    def pause(self) -> None:
        """Stop handing out frames but keep the queue (a barge-in not yet confirmed)."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    # -- clock thread ----------------------------------------------------------

    def read_frame(self) -> bytes | None:
        """Next frame of exactly frame_bytes, or None (caller sends silence)."""
        size = self._frame_bytes
        with self._lock:
            if self._paused:
                return None
            queued = self._queued
            if queued == 0 or (queued < size and self._streaming):
                if self._streaming:
                    self.underruns += 1
                return None
            take = size if queued >= size else queued
            frame = self._take(take)
            self._queued = queued - take
            self.frames_out += 1
            self.played_bytes += take
            drained = self._queued == 0
        if take < size:
            frame += bytes(size - take)
        if drained and self._on_drained is not None:
            self._on_drained()
        return frame

    def _take(self, n: int) -> bytes:
        """Pop n bytes from the chunk queue (caller holds the lock and checked n <= queued)."""
        head = self._chunks[0]
        off = self._offset
        end = off + n
        if end < len(head):
            self._offset = end
            return head[off:end]
        if end == len(head):
            self._chunks.popleft()
            self._offset = 0
            return head[off:] if off else head
        # The frame spans chunks: gather pieces (rare with normal chunk sizes).
        parts = [head[off:]]
        need = n - (len(head) - off)
        self._chunks.popleft()
        while need:
            head = self._chunks[0]
            if need < len(head):
                parts.append(head[:need])
                self._offset = need
                break
            parts.append(head)
            need -= len(head)
            self._chunks.popleft()
            self._offset = 0
        return b"".join(parts)
