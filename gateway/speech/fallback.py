"""Fallback between providers as adapters that are providers themselves: a session holds one
recogniser and one voice, and never learns that a second one took over.

`FallbackSpeechToText([deepgram, whisper])` streams through the first; when its stream fails,
the next one carries on with the audio still to come, after the audio of the words not yet
final (at most `REPLAY_SECONDS`), so a turn in progress is not lost (times stay on the one clock
of the audio pushed in). `FallbackTextToSpeech([cloud, offline])` says the text with the next
voice when one fails; when the first voice failed mid-sentence the next says only the words not
yet spoken. A provider that is not the last gets `handover_after` seconds for its first audio.
The last provider's error is raised as it is. Every hand-over is logged and told to
`on_failover` (for metrics). Each provider but the last has a circuit breaker
(`speech/breaker.py`) shared by every stream of the adapter, i.e. by the worker's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Literal

from gateway.errors import ProviderError
from gateway.speech.base import BYTES_PER_SECOND, SpeechToText, SttStream, TextToSpeech, run_until
from gateway.speech.breaker import CircuitBreaker, Probe

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
REPLAY_SECONDS = 10.0     # audio of a turn in progress handed to the next recogniser
_FRAME = 320              # bytes per replayed chunk (20 ms)
WORDS_PER_SECOND = 2.5    # a voice's pace, to tell how much of a sentence was already said
HANDOVER_AFTER = 1.5      # seconds of silence a voice that is not the last may cost


class _Chain:
    """The providers in order, and who hears of a hand-over."""

    def __init__(self, kind: Literal["stt", "tts"], names: Sequence[str],
                 on_failover: FailoverListener | None, probes: Sequence[Probe | None] = ()) -> None:
        if not names:
            raise ValueError(f"a {_WHAT[kind]} fallback needs at least one provider")
        self.kind = kind
        self.names = tuple(names)
        self.on_failover = on_failover
        probes = list(probes) + [None] * (len(self.names) - len(probes))
        self.breakers = [CircuitBreaker(f"{_WHAT[kind]} {name}", probe)
                         for name, probe in zip(self.names, probes, strict=True)]

    def usable(self, index: int) -> bool:
        """The last provider is always tried; the others unless their breaker is open."""
        return index + 1 >= len(self.names) or not self.breakers[index].open

    def succeeded(self, index: int) -> None:
        self.breakers[index].succeeded()

    def failed(self, index: int, error: ProviderError) -> None:
        """Provider `index` failed: raise if it was the last, else announce the next."""
        self.breakers[index].failed()
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
        self._chain = _Chain("stt", [p.name for p in self.providers], on_failover,
                             [_stt_probe(p) for p in self.providers])
        self.name = "+".join(self._chain.names)

    @property
    def breakers(self) -> list[CircuitBreaker]:
        return self._chain.breakers

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
        self._pending = bytearray()   # audio since the last final words: replayed on a hand-over

    async def _run(self) -> None:
        for index, provider in enumerate(self._providers):
            if not self._chain.usable(index):
                continue
            try:
                await self._relay(index, provider)
                self._chain.succeeded(index)
                return
            except ProviderError as exc:
                if self._closing:
                    raise  # hanging up: no point in opening another stream
                self._chain.failed(index, exc)

    async def _relay(self, index: int, provider: SpeechToText) -> None:
        # The new stream's clock starts at zero where its replayed audio starts: shift its times
        # onto ours.
        replay = bytes(self._pending)
        offset = (self._relayed - len(replay)) / BYTES_PER_SECOND
        inner = provider.stream(language=self._language, keyterms=self._keyterms)
        inner.hint(self.hints)
        self._inner = inner
        self.close_timeout = inner.close_timeout + 1.0  # room for the provider's own flush
        for at in range(0, len(replay), _FRAME):
            inner.push_audio(replay[at:at + _FRAME])
        try:
            await run_until(self._pass_events(index, inner, offset), self._pass_audio(inner))
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
            self._pending += pcm
            if len(self._pending) > REPLAY_SECONDS * BYTES_PER_SECOND:
                del self._pending[:len(self._pending) - int(REPLAY_SECONDS * BYTES_PER_SECOND)]
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

    async def _pass_events(self, index: int, inner: SttStream, offset: float) -> None:
        heard = False
        async for event in inner.events():
            if not heard:
                heard = True
                self._chain.succeeded(index)
            if event.is_final:
                self._pending.clear()  # these words are out: a hand-over need not replay them
            if offset:
                event = dataclasses.replace(event, start=event.start + offset, end=event.end + offset)
            self._emit(event)


class FallbackTextToSpeech(TextToSpeech):
    first_audio_timeout = None  # each provider keeps its own deadline

    chunk_timeout = None
    behind_timeout = None

    def __init__(self, providers: Sequence[TextToSpeech], *,
                 on_failover: FailoverListener | None = None,
                 handover_after: float | None = HANDOVER_AFTER) -> None:
        self.providers = tuple(providers)
        self._chain = _Chain("tts", [p.name for p in self.providers], on_failover,
                             [_tts_probe(p) for p in self.providers])
        self.name = "+".join(self._chain.names)
        self.handover_after = handover_after

    @property
    def breakers(self) -> list[CircuitBreaker]:
        return self._chain.breakers

    async def _synthesize(self, text: str, *, voice: str | None) -> AsyncIterator[bytes]:
        left = text
        for index, provider in enumerate(self.providers):
            if not self._chain.usable(index):
                continue
            last = index + 1 >= len(self.providers)
            # A voice name belongs to the first provider; the others speak in their own.
            chunks = provider.synthesize(left, voice=voice if index == 0 else None)
            if not last and self.handover_after is not None:
                chunks = _first_within(chunks, self.handover_after, provider.name)
            said = 0
            try:
                async with contextlib.aclosing(chunks):
                    async for chunk in chunks:
                        said += len(chunk)
                        yield chunk
                self._chain.succeeded(index)
                return
            except ProviderError as exc:
                self._chain.failed(index, exc)
                if said:
                    # Cut off mid-sentence: the next voice says only what was not heard yet.
                    left = unsaid(left, said / BYTES_PER_SECOND)
                    if not left:
                        return


def unsaid(text: str, seconds: float) -> str:
    """The words of `text` not yet spoken after `seconds` of its audio (at a voice's pace)."""
    words = text.split()
    return " ".join(words[int(seconds * WORDS_PER_SECOND):])


async def _first_within(chunks: AsyncIterator[bytes], seconds: float, name: str) -> AsyncIterator[bytes]:
    """The chunks, but the first must come within `seconds`: a fallback is waiting."""
    try:
        try:
            first = await asyncio.wait_for(chunks.__anext__(), seconds)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise ProviderError(name, f"no audio within {seconds:g} s: handing over",
                                retryable=True) from None
        yield first
        async for chunk in chunks:
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def _tts_probe(provider: TextToSpeech) -> Probe:
    async def probe() -> None:
        chunks = provider.synthesize("OK.")
        async with contextlib.aclosing(chunks):
            async for _chunk in chunks:
                pass

    return probe


def _stt_probe(provider: SpeechToText) -> Probe:
    async def probe() -> None:
        stream = provider.stream()
        try:
            for _ in range(25):            # half a second of silence
                stream.push_audio(bytes(_FRAME))
            stream.end_input()
            async for _event in stream.events():
                pass
        finally:
            await stream.aclose()

    return probe
