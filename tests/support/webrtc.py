"""A WebRTC caller for tests: an aiortc peer that calls the gateway over WHIP on loopback, speaks
PCM through the same paced 48 kHz track the gateway uses, and keeps what it hears at 8 kHz."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from gateway.media.audio import rms_dbfs
from gateway.media.playout import PlayoutBuffer
from gateway.webrtc.audio import Downsampler, PacedTrack
from gateway.webrtc.ice import configured_hosts

FRAME = 320  # 20 ms at 8 kHz
VOICED_DBFS = -45.0


class WhipCaller:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mouth = PlayoutBuffer(FRAME)
        self.pc.addTrack(PacedTrack(self.mouth))
        self.heard: list[tuple[float, bytes]] = []  # (monotonic arrival, 20 ms frame)
        self.location: str | None = None
        self.status = 0
        self.reason = ""
        self._reader: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track) -> None:  # noqa: ANN001
        self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track) -> None:  # noqa: ANN001
        down = Downsampler(FRAME // 2)
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                self.heard += [(now, pcm) for pcm in down.push(frame)]
        except Exception:  # noqa: BLE001 - the track ends with the call
            return

    async def call(self, number: str, http: aiohttp.ClientSession) -> int:
        with configured_hosts(["127.0.0.1"]):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        async with http.post(f"{self.base_url}/whip/{number}", data=self.pc.localDescription.sdp,
                             headers={"Content-Type": "application/sdp"}) as reply:
            self.status = reply.status
            body = await reply.text()
            if reply.status != 201:
                self.reason = body.strip()
                return reply.status
            self.location = reply.headers["Location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
        return self.status

    async def connected(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.pc.connectionState == "connected"

    def speak(self, pcm: bytes) -> None:
        self.mouth.write(pcm)

    async def spoken(self) -> None:
        """Until what was said has left (or the call is over: then nothing reads it)."""
        while self.mouth.queued_bytes and self.pc.connectionState == "connected":
            await asyncio.sleep(0.02)

    def voiced(self, since: float = 0.0) -> list[tuple[float, bytes]]:
        return [(t, f) for t, f in self.heard if t >= since and rms_dbfs(f) > VOICED_DBFS]

    async def agent_turn(self, since: float, quiet: float = 1.5, timeout: float = 40.0) -> bytes:
        """Everything heard after `since`, once the agent has spoken and then been quiet `quiet` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            voiced = self.voiced(since)
            if voiced and time.monotonic() - voiced[-1][0] >= quiet:
                return b"".join(f for t, f in self.heard if t >= since)
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the agent did not finish a turn within {timeout} s")

    async def hangup(self, http: aiohttp.ClientSession) -> int:
        assert self.location is not None
        async with http.delete(f"{self.base_url}{self.location}") as reply:
            return reply.status

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()
