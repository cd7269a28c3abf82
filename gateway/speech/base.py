"""Provider interfaces. A vendor module implements only the abstract `_`-methods; the base
classes own timeouts, error translation and stage-latency metrics.

Audio everywhere is PCM16 mono 8 kHz (the call's rate); 20 ms = 320 bytes. Recognisers get
the call's frames as they come: 320 bytes each, or 160 with `media: {frame_ms: 10}`.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from gateway.errors import ProviderError
from gateway.speech.frames import LLMDelta, ToolSpec, TranscriptEvent


class SttStream(abc.ABC):
    """One recognition stream per call: push frames synchronously, read events with `async for`."""

    @abc.abstractmethod
    def push_audio(self, pcm: bytes) -> None:
        """Queue caller audio (never blocks, never raises for provider trouble)."""

    @abc.abstractmethod
    def events(self) -> AsyncIterator[TranscriptEvent]:
        """Interim and final transcripts until the stream closes. Raises ProviderError."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop; idempotent."""


class SpeechToText(abc.ABC):
    name: str = "stt"

    @abc.abstractmethod
    def stream(self, *, language: str = "en", keyterms: Sequence[str] = ()) -> SttStream: ...


class TextToSpeech(abc.ABC):
    name: str = "tts"
    first_audio_timeout: float = 5.0

    async def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[bytes]:
        """PCM chunks as soon as they exist. Vendor errors and timeouts become ProviderError."""
        started = time.monotonic()
        stream = self._synthesize(text, voice=voice).__aiter__()
        first = True
        while True:
            try:
                if first:
                    chunk = await asyncio.wait_for(stream.__anext__(), self.first_audio_timeout)
                else:
                    chunk = await stream.__anext__()
            except StopAsyncIteration:
                return
            except ProviderError:
                raise
            except TimeoutError:
                raise ProviderError(self.name, "no audio in time", retryable=True) from None
            except Exception as exc:  # noqa: BLE001 - translated at the edge
                raise ProviderError(self.name, str(exc) or type(exc).__name__, retryable=True) from exc
            if first:
                first = False
                self.first_audio_seconds = time.monotonic() - started
            yield chunk

    @abc.abstractmethod
    def _synthesize(self, text: str, *, voice: str | None) -> AsyncIterator[bytes]: ...


class LanguageModel(abc.ABC):
    name: str = "llm"
    first_token_timeout: float = 10.0

    async def chat(self, messages: list[dict], tools: Sequence[ToolSpec] = ()) -> AsyncIterator[LLMDelta]:
        """Streamed answer: text deltas and complete tool calls. Errors become ProviderError."""
        stream = self._chat(messages, tools).__aiter__()
        first = True
        while True:
            try:
                if first:
                    delta = await asyncio.wait_for(stream.__anext__(), self.first_token_timeout)
                    first = False
                else:
                    delta = await stream.__anext__()
            except StopAsyncIteration:
                return
            except ProviderError:
                raise
            except TimeoutError:
                raise ProviderError(self.name, "no answer in time", retryable=True) from None
            except Exception as exc:  # noqa: BLE001
                raise ProviderError(self.name, str(exc) or type(exc).__name__, retryable=True) from exc
            yield delta

    @abc.abstractmethod
    def _chat(self, messages: list[dict], tools: Sequence[ToolSpec]) -> AsyncIterator[LLMDelta]: ...
