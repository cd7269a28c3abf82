"""WebRTC calls over WHIP against the real gateway on loopback: an aiortc caller hears the
greeting, speaks (offline voice), is answered; DELETE hangs up; bad offers are refused; offers
whose media never connects are cleaned up."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection

from gateway.media.audio import load_wav
from gateway.speech.vendors.local import WhisperSTT
from gateway.webrtc.ice import configured_hosts
from tests.support import wait_until
from tests.support.gateway import REPO, GatewayProcess
from tests.support.speech import speech_wav
from tests.support.webrtc import WhipCaller


def heard_text(pcm: bytes) -> str:
    return WhisperSTT().transcribe(pcm).text.lower()


def _plans(tmp_path):
    import shutil
    plans = tmp_path / "dialplans"
    plans.mkdir()
    (plans / "+15550100.yaml").write_text((REPO / "dialplans" / "+15550100.yaml").read_text())
    (plans / "default.yaml").write_text("reject: 404\n")
    shutil.copytree(REPO / "dialplans" / "agents", plans / "agents")
    return plans


async def _offer(kind: str = "audio") -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(kind)
    with configured_hosts(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def test_a_browser_caller_talks_to_the_agent_and_hangs_up(tmp_path):
    speech = load_wav(speech_wav(tmp_path, "book", "I would like to book an appointment."))

    async def conversation(gw: GatewayProcess) -> dict:
        async with aiohttp.ClientSession() as http:
            caller = WhipCaller(f"http://127.0.0.1:{gw.http_port}")
            start = time.monotonic()
            assert await caller.call("+15550100", http) == 201, caller.reason
            assert caller.location and caller.location.startswith("/whip/session/")
            assert await caller.connected()
            greeting = await caller.agent_turn(start, quiet=2.0)
            spoke = time.monotonic()
            caller.speak(speech)
            await caller.spoken()
            reply = await caller.agent_turn(spoke + len(speech) / 16000, quiet=1.5)
            assert await caller.hangup(http) == 200
            assert await caller.hangup(http) == 404  # the session is gone with the call
            await caller.close()
            return {"greeting": heard_text(greeting), "reply": heard_text(reply)}

    with GatewayProcess(tmp_path, _plans(tmp_path)) as gw:
        heard = asyncio.run(conversation(gw))
        record = gw.wait_records(1)[-1]
        assert wait_until(lambda: gw.metric("gateway_calls_total", transport="webrtc",
                                            outcome="caller_hangup") == 1, 10)
        assert gw.metric("gateway_calls_active", transport="webrtc") == 0
        assert gw.metric("gateway_turn_latency_seconds_count", transport="webrtc") >= 1
    assert "springfield dental" in heard["greeting"], heard
    assert "name" in heard["reply"], heard  # "May I have your name, please?"
    assert record["transport"] == "webrtc" and record["trunk"] == "webrtc"
    assert record["outcome"] == "caller_hangup"
    assert record["variables"]["intent"] == "book", record["transcript"]
    assert any(t["who"] == "caller" and "appointment" in t["text"].lower() for t in record["transcript"])
    assert record["turn_latencies_ms"], record


def test_bad_offers_and_unknown_sessions_are_refused(tmp_path):
    async def attempts(gw: GatewayProcess) -> dict[str, tuple[int, str]]:
        base = f"http://127.0.0.1:{gw.http_port}"
        sdp = {"content-type": "application/sdp"}
        good = await _offer()
        # The offer's codecs replaced by one this side does not speak.
        alien = re.sub(r"a=rtpmap:(\d+) \S+", r"a=rtpmap:\1 iLBC/8000", good)
        alien = re.sub(r"a=fmtp:.*\r\n", "", alien)
        cases = {
            "malformed": ("+15550100", "this is not SDP", sdp),
            "truncated": ("+15550100", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nm=audio x y\r\n", sdp),
            "no_audio": ("+15550100", await _offer("video"), sdp),
            "no_codec": ("+15550100", alien, sdp),
            "not_sdp_type": ("+15550100", good, {"content-type": "text/plain"}),
            "unknown_number": ("+15559999", good, sdp),
            "not_a_number": ("abc", good, sdp),
        }
        out = {}
        async with aiohttp.ClientSession() as http:
            for name, (number, body, headers) in cases.items():
                async with http.post(f"{base}/whip/{number}", data=body, headers=headers) as r:
                    out[name] = (r.status, await r.text())
            async with http.delete(f"{base}/whip/session/nosuchsession") as r:
                out["delete_unknown"] = (r.status, await r.text())
            async with http.patch(f"{base}/whip/session/nosuchsession", data="a=x") as r:
                out["patch_unknown"] = (r.status, "")
            async with http.post(f"{base}/whip/+15550100", data="v" * 100_000, headers=sdp) as r:
                out["huge"] = (r.status, "")
        return out

    with GatewayProcess(tmp_path, _plans(tmp_path)) as gw:
        out = asyncio.run(attempts(gw))
        assert wait_until(lambda: gw.metric("gateway_calls_active", transport="webrtc") == 0, 10)
        records = gw.records_list()
    assert out["malformed"][0] == 400 and "not an SDP offer" in out["malformed"][1]
    assert out["truncated"][0] == 400 and "malformed SDP" in out["truncated"][1]
    assert out["no_audio"][0] == 400 and "no audio" in out["no_audio"][1]
    assert out["no_codec"][0] == 400 and "no common audio codec" in out["no_codec"][1]
    assert "ILBC" in out["no_codec"][1].upper()
    assert out["not_sdp_type"][0] == 415
    assert out["unknown_number"][0] == 404  # default.yaml: reject 404
    assert out["not_a_number"][0] == 404
    assert out["delete_unknown"][0] == 404
    assert out["patch_unknown"][0] == 404
    assert out["huge"][0] == 413
    # Only the routed offer became a call (rejected by its dialplan, like an INVITE); a bad offer never did.
    assert [r["outcome"] for r in records] == ["rejected"], records


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_offers_whose_media_never_connects_are_cleaned_up(tmp_path):
    """100 answered offers whose far end never starts ICE: every one ends after the connect
    timeout, with its sockets, and is recorded; nothing is left behind."""
    async def flood(gw: GatewayProcess) -> list[int]:
        offer = await _offer()
        async with aiohttp.ClientSession() as http:
            async def post() -> int:
                async with http.post(f"http://127.0.0.1:{gw.http_port}/whip/+15550100", data=offer,
                                     headers={"content-type": "application/sdp"}) as r:
                    return r.status
            return list(await asyncio.gather(*(post() for _ in range(100))))

    extra = {"webrtc": {"connect_timeout": 3}}
    with GatewayProcess(tmp_path, _plans(tmp_path), extra=extra) as gw:
        assert gw.proc is not None
        before = _open_fds(gw.proc.pid)
        statuses = asyncio.run(flood(gw))
        assert statuses == [201] * 100
        assert wait_until(lambda: gw.metric("gateway_calls_active", transport="webrtc") == 0, 30)
        records = gw.wait_records(100, 20)
        assert wait_until(lambda: _open_fds(gw.proc.pid) <= before + 5, 15), (before, _open_fds(gw.proc.pid))
    assert len(records) == 100
    assert {r["outcome"] for r in records} == {"cancelled"}, {r["outcome"] for r in records}


def test_a_draining_worker_refuses_new_webrtc_calls(tmp_path):
    async def during_drain(gw: GatewayProcess) -> tuple[int, int]:
        async with aiohttp.ClientSession() as http:
            caller = WhipCaller(f"http://127.0.0.1:{gw.http_port}")
            first = await caller.call("+15550100", http)
            assert await caller.connected()
            gw.signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            async with http.post(f"http://127.0.0.1:{gw.http_port}/whip/+15550100", data=await _offer(),
                                 headers={"content-type": "application/sdp"}) as r:
                second = r.status
            await caller.close()
            return first, second

    with GatewayProcess(tmp_path, _plans(tmp_path)) as gw:
        first, second = asyncio.run(during_drain(gw))
        gw.wait(30)
    assert (first, second) == (201, 503)
