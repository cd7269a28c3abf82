"""One /metrics for a supervisor: every worker's series with a `worker` label, plus the
supervisor's own (restarts, worker up, the front's view of each worker and its flood screening).

The page is cached: it is rebuilt at most once per `max_age` seconds, so however often and by
however many it is scraped, the workers are scraped and kamcmd is run once per interval."""

from __future__ import annotations

import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from gateway.ops.front import FrontError

if TYPE_CHECKING:
    from gateway.ops.supervisor import Supervisor

_SCRAPE_TIMEOUT = 2.0
_MAX_AGE = 1.0  # seconds a merged page is served from the cache


def relabel(text: str, worker: str, seen_meta: set[str]) -> list[str]:
    """Add worker="..." to every sample; keep each HELP/TYPE line once across workers."""
    out: list[str] = []
    label = f'worker="{worker}"'
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("#"):
            if line not in seen_meta:
                seen_meta.add(line)
                out.append(line)
            continue
        name_end = len(line)
        for i, ch in enumerate(line):
            if ch in "{ ":
                name_end = i
                break
        name, rest = line[:name_end], line[name_end:]
        if rest.startswith("{"):
            out.append(f"{name}{{{label},{rest[1:]}" if rest[1:2] != "}" else f"{name}{{{label}{rest[1:]}")
        else:
            out.append(f"{name}{{{label}}}{rest}")
    return out


class MergedMetrics:
    def __init__(self, supervisor: Supervisor, max_age: float = _MAX_AGE) -> None:
        self.supervisor = supervisor
        self.max_age = max_age
        self.builds = 0  # pages rendered (each one scrape of every worker)
        self._lock = threading.Lock()
        self._page = ""
        self._built_at = float("-inf")
        self._server: ThreadingHTTPServer | None = None

    def page(self) -> str:
        """The cached page, rebuilt when older than max_age. Scrapes arriving during a rebuild
        wait for it and share its result instead of starting their own."""
        with self._lock:
            if time.monotonic() - self._built_at >= self.max_age:
                self._page = self.render()
                self._built_at = time.monotonic()
                self.builds += 1
            return self._page

    def render(self) -> str:
        lines: list[str] = []
        seen: set[str] = set()
        up: dict[str, int] = {}
        for worker in self.supervisor.workers:
            url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
            try:
                with urllib.request.urlopen(url, timeout=_SCRAPE_TIMEOUT) as resp:
                    text = resp.read().decode()
            except OSError:
                up[worker.name] = 0
                continue
            up[worker.name] = 1
            lines += relabel(text, worker.name, seen)
        lines += ["# HELP gateway_worker_up 1 when the worker's metrics answered this scrape",
                  "# TYPE gateway_worker_up gauge"]
        lines += [f'gateway_worker_up{{worker="{n}"}} {v}' for n, v in up.items()]
        lines += ["# HELP gateway_worker_restarts_total Worker processes restarted after dying",
                  "# TYPE gateway_worker_restarts_total counter"]
        lines += [f'gateway_worker_restarts_total{{worker="{w.name}"}} {w.restarts}'
                  for w in self.supervisor.workers]
        lines += ["# HELP gateway_front_destination_up 1 when the front sends new calls to the worker",
                  "# TYPE gateway_front_destination_up gauge"]
        try:
            for dest in self.supervisor.front.destinations():
                value = 1 if dest["state"] == "active" else 0
                lines.append(f'gateway_front_destination_up{{worker="{dest["uid"]}"}} {value}')
        except FrontError:
            pass
        lines += self._screening()
        return "\n".join(lines) + "\n"

    def _screening(self) -> list[str]:
        try:
            stats = self.supervisor.front.screening()
        except FrontError:
            return []
        return [
            "# HELP gateway_front_bans_total Untrusted sources the front banned for flooding",
            "# TYPE gateway_front_bans_total counter",
            f"gateway_front_bans_total {stats['bans']}",
            "# HELP gateway_front_banned_sources Sources whose ban has not expired yet",
            "# TYPE gateway_front_banned_sources gauge",
            f"gateway_front_banned_sources {stats['banned_now']}",
            "# HELP gateway_front_requests_refused_total Requests from untrusted sources stopped at"
            " the front: banned (dropped), unknown_source (403, or dropped if configured)",
            "# TYPE gateway_front_requests_refused_total counter",
            f'gateway_front_requests_refused_total{{reason="banned"}} {stats["dropped_banned"]}',
            f'gateway_front_requests_refused_total{{reason="unknown_source"}} '
            f'{stats["unknown_source"]}',
        ]

    def serve(self, address: str, port: int) -> None:
        merged = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = merged.page().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((address, port), Handler)
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
