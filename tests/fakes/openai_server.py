"""An OpenAI-compatible chat completions endpoint streaming Server-Sent Events.

`POST /v1/chat/completions` with `stream: true` answers with `chat.completion.chunk` events in
chunked transfer encoding, then `data: [DONE]`, the way the real API does. Tool calls are split
into argument fragments across chunks so the client has to join them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field


@dataclass
class ScriptedToolCall:
    name: str
    arguments: str
    fragment_chars: int = 7  # how finely the argument JSON is cut up on the wire


@dataclass
class Reply:
    text_pieces: list[str] = field(default_factory=list)
    tool_calls: list[ScriptedToolCall] = field(default_factory=list)
    status: int = 200          # non-200: answer with an OpenAI-style JSON error instead
    error_message: str = "scripted failure"
    drop_after_chunks: int | None = None  # cut the connection mid-stream
    stall_after_chunks: int | None = None  # then send nothing more, keep the connection open
    pause_seconds: float = 0.0             # between chunks (a slow or trickling server)
    garbage_after_chunks: int | None = None  # then an event that is not JSON


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: dict


class FakeOpenAI:
    def __init__(self, replies: list[Reply] | None = None) -> None:
        self.replies = list(replies or [Reply(text_pieces=["Hello", " there."])])
        self.requests: list[Request] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> FakeOpenAI:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            if request.method != "POST" or not request.path.endswith("/chat/completions"):
                await _send_json(writer, 404, {"error": {"message": f"no route {request.path}", "type": "invalid_request_error"}})
                return
            reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
            if reply.status != 200:
                await _send_json(writer, reply.status, {"error": {"message": reply.error_message, "type": "server_error"}})
                return
            await self._stream(writer, request.body.get("model", "fake"), reply)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()

    async def _stream(self, writer: asyncio.StreamWriter, model: str, reply: Reply) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        sent = 0
        for chunk in _chunks(model, reply):
            if reply.drop_after_chunks is not None and sent >= reply.drop_after_chunks:
                writer.transport.abort()
                return
            if reply.stall_after_chunks is not None and sent >= reply.stall_after_chunks:
                await asyncio.sleep(3600)
            if reply.garbage_after_chunks is not None and sent >= reply.garbage_after_chunks:
                chunk = b"data: {not json\n\n"
            if sent and reply.pause_seconds:
                await asyncio.sleep(reply.pause_seconds)
            event = chunk if isinstance(chunk, bytes) else f"data: {json.dumps(chunk)}\n\n".encode()
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            sent += 1
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _chunks(model: str, reply: Reply) -> list[dict | bytes]:
    cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    created = int(time.time())

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    out: list[dict | bytes] = [chunk({"role": "assistant", "content": "" if reply.text_pieces else None})]
    out += [chunk({"content": piece}) for piece in reply.text_pieces]
    for index, call in enumerate(reply.tool_calls):
        out.append(chunk({"tool_calls": [{
            "index": index, "id": f"call_{uuid.uuid4().hex[:8]}", "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }]}))
        args = call.arguments
        for i in range(0, len(args), call.fragment_chars):
            out.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": args[i : i + call.fragment_chars]}}]}))
    out.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
    out.append(b"data: [DONE]\n\n")
    return out


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    raw = await reader.readexactly(length) if length else b""
    body = json.loads(raw) if raw else {}
    return Request(method, path, headers, body)


async def _send_json(writer: asyncio.StreamWriter, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    reason = {401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}
    writer.write(
        f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
    )
    await writer.drain()
