"""Real calls into a running `gateway run`, asserting on what the caller receives."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from gateway.media.audio import band_energy_fraction, dominant_frequency, load_wav, rms_dbfs, save_wav, tone
from tests.support import wait_until
from tests.support import sipp
from tests.support.gateway import REPO, GatewayProcess, wait_metric
from tests.support.phones import Answerer, call, result, start_call

TEST_PLANS = {
    "+15550200.yaml": """
numbers: ["+15550200"]
flow:
  - play: tone440.wav
  - hangup: true
""",
    "+15550201.yaml": """
numbers: ["+15550201"]
flow:
  - gather:
      prompt: [{play: tone440-long.wav}]
      timeout: 5
      attempts: 1
      branches:
        "1": [{play: tone1000.wav}, {hangup: true}]
        "2": [{play: tone1500.wav}, {hangup: true}]
      failed: [{hangup: true}]
""",
    "+15550203.yaml": """
numbers: ["+15550203"]
ring: 4
flow:
  - play: tone440.wav
""",
    "+15550204.yaml": """
numbers: ["+15550204"]
flow:
  - play: tone440-long.wav
  - play: tone440-long.wav
""",
    "+15550205.yaml": """
numbers: ["+15550205"]
flow:
  - transfer:
      to: "sip:busy@127.0.0.1:{busy_port}"
      on_failure: [{play: tone1500.wav}, {hangup: true}]
