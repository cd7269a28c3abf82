"""One /metrics for a supervisor: every worker's series with a `worker` label, plus the
supervisor's own (restarts, worker up, the front's view of each worker)."""

from __future__ import annotations

import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from gateway.front import FrontError

if TYPE_CHECKING:
    from gateway.supervisor import Supervisor

_SCRAPE_TIMEOUT = 2.0


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
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self._server: ThreadingHTTPServer | None = None

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
        return "\n".join(lines) + "\n"

    def serve(self, address: str, port: int) -> None:
        merged = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = merged.render().encode()
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
