"""Deepgram streaming recognition over the live v1 websocket (deepgram-sdk).

The call's audio goes up as μ-law 8 kHz, exactly what the phone network carried, so Deepgram
sees no resampling artefacts and the upload is half the size of PCM16.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment
from deepgram.core.api_error import ApiError
from deepgram.listen.v1.types import ListenV1Error, ListenV1Results, ListenV1UtteranceEnd

from gateway.errors import ProviderError
from gateway.speech import mulaw
from gateway.speech.base import SpeechToText, SttStream, run_until
from gateway.speech.frames import TranscriptEvent
from gateway.speech.keys import own_host, vendor_key

PROVIDER = "deepgram"
KEEPALIVE_SECONDS = 5.0   # Deepgram closes a socket after ~10 s without audio or KeepAlive
MAX_QUEUED_FRAMES = 500   # 10 s of 20 ms frames; beyond that the oldest audio is stale anyway


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
        stall_timeout: float | None = 5.0,
    ) -> None:
        # DEEPGRAM_API_KEY is for Deepgram's own hosts; another url (a self-hosted server) gets a
        # key only when one is named for it.
        key = vendor_key(PROVIDER, api_key, env="DEEPGRAM_API_KEY", missing="or api_key_env / api_key_file",
                         own=own_host(url, "deepgram.com", ("wss", "https"), subdomains=True))
        self.model = model
        self.endpointing_ms = endpointing_ms
        self.utterance_end_ms = utterance_end_ms
        self.interim_results = interim_results
        self.smart_format = smart_format
        self.connect_timeout = connect_timeout
        self.close_timeout = close_timeout
        # Deepgram answers audio with results (empty ones for silence) within about a second:
        # this much audio with no message at all is a socket gone quiet.
        self.stall_timeout = stall_timeout
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


class DeepgramStream(SttStream):
    """One websocket per call: a task sends the audio (and keep-alives), another reads results."""

    name = PROVIDER
    max_queued_chunks = MAX_QUEUED_FRAMES

    def __init__(self, provider: DeepgramSTT, *, language: str, keyterms: tuple[str, ...]) -> None:
        super().__init__()
        self._provider = provider
        self._options = provider.connect_options(language, keyterms)
        # Let Deepgram flush its last finals after CloseStream, but never hang a hangup on it.
        self.close_timeout = provider.close_timeout
        self.stall_timeout = provider.stall_timeout
        self._last_word_end = 0.0
        self._turn_open = False  # words heard since the last speech_final

    async def _run(self) -> None:
        try:
            await self._session()
        except ApiError as exc:
            status = getattr(exc, "status_code", None)
            retryable = status not in (400, 401, 403)
            raise ProviderError(PROVIDER, f"connect failed ({status}): {exc.body}", retryable) from exc

    async def _session(self) -> None:
        connect = self._provider._client.listen.v1.connect(**self._options)
        sock = await asyncio.wait_for(connect.__aenter__(), self._provider.connect_timeout)
        try:
            await run_until(self._receive(sock), self._send(sock))  # a failed send ends it too
        finally:
            with contextlib.suppress(Exception):
                await connect.__aexit__(None, None, None)

    async def _receive(self, sock: Any) -> None:
        async for message in sock:
            self._alive()
            event = self._to_event(message)
            if event is not None:
                self._emit(event)
        if not self._input_ended:  # the server hung up without being asked to
            raise ProviderError(PROVIDER, "socket closed by the server", retryable=True)

    async def _send(self, sock: Any) -> None:
        while True:
            try:
                pcm = await asyncio.wait_for(self._read_audio(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await sock.send_keep_alive()
                continue
            if pcm is None:
                await sock.send_close_stream()
                return
            await sock.send_media(mulaw.encode(pcm))

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
