"""Deepgram streaming recognition over the live v1 websocket (deepgram-sdk).

The call's audio goes up as μ-law 8 kHz, exactly what the phone network carried, so Deepgram
sees no resampling artefacts and the upload is half the size of PCM16.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import warnings
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import ProviderError
from gateway.speech.frames import TranscriptEvent
from gateway.speech.base import SpeechToText, SttStream
from gateway.config.secrets import mask

with warnings.catch_warnings():  # stdlib audioop is deprecated (not removed) on 3.11/3.12
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

try:
    from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment
    from deepgram.core.api_error import ApiError
    from deepgram.listen.v1.types import ListenV1Error, ListenV1Results, ListenV1UtteranceEnd
except ImportError as exc:  # pragma: no cover - exercised through the registry
    raise ImportError("Deepgram needs the cloud extra: pip install 'gateway[cloud]'", name=exc.name) from exc


PROVIDER = "deepgram"
KEEPALIVE_SECONDS = 5.0   # Deepgram closes a socket after ~10 s without audio or KeepAlive
PLACEHOLDER_KEY = "unused"  # the SDK insists on a key; a self-hosted server ignores it
MAX_QUEUED_FRAMES = 500   # 10 s of 20 ms frames; beyond that the oldest audio is stale anyway
_CLOSE = object()         # sender sentinel: send CloseStream and stop


class DeepgramSTT(SpeechToText):
    """Factory for live recognition streams sharing one SDK client."""

    name = PROVIDER

    def __init__(
        self,
        *,
        api_key: str | None = None,
        model: str = "nova-3",
        url: str | None = None,
        endpointing_ms: int | None = 300,
        utterance_end_ms: int | None = 1000,
        interim_results: bool = True,
        smart_format: bool = True,
        connect_timeout: float = 5.0,
        close_timeout: float = 3.0,
    ) -> None:
        if api_key:  # the key named in the options (api_key_env / api_key_file)
            key = api_key
        elif _deepgram_host(url):
            key = os.environ.get("DEEPGRAM_API_KEY", "")
            if not key:
                raise ProviderError(PROVIDER,
                                    "no API key: set DEEPGRAM_API_KEY (or api_key_env / api_key_file)")
        else:
            # DEEPGRAM_API_KEY is for Deepgram's own hosts; another url (a self-hosted server)
            # gets a key only when one is named for it.
            key = PLACEHOLDER_KEY
        if key != PLACEHOLDER_KEY:
            mask(key)  # the websocket client logs its handshake headers at DEBUG
        self.model = model
        self.endpointing_ms = endpointing_ms
        self.utterance_end_ms = utterance_end_ms
        self.interim_results = interim_results
        self.smart_format = smart_format
        self.connect_timeout = connect_timeout
        self.close_timeout = close_timeout
        kwargs: dict[str, Any] = {"api_key": key}
        if url:
            # Only the websocket base matters for listen v1; REST stays on the default host.
            prod = DeepgramClientEnvironment.PRODUCTION
            kwargs["environment"] = DeepgramClientEnvironment(
                base=prod.base, production=url.rstrip("/"), agent=prod.agent, agent_rest=prod.agent_rest
            )
        self._client = AsyncDeepgramClient(**kwargs)

    def stream(self, *, language: str = "en", keyterms: Sequence[str] = ()) -> SttStream:
        return DeepgramStream(self, language=language, keyterms=tuple(keyterms))

    def connect_options(self, language: str, keyterms: Sequence[str]) -> dict[str, Any]:
        """Query parameters of the listen socket (exposed for tests and `gateway check`)."""
        opts: dict[str, Any] = {
            "model": self.model,
            "language": language,
            "encoding": "mulaw",
            "sample_rate": 8000,
            "channels": 1,
            "interim_results": self.interim_results,
            "smart_format": self.smart_format,
        }
        if self.endpointing_ms is not None:
            opts["endpointing"] = self.endpointing_ms
        if self.utterance_end_ms is not None and self.interim_results:
            opts["utterance_end_ms"] = self.utterance_end_ms  # only valid with interim results
        if keyterms:
            # Nova-3 takes plain `keyterm`s; older models only understand `keywords`.
            opts["keyterm" if self.model.startswith("nova-3") else "keywords"] = list(keyterms)
        return opts


def _deepgram_host(url: str | None) -> bool:
    """Deepgram's own service over TLS: the only place DEEPGRAM_API_KEY is sent."""
    if not url:
        return True
    parts = urlsplit(url)
    host = parts.hostname or ""
    return parts.scheme in ("wss", "https") and (host == "deepgram.com" or host.endswith(".deepgram.com"))


