"""`gateway run --workers N`: real workers behind a real Kamailio front."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.support import wait_until
from tests.support.gateway import GatewayProcess
from tests.support.kamailio import KamailioRegistrar
from tests.support.phones import call, result, start_call
from tests.test_calls import make_plans

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
