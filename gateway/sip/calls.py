"""One pjsua2 call leg (pj thread only), and the pure admission policy for new INVITEs."""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import pjsua2 as pj

from gateway.config.settings import Settings, Trunk
from gateway.media.framing import DEFAULT_FRAME_MS, frame_bytes
from gateway.media.playout import PlayoutBuffer
from gateway.sip import events as ev
from gateway.sip import pjutil
from gateway.sip.caller_id import caller_number
from gateway.sip.message import InviteInfo, parse_invite, printable, problems
from gateway.sip.port import PortPool

log = logging.getLogger("gateway.sip")
_keys = itertools.count(1)
LATE_ANSWER = 0.2  # seconds an offered INVITE waits for its first answer before 180 is sent
_DTMF_METHODS = {pj.PJSUA_DTMF_METHOD_RFC2833: "rfc4733", pj.PJSUA_DTMF_METHOD_SIP_INFO: "info"}


@dataclass(frozen=True, slots=True)
class Decision:
    info: InviteInfo
    trunk: str
    reject: tuple[int, str] | None = None
    reason: str = ""


class IncomingPolicy:
    """Who may call: allowlisted trunks, well-formed INVITEs, and not while draining."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.draining = False
        self._trunk_users = {user for t in settings.trunks if t.registrar
                             for user in (t.username, t.contact_user) if user}
        # Hosts a registering trunk's registrar answered from while its registration is up: the
        # carrier's INVITEs on that registration come from there (trunk name -> hosts).
        self._registered: dict[str, set[str]] = {}
        self._trunks = {t.name: t for t in settings.trunks}

    def registration(self, trunk: str, host: str, up: bool) -> None:
        """A trunk's registration came up (answered from `host`) or went down."""
        if up and host:
            self._registered.setdefault(trunk, set()).add(host)
        elif not up:
            self._registered.pop(trunk, None)

    def _registered_trunk(self, host: str) -> Trunk | None:
        for name, hosts in self._registered.items():
            if host in hosts:
                return self._trunks.get(name)
        return None

    def trusted_source(self, source: str) -> bool:
        return self.trusted_host(_host(source))

    def trusted_host(self, host: str) -> bool:
        """An allowlisted trunk address, or the front in multi-worker mode."""
        return (self.settings.trunk_for(host) is not None or host in self.settings.trusted
                or self._registered_trunk(host) is not None)

    def decide(self, message: str, source: str) -> Decision:
        info = parse_invite(message)
        info = replace(info, caller=caller_number(info))
        if info.to_user and info.dialled in self._trunk_users:
            # Calls to a registration's Contact carry the trunk username in the Request-URI;
            # the dialled number (DID) is in To.
            info = replace(info, dialled=info.to_user)
        trunk = self.settings.trunk_for(_host(source)) or self._registered_trunk(_host(source))
        if trunk is None and not self.trusted_source(source):
            return Decision(info, "", (403, "Forbidden"), "unknown_source")
        name = trunk.name if trunk else "front"
        problem = problems(message, datagram=True)
        if problem:
            return Decision(info, name, problem, "malformed")
        if self.draining:
            return Decision(info, name, (503, "Service Unavailable"), "draining")
        return Decision(info, name)


def rtp_source_allowed(source_host: str, allowed_hosts: set[str], trusted: Callable[[str], bool]) -> bool:
    """Strict RTP: media may come from the address the far end signalled (SDP), the address its
    SIP came from, or an allowlisted trunk network; a scanner's packets must not take a call's
    audio over (pjmedia latches onto a new source after a few packets)."""
    return not source_host or source_host in allowed_hosts or trusted(source_host)


def _frame_reader(sink: Callable[[bytes], None]) -> Callable[[pj.MediaFrame], None]:
    def on_frame(frame: pj.MediaFrame) -> None:
        sink(pjutil.read_frame_bytes(frame))

    return on_frame


