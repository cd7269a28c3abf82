"""The offline recogniser as it was before streaming decoding, for before/after benchmarks:
faster-whisper's 30 s pass after the utterance's own 0.36 s silence, no partial words, and no
early final when the gateway ends the turn. Selected by name: `stt: ["tests.bench.legacy:LegacyWhisperSTT"]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.speech.vendors.local import WhisperSTT, WhisperStream


class _LegacyStream(WhisperStream):
    def _on_finalize(self) -> None:
        pass  # the utterance ends by the recogniser's own silence only


@dataclass(kw_only=True, eq=False)
class LegacyWhisperSTT(WhisperSTT):
    window: float | None = None
    interim_interval: float | None = None
    pause_hypothesis: float | None = None

    def stream(self, *, language: str = "en", keyterms: Sequence[str] = ()) -> WhisperStream:
        new = super().stream(language=language, keyterms=keyterms)
        return _LegacyStream(self, new._seg, tuple(keyterms))
