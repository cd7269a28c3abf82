"""An OpenAI-compatible chat completions server that plays callers, for `gateway simulate` tests.

It runs on 127.0.0.1 in a thread of its own (the simulator is synchronous) and speaks the real
wire protocol: `stream: false` gets a `chat.completion` JSON body, `stream: true` the SSE
chunks of openai_server.py. The reply is chosen by the request's model: each model is a list
of (words, reply) rules tried in order on the last user message (what the agent said), the
first whose words appear in it (case-insensitive; "" matches anything) wins. Every request is
recorded. `stall=True` accepts requests and never answers (a hung server, for timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
import uuid

from tests.fakes.openai_server import Reply, Request, _chunks, _read_request, _send_json

Rules = list[tuple[str, str]]


class PersonaServer:
    def __init__(self, personas: dict[str, Rules], *, stall: bool = False,
                 fallback: str = "Sorry, could you say that again?") -> None:
        self.personas = personas
        self.stall = stall
        self.fallback = fallback
        self.requests: list[Request] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-persona-llm", daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def heard(self, model: str | None = None) -> list[str]:
        """The last user message of each request (for `model`, if given): what the agent said."""
        return [_last_user(r.body) for r in self.requests if model is None or r.body.get("model") == model]

    def __enter__(self) -> PersonaServer:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def reply_for(self, body: dict) -> str:
        said = _last_user(body).lower()
        for words, reply in self.personas.get(str(body.get("model")), []):
            if words.lower() in said:
                return reply
        return self.fallback

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            if self.stall:
                await asyncio.sleep(3600)
            if request.method != "POST" or not request.path.endswith("/chat/completions"):
                await _send_json(writer, 404, {"error": {"message": f"no route {request.path}"}})
                return
            text = self.reply_for(request.body)
            model = str(request.body.get("model", "fake"))
            if request.body.get("stream"):
                await _stream(writer, model, text)
            else:
                body = json.dumps(_completion(model, text)).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def _last_user(body: dict) -> str:
    users = [m.get("content") or "" for m in body.get("messages") or [] if m.get("role") == "user"]
    return str(users[-1]) if users else ""


def _completion(model: str, text: str) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
        "model": model, "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 10 + len(text.split())},
    }


async def _stream(writer: asyncio.StreamWriter, model: str, text: str) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                 b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    for chunk in _chunks(model, Reply(text_pieces=re.findall(r"\S+\s*", text))):
        event = chunk if isinstance(chunk, bytes) else f"data: {json.dumps(chunk)}\n\n".encode()
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
    writer.write(b"0\r\n\r\n")
    await writer.drain()
