"""Google Cloud Text-to-Speech over gRPC (google-cloud-texttospeech).

Audio is requested as μ-law at 8 kHz: the phone call's own format, so nothing is resampled and
decoding to PCM16 is a table lookup. Chirp 3 HD voices stream (`StreamingSynthesize`); the older
voice families only answer the unary `SynthesizeSpeech`, which `mode="auto"` picks for them.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import weakref
from collections.abc import AsyncIterator
from typing import Any, Literal

import google.auth.exceptions
import grpc
from google.api_core import exceptions as gexc
from google.cloud import texttospeech_v1 as tts
from google.cloud.texttospeech_v1.services.text_to_speech.transports import TextToSpeechGrpcAsyncIOTransport
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from gateway.errors import ProviderError
from gateway.speech import mulaw
from gateway.speech.base import TextToSpeech

PROVIDER = "google"
SAMPLE_RATE = 8000
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
DEFAULT_VOICE = "en-US-Chirp3-HD-Charon"
Mode = Literal["auto", "streaming", "unary"]

# Server faults and throttling are worth another try; bad requests and auth are not.
_RETRYABLE = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.Aborted,
    gexc.Unknown,
)


class GoogleTTS(TextToSpeech):
    name = PROVIDER

    def __init__(
        self,
        *,
        voice: str = DEFAULT_VOICE,
        credentials_file: str | None = None,
        endpoint: str | None = None,
        insecure: bool = False,
        mode: Mode = "auto",
        speaking_rate: float | None = None,
        chunk_bytes: int = 800,
    ) -> None:
        """`endpoint` + `insecure=True` targets a plaintext gRPC server (tests, on-prem proxies);
        otherwise credentials come from `credentials_file` or GOOGLE_APPLICATION_CREDENTIALS."""
        self.voice = voice
        self.endpoint = endpoint
        self.insecure = insecure
        self.mode = mode
        self.speaking_rate = speaking_rate
        self.chunk_bytes = chunk_bytes  # unary answers arrive whole; pass them on in 100 ms pieces
        self._credentials = None if insecure else _load_credentials(credentials_file)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tts.TextToSpeechAsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    async def _synthesize(self, text: str, *, voice: str | None) -> AsyncIterator[bytes]:
        name = voice or self.voice
        client = self._client()
        try:
            if self._streams(name):
                chunks = self._streaming(client, text, name)
            else:
                chunks = self._unary(client, text, name)
            decoder = _MulawDecoder()
            async for chunk in chunks:
                pcm = decoder.feed(chunk)
                if pcm:
                    yield pcm
        except gexc.GoogleAPICallError as exc:
            raise ProviderError(PROVIDER, f"{type(exc).__name__}: {exc.message}", isinstance(exc, _RETRYABLE)) from exc
        except grpc.aio.AioRpcError as exc:
            retryable = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            raise ProviderError(PROVIDER, f"{exc.code().name}: {exc.details()}", retryable) from exc

    def _streams(self, voice: str) -> bool:
        if self.mode != "auto":
            return self.mode == "streaming"
        return "Chirp3-HD" in voice or "Chirp-HD" in voice  # the families with StreamingSynthesize

    async def _streaming(self, client: Any, text: str, voice: str) -> AsyncIterator[bytes]:
        audio = tts.StreamingAudioConfig(audio_encoding=tts.AudioEncoding.MULAW, sample_rate_hertz=SAMPLE_RATE)
        if self.speaking_rate:
            audio.speaking_rate = self.speaking_rate
        config = tts.StreamingSynthesizeConfig(voice=_voice(voice), streaming_audio_config=audio)

        async def requests() -> AsyncIterator[tts.StreamingSynthesizeRequest]:
            yield tts.StreamingSynthesizeRequest(streaming_config=config)
            yield tts.StreamingSynthesizeRequest(input=tts.StreamingSynthesisInput(text=text))

        responses = await client.streaming_synthesize(requests=requests())
        async for response in responses:
            if response.audio_content:
                yield response.audio_content

    async def _unary(self, client: Any, text: str, voice: str) -> AsyncIterator[bytes]:
        audio = tts.AudioConfig(audio_encoding=tts.AudioEncoding.MULAW, sample_rate_hertz=SAMPLE_RATE)
        if self.speaking_rate:
            audio.speaking_rate = self.speaking_rate
        response = await client.synthesize_speech(
            input=tts.SynthesisInput(text=text), voice=_voice(voice), audio_config=audio
        )
        body = response.audio_content
        if body.startswith(b"RIFF"):  # unary answers are WAV files; hand on the samples only
            body = body[_wav_data_offset(body) or 0 :]
        for i in range(0, len(body), self.chunk_bytes):
            yield body[i : i + self.chunk_bytes]

    def _client(self) -> tts.TextToSpeechAsyncClient:
        # grpc.aio channels belong to the loop that created them: one client per loop.
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            if self.insecure:
                target = self.endpoint or "127.0.0.1:50051"
                transport = TextToSpeechGrpcAsyncIOTransport(host=target, channel=grpc.aio.insecure_channel(target))
                client = tts.TextToSpeechAsyncClient(transport=transport)
            else:
                options = {"api_endpoint": self.endpoint} if self.endpoint else None
                client = tts.TextToSpeechAsyncClient(credentials=self._credentials, client_options=options)
            self._clients[loop] = client
        return client


def _voice(name: str) -> tts.VoiceSelectionParams:
    # Voice names start with their locale: "en-US-Chirp3-HD-Charon" -> "en-US".
    parts = name.split("-")
    language = "-".join(parts[:2]) if len(parts) >= 2 else "en-US"
    return tts.VoiceSelectionParams(language_code=language, name=name)


def _load_credentials(path: str | None) -> Any:
    path = path or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not path:
        raise ProviderError(
            PROVIDER, "no credentials: set GOOGLE_APPLICATION_CREDENTIALS (or the credentials_file option)"
        )
    # Load by explicit type rather than trusting whatever the file claims to be.
    try:
        with open(path, encoding="utf-8") as f:
            kind = json.load(f).get("type")
        if kind == "service_account":
            return service_account.Credentials.from_service_account_file(path, scopes=SCOPES)
        if kind == "authorized_user":  # `gcloud auth application-default login`
            return user_credentials.Credentials.from_authorized_user_file(path, scopes=SCOPES)
    except (OSError, ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        raise ProviderError(PROVIDER, f"cannot load credentials from {path}: {exc}") from exc
    raise ProviderError(PROVIDER, f"cannot load credentials from {path}: unsupported type {kind!r}")


class _MulawDecoder:
    """μ-law bytes -> PCM16, dropping a WAV header if the service wrapped the audio in one."""

    def __init__(self) -> None:
        self._head = b""
        self._in_body = False

    def feed(self, chunk: bytes) -> bytes:
        if not self._in_body:
            self._head += chunk
            if len(self._head) < 12 and b"RIFF".startswith(self._head[:4]):
                return b""  # not enough bytes yet to tell
            if not self._head.startswith(b"RIFF"):
                self._in_body, chunk, self._head = True, self._head, b""
            else:
                start = _wav_data_offset(self._head)
                if start is None:
                    return b""
                self._in_body, chunk, self._head = True, self._head[start:], b""
        return mulaw.decode(chunk)


def _wav_data_offset(buf: bytes) -> int | None:
    """Offset of the first byte after the 'data' chunk header, or None if not buffered yet."""
    pos = 12
    while pos + 8 <= len(buf):
        tag, size = buf[pos : pos + 4], struct.unpack_from("<I", buf, pos + 4)[0]
        if tag == b"data":
            return pos + 8
        pos += 8 + size + (size & 1)
    return None
