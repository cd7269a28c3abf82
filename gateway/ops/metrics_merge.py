"""One /metrics for a supervisor: every worker's series with a `worker` label, plus the
supervisor's own (restarts, worker up, the front's view of each worker and its flood screening).

Workers' pages are read with prometheus_client's own parser and given out again by a collector
in a private registry, so the merged page is whatever `generate_latest` writes.
The page is cached: it is rebuilt at most once per `max_age` seconds, so however often and by
however many it is scraped, the workers are scraped and kamcmd is run once per interval."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from gateway.ops.front import FrontError
from gateway.ops.kamcmd import Destination, ScreeningStats

_SCRAPE_TIMEOUT = 2.0
_MAX_AGE = 1.0  # seconds a merged page is served from the cache
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ScrapedWorker(Protocol):
    """What the merge needs of a worker process."""

    name: str
    metrics_port: int
    restarts: int


class FrontStatus(Protocol):
    def destinations(self) -> Sequence[Destination]: ...

    def screening(self) -> ScreeningStats: ...


class Fleet(Protocol):
    """The supervisor as the merge sees it: its workers and its front."""

    workers: Sequence[ScrapedWorker]
    front: FrontStatus


def relabel(families: Iterable[Metric], worker: str, merged: dict[str, Metric]) -> None:
    """Add worker="..." to every sample, gathering each family once across workers."""
    for family in families:
        into = merged.get(family.name)
        if into is None:
            into = merged[family.name] = Metric(family.name, family.documentation, family.type,
                                                family.unit)
        for s in family.samples:
            into.add_sample(s.name, {"worker": worker, **s.labels}, s.value, s.timestamp,
                            s.exemplar)


class FleetCollector(Collector):
    """Scrapes every worker and the front on each collect()."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def describe(self) -> list[Metric]:
        return []  # nothing is scraped when the collector is registered

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        up = GaugeMetricFamily("gateway_worker_up",
                               "1 when the worker's metrics answered this scrape", labels=["worker"])
        for worker in self.fleet.workers:
            url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
            try:
                with urllib.request.urlopen(url, timeout=_SCRAPE_TIMEOUT) as resp:
                    text = resp.read().decode()
                families = list(text_string_to_metric_families(text))
            except (OSError, ValueError):
                up.add_metric([worker.name], 0)
                continue
            up.add_metric([worker.name], 1)
            relabel(families, worker.name, merged)
        yield from merged.values()
        yield up
        restarts = CounterMetricFamily("gateway_worker_restarts",
                                       "Worker processes restarted after dying", labels=["worker"])
        for worker in self.fleet.workers:
            restarts.add_metric([worker.name], worker.restarts)
        yield restarts
        yield from self._front()

    def _front(self) -> Iterator[Metric]:
        dest_up = GaugeMetricFamily("gateway_front_destination_up",
                                    "1 when the front sends new calls to the worker",
                                    labels=["worker"])
        try:
            for dest in self.fleet.front.destinations():
                dest_up.add_metric([dest["uid"]], 1 if dest["state"] == "active" else 0)
        except FrontError:
            pass
        yield dest_up
        try:
            stats = self.fleet.front.screening()
        except FrontError:
            return
        yield CounterMetricFamily("gateway_front_bans",
                                  "Untrusted sources the front banned for flooding",
                                  value=stats["bans"])
        yield GaugeMetricFamily("gateway_front_banned_sources",
                                "Sources whose ban has not expired yet", value=stats["banned_now"])
        refused = CounterMetricFamily(
            "gateway_front_requests_refused",
            "Requests from untrusted sources stopped at the front: banned (dropped), "
            "unknown_source (403, or dropped if configured)", labels=["reason"])
        refused.add_metric(["banned"], stats["dropped_banned"])
        refused.add_metric(["unknown_source"], stats["unknown_source"])
        yield refused


class MergedMetrics:
    def __init__(self, fleet: Fleet, max_age: float = _MAX_AGE) -> None:
        self.max_age = max_age
        self.builds = 0  # pages rendered (each one scrape of every worker)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(FleetCollector(fleet))
        self._lock = threading.Lock()
        self._page = b""
        self._built_at = float("-inf")
        self._server: ThreadingHTTPServer | None = None

    def page(self) -> bytes:
        """The cached page, rebuilt when older than max_age. Scrapes arriving during a rebuild
        wait for it and share its result instead of starting their own."""
        with self._lock:
            if time.monotonic() - self._built_at >= self.max_age:
                self._page = generate_latest(self.registry)
                self._built_at = time.monotonic()
                self.builds += 1
            return self._page

    def serve(self, address: str, port: int) -> None:
        merged = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = merged.page()
                self.send_response(200)
                self.send_header("Content-Type", _CONTENT_TYPE)
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
