"""The 10 ms media profile (`media: {frame_ms: 10}`): settings, framing, and a real SIP call
whose RTP packets are 10 ms both ways while turns and barge-in still work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.settings import Settings, read_settings
from gateway.media.audio import tone
from gateway.media.framing import frame_bytes
from gateway.media.vad import Vad
from gateway.sip.phone.conversation import FrameVad, analyse_turns, TurnRecord
from tests.support.agents import AGENT_BARGE, plans_dir
from tests.support.gateway import GatewayProcess
from tests.support.phones import call
from tests.support.speech import speech_wav


def _settings(tmp_path: Path, text: str) -> tuple[Settings | None, list]:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return read_settings(path)


def test_frame_ms_defaults_to_20_and_accepts_10(tmp_path: Path) -> None:
    assert Settings().frame_ms == 20
    settings, errors = _settings(tmp_path, "media:\n  frame_ms: 10\n")
    assert not errors and settings is not None and settings.frame_ms == 10


@pytest.mark.parametrize("value", ["30", "0", "ten"])
def test_other_frame_sizes_are_refused_at_their_line(tmp_path: Path, value: str) -> None:
    settings, errors = _settings(tmp_path, f"sip:\n  port: 5080\nmedia:\n  frame_ms: {value}\n")
    assert settings is None
    assert str(errors[0]).startswith(f"{tmp_path / 'gateway.yaml'}:4:"), errors


def test_unknown_media_key_is_refused(tmp_path: Path) -> None:
    _, errors = _settings(tmp_path, "media:\n  ptime: 10\n")
    assert errors and ":2:" in str(errors[0]) and "ptime" in str(errors[0])


def test_gateway_check_reports_the_frame_size(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("media:\n  frame_ms: 10\n")
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "10 ms media frames" in done.stdout


def test_frames_are_sized_from_the_frame_length() -> None:
    assert frame_bytes(20) == 320 and frame_bytes(10) == 160
    pcm = tone(440, 0.1)
    vad = Vad(frame_ms=10)
    assert all(vad.is_speech(pcm[i:i + 160]) for i in range(160 * 3, len(pcm), 160))
    with pytest.raises(ValueError):
        vad.is_speech(pcm[:320])  # a 20 ms frame on a 10 ms path is a framing bug
    assert FrameVad(frame_ms=10).fresh().is_voiced(pcm[:160])


def test_wire_timing_counts_10_ms_frames() -> None:
    sent = [False] * 10 + [True] * 50 + [False] * 100
    received = [False] * 90 + [True] * 40 + [False] * 30
    timing = analyse_turns(sent, received, [TurnRecord(0, 10, 60, "pause")], frame_ms=10)
    turn = timing["turns"][0]
    assert turn["sent_start_s"] == 0.1 and turn["sent_end_s"] == 0.6
    assert turn["latency_ms"] == 300 and turn["reply_start_s"] == 0.9


def test_ten_ms_call_barges_in_and_answers_with_10_ms_packets_both_ways(tmp_path: Path) -> None:
    plans = plans_dir(tmp_path, {"barge": AGENT_BARGE})
    turn = speech_wav(tmp_path, "name", "My name is Alice.")
    with GatewayProcess(tmp_path, plans, extra={"media": {"frame_ms": 10}}) as gw:
        out = call(gw.target, "+15550301", "--frame-ms", "10", "--turn", str(turn), "--barge-in-ms", "1500",
                   "--greeting-wait", "5", "--hangup-after", "4", "--max-duration", "40")["calls"][0]
        record = gw.wait_records(1)[-1]
        port_frames_in = gw.metric("gateway_rtp_frames_total", direction="in")
    assert out["status"] == 200 and out["codec"] == "PCMU/8000"
    clock, rtp = out["media_clock"], out["rtp"]
    assert clock["frame_ms"] == 10
    # One RTP packet per 10 ms tick each way (20 ms packets would give half as many).
    assert rtp["rx_packets"] >= 0.9 * clock["frames"], (rtp, clock)
    assert rtp["tx_packets"] >= 0.9 * clock["frames"], (rtp, clock)
    assert rtp["rx_lost"] == 0
    # The gateway's port ticked every 10 ms too.
    assert port_frames_in >= 0.9 * clock["frames"], (port_frames_in, clock)
    # Barge-in silenced the agent quickly, the words were heard, and the agent answered them.
    stop_ms = out["turns"][0]["barge_in_stop_ms"]
    assert stop_ms is not None and stop_ms <= 80, out["turns"]
    assert record["barge_ins"] >= 1
    assert "alice" in record["variables"]["answer"].lower(), record["transcript"]
    assert any(t["who"] == "agent" and "alice" in t["text"].lower() for t in record["transcript"])
    assert out["turns"][0]["latency_ms"] is not None
