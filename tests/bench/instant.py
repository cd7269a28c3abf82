"""Zero-latency providers, to measure the gateway's own share of a turn.

InstantSTT: a final transcript (not `speech_final`) the moment the caller's speech segment ends (VAD), with a fixed
text. InstantTTS: a 1 s tone at once. Selected by name in gateway.yaml:
`stt: ["tests.bench.instant:InstantSTT"]`, `tts: "tests.bench.instant:InstantTTS"`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from gateway.speech.frames import TranscriptEvent
from gateway.media.audio import tone
from gateway.media.vad import FRAME_BYTES, Segmenter
from gateway.speech.base import SpeechToText, SttStream, TextToSpeech


class _InstantStream(SttStream):
    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text
        self._segmenter = Segmenter(hangover=0.1)

    async def _run(self) -> None:
        buf = bytearray()  # the call's frames (10 or 20 ms) re-cut to the Segmenter's
        while (pcm := await self._read_audio()) is not None:
            buf += pcm
            n = len(buf) - len(buf) % FRAME_BYTES
            for i in range(0, n, FRAME_BYTES):
                segment = self._segmenter.push(bytes(buf[i:i + FRAME_BYTES]))
                if segment is not None:
                    # Not speech_final: the turn then ends by the gateway's own endpointing
                    # (end_of_turn_ms of silence), which the benchmark subtracts.
                    self._emit(TranscriptEvent(self._text, True, 1.0, segment.start, segment.end,
                                               speech_final=False))
            del buf[:n]


class InstantSTT(SpeechToText):
    name = "instant"

    def __init__(self, text: str = "yes") -> None:
        self.text = text

    def stream(self, *, language: str = "en", keyterms: Sequence[str] = ()) -> SttStream:
        return _InstantStream(self.text)


class InstantTTS(TextToSpeech):
    name = "instant"

    async def _synthesize(self, text: str, *, voice: str | None) -> AsyncIterator[bytes]:
        yield tone(440, 1.0)
