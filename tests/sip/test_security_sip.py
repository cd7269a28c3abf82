"""Attacks on the SIP side of a real gateway: a caller's REFER or Replaces must never make it dial,
and caller-supplied header text never reaches a log line raw."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.worker import metrics
from tests.support import sipp
from tests.support.gateway import GatewayProcess, wait_metric
from tests.support.phones import Answerer
from tests.support.rawsip import RawDialog

HOLD = 'numbers: ["+15550700"]\nflow:\n  - pause: 8\n  - hangup: true\n'


def _plans(tmp: Path, plan: str = HOLD) -> Path:
    plans = tmp / "dialplans"
    plans.mkdir()
    (plans / "default.yaml").write_text("reject: 404\n")
    (plans / "+15550700.yaml").write_text(plan)
    return plans


@pytest.fixture
def trap():
    """A UDP socket standing in for a premium-rate number: anything sent to it was dialled."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def _nothing_arrives(sock: socket.socket, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock.recvfrom(65535)
            return False
        except (TimeoutError, socket.timeout):
            pass
    return True


def test_caller_refer_is_refused_and_nothing_is_dialled(tmp_path: Path, trap: socket.socket) -> None:
    target = f"sip:+19005550199@127.0.0.1:{trap.getsockname()[1]}"
    with GatewayProcess(tmp_path, _plans(tmp_path)) as gw, RawDialog(("127.0.0.1", gw.sip_port), "+15550700") as dialog:
        assert dialog.invite() == 200
        dialog.request("REFER", headers=f"Refer-To: <{target}>\r\nReferred-By: <sip:x@127.0.0.1>\r\n")
        assert dialog.final("REFER") == 603
        assert _nothing_arrives(trap, 2.0), "the gateway dialled the Refer-To target"
        assert wait_metric(gw, "gateway_transfer_requests_refused_total", 1, kind="refer")
        assert dialog.bye() == 200
        records = gw.wait_records(1)
        assert len(records) == 1 and records[0]["outcome"] == "caller_hangup"
        assert "audit: call" in gw.log() and "+19005550199" in gw.log()
        gw.signal(signal.SIGTERM)
        assert gw.wait(30) == 0


def test_invite_with_replaces_cannot_take_over_a_call(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path, _plans(tmp_path)) as gw, \
            RawDialog(("127.0.0.1", gw.sip_port), "+15550700") as victim, \
            RawDialog(("127.0.0.1", gw.sip_port), "+15550700", from_user="intruder") as intruder:
        assert victim.invite() == 200
        to_tag = (victim.to.split("tag=", 1) + [""])[1].split(";")[0]
        replaces = f"Replaces: {victim.call_id};to-tag={to_tag};from-tag={victim.tag}\r\n"
        assert intruder.invite(headers=replaces) == 603
        assert wait_metric(gw, "gateway_transfer_requests_refused_total", 1, kind="replaces")
        assert victim.bye() == 200  # the victim's call was never touched
        gw.signal(signal.SIGTERM)
        assert gw.wait(30) == 0


def test_refer_allowed_by_the_dialplan_dials_a_tracked_leg(tmp_path: Path) -> None:
    with Answerer(tmp_path, "--max-duration", "2") as answerer:
        plan = (f'numbers: ["+15550700"]\ntransfers:\n  caller_refer: true\n'
                f'  allow: ["sip:*@127.0.0.1:{answerer.port}"]\n'
                'flow:\n  - pause: 8\n  - hangup: true\n')
        with GatewayProcess(tmp_path, _plans(tmp_path, plan)) as gw, \
                RawDialog(("127.0.0.1", gw.sip_port), "+15550700") as dialog:
            assert dialog.invite() == 200
            dialog.request("REFER", headers=f"Refer-To: <{answerer.uri}>\r\n")
            assert dialog.final("REFER") == 202
            elsewhere = "sip:+19005550199@127.0.0.1:9"
            dialog.request("REFER", headers=f"Refer-To: <{elsewhere}>\r\n")
            assert dialog.final("REFER") == 603  # still only to the allowed destination
            dialog.bye()
            records = gw.wait_records(2, timeout=20)
            leg = [r for r in records if r.get("referred_by")]
            assert len(leg) == 1 and leg[0]["referred_by"] == dialog.call_id
            assert leg[0]["answered"] is not None
            gw.signal(signal.SIGTERM)
            assert gw.wait(30) == 0


