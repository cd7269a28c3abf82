"""The supervisor's own faults: killed outright, it leaves no worker and no Kamailio behind; a
rolling restart does not stop it from watching the other workers."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from tests.support import wait_until
from tests.support.gateway import GatewayProcess
from tests.support.phones import result, start_call
from tests.sip.test_calls import make_plans

LONG = "+15550204"  # plays for 16 s; callers hang up first


def _pid(gw: GatewayProcess, name: str) -> int:
    return int((gw.tmp / "run" / name).read_text().strip())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for a dead parent is gone for our purpose
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return any(_alive(int(p)) for p in os.listdir("/proc") if p.isdigit()
               and _pgid(int(p)) == pgid)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_a_killed_supervisor_leaves_no_orphans(tmp_path):
    plans = make_plans(tmp_path / "dialplans")
    gw = GatewayProcess(tmp_path, plans, workers=2, extra={"drain_timeout": 2, "calls_per_worker": 4}).start()
    try:
        workers = [_pid(gw, f"{w}.ready") for w in ("w1", "w2")]
        kamailio = _pid(gw, "front/kamailio.pid")
        group = os.getpgid(kamailio)
        assert gw.proc is not None
        os.kill(gw.proc.pid, signal.SIGKILL)   # no cleanup code runs
        gw.proc.wait(5)
        assert wait_until(lambda: not any(_alive(p) for p in workers), 15), workers
        assert wait_until(lambda: not _group_alive(group), 15)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:   # the SIP port is free
            sock.bind(("127.0.0.1", gw.sip_port))
    finally:
        gw.stop()


def test_the_watcher_keeps_watching_during_a_rolling_restart(tmp_path):
    plans = make_plans(tmp_path / "dialplans")
    with GatewayProcess(tmp_path, plans, workers=3, extra={"drain_timeout": 20, "calls_per_worker": 4}) as gw:
        callers = start_call(gw.target, LONG, "--calls", "3", "--hangup-after", "8")
        assert wait_until(lambda: gw.metric("gateway_calls_active") == 3, 20)
        gw.signal(signal.SIGHUP)              # w1 drains its call for up to 8 s
        assert wait_until(lambda: "rolling restart of 3 workers" in gw.log(), 5)
        os.kill(_pid(gw, "w3.ready"), signal.SIGKILL)
        # Seen (and its callers sent a BYE) while w1 is still draining, not after the roll.
        assert wait_until(lambda: "worker w3 exited" in gw.log(), 3), gw.log()[-3000:]
        assert "worker w1 restarted" not in gw.log()
        result(callers, 60)
        assert wait_until(lambda: "worker w3 restarted" in gw.log(), 90), gw.log()[-3000:]
        assert wait_until(lambda: gw.metric("gateway_front_destination_up") == 3, 30)


