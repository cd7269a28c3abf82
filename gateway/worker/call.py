"""What a call's logic sees: one asyncio-side handle per call leg.

Commands go to the pj thread by call key; events from it arrive through `deliver()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.worker import metrics
from gateway.worker.audit import CallAudit
from gateway.dialplan.transfers import TransferPolicy
from gateway.errors import CallError
from gateway.media.playout import PlayoutBuffer
from gateway.sip import events as ev
from gateway.worker.leg import Leg
from gateway.sip.message import printable

log = logging.getLogger("gateway.worker.call")
DIGITS = "0123456789*#ABCD"
MAX_DIGITS = 32
# A keypad (or a SIP INFO flood) can send any number of digits: keep a bounded few.
MAX_PENDING_DIGITS = 32
MAX_RECORDED_DIGITS = 64


@dataclass(slots=True)
class CallRecord:
    """Everything the call record file keeps about one call."""

    call_id: str
    dialled: str
    caller: str
    source: str
    trunk: str
    started: float
    dialplan: str = ""
    answered: float | None = None
    ended: float | None = None
    setup_ms: float | None = None
    outcome: str = "unknown"
    end_code: int = 0
    digits: str = ""
    transfer: dict = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    transcript: list[dict] = field(default_factory=list)
    turn_latencies_ms: list[float] = field(default_factory=list)
    # Per caller turn, in the order replied to: endpoint_ms (end of speech → end of turn),
    # endpoint (what ended it: complete / incomplete / unsure words, or silence), asr_tail_ms
    # (end of turn → the words), tts_first_audio_ms, reply_ms (words → first audio to RTP),
    # total_ms (end of speech → first audio to RTP).
    turn_stages: list[dict] = field(default_factory=list)
    barge_ins: int = 0
    variables: dict = field(default_factory=dict)
    referred_by: str = ""   # a leg the gateway dialled on an allowed REFER: the referring call
    transport: str = "sip"  # or "webrtc": a browser or app calling over WHIP


class Call:
    def __init__(self, leg: Leg, incoming: ev.IncomingCall) -> None:
        self.leg = leg  # SIP or WebRTC: the only part of a call that differs (worker/leg.py)
        self.transport = leg.transport
        self.key = incoming.key
        self.incoming = incoming
        self.playout: PlayoutBuffer = incoming.playout
        self.record = CallRecord(call_id=incoming.call_id, dialled=incoming.dialled,
                                 caller=incoming.caller, source=incoming.source,
                                 trunk=incoming.trunk, started=time.time(), transport=leg.transport)
        if incoming.referred_by is not None:
            self.record.referred_by = incoming.call_id.rsplit(";", 1)[0]
        self.audit = CallAudit(incoming.call_id)  # every step, chained; the worker journals it
        # Nowhere until the dialplan is known: a transfer needs a destination it names.
        self.transfers = TransferPolicy()
        self.disconnected = asyncio.Event()
        self._confirmed = asyncio.Event()
        self.disconnect_code = 0
        self.by_remote = False
        self._digits: asyncio.Queue[str] = asyncio.Queue(MAX_PENDING_DIGITS)
        self._drained = asyncio.Event()
        self._digit_arrived = asyncio.Event()
        self._transfer: asyncio.Queue[ev.TransferStatus] = asyncio.Queue()
        # Live events of the call (transcript, turn latency), for whoever watches it: the call page.
        self.observers: list[Callable[[str, dict], None]] = []

    def notify(self, kind: str, **data: object) -> None:
        for observer in self.observers:
            observer(kind, data)

    # ---- events from the pj thread ----
    def deliver(self, event: ev.Event) -> None:
        if isinstance(event, ev.Dtmf):
            digit = event.digit.upper()
            if len(digit) != 1 or digit not in DIGITS or self._digits.full():
                metrics.dtmf_dropped()
                return
            if len(self.record.digits) < MAX_RECORDED_DIGITS:
                self.record.digits += digit
            self._digits.put_nowait(digit)
            self._digit_arrived.set()
        elif isinstance(event, ev.PlayoutDrained):
            self._drained.set()
        elif isinstance(event, ev.TransferStatus):
            self._transfer.put_nowait(event)
        elif isinstance(event, ev.CallState) and event.state == "confirmed":
            self._confirmed.set()
        elif isinstance(event, ev.CallState) and event.state == "disconnected":
            self.disconnect_code = event.code
            self.by_remote = event.by_remote
            self.disconnected.set()
            self._confirmed.set()

    # ---- commands ----
    async def ringing(self) -> None:
        await self.leg.respond(180)

    @property
    def outbound(self) -> bool:
        return self.incoming.referred_by is not None

    async def set_transfers(self, policy: TransferPolicy) -> None:
        """Where this call may go: agent transfers check it here, the far end's REFER and
        Replaces on the pj thread."""
        self.transfers = policy
        await self.leg.set_transfer_policy(policy)

    async def answer(self) -> None:
        if self.outbound:
            await self._confirmed.wait()  # the far end answers a leg we dialled
            if self.disconnected.is_set():
                raise CallError("the referred leg was not answered")
        else:
            await self.leg.respond(200)
        self.record.answered = time.time()
        self.audit.log("answered")

    async def reject(self, code: int, reason: str) -> None:
        await self.leg.reject(code, reason)

    async def hangup(self) -> None:
        if self.disconnected.is_set():
            return
        try:
            await self.leg.end()
        except CallError:
            pass  # already gone: the caller hung up at the same moment

    async def play(self, pcm: bytes, stop_on_digit: bool = False) -> bool:
        """Queue audio and wait until it has gone out on the wire.

        With stop_on_digit, a keypress (already queued or arriving) cuts the audio off at the
        next frame; returns False when that happened.
        """
        if not pcm:
            return True
        if stop_on_digit and self.pending_digit():
            return False
        self._drained.clear()
        self._digit_arrived.clear()
        self.playout.write(pcm)
        if not stop_on_digit:
            await self._drained.wait()
            return True
        drained = asyncio.ensure_future(self._drained.wait())
        digit = asyncio.ensure_future(self._digit_arrived.wait())
        try:
            await asyncio.wait({drained, digit}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            drained.cancel()
            digit.cancel()
        if self._drained.is_set():
            return True
        self.clear_playout()
        return False

    def write_audio(self, pcm: bytes) -> None:
        """Queue audio without waiting (streamed speech); see wait_drained()."""
        if pcm:
            self.playout.write(pcm)

    async def wait_drained(self) -> None:
        """Until everything queued has gone out (or was cleared)."""
        while self.playout.queued_bytes > 0:
            self._drained.clear()
            if self.playout.queued_bytes == 0:
                break
            await self._drained.wait()

    async def listen(self, sink: Callable[[bytes], None]) -> None:
        """Send the caller's PCM frames, one per media clock tick, to sink (on pjmedia's clock thread)."""
        await self.leg.listen(sink)

    def clear_playout(self) -> None:
        """Stop what is playing now; a waiting play() returns at once."""
        self.playout.clear()
        self._drained.set()

    def pending_digit(self) -> bool:
        return not self._digits.empty()

    async def next_digit(self, timeout: float) -> str | None:
        try:
            return await asyncio.wait_for(self._digits.get(), timeout)
        except TimeoutError:
            return None

    async def send_digits(self, digits: str) -> str:
        """Send keypad tones (0-9 * # A-D) to the caller; returns the method used."""
        if not digits or len(digits) > MAX_DIGITS or not set(digits.upper()) <= set(DIGITS):
            raise ValueError(f"keypad digits are 1-{MAX_DIGITS} of {DIGITS}, not {digits!r}")
        method = await self.leg.send_digits(digits.upper())
        log.info("call %s: sent digits %s (%s)", self.key, digits, method)
        return method

    async def blind_transfer(self, uri: str) -> bool:
        """REFER to uri; on success our leg is hung up. Counted and recorded either way.
        A destination the dialplan does not allow is refused before anything is sent."""
        if not self.transfers.allows(uri):
            metrics.transfer("refused")
            self.record.transfer = {"target": printable(uri), "code": 0, "reason": "not allowed"}
            self.audit.log("transfer", target=printable(uri), code=0, reason="not allowed")
            log.warning("audit: call %s: transfer to %s refused: not an allowed destination",
                        self.key, printable(uri))
            return False
        code, reason = await self.transfer(uri)
        self.record.transfer = {"target": uri, "code": code, "reason": reason}
        self.audit.log("transfer", target=printable(uri), code=code, reason=printable(reason))
        if 200 <= code < 300:
            metrics.transfer("success")
            await self.hangup()
            return True
        metrics.transfer("failed")
        log.warning("call %s: transfer to %s failed: %s %s", self.key, uri, code, reason)
        return False

    async def transfer(self, uri: str, timeout: float = 30.0) -> tuple[int, str]:
        """Blind transfer (REFER). Returns the final NOTIFY status, or the REFER failure."""
        while not self._transfer.empty():
            self._transfer.get_nowait()
        try:
            await self.leg.transfer(uri)
        except CallError as exc:
            return 500, str(exc)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return 408, "transfer timed out"
            try:
                status = await asyncio.wait_for(self._transfer.get(), remaining)
            except TimeoutError:
                return 408, "transfer timed out"
            if status.final:
                return status.code, status.reason