def test_header_text_cannot_forge_log_lines(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path, _plans(tmp_path)) as gw:
        forged = "5550001%0D%0A2026-01-01%20INFO%20gateway%20forged%20line"
        with RawDialog(("127.0.0.1", gw.sip_port), "+15550700", from_user=forged,
                       display="Eve\x1b[31m") as dialog:
            assert dialog.invite() == 200
            dialog.bye()
        records = gw.wait_records(1)
        assert records[0]["caller"] == "55500012026-01-01INFOgatewayforgedline"
    assert not any(line.startswith("2026-01-01") or "forged line" in line
                   for line in gw.log().splitlines())
    assert "\x1b" not in gw.log()


def test_unknown_dtmf_info_flood_stays_bounded(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path, _plans(tmp_path)) as gw, RawDialog(("127.0.0.1", gw.sip_port), "+15550700") as dialog:
        assert dialog.invite() == 200
        for sent in range(400):
            dialog.request("INFO", body="Signal=5\r\nDuration=160\r\n",
                           content_type="application/dtmf-relay")
            if sent % 20 == 19:
                while dialog.recv(0.01) is not None:  # keep our own socket from overflowing
                    pass
        assert wait_metric(gw, "gateway_dtmf_digits_total", 400, timeout=20, method="info")
        assert dialog.bye() == 200  # the call survived the flood
        record = gw.wait_records(1)[0]
        assert len(record["digits"]) <= 64
        assert gw.metric("gateway_dtmf_dropped_total") >= 400 - 64


