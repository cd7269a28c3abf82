"""Pure, synchronous audio code: playout queue, PCM helpers, VAD, frame sizes.

Submodules are imported directly (``from gateway.media.audio import tone``) so that
importing one does not pull numpy/soxr/piper into code that only needs another.
"""