def _host(source: str) -> str:
    if source.startswith("["):
        return source[1:source.index("]")]
    return source.rsplit(":", 1)[0]


class CallOwner(Protocol):
    """What a call leg needs of the endpoint holding it (the SipEndpoint, on the pj thread)."""

    settings: Settings
    policy: IncomingPolicy
    ports: PortPool

    def post(self, event: ev.Event) -> None: ...

    def adopt(self, leg: GatewayCall, *, referred_by: int, target: str) -> None: ...

    def forget(self, call: GatewayCall) -> None: ...


class GatewayCall(pj.Call):
    """A call leg. Talks to asyncio only through plain events keyed by our own call key."""

    def __init__(self, owner: CallOwner, account: pj.Account,
                 call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.key = next(_keys)
        self.owner = owner
        self.account = account
        # Set by the call's logic once routed (an object with allows_caller(uri)); until then,
        # and for every far end the dialplan did not trust, REFER and Replaces are refused.
        self.transfer_policy: object | None = None
        self.info: InviteInfo | None = None
        self.trunk = ""
        # The buffer travels to asyncio, so its callback must not hold this pj object.
        self.playout = PlayoutBuffer(frame_bytes(owner.settings.frame_ms),
                                     on_drained=functools.partial(owner.post, ev.PlayoutDrained(self.key)))
        self.port = None
        self.hung_up_locally = False
        self.sink: Callable[[bytes], None] | None = None
        self._underruns_seen = 0
        self._transfer_done = False
        self.source = ""           # "ip:port" the INVITE came from
        self.offered_at: float | None = None  # an incoming INVITE: when pjsua offered it
        self._responded = False    # a provisional or final answer has gone out
        self._audio_index = -1     # the active audio stream, once media is up

    # ---- commands (pj thread) ----
    def awaiting_answer(self, now: float) -> bool:
        """An incoming INVITE nothing has been answered to for LATE_ANSWER seconds."""
        return (not self._responded and self.offered_at is not None
                and now - self.offered_at >= LATE_ANSWER)

    def reject(self, code: int, reason: str) -> None:
        self._responded = True
        self.hung_up_locally = True
        prm = pj.CallOpParam()
        prm.statusCode = code
        prm.reason = reason
        self.hangup(prm)

    def respond(self, code: int) -> None:
        self._responded = True
        prm = pj.CallOpParam()
        prm.statusCode = code
        self.answer(prm)

    def end(self, code: int = 0) -> None:
        self._responded = True
        self.hung_up_locally = True
        prm = pj.CallOpParam()
        if code:
            prm.statusCode = code
        self.hangup(prm)

    def send_digits(self, digits: str) -> str:
        """Send keypad tones: RFC 4733 events in the RTP stream, or SIP INFO when the far end
        negotiated no telephone-event. Returns the method used."""
        prm = pj.CallSendDtmfParam()
        prm.digits = digits
        prm.method = pj.PJSUA_DTMF_METHOD_RFC2833
        try:
            self.sendDtmf(prm)
        except pj.Error:
            prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
            self.sendDtmf(prm)
        return _DTMF_METHODS[prm.method]

    def listen(self, sink: Callable[[bytes], None]) -> None:
        """Hand the caller's audio frames to sink, from the clock thread."""
        self.sink = sink
        if self.port is not None:
            self.port.on_audio = _frame_reader(sink)

    def transfer(self, uri: str) -> None:
        self._transfer_done = False
        self.xfer(uri, pj.CallOpParam())

    def set_transfer_policy(self, policy: object) -> None:
        self.transfer_policy = policy

    def _caller_may_move_to(self, uri: str) -> bool:
        allows = getattr(self.transfer_policy, "allows_caller", None)
        return bool(allows and allows(uri))

    def rtp_source(self) -> tuple[str, set[str]]:
        """(host RTP last came from, hosts it may come from); ("", ...) before any RTP."""
        if self._audio_index < 0:
            return "", set()
        src = self.getMedTransportInfo(self._audio_index).srcRtpName
        remote = self.getStreamInfo(self._audio_index).remoteRtpAddress
        return _host(src) if src else "", {_host(a) for a in (remote, self.source) if a}

    def take_underruns(self) -> int:
        total = self.playout.underruns
        delta = total - self._underruns_seen
        self._underruns_seen = total
        return delta

    # ---- callbacks ----
    def onCallState(self, prm: pj.OnCallStateParam) -> None:  # noqa: N802
        ci = self.getInfo()
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self._disconnected(ci)
        elif ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.owner.post(ev.CallState(self.key, "confirmed", ci.lastStatusCode, ci.lastReason))
        elif ci.state == pj.PJSIP_INV_STATE_EARLY:
            self.owner.post(ev.CallState(self.key, "early", ci.lastStatusCode, ci.lastReason))

    def _disconnected(self, ci: pj.CallInfo) -> None:
        underruns = self.take_underruns()
        if underruns:
            self.owner.post(ev.MediaStats(0, 0, underruns))
        if self.port is not None:
            self.owner.ports.release(self.port)
            self.port = None
        self.playout.clear()
        self.owner.post(ev.CallState(self.key, "disconnected", ci.lastStatusCode, ci.lastReason,
                                     by_remote=not self.hung_up_locally))
        # pjsua reuses call ids at once: forget this object now so no command reaches it.
        self.owner.forget(self)

    def onCallSdpCreated(self, prm: pj.OnCallSdpCreatedParam) -> None:  # noqa: N802
        frame_ms = self.owner.settings.frame_ms
        if frame_ms != DEFAULT_FRAME_MS:
            # Ask the caller for packets as short as ours (10 ms): only then is the path faster.
            prm.sdp.wholeSdp = pjutil.with_ptime(prm.sdp.wholeSdp, frame_ms)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:  # noqa: N802
        ci = self.getInfo()
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO or mi.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            media = self.getAudioMedia(mi.index)
            self._audio_index = mi.index
            if self.port is None:
                self.port = self.owner.ports.acquire()
                self.port.playout = self.playout
                if self.sink is not None:
                    self.port.on_audio = _frame_reader(self.sink)
                self.owner.post(ev.MediaReady(self.key))
            media.startTransmit(self.port)
            self.port.startTransmit(media)
            return

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:  # noqa: N802
        method = _DTMF_METHODS.get(prm.method, "rfc4733")
        self.owner.post(ev.Dtmf(self.key, prm.digit, method))

    def onCallTransferRequest(self, prm: pj.OnCallTransferRequestParam) -> None:  # noqa: N802
        # pjsua's default accepts any REFER and dials its Refer-To: toll fraud in one request.
        target = prm.dstUri
        if not self._caller_may_move_to(target):
            prm.statusCode = 603
            self.owner.post(ev.TransferRefused(self.key, "refer", printable(target), 603))
            return
        # Allowed: the new leg is ours, tracked, recorded and drained like any other call.
        leg = GatewayCall(self.owner, self.account)
        self.owner.adopt(leg, referred_by=self.key, target=printable(target))
        prm.newCall = leg

    def onCallReplaceRequest(self, prm: pj.OnCallReplaceRequestParam) -> None:  # noqa: N802
        # An INVITE with Replaces would take this call over from whoever knows its dialog ids.
        source = prm.rdata.srcAddress
        uri = pjutil.request_uri(prm.rdata.wholeMsg)
        if not (self._caller_may_move_to(uri) and self.owner.policy.trusted_source(source)):
            prm.statusCode = 603
            prm.reason = "Decline"
            self.owner.post(ev.TransferRefused(self.key, "replaces", printable(uri), 603,
                                               printable(source)))

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:  # noqa: N802
        final = bool(prm.finalNotify) or prm.statusCode >= 200
        self.owner.post(ev.TransferStatus(self.key, prm.statusCode, prm.reason, final))
        if final:
            prm.cont = False
