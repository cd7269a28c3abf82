"""The WebRTC leg's audio path without a network: 48 kHz frames in, pipeline frames out (one
streaming resampler, no seams), the agent's audio out on a 20 ms clock, ICE host addresses."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection

from gateway.media.audio import dominant_frequency, tone
from gateway.media.playout import PlayoutBuffer
from gateway.webrtc.audio import OPUS_RATE, Downsampler, PacedTrack
from gateway.webrtc.ice import configured_hosts


def _frames_48k(freq: float, seconds: float, channels: int = 2) -> list[av.AudioFrame]:
    t = np.arange(int(OPUS_RATE * seconds)) / OPUS_RATE
    mono = (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)
    out = []
    for i in range(0, len(mono), 960):
        chunk = np.repeat(mono[i:i + 960], channels)
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16",
                                           layout="stereo" if channels == 2 else "mono")
        frame.sample_rate = OPUS_RATE
        frame.pts = i
        frame.time_base = fractions.Fraction(1, OPUS_RATE)
        out.append(frame)
    return out


def test_received_opus_frames_become_seamless_8khz_pipeline_frames():
    down = Downsampler(160)
    pushed = [down.push(frame) for frame in _frames_48k(440, 1.0)]
    frames = [f for out in pushed for f in out]
    assert all(len(f) == 320 for f in frames)
    # The resampler holds back under two frames once, then hands out one frame per frame: a
    # steady stream, not bursts (the recogniser's and the turn detector's clocks depend on it).
    assert [len(out) for out in pushed[2:]] == [1] * (len(pushed) - 2)
    assert len(frames) >= 48
    pcm = np.frombuffer(b"".join(frames), dtype=np.int16).astype(float)
    assert abs(dominant_frequency(b"".join(frames)) - 440) < 10
    # One stream for the call: no seam at the 20 ms frame edges (a per-frame resampler would
    # start every frame from silence and the tone would dip there).
    steady = pcm[800:]
    envelope = np.abs(steady).reshape(-1, 20).max(axis=1)
    assert envelope.min() > 0.9 * envelope.max()


def test_the_agents_audio_leaves_paced_at_48khz():
    async def run() -> tuple[float, list[av.AudioFrame], int]:
        drained = []
        playout = PlayoutBuffer(320, on_drained=lambda: drained.append(time.monotonic()))
        playout.write(tone(1000, 0.5))
        track = PacedTrack(playout)
        start = time.monotonic()
        frames = [await track.recv() for _ in range(50)]
        return time.monotonic() - start, frames, len(drained)

    elapsed, frames, drained = asyncio.run(run())
    assert 0.9 <= elapsed <= 1.3, elapsed  # 50 frames of 20 ms: one second, not a burst
    assert all(f.sample_rate == OPUS_RATE and f.samples == 960 for f in frames)
    assert [f.pts for f in frames] == [i * 960 for i in range(50)]
    assert drained == 1
    voiced = b"".join(bytes(f.planes[0])[:1920] for f in frames[:20])
    assert abs(dominant_frequency(voiced, rate=OPUS_RATE) - 1000) < 20


def test_ice_offers_exactly_the_configured_host_addresses():
    async def candidates() -> list[str]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("audio")
        with configured_hosts(["127.0.0.1"]):
            await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return [line for line in sdp.splitlines() if line.startswith("a=candidate")]

    found = asyncio.run(candidates())
    assert found and all(" 127.0.0.1 " in line and " typ host" in line for line in found), found
