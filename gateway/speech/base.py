"""Provider interfaces. A vendor implements only its `_`-methods: `SttStream._run`,
`TextToSpeech._synthesize`, `LanguageModel._chat`. The base classes own the rest once: the
recogniser's audio and event queues, the hand-over from other threads, close, error translation,
the deadlines (first result, the longest gap between two results, audio that falls behind real
time, a recogniser that hears audio and says nothing) and the stage-latency figures. A provider
that misses a deadline fails with a retryable ProviderError, which the fallback adapters
(`speech/fallback.py`) hand over to the next provider.

Audio everywhere is PCM16 mono 8 kHz (the call's rate); 20 ms = 320 bytes. Recognisers get
the call's frames as they come: 320 bytes each, or 160 with `media: {frame_ms: 10}`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, TypeVar

from gateway.errors import ProviderError
from gateway.media.audio import SAMPLE_RATE
from gateway.speech.frames import LLMDelta, ToolSpec, TranscriptEvent

log = logging.getLogger("gateway.speech")
T = TypeVar("T")

BYTES_PER_SECOND = SAMPLE_RATE * 2  # PCM16 mono
_END = None  # end of input (in the audio queue) and of events (in the event queue)
_FINALIZE = object()  # in the audio queue: the turn is over, say the final words for what came before


class SttStream(abc.ABC):
    """One recognition stream per call: push frames synchronously, read events with `async for`.

    The vendor's `_run` reads audio with `_read_audio()`, hands out transcripts with `_emit()`,
    and returns when the input has ended and it has said all it will. Whatever it raises ends
    the stream: a ProviderError as it is, anything else as a retryable ProviderError.
    """

    name: str = "stt"            # reported in errors the base translates
    max_queued_chunks = 1500     # 30 s of 20 ms frames: a stalled vendor drops the oldest audio
    close_timeout = 0.0          # seconds `aclose()` lets `_run` finish before cancelling it
    # A vendor that calls `_alive()` for everything its service sends sets this: when it has
    # read this many seconds of audio and the service said nothing at all meanwhile (a socket
    # gone quiet), the stream fails. None: not watched.
    stall_timeout: float | None = None

    def __init__(self) -> None:
        self._audio: asyncio.Queue[Any] = asyncio.Queue(self.max_queued_chunks)
        self._events: asyncio.Queue[TranscriptEvent | BaseException | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        with contextlib.suppress(RuntimeError):  # made inside the loop: bind to it now
            self._bind(asyncio.get_running_loop())
        self._input_ended = False  # end_input() or aclose(): no more audio is taken
        self._closing = False      # aclose(): stop soon rather than finish the work
        self._closed = False
        self.hints: tuple[str, ...] = ()  # words the caller is likely to say next (see hint())
        self._silent_bytes = 0     # audio the vendor read since the service last said anything
        self._last_life = time.monotonic()

    # -- for the consumer ----------------------------------------------------------------

    def push_audio(self, pcm: bytes) -> None:
        """Queue caller audio: never blocks, never raises for provider trouble. From any thread."""
        if self._input_ended or not pcm:
            return
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            # A media thread: hand over to the loop rather than touch asyncio objects here.
            self._loop.call_soon_threadsafe(self.push_audio, pcm)
            return
        self._start()
        self._put_audio(pcm)

    def end_input(self) -> None:
        """No more audio: the vendor finishes what it has, then `events()` ends."""
        if self._input_ended:
            return
        self._input_ended = True
        self._put_audio(_END)

    def finalize(self) -> None:
        """The caller's turn is over: a recogniser that holds words back until it hears more
        silence should say them now. Ordered with the audio pushed before it."""
        if not self._input_ended:
            self._put_audio(_FINALIZE)

    def hint(self, words: Sequence[str]) -> None:
        """Words the caller is likely to say in the next turn; a recogniser may bias towards them."""
        self.hints = tuple(words)

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        """Interim and final transcripts until the stream ends. Raises ProviderError."""
        self._start()
        while True:
            item = await self._events.get()
            if item is _END:
                self._events.put_nowait(_END)  # a later reader ends at once too
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def aclose(self) -> None:
        """Stop: `_run` gets `close_timeout` seconds to flush, then is cancelled. Idempotent."""
        if self._closed:
            return
        self._closed = self._closing = True
        self.end_input()
        task = self._task
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), self.close_timeout)
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._events.put_nowait(_END)

    # -- for the vendor ------------------------------------------------------------------

    @abc.abstractmethod
    async def _run(self) -> None:
        """Recognise: read `_read_audio()` until it gives None, `_emit()` what was heard."""

    async def _read_audio(self) -> bytes | None:
        """The next chunk of caller audio; None once the input has ended."""
        while (item := await self._audio.get()) is _FINALIZE:
            self._on_finalize()
        if item is not None:
            self._silent_bytes += len(item)
        return item

    def _alive(self) -> None:
        """The service sent something (a result, metadata, an empty update): it is not stalled."""
        self._silent_bytes = 0
        self._last_life = time.monotonic()

    def _on_finalize(self) -> None:
        """`finalize()` reached the vendor: every chunk before it has been read."""

    def _emit(self, event: TranscriptEvent) -> None:
        self._events.put_nowait(event)

    # -- internals -----------------------------------------------------------------------

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def _start(self) -> None:
        if self._task is not None or self._closed:
            return
        if self._loop is None:
            try:
                self._bind(asyncio.get_running_loop())
            except RuntimeError:
                return  # no loop yet: the first events() starts the stream
        assert self._loop is not None
        self._task = self._loop.create_task(self._main(), name=f"{self.name}-stream")

    async def _main(self) -> None:
        try:
            if self.stall_timeout:
                await run_until(self._run(), self._watch(self.stall_timeout))
            else:
                await self._run()
        except asyncio.CancelledError:
            raise
        except ProviderError as exc:
            self._events.put_nowait(exc)
        except Exception as exc:  # noqa: BLE001 - any vendor trouble ends this stream
            log.debug("%s stream failed", self.name, exc_info=True)
            self._events.put_nowait(ProviderError(self.name, f"{type(exc).__name__}: {exc}", retryable=True))
        self._events.put_nowait(_END)

    async def _watch(self, limit: float) -> None:
        """Fail the stream when the vendor has been fed `limit` seconds of audio in `limit`
        seconds of wall time and its service has said nothing at all meanwhile."""
        while True:
            await asyncio.sleep(limit / 4)
            quiet = time.monotonic() - self._last_life
            if self._silent_bytes >= limit * BYTES_PER_SECOND and quiet >= limit and not self._input_ended:
                raise ProviderError(self.name, f"no word from the service for {quiet:.1f} s of audio",
                                    retryable=True)

    def _put_audio(self, item: bytes | None) -> None:
        if self._audio.full():  # a stalled vendor: drop the oldest audio, keep the newest
            with contextlib.suppress(asyncio.QueueEmpty):
                self._audio.get_nowait()
        self._audio.put_nowait(item)


async def run_until(main: Coroutine[Any, Any, None], *helpers: Coroutine[Any, Any, None]) -> None:
    """Run `main` with its helpers until `main` returns; the first failure of any ends them all
    and is raised. What a stream does when it sends and receives at once."""
    tasks = [asyncio.ensure_future(c) for c in (main, *helpers)]
    first = tasks[0]
    try:
        pending = set(tasks)
        while first in pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class SpeechToText(abc.ABC):
    name: str = "stt"

    @abc.abstractmethod
    def stream(self, *, language: str = "en", keyterms: Sequence[str] = ()) -> SttStream: ...


class TextToSpeech(abc.ABC):
    name: str = "tts"
    first_audio_timeout: float | None = 5.0  # None: no limit of its own (an adapter's inner ones apply)
    chunk_timeout: float | None = 3.0        # the longest gap between two chunks once audio flows
    # Once audio flows it may fall this many seconds behind real time (a server trickling one
    # byte a second keeps every gap short, and the caller would hear stutter).
    behind_timeout: float | None = 2.0
    first_audio_seconds: float | None = None  # of the last synthesis

    async def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[bytes]:
        """PCM chunks as soon as they exist. Vendor errors and timeouts become ProviderError."""
        started = asked = time.monotonic()
        first = True
        waited = 0.0   # seconds spent waiting for the vendor after its first chunk (not for us)
        sent = 0
        chunks = _guarded(self._synthesize(text, voice=voice), self.name, self.first_audio_timeout,
                          "no audio in time", self.chunk_timeout, "audio stopped mid-sentence")
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                now = time.monotonic()
                if first:
                    first = False
                    self.first_audio_seconds = now - started
                else:
                    waited += now - asked
                    if self.behind_timeout is not None and \
                            waited - sent / BYTES_PER_SECOND > self.behind_timeout:
                        raise ProviderError(self.name, "audio slower than real time", retryable=True)
                sent += len(chunk)
                yield chunk
                asked = time.monotonic()

    @abc.abstractmethod
    def _synthesize(self, text: str, *, voice: str | None) -> AsyncIterator[bytes]: ...


class LanguageModel(abc.ABC):
    name: str = "llm"
    first_token_timeout: float | None = 10.0
    token_timeout: float | None = 5.0     # the longest gap between two deltas once the answer flows
    answer_timeout: float | None = 60.0   # the whole answer

    async def chat(self, messages: list[dict], tools: Sequence[ToolSpec] = ()) -> AsyncIterator[LLMDelta]:
        """Streamed answer: text deltas and complete tool calls. Errors become ProviderError."""
        waited = 0.0   # seconds spent waiting for the model (not for whoever reads the answer)
        deltas = _guarded(self._chat(messages, tools), self.name, self.first_token_timeout,
                          "no answer in time", self.token_timeout, "the answer stopped mid-way")
        async with contextlib.aclosing(deltas):
            asked = time.monotonic()
            async for delta in deltas:
                waited += time.monotonic() - asked
                if self.answer_timeout is not None and waited > self.answer_timeout:
                    raise ProviderError(self.name, "the answer took too long", retryable=True)
                yield delta
                asked = time.monotonic()

    @abc.abstractmethod
    def _chat(self, messages: list[dict], tools: Sequence[ToolSpec]) -> AsyncIterator[LLMDelta]: ...


async def _guarded(items: AsyncIterator[T], provider: str, first_timeout: float | None,
                   too_late: str, idle_timeout: float | None = None,
                   stalled: str = "stalled") -> AsyncIterator[T]:
    """A vendor's stream with a deadline for its first item and for each gap after it, and its
    errors as ProviderError."""
    first = True
    try:
        while True:
            try:
                item = await asyncio.wait_for(items.__anext__(), first_timeout if first else idle_timeout)
                first = False
            except StopAsyncIteration:
                return
            except ProviderError:
                raise
            except TimeoutError:
                raise ProviderError(provider, too_late if first else stalled, retryable=True) from None
            except Exception as exc:  # noqa: BLE001 - translated at the edge
                raise ProviderError(provider, str(exc) or type(exc).__name__, retryable=True) from exc
            yield item
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()
