"""G.711 μ-law, the phone network's own 8 kHz encoding, to and from PCM16: what the cloud
vendors are sent and answer in, so nothing on the way is resampled."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():  # stdlib audioop is deprecated (not removed) on 3.11/3.12
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


def encode(pcm: bytes) -> bytes:
    """PCM16 -> μ-law, one byte per sample."""
    return audioop.lin2ulaw(pcm, 2)


def decode(ulaw: bytes) -> bytes:
    """μ-law -> PCM16, a table lookup."""
    return audioop.ulaw2lin(ulaw, 2)
