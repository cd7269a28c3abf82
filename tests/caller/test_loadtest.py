"""`gateway loadtest` against a real single-worker `gateway run` (4 calls at most), plus its parsing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from argparse import Namespace
from pathlib import Path

import pytest

from gateway.caller.loadtest import _Trace, format_table, percentiles, sipp_scenario, summarise
from gateway.media.audio import save_wav, tone
from tests.support.gateway import REPO, GatewayProcess

NUMBER = "+15550300"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loadtest")
    plans = tmp / "dialplans"
    plans.mkdir()
    (plans / "long.yaml").write_text(f'numbers: ["{NUMBER}"]\nflow:\n  - play: long.wav\n')
    (plans / "default.yaml").write_text("reject: 404\n")
    save_wav(plans / "long.wav", tone(440, 30.0))
    with GatewayProcess(tmp, plans) as gw:
        yield gw


def loadtest(*args: str) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "gateway.caller.loadtest", *args, "--json"], capture_output=True,
                          text=True, timeout=90, cwd=REPO)
    assert done.stdout, done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


def test_four_calls_are_answered_and_the_gateway_is_measured(gateway):
    assert gateway.proc is not None
    rc, out = loadtest("--target", gateway.target, "--number", NUMBER, "--calls", "4", "--rate", "4",
                       "--duration", "3", "--gateway-pid", str(gateway.proc.pid))
    assert (out["attempted"], out["answered"], out["failed"], out["failures"]) == (4, 4, 0, {}), out
    assert rc == 0
    assert out["setup_ms"]["n"] == 4 and out["setup_ms"]["p50"] > 0
    assert out["setup_ms"]["p50"] <= out["setup_ms"]["p95"] <= out["setup_ms"]["p99"]
    assert out["rtp"]["calls"] == 4 and out["rtp"]["rx_packets"] > 100  # the tone reached the callers
    g = out["gateway"]
    assert g["pid"] == gateway.proc.pid and g["cpu_pct"] > 0 and g["rss_peak_mib"] > 10, g


def test_calls_beyond_the_workers_limit_are_refused_with_486(gateway):
    rc, out = loadtest("--target", gateway.target, "--number", NUMBER, "--calls", "6", "--rate", "6",
                       "--duration", "4")
    assert rc == 1
    assert out["attempted"] == 6 and out["answered"] == 4, out
    assert out["failures"]["486"]["count"] == 2, out["failures"]


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
def test_sipp_places_ten_calls(gateway):
    rc, out = loadtest("--target", gateway.target, "--number", NUMBER, "--sipp", "--calls", "4", "--total", "10",
                       "--rate", "10", "--duration", "0.5")
    assert (out["attempted"], out["answered"]) == (10, 10), out
    assert rc == 0 and out["mode"] == "sipp" and out["setup_ms"]["n"] == 10 and out["setup_ms"]["p50"] > 0


def test_unknown_number_shows_the_reject_code(gateway):
    rc, out = loadtest("--target", gateway.target, "--number", "+15559999", "--sipp", "--calls", "2")
    assert rc == 1 and out["failures"]["404"]["count"] == 2, out


def test_a_sip_uri_target_carries_the_number(gateway):
    rc, out = loadtest("--target", f"sip:{NUMBER}@{gateway.target}", "--calls", "1", "--duration", "1")
    assert (rc, out["answered"]) == (0, 1), out


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
def test_no_number_reaches_the_default_dialplan(gateway):
    # No --number and no user in the URI: the Request-URI has no user, the default plan answers.
    rc, out = loadtest("--target", f"sip:{gateway.target}", "--sipp", "--calls", "1")
    assert rc == 1 and out["failures"]["404"]["count"] == 1, out


def test_a_bad_target_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", "gateway.caller.loadtest", "--target", "http://x"],
                          capture_output=True, text=True, timeout=30, cwd=REPO)
    assert done.returncode == 2 and "only sip: and sips: URIs" in done.stderr
    assert "Traceback" not in done.stderr


def test_percentiles_are_nearest_rank():
    assert percentiles([]) == {"n": 0, "p50": None, "p95": None, "p99": None}
    assert percentiles(list(range(1, 101))) == {"n": 100, "p50": 50, "p95": 95, "p99": 99}
    assert percentiles([7.0]) == {"n": 1, "p50": 7.0, "p95": 7.0, "p99": 7.0}


def test_sipp_scenario_is_well_formed():
    root = ET.fromstring(sipp_scenario().encode("iso-8859-1"))
    labels = {e.get("id") for e in root.iter("label")}
    assert {e.get("next") for e in root.iter("recv") if e.get("next")} <= labels
    assert any(e.get("response") == "486" for e in root.iter("recv"))


TRACE = """----------------------------------------------- 2026-01-01 10:00:00.000000
UDP message sent (100 bytes):

INVITE sip:1@127.0.0.1:5060 SIP/2.0
Call-ID: a
CSeq: 1 INVITE

----------------------------------------------- 2026-01-01 10:00:00.012500
UDP message received [100] bytes :

SIP/2.0 200 OK
Call-ID: a
CSeq: 1 INVITE

----------------------------------------------- 2026-01-01 10:00:00.020000
UDP message sent (100 bytes):

INVITE sip:1@127.0.0.1:5060 SIP/2.0
Call-ID: b
CSeq: 1 INVITE

----------------------------------------------- 2026-01-01 10:00:00.030000
UDP message received [100] bytes :

SIP/2.0 486 Busy Here
Call-ID: b
CSeq: 1 INVITE

"""


def test_trace_is_followed_as_it_grows(tmp_path: Path):
    path = tmp_path / "messages.log"
    trace = _Trace(path)
    cut = TRACE.index("UDP message received [100] bytes :\n\nSIP/2.0 486")
    path.write_text(TRACE[:cut])
    trace.read()
    assert trace.calls["a"]["status"] == 200 and "b" in trace.calls  # b's INVITE block is complete
    assert trace.calls["b"]["status"] is None
    with open(path, "a") as f:
        f.write(TRACE[cut:])
    trace.read(final=True)
    outcomes = trace.outcomes()
    assert outcomes == [
        {"status": 200, "reason": "OK", "answered": True, "setup_ms": 12.5},
        {"status": 486, "reason": "Busy Here", "answered": False, "setup_ms": None},
    ]
    args = Namespace(target="t:1", number="1", sipp=True, calls=2, total=2, rate=1.0, duration=1.0)
    summary = summarise(outcomes, args, 1.0, None, [])
    assert summary["failures"] == {"486": {"count": 1, "reason": "Busy Here"}}
    assert "486 Busy Here" in format_table(summary)
