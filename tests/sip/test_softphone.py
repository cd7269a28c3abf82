"""gateway.sip.phone.softphone against itself and sipp: real SIP/RTP on 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pj = pytest.importorskip("pjsua2")

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _cmd(mode: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "gateway.sip.phone.softphone", mode, *args]


def run_call(*args: str, timeout: float = 40) -> dict[str, Any]:
    proc = subprocess.run(_cmd("call", *args), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


class Answerer:
    """`softphone answer` in the background; the bound port comes from its ready file."""

    def __init__(self, tmp: Path, name: str, *args: str) -> None:
        ready = tmp / f"{name}.port"
        self.proc = subprocess.Popen(
            _cmd("answer", "--bind", LOOPBACK, "--port", "0", "--ready-file", str(ready), "--max-duration", "30", *args),
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 15
        while not ready.exists():
            assert self.proc.poll() is None, self.proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "answerer did not become ready"
            time.sleep(0.02)
        self.port = int(ready.read_text())

    def result(self, timeout: float = 20) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err[-3000:]
        result: dict[str, Any] = json.loads(out)
        return result

    def terminate(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        return self.result()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def answerer(tmp_path: Path) -> Iterator[Any]:
    started: list[Answerer] = []

    def start(*args: str, name: str = "answer") -> Answerer:
        a = Answerer(tmp_path, name, *args)
        started.append(a)
        return a

    yield start
    for a in started:
        a.close()


def dominant_hz(path: str | Path, skip_s: float = 0.2) -> float:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64)
    x = x[int(skip_s * 8000) :]
    assert len(x) > 1600 and np.abs(x).max() > 1000, "recording is (nearly) silent"
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * 8000 / len(x))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return True
        return False


# --- pure helpers ---------------------------------------------------------------------


def test_read_frame_bytes_matches_slow_path() -> None:
    from gateway.sip import pjutil

    frame = pj.MediaFrame()
    for data in (b"", b"\x01", bytes(range(256)) + bytes(64)):
        pjutil.write_frame_bytes(frame, data)
        assert pjutil.read_frame_bytes(frame) == bytes(frame.buf) == data
        assert frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO


def test_sip_text_helpers() -> None:
    from gateway.sip import pjutil

    msg = (
        "INVITE sip:+15550100@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060\r\n"
        "X-Case: a\r\n b\r\nTo: <sip:+15550100@127.0.0.1>\r\n\r\nv=0\r\n"
    )
    assert pjutil.request_uri(msg) == "sip:+15550100@127.0.0.1:5080"
    assert ("X-Case", "a b") in pjutil.sip_headers(msg)
    vec = pjutil.sip_header_vector(["X-Foo: bar baz"])
    assert (vec[0].hName, vec[0].hValue) == ("X-Foo", "bar baz")
    with pytest.raises(ValueError):
        pjutil.sip_header_vector(["no colon"])


def test_wav_play_source_is_resampled_to_8k(tmp_path: Path) -> None:
    from gateway.sip.phone.softphone import load_play_frames

    t = np.arange(16000) / 16000
    pcm = (0.5 * 32767 * np.sin(2 * np.pi * 1000 * t)).astype("<i2")
    path = tmp_path / "in.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.stack([pcm, pcm], 1).tobytes())
    frames = load_play_frames(str(path))
    assert len(frames) == 50 and {len(f) for f in frames} == {320}
    out = tmp_path / "out.wav"
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(frames))
    assert abs(dominant_hz(out, skip_s=0) - 1000) < 5


# --- calls --------------------------------------------------------------------------


def test_tone_both_ways_between_two_softphones(answerer: Any, tmp_path: Path) -> None:
    rec_dir = tmp_path / "answer-rec"
    rec_dir.mkdir()
    b = answerer("--play", "tone:660", "--record-dir", str(rec_dir), "--max-calls", "1")
    rec = tmp_path / "caller.wav"
    out = run_call(
        "--to", f"{LOOPBACK}:{b.port}", "--number", "+15550100", "--play", "tone:440",
        "--record", str(rec), "--hangup-after", "2", "--extra-header", "X-Test-Case: tone",
    )
    (call,) = out["calls"]
    assert call["status"] == 200 and call["answered"] and call["reason"] == "OK"
    assert 0 < call["setup_ms"] < 500
    assert call["codec"] == "PCMU/8000"
    assert call["disconnect"]["by"] == "local" and abs(call["disconnect"]["after_s"] - 2) < 0.3
    assert 90 <= call["frames_received"] <= 110  # 20 ms frames, silence included
    assert abs(dominant_hz(rec) - 660) < 10
    (seen,) = b.result()["calls"]
    assert seen["request_uri"].startswith("sip:+15550100@")
    assert seen["x_headers"] == {"X-Test-Case": "tone"}
    assert seen["answered"] and seen["disconnect_by"] == "remote" and abs(seen["duration_s"] - 2) < 0.3
    assert abs(dominant_hz(seen["record"]) - 440) < 10


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
def test_call_to_sipp_uas(tmp_path: Path) -> None:
    port = free_udp_port()
    sipp = subprocess.Popen(
        ["sipp", "-sn", "uas", "-i", LOOPBACK, "-p", str(port), "-m", "1", "-nostdin", "-timeout", "20s"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 5
        while not udp_port_taken(port):
            assert sipp.poll() is None and time.monotonic() < deadline, "sipp did not start"
            time.sleep(0.02)
        (call,) = run_call("--to", f"{LOOPBACK}:{port}", "--number", "1000", "--hangup-after", "0.5")["calls"]
        assert sipp.wait(timeout=15) == 0
    finally:
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait()
    assert call["status"] == 200 and call["answered"]
    assert call["setup_ms"] < 500
    assert [e for e in call["events"] if e[1].startswith("EARLY 180")]
    assert call["disconnect"] == {"by": "local", "code": 200, "after_s": pytest.approx(0.5, abs=0.2)}


def test_cancel_before_answer_gives_487(answerer: Any) -> None:
    b = answerer("--answer-delay", "5", "--max-calls", "1")
    (call,) = run_call("--to", f"{LOOPBACK}:{b.port}", "--number", "200", "--cancel-after", "0.5")["calls"]
    assert call["status"] == 487 and not call["answered"] and call["setup_ms"] is None
    assert call["disconnect"]["by"] == "local"
    cancel_t = next(t for t, text in call["events"] if text.startswith("hangup (cancel-after)"))
    assert 0.45 < cancel_t < 0.8
    (seen,) = b.result()["calls"]
    assert seen["status"] == 487 and not seen["answered"]


def test_rejected_call_reports_status(answerer: Any) -> None:
    b = answerer("--status", "486", "--max-calls", "1")
    (call,) = run_call("--to", f"{LOOPBACK}:{b.port}", "--number", "300")["calls"]
    assert (call["status"], call["answered"], call["disconnect"]["by"]) == (486, False, "remote")
    assert b.result()["calls"][0]["status"] == 486


@pytest.mark.parametrize("method", ["rfc2833", "info"])
def test_dtmf_reaches_answerer(answerer: Any, method: str) -> None:
    b = answerer("--max-calls", "1")
    (call,) = run_call(
        "--to", f"{LOOPBACK}:{b.port}", "--number", "400", "--dtmf", "12#@0.3",
        "--dtmf-method", method, "--hangup-after", "1.2",
    )["calls"]
    assert call["status"] == 200 and call["dtmf_sent"] == "12#"
    (seen,) = b.result()["calls"]
    assert seen["dtmf"] == "12#"
    assert [text for _, text in seen["events"] if text.startswith("dtmf")] == [
        f"dtmf received {d} ({method})" for d in "12#"
    ]


def test_follow_refer_places_new_call(answerer: Any, tmp_path: Path) -> None:
    target = answerer("--play", "tone:660", "--max-calls", "1", name="target")
    uri = f"sip:agent@{LOOPBACK}:{target.port}"
    xferor = answerer("--xfer-to", uri, "--xfer-after", "0.5", "--max-calls", "1", name="xferor")
    rec = tmp_path / "caller.wav"
    (call,) = run_call(
        "--to", f"{LOOPBACK}:{xferor.port}", "--number", "500", "--follow-refer",
        "--hangup-after", "1.5", "--record", str(rec),
    )["calls"]
    assert call["status"] == 200 and call["disconnect"]["by"] == "remote"
    tr = call["transfer"]
    assert tr["target"] == uri and tr["new_call_status"] == 200 and tr["notify_codes"][-1] == 200
    new = tr["new_call"]
    assert new["answered"] and new["disconnect"]["by"] == "local"
    assert abs(dominant_hz(new["record"]) - 660) < 10
    (orig,) = xferor.result()["calls"]
    assert orig["transfer"]["final"] == 200 and orig["disconnect_by"] == "local"
    (moved,) = target.result()["calls"]
    assert moved["request_uri"] == uri and moved["answered"]


def test_four_concurrent_tcp_calls(answerer: Any, tmp_path: Path) -> None:
    b = answerer("--transport", "tcp", "--max-calls", "4")
    rec = tmp_path / "multi.wav"
    calls = run_call(
        "--transport", "tcp", "--to", f"{LOOPBACK}:{b.port}", "--number", "600", "--calls", "4",
        "--record", str(rec), "--hangup-after", "0.8",
    )["calls"]
    assert [c["status"] for c in calls] == [200] * 4
    assert [Path(c["record"]).name for c in calls] == [f"multi-{i}.wav" for i in range(1, 5)]
    assert all(c["setup_ms"] < 500 for c in calls)  # 40 ms Nagle stalls are gone with TCP_NODELAY
    seen = b.result()["calls"]
    assert len(seen) == 4 and all(s["request_uri"].endswith(";transport=tcp") for s in seen)


def test_sigterm_answerer_prints_json_and_hangs_up(answerer: Any, tmp_path: Path) -> None:
    b = answerer()
    caller = subprocess.Popen(
        _cmd("call", "--to", f"{LOOPBACK}:{b.port}", "--number", "700", "--max-duration", "15"),
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert caller.stderr is not None
        for line in caller.stderr:  # wait for the answer, however slow the machine is today
            if "CONFIRMED" in line:
                break
        time.sleep(0.3)
        (seen,) = b.terminate()["calls"]
        out, err = caller.communicate(timeout=15)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.communicate()
    assert caller.returncode == 0, err[-3000:]
    assert seen["answered"] and seen["disconnect_by"] == "local"
    (call,) = json.loads(out)["calls"]
    assert call["status"] == 200 and call["disconnect"]["by"] == "remote"


def test_unanswered_call_ends_at_max_duration() -> None:
    port = free_udp_port()  # nothing listens: INVITE retransmits until we give up
    (call,) = run_call("--to", f"{LOOPBACK}:{port}", "--number", "800", "--max-duration", "1")["calls"]
    assert call["status"] == 487 and not call["answered"] and call["disconnect"]["by"] == "local"
    assert any(text == "hangup (max-duration)" for _, text in call["events"])


def test_cli_rejects_more_calls_than_the_module_allows() -> None:
    from gateway.sip.phone.cli import MAX_CALLS
    from gateway.sip.phone.softphone import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["call", "--to", "127.0.0.1:5080", "--number", "1",
                                   "--calls", str(MAX_CALLS + 1)])
    assert build_parser().parse_args(["call", "--to", "h:1", "--calls", str(MAX_CALLS)]).calls == MAX_CALLS
    args = build_parser().parse_args(["call", "--to", "h:1", "--number", "1", "--dtmf", "12#@2.5", "--dtmf", "9"])
    assert args.dtmf == [("12#", 2.5), ("9", 1.0)]