""",
}


def make_plans(directory: Path, busy_port: int = 9) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("+15550100.yaml", "+15550101.yaml", "+15550142.yaml", "default.yaml"):
        shutil.copy(REPO / "dialplans" / name, directory / name)
    shutil.copytree(REPO / "dialplans" / "agents", directory / "agents")
    save_wav(directory / "tone440.wav", tone(440, 1.0))
    save_wav(directory / "tone440-long.wav", tone(440, 8.0))
    save_wav(directory / "tone1000.wav", tone(1000, 1.0))
    save_wav(directory / "tone1500.wav", tone(1500, 1.0))
    for name, text in TEST_PLANS.items():
        (directory / name).write_text(text.replace("{busy_port}", str(busy_port)))
    return directory


def windows(pcm: bytes, ms: int = 100) -> list[bytes]:
    step = 8 * ms * 2
    return [pcm[i:i + step] for i in range(0, len(pcm) - step + 1, step)]


def heard(pcm: bytes, freq: float, min_windows: int = 3) -> bool:
    """True when at least min_windows 100 ms windows are loud and dominated by freq."""
    loud = [w for w in windows(pcm) if rms_dbfs(w) > -30]
    return sum(abs(dominant_frequency(w) - freq) < 15 for w in loud) >= min_windows


@pytest.fixture(scope="module")
def answerer(tmp_path_factory):
    with Answerer(tmp_path_factory.mktemp("answerer"), "--play", "tone:660") as ua:
        yield ua


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """A transfer target that refuses every call with 486."""
    with Answerer(tmp_path_factory.mktemp("busy"), "--status", "486") as ua:
        yield ua


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, answerer, busy):
    tmp = tmp_path_factory.mktemp("gw")
    plans = make_plans(tmp / "dialplans", busy.port)
    with GatewayProcess(tmp, plans, env={"GATEWAY_OPERATOR_URI": answerer.uri}) as gw:
        yield gw


def test_answered_call_plays_audible_prompt(gateway, tmp_path):
    out = call(gateway.target, "+15550200", "--record", str(tmp_path / "rec.wav"))["calls"][0]
    assert out["status"] == 200 and out["answered"]
    assert out["disconnect"]["by"] == "remote"  # the flow hung up after the prompt
    pcm = load_wav(tmp_path / "rec.wav")
    assert heard(pcm, 440, min_windows=8)
    assert gateway.wait_records(1)[-1]["outcome"] == "completed"


def test_demo_number_speaks_its_greeting(gateway, tmp_path):
    out = call(gateway.target, "15550100", "--record", str(tmp_path / "rec.wav"),
               "--hangup-after", "4")["calls"][0]
    assert out["status"] == 200
    pcm = load_wav(tmp_path / "rec.wav")
    speech = [w for w in windows(pcm) if rms_dbfs(w) > -35]
    assert len(speech) >= 10, "expected at least a second of speech"
    assert band_energy_fraction(b"".join(speech), 200, 3400) > 0.8


@pytest.mark.parametrize("method", ["rfc2833", "info"])
def test_dtmf_menu_branch(gateway, tmp_path, method):
    rec = tmp_path / "rec.wav"
    out = call(gateway.target, "+15550201", "--record", str(rec), "--dtmf", "2@1.5",
               "--dtmf-method", method)["calls"][0]
    assert out["status"] == 200
    assert out["disconnect"]["by"] == "remote"
    pcm = load_wav(rec)
    assert heard(pcm, 1500, min_windows=5)     # branch 2's prompt
    assert not heard(pcm, 1000, min_windows=1)  # never branch 1
    # The menu prompt (8 s) was cut off by the key press.
    assert out["disconnect"]["after_s"] < 5
    record = gateway.wait_records(1)[-1]
    assert record["digits"] == "2"
    assert gateway.metric("gateway_dtmf_digits_total", method="info" if method == "info" else "rfc4733") >= 1


def test_immediate_transfer_reaches_second_ua(gateway, answerer):
    before = gateway.metric("gateway_transfers_total", result="success")
    out = call(gateway.target, "+15550142", "--follow-refer", "--max-duration", "8")["calls"][0]
    assert out["status"] == 200
    assert out["transfer"] is not None
    assert out["transfer"]["target"].startswith(answerer.uri)
    assert out["transfer"]["new_call_status"] == 200
    assert wait_metric(gateway, "gateway_transfers_total", before + 1, result="success")
    records = gateway.wait_records(1)
    assert any(r["outcome"] == "transferred" for r in records)


def test_failed_transfer_follows_dialplan_fallback(gateway, tmp_path):
    rec = tmp_path / "rec.wav"
    out = call(gateway.target, "+15550205", "--follow-refer", "--record", str(rec),
               "--max-duration", "25")["calls"][0]
    assert out["status"] == 200
    assert heard(load_wav(rec), 1500, min_windows=5)  # on_failure prompt
    assert out["disconnect"]["by"] == "remote"
    assert gateway.metric("gateway_transfers_total", result="failed") >= 1


def test_unknown_number_gets_404_from_sipp(gateway, tmp_path):
    outcome = sipp.call("127.0.0.1", gateway.sip_port, "+19995550000", workdir=tmp_path, expect=404)
    assert outcome.codes == [404], outcome.messages_log.read_text()[-2000:]


def test_sipp_call_answered(gateway, tmp_path):
    outcome = sipp.call("127.0.0.1", gateway.sip_port, "+15550204", workdir=tmp_path, expect=200,
                        hold_ms=1000)
    assert outcome.ok and outcome.codes == [200], outcome.messages_log.read_text()[-2000:]


def test_unknown_source_gets_403(gateway):
    before = gateway.metric("gateway_invites_rejected_total", reason="unknown_source")
    out = call(gateway.target, "+15550200", "--bind", "127.0.0.2")["calls"][0]
    assert out["status"] == 403
    assert wait_metric(gateway, "gateway_invites_rejected_total", before + 1, reason="unknown_source")


def test_cancel_before_answer(gateway):
    out = call(gateway.target, "+15550203", "--cancel-after", "1.0")["calls"][0]
    assert out["status"] == 487 and not out["answered"]
    assert wait_metric(gateway, "gateway_calls_active", 0)
    assert wait_until(lambda: any(r["outcome"] == "cancelled" for r in gateway.records_list()), 5)


def test_caller_bye_during_prompt(gateway):
    out = call(gateway.target, "+15550204", "--hangup-after", "1.5")["calls"][0]
    assert out["status"] == 200 and out["disconnect"]["by"] == "local"
    assert wait_metric(gateway, "gateway_calls_active", 0)
    assert wait_until(lambda: gateway.records_list()[-1]["outcome"] == "caller_hangup", 5)


def test_fifth_concurrent_call_is_busy(gateway):
    before = gateway.metric("gateway_invites_rejected_total", reason="too_many_calls")
    four = start_call(gateway.target, "+15550204", "--calls", "4", "--hangup-after", "4")
    assert wait_until(lambda: gateway.metric("gateway_calls_active") == 4, 10)
    fifth = call(gateway.target, "+15550204")["calls"][0]
    first = result(four)["calls"]
    assert [c["status"] for c in first] == [200, 200, 200, 200]
    assert fifth["status"] == 486
    assert wait_metric(gateway, "gateway_invites_rejected_total", before + 1, reason="too_many_calls")
    assert "too many calls" in gateway.log()


def test_metrics_show_calls(gateway):
    text = gateway.metrics()
    for name in ("gateway_calls_active", "gateway_calls_total", "gateway_call_setup_seconds_bucket",
                 "gateway_rtp_frames_total", "gateway_playout_underruns_total"):
        assert name in text
    assert gateway.metric("gateway_calls_total", outcome="completed") >= 1
    assert gateway.metric("gateway_rtp_frames_total", direction="out") > 100


def test_sigterm_drains_then_ends_calls(tmp_path):
    plans = make_plans(tmp_path / "dialplans")
    gw = GatewayProcess(tmp_path, plans, extra={"drain_timeout": 3}).start()
    try:
        long_call = start_call(gw.target, "+15550204", "--max-duration", "30")
        assert wait_until(lambda: gw.metric("gateway_calls_active") == 1, 10)
        gw.signal(signal.SIGTERM)
        time.sleep(0.5)
        refused = call(gw.target, "+15550200")["calls"][0]
        assert refused["status"] == 503
        started = time.monotonic()
        ended = result(long_call)["calls"][0]
        assert ended["status"] == 200
        assert ended["disconnect"]["by"] == "remote"  # the gateway sent BYE at the drain timeout
        assert 1.5 < time.monotonic() - started < 10
        assert gw.wait(20) == 0
        outcomes = [r["outcome"] for r in gw.records_list()]
        assert outcomes == ["drained"]
        log = gw.log()
        assert "Traceback" not in log and "Assertion" not in log
    finally:
        gw.stop()


def test_hot_reload_keeps_last_good_set(tmp_path):
    plans = make_plans(tmp_path / "dialplans")
    with GatewayProcess(tmp_path, plans) as gw:
        target = plans / "+15550200.yaml"
        target.write_text('numbers: ["+15550200"]\nflow:\n  - sya: typo\n')
        assert wait_until(lambda: "reload refused" in gw.log(), 10)
        assert f"{target}:3:" in gw.log()
        assert gw.metric("gateway_dialplan_reload_errors_total") == 1
        assert call(gw.target, "+15550200")["calls"][0]["status"] == 200  # old plan still answers
        target.write_text('numbers: ["+15550200"]\nreject: 480\n')
        assert wait_until(lambda: "dialplans reloaded" in gw.log(), 10)
        assert call(gw.target, "+15550200")["calls"][0]["status"] == 480


def _raw_invite(gw: GatewayProcess, source: str, extra: str = "") -> int | None:
    """A bodyless INVITE over UDP; returns the final status code (None: no answer)."""
    import socket
    import uuid

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(2.0)
        port = sock.getsockname()[1]
        call_id = uuid.uuid4().hex
        msg = (f"INVITE sip:+15550200@127.0.0.1:{gw.sip_port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK{call_id[:10]};rport\r\n"
               f"From: <sip:probe@{source}>;tag=1\r\nTo: <sip:+15550200@127.0.0.1>\r\n"
               f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
               f"Contact: <sip:probe@{source}:{port}>\r\n{extra}Content-Length: 0\r\n\r\n")
        sock.sendto(msg.encode(), ("127.0.0.1", gw.sip_port))
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65535).decode(errors="replace")
            except TimeoutError:
                return None
            code = int(data.split(" ", 2)[1])
            if code >= 200:
                ack = msg.replace("INVITE sip", "ACK sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
                sock.sendto(ack.encode(), ("127.0.0.1", gw.sip_port))
                return code
    return None


def test_refused_bodyless_invites_do_not_kill_the_worker(gateway):
    assert _raw_invite(gateway, "127.0.0.2") == 403                           # unknown source
    assert _raw_invite(gateway, "127.0.0.1", "Max-Forwards: 69\r\n") == 400   # malformed
    assert gateway.proc is not None and gateway.proc.poll() is None
    assert call(gateway.target, "+15550200")["calls"][0]["status"] == 200
