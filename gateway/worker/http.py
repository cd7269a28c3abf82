"""The worker's one HTTP server (aiohttp, on the worker's asyncio loop).

Features add their routes before it starts (`server.routes.add_post(...)`, or `add_routes`),
each from its own module: WebRTC over WHIP and the call page (worker/whip.py) today, the control
API beside them. Nothing here knows what the routes do. Every response says what it is and
keeps itself out of other pages (no sniffing, no framing); request bodies are bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger("gateway.http")
MAX_BODY = 64 * 1024  # an SDP offer or a control request; anything larger is refused (413)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


class HttpServer:
    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.port = port
        self.app = web.Application(client_max_size=MAX_BODY, middlewares=[_guard])
        self.routes = self.app.router
        self.on_shutdown: list[Callable[[], Awaitable[None]]] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address, self.port, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        for hook in self.on_shutdown:
            try:
                await hook()
            except Exception:  # noqa: BLE001 - one feature's shutdown must not keep the others up
                log.exception("http shutdown hook failed")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
