"""One WebRTC call leg: the offer answered by an aiortc peer connection, and the commands a
call's logic gives any leg (answer, reject, hang up, listen) carried out on it.

The worker sees a WebRTC call through the same `Call` handle as a SIP call; this class is what
that handle commands instead of the pj thread. The answer SDP is produced at once (the far end
needs it to start ICE), but it is handed out only when the call logic answers: a dialplan reject
becomes the HTTP status instead. After the answer the media must connect within
`connect_timeout`, else the leg ends like a call whose caller went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InvalidAccessError, OperationError
from aiortc.sdp import SessionDescription

from gateway.config.settings import IceServer
from gateway.errors import CallError
from gateway.media.framing import SAMPLE_RATE
from gateway.media.playout import PlayoutBuffer
from gateway.webrtc.audio import Downsampler, PacedTrack
from gateway.webrtc.ice import configured_hosts, ice_configuration
from gateway.webrtc.offer import OfferError, check_offer, printable

log = logging.getLogger("gateway.webrtc")


@dataclass(frozen=True, slots=True)
class Decision:
    """What the call logic made of the offer: answered (code 200) or refused."""

    code: int
    reason: str = ""


class WebRtcLeg:
    transport = "webrtc"

    def __init__(self, pc: RTCPeerConnection, answer: str, frame_ms: int, connect_timeout: float) -> None:
        self.pc = pc
        self.answer_sdp = answer
        self.codec = ""
        self._frame_ms = frame_ms
        self._connect_timeout = connect_timeout
        self.decision: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self.connected = asyncio.Event()
        self.ended = False
        # Set by the worker before the call starts: the call handle's event entry points.
        self.on_drained: Callable[[], None] = lambda: None
        self.on_ended: Callable[[int, str, bool], None] = lambda code, reason, by_remote: None
        self.on_connected: Callable[[], None] = lambda: None
        self.playout = PlayoutBuffer(SAMPLE_RATE * frame_ms // 1000 * 2, on_drained=self._drained)
        self.track = PacedTrack(self.playout)
        self._sink: Callable[[bytes], None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()

    @classmethod
    async def from_offer(cls, offer: str, *, hosts: Sequence[str], ice_servers: Sequence[IceServer] = (),
                         frame_ms: int = 20, connect_timeout: float = 15.0) -> WebRtcLeg:
        """Check and answer an offer; OfferError says why it cannot be (an HTTP 400)."""
        check_offer(offer)
        pc = RTCPeerConnection(ice_configuration(ice_servers))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            leg = cls(pc, "", frame_ms, connect_timeout)
            pc.addTrack(leg.track)  # onto the audio transceiver the offer made: sendrecv
            with configured_hosts(hosts):
                await pc.setLocalDescription(await pc.createAnswer())
        except (OperationError, InvalidAccessError, ValueError) as exc:
            await pc.close()
            raise OfferError(f"offer refused: {printable(str(exc), 120)}") from None
        except BaseException:
            await pc.close()
            raise
        leg.answer_sdp = pc.localDescription.sdp
        answered = [m for m in SessionDescription.parse(leg.answer_sdp).media if m.kind == "audio"]
        leg.codec = answered[0].rtp.codecs[0].mimeType.split("/")[1] if answered[0].rtp.codecs else ""
        pc.on("track", leg._on_track)
        pc.on("connectionstatechange", leg._on_state)
        for receiver in pc.getReceivers():  # the track event fired inside setRemoteDescription
            if receiver.track is not None and receiver.track.kind == "audio":
                leg._on_track(receiver.track)
        return leg

    # ---- the far end ----
    def _on_track(self, track) -> None:  # noqa: ANN001 - aiortc's RemoteStreamTrack
        if track.kind == "audio" and self._reader is None:
            self._reader = asyncio.create_task(self._read(track))

    async def _read(self, track) -> None:  # noqa: ANN001
        samples = SAMPLE_RATE * self._frame_ms // 1000
        down = Downsampler(samples)
        # Frames are always read (an unread track queues without bound) and dropped until listened to.
        with contextlib.suppress(Exception):
            while True:
                frame = await track.recv()
                frames = down.push(frame)
                if self._sink is not None:
                    for pcm in frames:
                        self._sink(pcm)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and not self.connected.is_set():
            self.connected.set()
            self.on_connected()
        elif state in ("failed", "closed") and not self.ended:
            asyncio.ensure_future(self._end(200 if self.connected.is_set() else 408,
                                            f"media {state}", by_remote=True))

    def _drained(self) -> None:
        asyncio.get_running_loop().call_soon(self.on_drained)

    async def _end(self, code: int, reason: str, by_remote: bool) -> None:
        if self.ended:
            return
        self.ended = True
        self._closed.set()
        if not self.decision.done():  # ended before the call logic answered or refused
            self.decision.set_result(Decision(487 if by_remote else max(code, 500), reason))
        self.track.stop()
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
        self.on_ended(code, reason, by_remote)

    async def remote_hangup(self) -> None:
        """The far end deleted its session (WHIP DELETE)."""
        await self._end(200, "session deleted", by_remote=True)

    # ---- the commands a call's logic gives its leg ----
    async def respond(self, code: int) -> None:
        if code < 200 or self.ended:
            return  # ringing has no meaning before a WHIP answer; the POST simply waits
        if not self.decision.done():
            self.decision.set_result(Decision(code))
        # Answered offers whose media never connects are not kept: ICE that fails or never starts.
        waits = {asyncio.ensure_future(self.connected.wait()), asyncio.ensure_future(self._closed.wait())}
        try:
            await asyncio.wait(waits, timeout=self._connect_timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if not self.connected.is_set():
            log.info("webrtc leg: no media within %.0f s: ended", self._connect_timeout)
            await self._end(408, "media did not connect", by_remote=True)
            raise CallError("the WebRTC media did not connect")

    async def reject(self, code: int, reason: str) -> None:
        if not self.decision.done():
            self.decision.set_result(Decision(code, reason))
        await self._end(code, reason, by_remote=False)

    async def end(self) -> None:
        await self._end(200, "hangup", by_remote=False)

    async def listen(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink

    async def set_transfer_policy(self, policy: object) -> None:
        pass  # nothing on the far side of a WebRTC leg can ask to be transferred

    async def send_digits(self, digits: str) -> str:
        raise CallError("a WebRTC call carries no keypad tones")

    async def transfer(self, uri: str) -> None:
        raise CallError("a WebRTC call cannot be transferred to a SIP destination")
