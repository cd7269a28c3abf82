"""A Google Cloud Text-to-Speech gRPC server (google.cloud.texttospeech.v1.TextToSpeech).

Uses the package's own message types for (de)serialisation and the service's real method paths,
so the SDK's stock gRPC transport talks to it unchanged. The "speech" is a 440 Hz tone lasting
`seconds_per_char` per input character, in whatever encoding and rate the request asked for.
"""

from __future__ import annotations

import asyncio
import math
import struct
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from google.cloud import texttospeech_v1 as tts

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SERVICE = "google.cloud.texttospeech.v1.TextToSpeech"
Enc = tts.AudioEncoding


@dataclass
class Recorded:
    voices: list[str] = field(default_factory=list)
    encodings: list[int] = field(default_factory=list)
    rates: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)


class FakeGoogleTTS:
    def __init__(
        self,
        *,
        seconds_per_char: float = 0.02,
        chunk_seconds: float = 0.1,
        wav_header_in_stream: bool = False,
        fail_with: grpc.StatusCode | None = None,
        stall_after_chunks: int | None = None,
        fail_after_chunks: int | None = None,
        pause_seconds: float = 0.0,
        chunk_bytes: int | None = None,
    ) -> None:
        self.stall_after_chunks = stall_after_chunks  # then send nothing more, keep the stream open
        self.fail_after_chunks = fail_after_chunks    # then abort with UNAVAILABLE (mid-sentence)
        self.pause_seconds = pause_seconds            # between chunks (with chunk_bytes=1: a trickle)
        self.chunk_bytes = chunk_bytes
        self.seconds_per_char = seconds_per_char
        self.chunk_seconds = chunk_seconds
        self.wav_header_in_stream = wav_header_in_stream  # to prove the client copes either way
        self.fail_with = fail_with
        self.recorded = Recorded()
        self.port = 0
        self._server: grpc.aio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeGoogleTTS:
        handlers = {
            "StreamingSynthesize": grpc.stream_stream_rpc_method_handler(
                self._streaming_synthesize,
                request_deserializer=tts.StreamingSynthesizeRequest.deserialize,
                response_serializer=tts.StreamingSynthesizeResponse.serialize,
            ),
            "SynthesizeSpeech": grpc.unary_unary_rpc_method_handler(
                self._synthesize_speech,
                request_deserializer=tts.SynthesizeSpeechRequest.deserialize,
                response_serializer=tts.SynthesizeSpeechResponse.serialize,
            ),
        }
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        await self._server.stop(grace=None)

    async def _streaming_synthesize(
        self, requests: AsyncIterator[tts.StreamingSynthesizeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tts.StreamingSynthesizeResponse]:
        self._record_call("StreamingSynthesize", context)
        config: tts.StreamingSynthesizeConfig | None = None
        header_sent = False
        async for request in requests:
            if config is None:
                if "streaming_config" not in request:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first request must carry streaming_config")
                config = request.streaming_config
                self._record_voice(config.voice.name, config.streaming_audio_config)
                continue
            text = request.input.text
            self.recorded.texts.append(text)
            if self.fail_with is not None:
                await context.abort(self.fail_with, "scripted failure")
            audio_cfg = config.streaming_audio_config
            rate = audio_cfg.sample_rate_hertz or 24000
            body = _encode(_tone(len(text) * self.seconds_per_char, rate), audio_cfg.audio_encoding)
            if self.wav_header_in_stream and not header_sent:
                header_sent = True
                yield tts.StreamingSynthesizeResponse(audio_content=_wav_header(audio_cfg.audio_encoding, rate, 0))
            step = self.chunk_bytes or max(1, int(rate * self.chunk_seconds) * _bytes_per_sample(audio_cfg.audio_encoding))
            for n, i in enumerate(range(0, len(body), step)):
                if self.stall_after_chunks is not None and n >= self.stall_after_chunks:
                    await asyncio.sleep(3600)
                if self.fail_after_chunks is not None and n >= self.fail_after_chunks:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted failure mid-stream")
                if n and self.pause_seconds:
                    await asyncio.sleep(self.pause_seconds)
                yield tts.StreamingSynthesizeResponse(audio_content=body[i : i + step])

    async def _synthesize_speech(
        self, request: tts.SynthesizeSpeechRequest, context: grpc.aio.ServicerContext
    ) -> tts.SynthesizeSpeechResponse:
        self._record_call("SynthesizeSpeech", context)
        self._record_voice(request.voice.name, request.audio_config)
        self.recorded.texts.append(request.input.text)
        if self.fail_with is not None:
            await context.abort(self.fail_with, "scripted failure")
        cfg = request.audio_config
        rate = cfg.sample_rate_hertz or 24000
        body = _encode(_tone(len(request.input.text) * self.seconds_per_char, rate), cfg.audio_encoding)
        if cfg.audio_encoding in (Enc.LINEAR16, Enc.MULAW, Enc.ALAW):  # documented: these carry a WAV header
            body = _wav_header(cfg.audio_encoding, rate, len(body)) + body
        return tts.SynthesizeSpeechResponse(audio_content=body)

    def _record_call(self, method: str, context: grpc.aio.ServicerContext) -> None:
        self.recorded.methods.append(method)
        self.recorded.metadata.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})

    def _record_voice(self, voice: str, audio_cfg: tts.AudioConfig | tts.StreamingAudioConfig) -> None:
        self.recorded.voices.append(voice)
        self.recorded.encodings.append(int(audio_cfg.audio_encoding))
        self.recorded.rates.append(audio_cfg.sample_rate_hertz)


def _tone(seconds: float, rate: int, freq: float = 440.0) -> bytes:
    n = round(seconds * rate)
    return struct.pack(f"<{n}h", *(int(8000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)))


def _encode(pcm: bytes, encoding: int) -> bytes:
    if encoding == Enc.MULAW:
        return audioop.lin2ulaw(pcm, 2)
    if encoding == Enc.ALAW:
        return audioop.lin2alaw(pcm, 2)
    return pcm  # LINEAR16 / PCM


def _bytes_per_sample(encoding: int) -> int:
    return 1 if encoding in (Enc.MULAW, Enc.ALAW) else 2


def _wav_header(encoding: int, rate: int, data_len: int) -> bytes:
    fmt_tag = {Enc.MULAW: 7, Enc.ALAW: 6}.get(encoding, 1)
    width = _bytes_per_sample(encoding)
    fmt = struct.pack("<HHIIHH", fmt_tag, 1, rate, rate * width, width, width * 8)
    return (
        b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + data_len) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", data_len)
    )
