"""The call's frame size: one setting (`media: {frame_ms: ...}`) sizes the whole media path.

pjmedia's clock and port, the RTP packets, the PlayoutBuffer, the VAD, the turn detector and the
session's audio clock all step by the same frame. 20 ms is the default; 10 ms is the low-latency
profile (docs/DESIGN.md §3: with 10 ms packets both ways the media path adds 8.5-15 ms instead of ~24 ms).
No numpy here: the test phone's pure modules import it too.
"""

from __future__ import annotations

__all__ = ["SAMPLE_RATE", "FRAME_MS_CHOICES", "DEFAULT_FRAME_MS", "frame_bytes", "check_frame_ms"]

SAMPLE_RATE = 8000  # every call's PCM (G.711's rate; G.722 is resampled by pjmedia)
FRAME_MS_CHOICES = (10, 20)  # G.711 packs 10 ms per codec frame; webrtcvad takes 10/20/30 ms
DEFAULT_FRAME_MS = 20


def check_frame_ms(frame_ms: int) -> int:
    if frame_ms not in FRAME_MS_CHOICES:
        raise ValueError(f"frame_ms must be 10 or 20, not {frame_ms!r}")
    return frame_ms


def frame_bytes(frame_ms: int = DEFAULT_FRAME_MS) -> int:
    """PCM16 mono bytes in one frame: 320 for 20 ms, 160 for 10 ms."""
    return 2 * SAMPLE_RATE * frame_ms // 1000
