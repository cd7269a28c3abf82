"""A Deepgram live-transcription (listen v1) websocket server, enough for deepgram-sdk.

Binary frames are audio; text frames are KeepAlive / Finalize / CloseStream JSON. After a
scripted number of audio bytes it answers with an interim `Results`, then a final one with
speech_final, then `UtteranceEnd`, like the real service does at the end of a phrase.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

MULAW_8K_BYTES_PER_SECOND = 8000


@dataclass
class Utterance:
    """Say `text` once `after_bytes` of audio have arrived (counted from the stream start)."""

    text: str
    after_bytes: int
    confidence: float = 0.93


@dataclass
class Session:
    """What one client connection sent."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    audio: bytearray = field(default_factory=bytearray)
    control: list[str] = field(default_factory=list)  # KeepAlive / Finalize / CloseStream, in order

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


class FakeDeepgram:
    def __init__(
        self,
        script: list[Utterance] | None = None,
        *,
        drop_after_bytes: int | None = None,
        stall_after_bytes: int | None = None,
        close_after_bytes: int | None = None,
        garbage_after_bytes: int | None = None,
        status: int | None = None,
        silence_updates: bool = True,
        api_key: str | None = None,
    ) -> None:
        self.script = list(script or [])
        self.stall_after_bytes = stall_after_bytes    # keep reading, never answer again
        self.close_after_bytes = close_after_bytes    # a clean close frame mid-stream
        self.garbage_after_bytes = garbage_after_bytes  # a text frame that is not JSON, then close
        self.status = status                          # refuse the handshake with this HTTP status
        self.silence_updates = silence_updates        # an empty Results per second of audio
        self.api_key = api_key  # when set, other keys get the real service's 401 at the handshake
        self.drop_after_bytes = drop_after_bytes  # abort the TCP connection, no close frame
        self.sessions: list[Session] = []
        self._server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeDeepgram:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._authorize)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _authorize(self, ws: ServerConnection, request: Request) -> Response | None:
        if self.status is not None:
            return ws.respond(self.status, '{"err_code":"UNAVAILABLE","err_msg":"fake outage"}')
        if self.api_key is None or request.headers.get("Authorization") == f"Token {self.api_key}":
            return None
        return ws.respond(HTTPStatus.UNAUTHORIZED, '{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials."}')

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        parts = urlsplit(ws.request.path)
        session = Session(parts.path, parse_qs(parts.query), dict(ws.request.headers.raw_items()))
        self.sessions.append(session)
        pending = list(self.script)
        said = 0.0  # seconds of audio already covered by results
        async for message in ws:
            if isinstance(message, bytes):
                session.audio.extend(message)
                if self.drop_after_bytes is not None and len(session.audio) >= self.drop_after_bytes:
                    ws.transport.abort()
                    return
                if self.stall_after_bytes is not None and len(session.audio) >= self.stall_after_bytes:
                    continue
                if self.close_after_bytes is not None and len(session.audio) >= self.close_after_bytes:
                    await ws.close(1011)
                    return
                if self.garbage_after_bytes is not None and len(session.audio) >= self.garbage_after_bytes:
                    await ws.send("\x00not json{")
                    await ws.close(1000)
                    return
                second = len(session.audio) // MULAW_8K_BYTES_PER_SECOND
                if self.silence_updates and second > (len(session.audio) - len(message)) // MULAW_8K_BYTES_PER_SECOND:
                    await ws.send(json.dumps(_results("", said, 0.0, final=False, speech_final=False)))
                while pending and len(session.audio) >= pending[0].after_bytes:
                    utt = pending.pop(0)
                    said = await self._say(ws, utt, said, len(session.audio))
                continue
            kind = json.loads(message).get("type", "")
            session.control.append(kind)
            if self.stall_after_bytes is not None and len(session.audio) >= self.stall_after_bytes:
                continue
            if kind == "Finalize":
                await ws.send(json.dumps(_results("", said, 0.0, final=True, speech_final=False, from_finalize=True)))
            elif kind == "CloseStream":
                duration = len(session.audio) / MULAW_8K_BYTES_PER_SECOND
                await ws.send(json.dumps(_metadata(duration)))
                await ws.close(1000)
                return

    async def _say(self, ws: ServerConnection, utt: Utterance, said: float, audio_bytes: int) -> float:
        end = audio_bytes / MULAW_8K_BYTES_PER_SECOND
        duration = max(end - said, 0.01)
        words = utt.text.split()
        interim = " ".join(words[: max(1, len(words) // 2)])
        await ws.send(json.dumps(_results(interim, said, duration, final=False, speech_final=False, conf=0.6)))
        await ws.send(json.dumps(_results(utt.text, said, duration, final=True, speech_final=True, conf=utt.confidence)))
        await ws.send(json.dumps({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": end}))
        return end


def _results(
    text: str,
    start: float,
    duration: float,
    *,
    final: bool,
    speech_final: bool,
    conf: float = 0.9,
    from_finalize: bool = False,
) -> dict:
    words = []
    if text:
        step = duration / len(text.split())
        words = [
            {"word": w.lower(), "start": start + i * step, "end": start + (i + 1) * step,
             "confidence": conf, "punctuated_word": w}
            for i, w in enumerate(text.split())
        ]
    return {
        "type": "Results",
        "channel_index": [0, 1],
        "duration": duration,
        "start": start,
        "is_final": final,
        "speech_final": speech_final,
        "from_finalize": from_finalize,
        "channel": {"alternatives": [{"transcript": text, "confidence": conf if text else 0.0, "words": words}]},
        "metadata": {
            "request_id": str(uuid.uuid4()),
            "model_info": {"name": "general-nova-3", "version": "fake", "arch": "nova-3"},
            "model_uuid": str(uuid.uuid4()),
        },
    }


def _metadata(duration: float) -> dict:
    return {
        "type": "Metadata",
        "transaction_key": "deprecated",
        "request_id": str(uuid.uuid4()),
        "sha256": "0" * 64,
        "created": "2025-01-01T00:00:00.000Z",
        "duration": duration,
        "channels": 1,
    }
