"""WebRTC calls over WHIP (RFC 9725) and the call page, on the worker's HTTP server.

`POST /whip/<number>` with an SDP offer starts a call exactly as an INVITE does: the worker's own
call path routes the number through the dialplans, answers, and runs the same session and script;
only the leg under the call handle is WebRTC (gateway/webrtc) instead of SIP. The POST is
answered when the call logic answers (201, the SDP answer, a `Location`) or refuses (the
dialplan's reject code, 503 while draining or full). `DELETE <Location>` hangs up. Live events of
a call (transcript, per-turn latency, its end) stream as server-sent events from
`<Location>/events`, for the call page at `/`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from gateway.config.settings import Settings
from gateway.dialplan import model as dp
from gateway.dialplan.store import DialplanStore
from gateway.sip import events as ev
from gateway.webrtc.leg import WebRtcLeg
from gateway.webrtc.offer import OfferError
from gateway.worker.call import Call
from gateway.worker.http import HttpServer

log = logging.getLogger("gateway.webrtc")
PAGE = Path(__file__).with_name("page")
_NUMBER = re.compile(r"^\+?[0-9*#]{1,32}$")
# Keys of WebRTC calls, far above the SIP keys (gateway/sip/calls.py counts from 1).
_KEYS = itertools.count(1 << 40)
_PAGE_FILES = {"/": ("index.html", "text/html"), "/call.js": ("call.js", "text/javascript"),
               "/call.css": ("call.css", "text/css")}
MAX_EVENTS = 400  # a call's live events kept for a page that (re)connects


class CallStarter(Protocol):
    settings: Settings
    dialplans: DialplanStore
    calls: dict[int, Call]

    @property
    def draining(self) -> bool: ...
    def start_call(self, incoming: ev.IncomingCall, leg: WebRtcLeg) -> Call: ...


class WhipSession:
    """One WebRTC call as the HTTP side sees it: its resource id, its call, its live events."""

    def __init__(self, token: str, leg: WebRtcLeg) -> None:
        self.token = token
        self.leg = leg
        self.call: Call | None = None
        self.events: list[dict[str, Any]] = []  # the last MAX_EVENTS of `total`
        self.total = 0
        self.changed = asyncio.Event()
        self.ended = False

    def add(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append({"kind": kind, **data, "at": round(time.time(), 3)})
        self.total += 1
        if len(self.events) > MAX_EVENTS:
            del self.events[0]
        self.changed.set()

    async def follow(self) -> AsyncIterator[dict[str, Any]]:
        sent = 0  # of `total`
        while True:
            first = self.total - len(self.events)
            for event in self.events[max(0, sent - first):]:
                yield event
            sent = self.total
            if self.ended:
                return
            self.changed.clear()
            await self.changed.wait()


class WhipCalls:
    def __init__(self, worker: CallStarter) -> None:
        self.worker = worker
        self.settings = worker.settings
        self.sessions: dict[str, WhipSession] = {}

    def install(self, http: HttpServer) -> None:
        r = http.routes
        r.add_get("/", self.page)
        r.add_get("/call.js", self.page)
        r.add_get("/call.css", self.page)
        r.add_get("/numbers", self.numbers)
        r.add_post("/whip/{number}", self.post)
        r.add_route("OPTIONS", "/whip/{number}", self.options)
        r.add_delete("/whip/session/{token}", self.delete)
        r.add_patch("/whip/session/{token}", self.patch)
        r.add_get("/whip/session/{token}/events", self.stream)
        http.on_shutdown.append(self.close_all)

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.settings.webrtc_ice_addresses or (self.settings.http_address,)

    # ---- the call page ----
    async def page(self, request: web.Request) -> web.StreamResponse:
        name, kind = _PAGE_FILES[request.path]
        return web.Response(body=(PAGE / name).read_bytes(), content_type=kind, charset="utf-8",
                            headers={"Content-Security-Policy": "default-src 'self'"})

    async def numbers(self, request: web.Request) -> web.Response:
        """The numbers a caller can reach: every loaded dialplan that does not refuse calls."""
        plans = self.worker.dialplans.current.plans
        out = []
        for number, plan in sorted(plans.items()):
            action = plan.action
            if isinstance(action, dp.RejectAction):
                continue
            kind = "agent" if isinstance(action, dp.AgentAction) else (
                "transfer" if isinstance(action, dp.TransferAction) else "flow")
            what = action.script.name if isinstance(action, dp.AgentAction) else plan.name
            # The number as its file names it (+15550100), when it does; the stored form is bare.
            written = plan.name if dp.normalize_number(plan.name) == number else number
            out.append({"number": written, "dialplan": plan.name, "kind": kind, "name": what})
        return web.json_response(out)

    # ---- WHIP ----
    async def options(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"Accept-Post": "application/sdp",
                                                 "Allow": "POST, OPTIONS"})

    async def post(self, request: web.Request) -> web.Response:
        received = time.monotonic()
        number = request.match_info["number"].replace(" ", "")
        if request.content_type != "application/sdp":
            return _text(415, "the offer must be Content-Type: application/sdp")
        if not _NUMBER.match(number):
            return _text(404, "no such number")
        if self.worker.draining:
            return _text(503, "draining: not taking new calls", {"Retry-After": "30"})
        live = sum(1 for c in self.worker.calls.values() if c.transport == "webrtc")
        if live >= self.settings.webrtc_max_calls:
            return _text(503, "too many WebRTC calls on this worker", {"Retry-After": "5"})
        try:
            offer = await request.text()
            leg = await WebRtcLeg.from_offer(
                offer, hosts=self.hosts, ice_servers=self.settings.webrtc_ice_servers,
                frame_ms=self.settings.frame_ms, connect_timeout=self.settings.webrtc_connect_timeout)
        except (OfferError, UnicodeDecodeError) as exc:
            log.info("WHIP offer for %s refused: %s", number, exc)
            return _text(400, str(exc) if isinstance(exc, OfferError) else "the offer is not UTF-8 text")
        token = secrets.token_urlsafe(18)  # the resource's id is what lets its holder hang up
        session = WhipSession(token, leg)
        self.sessions[token] = session
        incoming = ev.IncomingCall(
            key=next(_KEYS), dialled=number, caller=dp.ANONYMOUS, call_id=f"webrtc-{uuid.uuid4()}",
            source=_source(request), trunk="webrtc", received_at=received, playout=leg.playout)
        call = self.worker.start_call(incoming, leg)
        session.call = call
        call.observers.append(session.add)
        leg.on_drained = lambda: call.deliver(ev.PlayoutDrained(call.key))
        leg.on_ended = self._ended(session, call)
        leg.on_connected = lambda: session.add("connected", {"codec": leg.codec})
        decision = await leg.decision
        if decision.code != 200:
            self.sessions.pop(token, None)
            return _text(decision.code, decision.reason or "refused")
        location = f"/whip/session/{token}"
        session.add("answered", {"call_id": call.record.call_id, "number": number,
                                 "dialplan": call.record.dialplan, "codec": leg.codec})
        return web.Response(status=201, text=leg.answer_sdp, content_type="application/sdp",
                            headers={"Location": location, "ETag": f'"{token[:8]}"'})

    def _ended(self, session: WhipSession, call: Call) -> Callable[[int, str, bool], None]:
        def ended(code: int, reason: str, by_remote: bool) -> None:
            call.deliver(ev.CallState(call.key, "disconnected", code, reason, by_remote=by_remote))
            self.sessions.pop(session.token, None)
            session.add("ended", {"code": code, "reason": reason, "by": "caller" if by_remote else "gateway"})
            session.ended = True
            session.changed.set()
        return ended

    async def delete(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["token"])
        if session is None:
            return _text(404, "no such session")
        await session.leg.remote_hangup()
        return _text(200, "call ended")

    async def patch(self, request: web.Request) -> web.Response:
        # Every candidate is in the answer and the offer is taken whole: no trickle, no ICE restart.
        status = 404 if request.match_info["token"] not in self.sessions else 405
        return _text(status, "trickle ICE is not supported: send every candidate in the offer",
                     {"Allow": "DELETE"})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        session = self.sessions.get(request.match_info["token"])
        if session is None:
            return _text(404, "no such session")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for event in session.follow():
            await response.write(f"event: {event['kind']}\ndata: {json.dumps(event)}\n\n".encode())
        return response

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            await session.leg.end()


def _source(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return f"{peer[0]}:{peer[1]}" if peer else "?"


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=headers)