def _flood(source: str, target: tuple[str, int], rate: int, seconds: float) -> int:
    """A stranger's INVITE flood at `rate` per second; returns how many were sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sent, start = 0, time.monotonic()
    try:
        while (elapsed := time.monotonic() - start) < seconds:
            if sent < elapsed * rate:
                tag = f"{sent:08d}"
                sock.sendto((
                    f"INVITE sip:+15550700@{target[0]}:{target[1]} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {source}:{sock.getsockname()[1]};branch=z9hG4bK{tag}\r\n"
                    f"From: <sip:scanner@{source}>;tag={tag}\r\nTo: <sip:+15550700@{target[0]}>\r\n"
                    f"Call-ID: flood-{tag}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
                    "Content-Length: 0\r\n\r\n").encode(), target)
                sent += 1
            else:
                time.sleep(0.001)
    finally:
        sock.close()
    return sent


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_invite_flood_from_a_stranger_is_banned_beside_legitimate_calls(tmp_path: Path) -> None:
    plan = 'numbers: ["+15550700"]\nflow:\n  - pause: 0.3\n  - hangup: true\n'
    with GatewayProcess(tmp_path, _plans(tmp_path, plan)) as gw:
        assert gw.proc is not None
        cpu_before = _cpu_seconds(gw.proc.pid)
        with ThreadPoolExecutor(1) as pool:
            flood = pool.submit(_flood, "127.0.0.2", ("127.0.0.1", gw.sip_port), 400, 6.0)
            calls = sipp.SippUac("127.0.0.1", gw.sip_port, "+15550700", workdir=tmp_path,
                                 calls=12, concurrent=2, rate=2, hold_ms=None, remote_hangup=True,
                                 timeout_s=30).start().wait(60)
            sent = flood.result()
        cpu = _cpu_seconds(gw.proc.pid) - cpu_before
        assert sent > 2000
        assert calls.codes == [200] * 12, calls
        assert wait_metric(gw, "gateway_sip_bans_total", 1)
        time.sleep(1.5)  # the guard's counters reach the metrics once a second
        dropped = gw.metric("gateway_sip_requests_dropped_total")
        refused = gw.metric("gateway_invites_rejected_total", reason="unknown_source")
        assert refused <= 25  # the burst, answered 403 before the ban
        assert dropped + refused >= 0.85 * sent  # the rest may be lost in the socket buffer
        assert "banned SIP source 127.0.0.2" in gw.log()
        print(f"flood {sent} INVITEs in 6 s: {refused:.0f} refused, {dropped:.0f} dropped; "
              f"12/12 calls answered; worker CPU {cpu:.2f} s")
        assert cpu < 6.0  # less than one core for the whole flood: it is dropped unread


def test_liveness_answers_for_both_the_loop_and_the_pj_thread(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path, _plans(tmp_path)) as gw:
        url = f"http://127.0.0.1:{gw.metrics_port}/health/live"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert response.status == 200 and body["alive"] is True
        assert set(body["seconds_since"]) == {"loop", "pj"}
    assert metrics.liveness({"loop": 99.0, "pj": 96.0}, 100.0) == (True, {"loop": 1.0, "pj": 4.0})
    assert metrics.liveness({"loop": 99.0, "pj": 90.0}, 100.0)[0] is False  # a stuck pj thread


def _rtp(seq: int) -> bytes:
    return bytes([0x80, 0x00]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big") + \
        (0x5CA77E12).to_bytes(4, "big") + b"\xff" * 160


def test_rtp_from_an_unsignalled_address_cannot_take_the_call_over(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path, _plans(tmp_path)) as gw, RawDialog(("127.0.0.1", gw.sip_port), "+15550700") as dialog:
        assert dialog.invite() == 200
        answer = next(m for m in dialog.received if m.startswith("SIP/2.0 200"))
        rtp_port = int(answer.split("m=audio ", 1)[1].split()[0])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as scanner:
            scanner.bind(("127.0.0.3", 0))
            scanner.settimeout(0.02)
            heard = 0
            for seq in range(100):
                scanner.sendto(_rtp(seq), ("127.0.0.1", rtp_port))
                try:
                    while scanner.recv(2048):
                        heard += 1
                except (TimeoutError, socket.timeout):
                    pass
        bye = None
        deadline = time.monotonic() + 5
        while bye is None and time.monotonic() < deadline:
            message = dialog.recv(0.5)
            if message and message.startswith("BYE "):
                bye = message
        assert bye is not None, "the call went on with its audio sent to the scanner"
        assert heard <= 20  # at most a few frames before the check (every 200 ms) ended it
        assert wait_metric(gw, "gateway_rtp_sources_refused_total", 1)
        assert "RTP from 127.0.0.3" in gw.log()


def _options_over_tcp(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        me = sock.getsockname()[1]
        sock.sendall((f"OPTIONS sip:probe@127.0.0.1:{port} SIP/2.0\r\n"
                      f"Via: SIP/2.0/TCP 127.0.0.1:{me};branch=z9hG4bKtcp{me}\r\n"
                      f"From: <sip:a@127.0.0.1>;tag={me}\r\nTo: <sip:probe@127.0.0.1>\r\n"
                      f"Call-ID: tcp-{me}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                      "Content-Length: 0\r\n\r\n").encode())
        return sock.recv(64)


def test_idle_tcp_connections_from_a_stranger_do_not_lock_out_others(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path, _plans(tmp_path)) as gw:
        idle = []
        for _ in range(100):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            try:
                sock.connect(("127.0.0.1", gw.sip_port))
                idle.append(sock)
            except OSError:
                sock.close()  # the listener is full for a moment: that is the attack
        try:
            assert wait_metric(gw, "gateway_sip_tcp_closed_total", len(idle) - 4, timeout=5)
            assert _options_over_tcp(gw.sip_port).startswith(b"SIP/2.0 200")
        finally:
            for sock in idle:
                sock.close()
