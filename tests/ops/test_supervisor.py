"""`gateway run --workers N`: real workers behind a real Kamailio front."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from gateway.ops.metrics_merge import MergedMetrics
from tests.support import free_port, wait_until
from tests.support.gateway import GatewayProcess
from tests.support.kamailio import KamailioRegistrar
from tests.support.phones import call, result, start_call
from tests.support.sipp import SippFlood
from tests.sip.test_calls import make_plans

LONG = "+15550204"  # plays for 16 s; callers hang up first


def worker_pid(gw: GatewayProcess, name: str) -> int:
    return int((gw.tmp / "run" / f"{name}.ready").read_text())


def active(gw: GatewayProcess, worker: str | None = None) -> float:
    labels = {"worker": worker} if worker else {}
    return gw.metric("gateway_calls_active", **labels)


@pytest.fixture
def supervisor(tmp_path):
    plans = make_plans(tmp_path / "dialplans")
    with GatewayProcess(tmp_path, plans, workers=3, extra={"drain_timeout": 5}) as gw:
        yield gw


def test_twelve_calls_spread_and_thirteenth_is_busy(supervisor):
    gw = supervisor
    callers = [start_call(gw.target, LONG, "--calls", "4", "--hangup-after", "6")
               for _ in range(3)]
    assert wait_until(lambda: active(gw) == 12, 20), gw.metrics()
    assert [active(gw, w) for w in ("w1", "w2", "w3")] == [4, 4, 4]
    busy = call(gw.target, LONG)["calls"][0]
    assert busy["status"] in (486, 503)
    statuses = [c["status"] for proc in callers for c in result(proc)["calls"]]
    assert statuses == [200] * 12
    assert wait_until(lambda: active(gw) == 0, 10)
    assert gw.metric("gateway_front_destination_up") == 3


def test_killed_worker_is_routed_around_and_restarted(supervisor):
    gw = supervisor
    callers = [start_call(gw.target, LONG, "--calls", "3", "--hangup-after", "10")
               for _ in range(2)]
    assert wait_until(lambda: active(gw) == 6, 20)
    # The busiest worker dies (the spread is even, but a loaded machine may skew it by one).
    victim = max(("w1", "w2", "w3"), key=lambda w: active(gw, w))
    victim_calls = active(gw, victim)
    assert victim_calls >= 1
    os.kill(worker_pid(gw, victim), signal.SIGKILL)
    # New calls go to the remaining workers meanwhile.
    during = call(gw.target, LONG, "--hangup-after", "1")["calls"][0]
    assert during["status"] == 200
    calls = [c for proc in callers for c in result(proc, 60)["calls"]]
    assert [c["status"] for c in calls] == [200] * 6
    # The dead worker's callers were sent a BYE; the others hung up themselves at 10 s.
    by_remote = [c for c in calls if c["disconnect"]["by"] == "remote"]
    assert len(by_remote) == victim_calls
    assert all(c["disconnect"]["after_s"] < 8 for c in by_remote)
    # The supervisor restarted it and it takes calls again.
    assert wait_until(lambda: gw.metric("gateway_worker_restarts_total", worker=victim) == 1, 20)
    assert wait_until(lambda: gw.metric("gateway_front_destination_up", worker=victim) == 1, 20)
    again = start_call(gw.target, LONG, "--calls", "3", "--hangup-after", "3")
    assert wait_until(lambda: active(gw, victim) >= 1, 15)
    assert [c["status"] for c in result(again)["calls"]] == [200] * 3
    # Its calls are in the call records as failed, not lost.
    records = gw.wait_records(6 + 1 + 3, 20)
    assert sum(r["outcome"] == "failed" for r in records) == victim_calls


def test_sigterm_drains_without_losing_calls(supervisor):
    gw = supervisor
    callers = start_call(gw.target, LONG, "--calls", "4", "--hangup-after", "3")
    assert wait_until(lambda: active(gw) == 4, 20)
    gw.signal(signal.SIGTERM)
    time.sleep(0.5)
    calls = result(callers)["calls"]
    assert [c["status"] for c in calls] == [200] * 4
    assert all(c["disconnect"]["by"] == "local" for c in calls)  # nobody was cut off
    assert gw.wait(40) == 0
    outcomes = [r["outcome"] for r in gw.records_list()]
    assert outcomes == ["caller_hangup"] * 4


def test_trunk_registers_once_through_the_front(tmp_path):
    plans = make_plans(tmp_path / "dialplans")
    (plans / "trunk.yaml").write_text('numbers: ["gw1"]\nflow:\n  - play: tone440.wav\n')
    with KamailioRegistrar("gw1", "s3cret") as registrar:
        extra = {"trunks": [
            {"name": "local", "allow": ["127.0.0.1/32"]},
            {"name": "carrier", "registrar": f"sip:127.0.0.1:{registrar.port}",
             "username": "gw1", "password_env": "GW_TEST_PASSWORD", "realm": "127.0.0.1",
             "expiry": 60},
        ]}
        with GatewayProcess(tmp_path, plans, workers=2, extra=extra,
                            env={"GW_TEST_PASSWORD": "s3cret"}) as gw:
            assert wait_until(lambda: registrar.registered_contacts("gw1"), 15), gw.log()
            contacts = registrar.registered_contacts("gw1")
            assert len(contacts) == 1
            assert f"127.0.0.1:{gw.sip_port}" in contacts[0]  # the front, not a worker
            # The carrier calls the trunk: registrar → front → a worker.
            out = call(f"127.0.0.1:{registrar.port}", "gw1")["calls"][0]
            assert out["status"] == 200


def test_rolling_restart_drops_no_call(supervisor):
    gw = supervisor
    before = {w: worker_pid(gw, w) for w in ("w1", "w2", "w3")}
    callers = [start_call(gw.target, LONG, "--calls", "3", "--hangup-after", "4") for _ in range(2)]
    assert wait_until(lambda: active(gw) == 6, 20)
    gw.signal(signal.SIGHUP)
    time.sleep(1.0)
    during = call(gw.target, LONG, "--hangup-after", "1")["calls"][0]
    assert during["status"] == 200  # another worker takes it while one drains
    calls = [c for proc in callers for c in result(proc, 60)["calls"]]
    assert [c["status"] for c in calls] == [200] * 6
    assert all(c["disconnect"]["by"] == "local" for c in calls)  # every caller hung up itself
    assert wait_until(lambda: "worker w3 restarted" in gw.log(), 60)
    after = {w: worker_pid(gw, w) for w in ("w1", "w2", "w3")}
    assert all(before[w] != after[w] for w in before)
    assert wait_until(lambda: gw.metric("gateway_front_destination_up") == 3, 15)
    assert all(r["outcome"] != "drained" for r in gw.records_list())


class _CountingFront:
    """The front as MergedMetrics uses it; counts the kamcmd work it would have done."""

    def __init__(self) -> None:
        self.calls = 0

    def destinations(self) -> list[dict]:
        self.calls += 1
        return [{"uid": "w1", "state": "active"}]

    def screening(self) -> dict:
        self.calls += 1
        return {"bans": 2, "banned_now": 1, "dropped_banned": 40, "unknown_source": 7}


def test_merged_metrics_are_cached_so_scrapes_do_not_fan_out():
    hits = []

    class Worker(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(time.monotonic())
            body = b"gateway_calls_active 3\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    worker = ThreadingHTTPServer(("127.0.0.1", 0), Worker)
    threading.Thread(target=worker.serve_forever, daemon=True).start()
    front = _CountingFront()
    fake = SimpleNamespace(front=front, workers=[
        SimpleNamespace(name="w1", metrics_port=worker.server_address[1], restarts=0)])
    merged = MergedMetrics(fake, max_age=1.0)  # type: ignore[arg-type]
    port = free_port()
    merged.serve("127.0.0.1", port)
    pages: list[str] = []

    def scrape(n: int) -> None:
        for _ in range(n):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                pages.append(resp.read().decode())

    try:
        started = time.monotonic()
        threads = [threading.Thread(target=scrape, args=(25,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        assert len(pages) == 200
        # At most one fan-out per second however many scrapes came (plus the first).
        assert merged.builds <= int(elapsed / merged.max_age) + 1, (merged.builds, elapsed)
        assert len(hits) == merged.builds and front.calls == 2 * merged.builds
        page = pages[-1]
        assert 'gateway_calls_active{worker="w1"} 3' in page
        assert "gateway_front_bans_total 2" in page
        assert "gateway_front_banned_sources 1" in page
        assert 'gateway_front_requests_refused_total{reason="banned"} 40' in page
        assert 'gateway_front_requests_refused_total{reason="unknown_source"} 7' in page
        # An old page is rebuilt on the next scrape.
        time.sleep(1.1)
        builds = merged.builds
        scrape(1)
        assert merged.builds == builds + 1
    finally:
        merged.close()
        worker.shutdown()
        worker.server_close()


@pytest.mark.skipif(not shutil.which("sipp"), reason="sipp (Debian sip-tester) not installed")
def test_flooding_stranger_is_banned_at_the_front_and_counted(supervisor):
    gw = supervisor
    with SippFlood("127.0.0.1", gw.sip_port, workdir=gw.tmp, local_address="127.0.0.2",
                   rate=300, count=600) as flood:
        during = call(gw.target, LONG, "--hangup-after", "1")["calls"][0]
        flood.wait()
    assert during["status"] == 200
    assert flood.replies() < 60  # a few 403s, then nothing
    assert wait_until(lambda: gw.metric("gateway_front_bans_total") == 1, 5), gw.metrics()
    assert gw.metric("gateway_front_banned_sources") == 1
    assert gw.metric("gateway_front_requests_refused_total", reason="banned") > 500
    # None of it reached a worker: they counted no rejected INVITE.
    assert gw.metric("gateway_invites_rejected_total") == 0
    assert "FRONT ban src=127.0.0.2" in (gw.tmp / "run" / "front" / "kamailio.log").read_text()
