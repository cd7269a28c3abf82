"""Fallback between providers as adapters that are providers themselves: a session holds one
recogniser and one voice, and never learns that a second one took over.

`FallbackSpeechToText([deepgram, whisper])` streams through the first; when its stream fails,
the next one carries on with the audio still to come (times stay on the one clock of the
audio pushed in). `FallbackTextToSpeech([cloud, offline])` says the text with the next voice
when one fails. The last provider's error is raised as it is. Every hand-over is logged and told
to `on_failover` (for metrics).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Literal

from gateway.errors import ProviderError
from gateway.speech.base import BYTES_PER_SECOND, SpeechToText, SttStream, TextToSpeech, run_until

log = logging.getLogger("gateway.speech.fallback")


@dataclasses.dataclass(frozen=True, slots=True)
class Failover:
    """One provider failed and the next took over."""

    kind: Literal["stt", "tts"]
    failed: str
    error: ProviderError
    next: str


FailoverListener = Callable[[Failover], None]
_WHAT = {"stt": "recogniser", "tts": "voice"}


class _Chain:
    """The providers in order, and who hears of a hand-over."""

    def __init__(self, kind: Literal["stt", "tts"], names: Sequence[str],
                 on_failover: FailoverListener | None) -> None:
        if not names:
            raise ValueError(f"a {_WHAT[kind]} fallback needs at least one provider")
        self.kind = kind
        self.names = tuple(names)
        self.on_failover = on_failover

    def failed(self, index: int, error: ProviderError) -> None:
        """Provider `index` failed: raise if it was the last, else announce the next."""
        if index + 1 >= len(self.names):
            raise error
        failover = Failover(self.kind, self.names[index], error, self.names[index + 1])
        log.warning("%s %s failed: %s; switching to %s", _WHAT[self.kind], failover.failed, error,
                    failover.next)
        if self.on_failover is not None:
            self.on_failover(failover)


class FallbackSpeechToText(SpeechToText):
    def __init__(self, providers: Sequence[SpeechToText], *,
                 on_failover: FailoverListener | None = None) -> None:
        self.providers = tuple(providers)
        self._chain = _Chain("stt", [p.name for p in self.providers], on_failover)
        self.name = "+".join(self._chain.names)

    def stream(self, *, language: str = "en", keyterms: Sequence[str] = ()) -> SttStream:
        return FallbackSttStream(self.providers, self._chain, language, tuple(keyterms))


class FallbackSttStream(SttStream):
    """Relays audio to the current provider's stream and its transcripts back."""

    def __init__(self, providers: tuple[SpeechToText, ...], chain: _Chain, language: str,
                 keyterms: tuple[str, ...]) -> None:
        super().__init__()
        self.name = "+".join(chain.names)
        self._providers = providers
        self._chain = chain
        self._language = language
        self._keyterms = keyterms
        self._relayed = 0             # bytes of audio handed to the providers' streams
        self._audio_ended = False     # the end of the input has been read
        self._inner: SttStream | None = None  # the current provider's stream

    async def _run(self) -> None:
        for index, provider in enumerate(self._providers):
            try:
                await self._relay(provider)
                return
            except ProviderError as exc:
                if self._closing:
                    raise  # hanging up: no point in opening another stream
                self._chain.failed(index, exc)

    async def _relay(self, provider: SpeechToText) -> None:
        # The new stream's clock starts at zero: shift its times onto ours.
        offset = self._relayed / BYTES_PER_SECOND
        inner = provider.stream(language=self._language, keyterms=self._keyterms)
        inner.hint(self.hints)
        self._inner = inner
        self.close_timeout = inner.close_timeout + 1.0  # room for the provider's own flush
        try:
            await run_until(self._pass_events(inner, offset), self._pass_audio(inner))
        finally:
            with contextlib.suppress(Exception):
                await inner.aclose()

    async def _pass_audio(self, inner: SttStream) -> None:
        while not self._audio_ended:
            pcm = await self._read_audio()
            if pcm is None:
                self._audio_ended = True
                break
            inner.push_audio(pcm)
            self._relayed += len(pcm)
        if self._closing:
            await inner.aclose()  # each provider closes its own way (flush or drop)
        else:
            inner.end_input()

    def hint(self, words: Sequence[str]) -> None:
        super().hint(words)
        if self._inner is not None:
            self._inner.hint(words)

    def _on_finalize(self) -> None:
        if self._inner is not None:
            self._inner.finalize()

    async def _pass_events(self, inner: SttStream, offset: float) -> None:
        async for event in inner.events():
            if offset:
                event = dataclasses.replace(event, start=event.start + offset, end=event.end + offset)
            self._emit(event)


class FallbackTextToSpeech(TextToSpeech):
    first_audio_timeout = None  # each provider keeps its own deadline

    def __init__(self, providers: Sequence[TextToSpeech], *,
                 on_failover: FailoverListener | None = None) -> None:
        self.providers = tuple(providers)
        self._chain = _Chain("tts", [p.name for p in self.providers], on_failover)
        self.name = "+".join(self._chain.names)

    async def _synthesize(self, text: str, *, voice: str | None) -> AsyncIterator[bytes]:
        for index, provider in enumerate(self.providers):
            # A voice name belongs to the first provider; the others speak in their own.
            chunks = provider.synthesize(text, voice=voice if index == 0 else None)
            try:
                async with contextlib.aclosing(chunks):
                    async for chunk in chunks:
                        yield chunk
                return
            except ProviderError as exc:
                self._chain.failed(index, exc)
