"""Every Prometheus metric of a worker, with small verbs for the code that moves them.

Labels stay low-cardinality: never a caller number or a call id.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import MetricsHandler

disable_created_metrics()  # *_created series only add noise to every scrape

REGISTRY = CollectorRegistry()

# transport: "sip", or "webrtc" for calls over WHIP (the same call path, another leg).
TRANSPORTS = ("sip", "webrtc")
CALLS_ACTIVE = Gauge("gateway_calls_active", "Calls in progress", ["transport"], registry=REGISTRY)
for _transport in TRANSPORTS:
    CALLS_ACTIVE.labels(transport=_transport)
CALLS = Counter(
    "gateway_calls", "Finished calls by outcome and dialplan", ["outcome", "dialplan", "transport"],
    registry=REGISTRY,
)
CALL_SETUP = Histogram(
    "gateway_call_setup_seconds", "INVITE received to 200 OK sent (excluding dialplan ring time)",
    ["transport"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
INVITES_REJECTED = Counter(
    "gateway_invites_rejected", "INVITEs refused before a call started, by reason", ["reason"],
    registry=REGISTRY,
)
DTMF_DIGITS = Counter(
    "gateway_dtmf_digits", "DTMF digits received, by signalling method", ["method"],
    registry=REGISTRY,
)
DTMF_DROPPED = Counter("gateway_dtmf_dropped", "Keypad digits dropped: invalid, or too many pending",
                       registry=REGISTRY)
SIP_BANS = Counter("gateway_sip_bans", "SIP sources banned for flooding", registry=REGISTRY)
SIP_DROPPED = Counter("gateway_sip_requests_dropped",
                      "SIP requests dropped unanswered (banned or unknown sources)", registry=REGISTRY)
RTP_SOURCES_REFUSED = Counter(
    "gateway_rtp_sources_refused", "Calls ended because RTP came from an unsignalled address",
    registry=REGISTRY)
SIP_TCP_CLOSED = Counter("gateway_sip_tcp_closed",
                         "Strangers' SIP TCP connections closed: over the per-source caps, or banned",
                         registry=REGISTRY)
TRANSFERS = Counter("gateway_transfers", "Blind transfers by result", ["result"], registry=REGISTRY)
TRANSFER_REQUESTS_REFUSED = Counter(
    "gateway_transfer_requests_refused", "The far end's requests to move a call, refused (refer, replaces)",
    ["kind"], registry=REGISTRY)
RTP_FRAMES = Counter(
    "gateway_rtp_frames", "audio frames (one per media.frame_ms) exchanged with callers", ["direction"],
    registry=REGISTRY,
)
PLAYOUT_UNDERRUNS = Counter(
    "gateway_playout_underruns", "Frames due while streaming audio had not arrived yet",
    registry=REGISTRY,
)
REGISTRATION_UP = Gauge(
    "gateway_registration_up", "1 when the trunk's registration is active", ["trunk"],
    registry=REGISTRY,
)
DIALPLAN_RELOAD_ERRORS = Counter(
    "gateway_dialplan_reload_errors", "Dialplan reloads refused because a file was invalid",
    registry=REGISTRY,
)
TURN_LATENCY = Histogram(
    "gateway_turn_latency_seconds", "Caller's end of speech to the first agent audio handed to RTP",
    ["transport"], buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0), registry=REGISTRY,
)
STAGE_LATENCY = Histogram(
    "gateway_stage_latency_seconds", "Latency of one pipeline stage", ["stage"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0), registry=REGISTRY,
)
BARGE_INS = Counter("gateway_barge_ins", "Agent speech interrupted by the caller", registry=REGISTRY)
FALLBACKS = Counter("gateway_fallbacks", "Fallback paths taken, by kind", ["kind"], registry=REGISTRY)
PROVIDER_ERRORS = Counter(
    "gateway_provider_errors", "Speech/language provider failures", ["provider"], registry=REGISTRY,
)
RECORD_WRITE_FAILURES = Counter(
    "gateway_record_write_failures", "Call record writes that failed (journal or store), kept and retried",
    ["stage"], registry=REGISTRY)
RECORDS_PENDING = Gauge("gateway_records_pending", "Finished calls waiting for the call store",
                        registry=REGISTRY)
DRAINING = Gauge("gateway_draining", "1 while the worker refuses new calls to stop", registry=REGISTRY)


LIVE_WITHIN = 5.0  # seconds: a loop or a pj thread silent for longer is not alive


def serve(address: str, port: int, beats: Callable[[], dict[str, float]] | None = None) -> None:
    """Expose /metrics, and /health/live, over HTTP from a daemon thread.

    beats: the monotonic time each of the worker's threads last showed it runs (the asyncio
    loop, the pj thread); /health/live answers 200 only while all are recent.
    """
    handler = type("Handler", (_Handler,), {"registry": REGISTRY, "beats": staticmethod(beats)})
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


def liveness(beats: dict[str, float], now: float) -> tuple[bool, dict[str, float]]:
    """Alive while every thread showed itself within LIVE_WITHIN; the seconds since each did."""
    ages = {name: round(now - beat, 3) for name, beat in beats.items()}
    return all(age < LIVE_WITHIN for age in ages.values()), ages


class _Handler(MetricsHandler):
    beats: Callable[[], dict[str, float]] | None = None

    def do_GET(self) -> None:  # noqa: N802
        if self.path.split("?", 1)[0] != "/health/live":
            super().do_GET()
            return
        alive, ages = liveness(self.beats() if self.beats else {}, time.monotonic())
        body = json.dumps({"alive": alive, "seconds_since": ages}).encode()
        self.send_response(200 if alive else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass  # scrapes are not news


def record_write_failed(stage: str) -> None:
    RECORD_WRITE_FAILURES.labels(stage=stage).inc()


def records_pending(count: int) -> None:
    RECORDS_PENDING.set(count)


def call_started(transport: str = "sip") -> None:
    CALLS_ACTIVE.labels(transport=transport).inc()


def call_ended(outcome: str, dialplan: str, transport: str = "sip") -> None:
    CALLS_ACTIVE.labels(transport=transport).dec()
    CALLS.labels(outcome=outcome, dialplan=dialplan, transport=transport).inc()


def call_answered(setup_seconds: float, transport: str = "sip") -> None:
    CALL_SETUP.labels(transport=transport).observe(setup_seconds)


def invite_rejected(reason: str) -> None:
    INVITES_REJECTED.labels(reason=reason).inc()


def dtmf_digit(method: str) -> None:
    DTMF_DIGITS.labels(method=method).inc()


def dtmf_dropped() -> None:
    DTMF_DROPPED.inc()


def flood(bans: int, dropped: int, rejected: int, tcp_closed: int = 0) -> None:
    SIP_BANS.inc(bans)
    SIP_DROPPED.inc(dropped)
    SIP_TCP_CLOSED.inc(tcp_closed)
    if rejected:
        INVITES_REJECTED.labels("unknown_source").inc(rejected)


def rtp_source_refused() -> None:
    RTP_SOURCES_REFUSED.inc()


def transfer(result: str) -> None:
    TRANSFERS.labels(result=result).inc()


def transfer_request_refused(kind: str) -> None:
    TRANSFER_REQUESTS_REFUSED.labels(kind).inc()


def rtp_frames(received: int, sent: int, underruns: int) -> None:
    if received:
        RTP_FRAMES.labels(direction="in").inc(received)
    if sent:
        RTP_FRAMES.labels(direction="out").inc(sent)
    if underruns:
        PLAYOUT_UNDERRUNS.inc(underruns)


def registration(trunk: str, up: bool) -> None:
    REGISTRATION_UP.labels(trunk=trunk).set(1 if up else 0)


def turn_latency(seconds: float, transport: str = "sip") -> None:
    TURN_LATENCY.labels(transport=transport).observe(seconds)


def stage_latency(stage: str, seconds: float) -> None:
    STAGE_LATENCY.labels(stage=stage).observe(seconds)


def barge_in() -> None:
    BARGE_INS.inc()


def fallback(kind: str) -> None:
    FALLBACKS.labels(kind=kind).inc()


def provider_error(provider: str) -> None:
    PROVIDER_ERRORS.labels(provider=provider).inc()
