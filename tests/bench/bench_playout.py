"""Cost of PlayoutBuffer.read_frame, the call pjmedia's clock thread makes every 20 ms.

Run: python tests/bench/bench_playout.py   (prints µs per read; not a test)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.media.playout import PlayoutBuffer  # noqa: E402

FRAME = 320


def _per_read_us(buf: PlayoutBuffer, reads: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reads):
        buf.read_frame()
    return (time.perf_counter() - t0) / reads * 1e6


def main() -> None:
    reads = 200_000
    cases: list[tuple[str, PlayoutBuffer]] = []

    # One big clip (10 minutes) queued at once: a read must not depend on queue size.
    big = PlayoutBuffer()
    big.write(bytes(FRAME * reads))
    cases.append(("one 64 MB chunk", big))

    # Frame-sized writes, as a streaming TTS provider produces them.
    framed = PlayoutBuffer()
    for _ in range(reads):
        framed.write(bytes(FRAME))
    cases.append(("320-byte chunks", framed))

    # Awkward chunk sizes: most frames span two chunks.
    odd = PlayoutBuffer()
    for _ in range(reads * FRAME // 197 + 1):
        odd.write(bytes(197))
    cases.append(("197-byte chunks", odd))

    cases.append(("empty (silence)", PlayoutBuffer()))

    for name, buf in cases:
        print(f"{name:>18}: {_per_read_us(buf, reads):6.3f} µs/read")


if __name__ == "__main__":
    main()