class DeepgramStream(SttStream):
    """One websocket per call. Audio is queued synchronously and sent by a task."""

    def __init__(self, provider: DeepgramSTT, *, language: str, keyterms: tuple[str, ...]) -> None:
        self._provider = provider
        self._options = provider.connect_options(language, keyterms)
        self._audio: asyncio.Queue[Any] = asyncio.Queue(MAX_QUEUED_FRAMES)
        self._events: asyncio.Queue[TranscriptEvent | BaseException | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        with contextlib.suppress(RuntimeError):  # created inside the loop: bind to it now
            self._bind(asyncio.get_running_loop())
        self._closing = False
        self._closed = False
        self._last_word_end = 0.0
        self._turn_open = False  # words heard since the last speech_final

    # -- public -----------------------------------------------------------------------------

    def push_audio(self, pcm: bytes) -> None:
        if self._closing or not pcm:
            return
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            # A media thread: hand over to the loop rather than touch asyncio objects here.
            self._loop.call_soon_threadsafe(self.push_audio, pcm)
            return
        self._ensure_started()
        self._enqueue(pcm)

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        self._ensure_started()
        while True:
            item = await self._events.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is None:
            self._events.put_nowait(None)
            return
        if not self._closing:
            self._closing = True
            self._put_audio(_CLOSE)
        # Let Deepgram flush its last finals after CloseStream, but never hang a hangup on it.
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self._provider.close_timeout)
        except TimeoutError:
            pass
        finally:
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._events.put_nowait(None)

    # -- internals ----------------------------------------------------------------------------

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def _ensure_started(self) -> None:
        if self._task is None:
            if self._loop is None:
                self._bind(asyncio.get_running_loop())
            assert self._loop is not None
            self._task = self._loop.create_task(self._run(), name="deepgram-stt")

    def _enqueue(self, pcm: bytes) -> None:
        if not self._closing:
            self._put_audio(audioop.lin2ulaw(pcm, 2))

    def _put_audio(self, item: Any) -> None:
        if self._audio.full():  # a stalled socket: drop the oldest audio, keep the newest
            with contextlib.suppress(asyncio.QueueEmpty):
                self._audio.get_nowait()
        self._audio.put_nowait(item)

    async def _run(self) -> None:
        try:
            await self._session()
        except ProviderError as exc:
            self._events.put_nowait(exc)
        except asyncio.CancelledError:
            raise
        except ApiError as exc:
            status = getattr(exc, "status_code", None)
            retryable = status not in (400, 401, 403)
            self._events.put_nowait(ProviderError(PROVIDER, f"connect failed ({status}): {exc.body}", retryable))
        except Exception as exc:  # noqa: BLE001 - any socket trouble ends this stream
            self._events.put_nowait(ProviderError(PROVIDER, f"{type(exc).__name__}: {exc}", retryable=True))
        else:
            self._events.put_nowait(None)

    async def _session(self) -> None:
        connect = self._provider._client.listen.v1.connect(**self._options)
        sock = await asyncio.wait_for(connect.__aenter__(), self._provider.connect_timeout)
        sender = asyncio.create_task(self._send_loop(sock), name="deepgram-send")
        receiver = asyncio.create_task(self._receive(sock), name="deepgram-receive")
        try:
            pending: set[asyncio.Task[None]] = {sender, receiver}
            while receiver in pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if sender in done and sender.exception() is not None:
                    raise sender.exception()  # type: ignore[misc]  # a failed send ends the stream too
            await receiver
        finally:
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
            with contextlib.suppress(Exception):
                await connect.__aexit__(None, None, None)

    async def _receive(self, sock: Any) -> None:
        async for message in sock:
            event = self._to_event(message)
            if event is not None:
                self._events.put_nowait(event)
        if not self._closing:  # the server hung up without being asked to
            raise ProviderError(PROVIDER, "socket closed by the server", retryable=True)

    async def _send_loop(self, sock: Any) -> None:
        while True:
            try:
                item = await asyncio.wait_for(self._audio.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await sock.send_keep_alive()
                continue
            if item is _CLOSE:
                await sock.send_close_stream()
                return
            await sock.send_media(item)

    def _to_event(self, message: Any) -> TranscriptEvent | None:
        if isinstance(message, ListenV1Results):
            alts = message.channel.alternatives
            text = alts[0].transcript.strip() if alts else ""
            if not text and not message.speech_final:
                return None  # silence updates carry nothing for the turn logic
            end = message.start + message.duration
            if text:
                self._last_word_end = end
            self._turn_open = bool(text) and not message.speech_final
            return TranscriptEvent(
                text=text,
                is_final=bool(message.is_final),
                confidence=float(alts[0].confidence) if alts else 0.0,
                start=message.start,
                end=end,
                speech_final=bool(message.speech_final),
            )
        if isinstance(message, ListenV1UtteranceEnd):
            # Deepgram's backstop when noise keeps speech_final from firing: the turn is over.
            # After a speech_final it repeats what we already said, so it is dropped then.
            if not self._turn_open:
                return None
            self._turn_open = False
            at = float(message.last_word_end or self._last_word_end)
            return TranscriptEvent(text="", is_final=True, confidence=1.0, start=at, end=at, speech_final=True)
        if isinstance(message, ListenV1Error):
            detail = f"{message.variant}: {message.description}"
            raise ProviderError(PROVIDER, detail, retryable=message.variant != "SchemaError")
        return None
