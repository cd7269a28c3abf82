"""Scripted SIP phone for integration tests and `gateway call`.

    python -m gateway.sip.phone.softphone call --to 127.0.0.1:5080 --number +15550100 [...]
    python -m gateway.sip.phone.softphone answer --bind 127.0.0.1 --port 0 --ready-file PORT [...]

One pjsua2 Endpoint owned by the main thread (docs/DESIGN.md §3), timers checked between
libHandleEvents() polls, one JSON object on stdout at exit, logs on stderr. A process
holds at most PJSUA_MAX_CALLS calls (512 in the gateway's build, 4 in the stock wheel),
transfer legs included.

Conversations: `call --turn A.wav --turn B.wav` plays each turn once when the far end has
spoken and paused (or --barge-in-ms after it starts), and reports per-turn timing measured on
the call's media clock (conversation.py); `answer --reply R.wav --reply-delay-ms 300` is the
reference far end whose reply gap is exact by frame count. Audio and the media port live in
phone_media.py, the per-call JSON in phone_report.py, the flags in phone_cli.py.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
import time
from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pjsua2 as pj

from gateway.sip import pjutil
from gateway.sip.phone.conversation import CallerScript, FrameVad, MediaLog, Replier, analyse_turns, voiced_flags
from gateway.sip.phone.live_turns import LiveTurns
from gateway.sip.phone.cli import MAX_CALLS, build_parser
from gateway.sip.phone.media import FrameBank, MediaPort, load_play_frames, write_stereo_wav, write_wav
from gateway.sip.phone.report import Leg
from gateway.sip.target import parse_target

__all__ = ["MAX_CALLS", "build_parser", "main", "load_play_frames", "write_wav"]

log = logging.getLogger("gateway.sip.phone.softphone")

PORT_LINGER_S = 0.5  # the bridge drops ports asynchronously: keep them this long after a call
DISCONNECT_GRACE_S = 5.0  # how long shutdown waits for BYE/CANCEL to complete
RTP_SAMPLE_S = 0.5  # how often the main thread reads a call's stream stats


# --- per-call state -----------------------------------------------------------------


@dataclass
class _Slot:
    """The pj objects of one leg, owned by the main thread; released in _reap()."""

    leg: Leg
    call: _Call | None = None
    port: MediaPort | None = None
    parent: Leg | None = None
    timers: list[tuple[float, str, str]] = field(default_factory=list)
    turns_logged: int = 0
    turns_asked: int = 0  # live turns requested so far
    media_index: int | None = None
    rtp_sampled_at: float = 0.0


class _Call(pj.Call):
    def __init__(self, phone: _Phone, acc: pj.Account, slot: _Slot, call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(acc, call_id)
        self._phone = phone
        self._slot = slot

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        self._phone.on_state(self._slot, self, pjutil.caused_by_remote(prm.e))

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        self._phone.on_media(self._slot, self)

    def onCallSdpCreated(self, prm: pj.OnCallSdpCreatedParam) -> None:
        if self._phone.frame_ms != pjutil.PTIME_MS:
            prm.sdp.wholeSdp = pjutil.with_ptime(prm.sdp.wholeSdp, self._phone.frame_ms)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        self._slot.leg.dtmf_received += prm.digit
        how = "info" if prm.method == pj.PJSUA_DTMF_METHOD_SIP_INFO else "rfc2833"
        self._slot.leg.event(f"dtmf received {prm.digit} ({how})")

    def onCallTransferRequest(self, prm: pj.OnCallTransferRequestParam) -> None:
        self._phone.on_transfer_request(self._slot, prm)

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        self._phone.on_transfer_status(self._slot, prm)


class _Account(pj.Account):
    def __init__(self, phone: _Phone) -> None:
        super().__init__()
        self._phone = phone

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self._phone.on_incoming(prm)


# --- the phone ----------------------------------------------------------------------


class _Phone:
    """Endpoint + one account + call slots, all touched only by the main thread."""

    def __init__(self, args: Namespace) -> None:
        self.args = args
        self.answer_mode = args.mode == "answer"
        self.slots: list[_Slot] = []
        self.stop_requested = False
        self.frame_ms: int = args.frame_ms
        self.bank = FrameBank(self.frame_ms)
        self._loop = self.bank.add(self.load_frames(args.play)) if args.play else [0]
        self.vad = FrameVad(args.vad, threshold_dbfs=args.vad_threshold_db, frame_ms=self.frame_ms)
        if self.answer_mode:
            self._turns: list[list[int]] = []
            self._reply = self.bank.add(self.load_frames(args.reply)) if args.reply else []
            self._greeting = self.bank.add(self.load_frames(args.greeting)) if args.greeting else []
        else:
            self._turns = [self.bank.add(self.load_frames(path)) for path in args.turn]
            self._reply = self._greeting = []
        self.ep: pj.Endpoint | None = None
        self.acc: _Account | None = None
        self.port = 0
        self.live: LiveTurns | None = None  # --live-turns: further turns come from our parent
        # Audio ports of ended calls, kept until the process exits: the bridge removes a port
        # asynchronously on its clock thread, and a port freed before that (a starved clock
        # thread on a saturated machine takes longer than any fixed linger) crashes the process.
        self._retired_ports: list[Any] = []

    def load_frames(self, spec: str) -> list[bytes]:
        """A play source cut into this phone's frames (any thread)."""
        return load_play_frames(spec, self.frame_ms)

    # lifecycle
    def start(self) -> None:
        a = self.args
        ep = self.ep = pj.Endpoint()
        ep.libCreate()
        ep.libInit(pjutil.endpoint_config(log_level=a.log_level, user_agent="gateway-softphone",
                                          frame_ms=self.frame_ms))
        ep.audDevManager().setNullDev()  # setNoDev would leave the bridge without a clock
        pjutil.set_codec_priorities(ep, frame_ms=self.frame_ms)
        tcp = a.transport in ("tcp", "tls")
        tcfg = pjutil.transport_config(a.bind, a.port, tcp=tcp)
        kinds = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP, "tls": pj.PJSIP_TRANSPORT_TLS}
        if a.transport == "tls":
            pjutil.tls_config(tcfg, cert=a.tls_cert or "", key=a.tls_key or "", ca=a.ca_file or "")
            tcfg.tlsConfig.verifyServer = bool(a.ca_file)  # --ca-file: the far end must chain to it
        tid = ep.transportCreate(kinds[a.transport], tcfg)
        self.port = pjutil.transport_port(ep, tid)
        ep.libStart()
        acfg = pj.AccountConfig()
        user = a.from_user if not self.answer_mode else "answer"
        acfg.idUri = f"sip:{user}@{a.bind}:{self.port}" + (f";transport={a.transport}" if tcp else "")
        pjutil.set_srtp(acfg.mediaConfig, a.srtp)
        acfg.sipConfig.transportId = tid
        acfg.mediaConfig.transportConfig.boundAddress = a.bind  # RTP on loopback too
        acfg.mediaConfig.transportConfig.port = 0  # OS-chosen RTP ports: parallel phones never collide
        self.acc = _Account(self)
        self.acc.create(acfg, True)
        log.info("listening on %s:%d/%s", a.bind, self.port, a.transport)
        if self.answer_mode and a.ready_file:
            tmp = f"{a.ready_file}.tmp"
            Path(tmp).write_text(f"{self.port}\n")
            os.replace(tmp, a.ready_file)  # readers never see a half-written file

    def run(self) -> None:
        deadline = time.monotonic() + self.args.max_duration
        if not self.answer_mode:
            for i in range(self.args.calls):
                self._place_call(i + 1)
        stop_at: float | None = None
        while True:
            assert self.ep is not None
            self.ep.libHandleEvents(10)
            now = time.monotonic()
            self._run_timers(now)
            self._reap(now)
            if stop_at is None and (self.stop_requested or now >= deadline or self._finished()):
                stop_at = now
                self._hangup_all("stop" if self.stop_requested else "max-duration")
            if stop_at is not None and (self._idle() or now - stop_at > DISCONNECT_GRACE_S + PORT_LINGER_S):
                break

    def release(self) -> None:
        """End every call and drop the Calls on this thread (ports stay retired, see __init__)."""
        if self.ep is not None and not self._idle():
            # error or unresponsive peer: end the media, then still keep ports PORT_LINGER_S
            try:
                self.ep.hangupAllCalls()
            except pj.Error as exc:
                log.warning("hangupAllCalls: %s", exc.info())
            end = time.monotonic() + PORT_LINGER_S
            while time.monotonic() < end:
                self.ep.libHandleEvents(10)
        for slot in self.slots:
            self._release(slot)
        self.acc = None
        gc.collect()

    def exit(self, code: int) -> NoReturn:
        """End the process without libDestroy(): every call has ended, and a retired port that
        outlived the library would abort in its destructor. The OS closes the sockets."""
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    def result(self) -> dict[str, Any]:
        if self.answer_mode:
            return {"port": self.port, "calls": [s.leg.answerer_json() for s in self.slots]}
        return {"calls": [s.leg.caller_json() for s in self.slots if s.parent is None]}

    def write_recordings(self) -> None:
        for slot in self.slots:
            leg = slot.leg
            media = leg.media or MediaLog()
            if leg.record_path:
                Path(leg.record_path).parent.mkdir(parents=True, exist_ok=True)
                write_wav(leg.record_path, media.received)
            if leg.record_both_path:
                Path(leg.record_both_path).parent.mkdir(parents=True, exist_ok=True)
                write_stereo_wav(leg.record_both_path, media.sent, media.received)

    # placing and answering
    def _record_path(self, index: int, suffix: str = "", *, both: bool = False) -> str | None:
        a = self.args
        if self.answer_mode:
            if both:
                return None
            return str(Path(a.record_dir) / f"call-{index}{suffix}.wav") if a.record_dir else None
        base = a.record_both if both else a.record
        if not base:
            return None
        p = Path(base)
        tag = f"-{index}" if a.calls > 1 else ""
        return str(p.with_name(f"{p.stem}{tag}{suffix}{p.suffix or '.wav'}"))

    def _place_call(self, index: int) -> None:
        a = self.args
        uri = parse_target(a.to).uri(a.number, a.transport)
        slot = _Slot(Leg(index, time.monotonic(), self._record_path(index)))
        slot.leg.record_both_path = self._record_path(index, both=True)
        self.slots.append(slot)
        assert self.acc is not None
        slot.call = _Call(self, self.acc, slot)
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        prm.txOption.headers = pjutil.sip_header_vector(a.extra_header)
        if a.cancel_after is not None:
            slot.timers.append((slot.leg.t0 + a.cancel_after, "cancel", ""))
        slot.leg.event(f"INVITE {uri}")
        try:
            slot.call.makeCall(uri, prm)
        except pj.Error as exc:  # e.g. unresolvable target: report it as this call's outcome
            self._mark_disconnected(slot.leg, None, exc.info(), "local")
            slot.call = None

    def on_incoming(self, prm: pj.OnIncomingCallParam) -> None:
        a = self.args
        now = time.monotonic()
        slot = _Slot(Leg(len(self.slots) + 1, now, self._record_path(len(self.slots) + 1)))
        self.slots.append(slot)
        assert self.acc is not None
        call = slot.call = _Call(self, self.acc, slot, prm.callId)
        leg = slot.leg
        msg = prm.rdata.wholeMsg
        leg.request_uri = pjutil.request_uri(msg)
        leg.x_headers = {n: v for n, v in pjutil.sip_headers(msg) if n.lower().startswith("x-")}
        ci = call.getInfo()
        leg.remote_uri, leg.local_uri = ci.remoteUri, ci.localUri
        leg.event(f"INVITE {leg.request_uri} from {leg.remote_uri}")
        if a.answer_delay > 0 or a.status != 200:
            self._answer(call, 180)
            slot.timers.append((now + a.answer_delay, "answer", str(a.status)))
        else:
            self._answer(call, 200)

    def _answer(self, call: _Call, code: int) -> None:
        op = pj.CallOpParam(True)
        op.statusCode = code
        call.answer(op)

    # callbacks (main thread, inside libHandleEvents)
    def on_state(self, slot: _Slot, call: _Call, from_remote: bool) -> None:
        ci = call.getInfo()
        leg, now = slot.leg, time.monotonic()
        code, reason = ci.lastStatusCode, ci.lastReason
        leg.event(f"{ci.stateText} {code} {reason}".strip())
        if ci.state in (pj.PJSIP_INV_STATE_CONNECTING, pj.PJSIP_INV_STATE_CONFIRMED):
            if leg.answered_at is None:
                leg.status, leg.reason, leg.answered_at = code or 200, reason, now
                self._arm_answer_timers(slot, now)
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            # a transport error or timeout is not the far end's doing
            by = "remote" if from_remote and not leg.hangup_requested else "local"
            self._mark_disconnected(leg, code, reason, by)
            slot.timers.clear()
            self._stop_media(slot)
        parent = slot.parent
        if parent is not None and parent.transfer is not None:
            # pjsua NOTIFYs the transferor with the new call's progress until a final code
            codes = parent.transfer["notify_codes"]
            if codes[-1] < 200:
                codes.append(code or 100)
            if leg.status is not None:
                parent.transfer["new_call_status"] = leg.status

    def _mark_disconnected(self, leg: Leg, code: int | None, reason: str, by: str) -> None:
        if leg.status is None:
            leg.status, leg.reason = code, reason
        leg.disconnected_at = time.monotonic()
        leg.disconnect_by, leg.disconnect_code = by, code

    def on_media(self, slot: _Slot, call: _Call) -> None:
        ci = call.getInfo()
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO or mi.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            am = call.getAudioMedia(mi.index)
            slot.media_index = mi.index
            if slot.port is None:
                slot.port = self._media_port(slot)
                slot.port.createPort(f"softphone-{slot.leg.index}", pjutil.pcm_port_format(ptime_ms=self.frame_ms))
                si = call.getStreamInfo(mi.index)
                slot.leg.codec = f"{si.codecName}/{si.codecClockRate}"
                slot.leg.event(f"media active {slot.leg.codec}")
            # Our port as a source first: it starts the tick count, so the first received
            # frame already has an index (docs/DESIGN.md §3; see phone_media).
            slot.port.startTransmit(am)
            am.startTransmit(slot.port)

    def _media_port(self, slot: _Slot) -> MediaPort:
        leg, a, frame_ms = slot.leg, self.args, self.frame_ms
        fps = 1000 / frame_ms
        hangup_s = a.hangup_after if a.hangup_after is not None else 2.0
        director: CallerScript[int] | Replier[int] | None = None
        if self.answer_mode and (self._reply or self._greeting):
            director = leg.replier = Replier(
                self._reply,
                delay_frames=round(a.reply_delay_ms / frame_ms),
                greeting=self._greeting,
                stop_frames=round(a.reply_stop_ms / frame_ms) if a.reply_stop_ms is not None else None,
                frame_ms=frame_ms,
            )
        elif not self.answer_mode and (self._turns or a.listen or self.live) and slot.parent is None:
            director = leg.script = CallerScript(
                self._turns,
                gap_frames=round(a.turn_gap_ms / frame_ms),
                hangup_frames=round(hangup_s * fps),
                barge_frames=round(a.barge_in_ms / frame_ms) if a.barge_in_ms is not None else None,
                greeting_frames=round(a.greeting_wait * fps),
                reply_frames=round(a.reply_timeout * fps),
                not_before=round((max((at for _, at in a.dtmf), default=0.0) + hangup_s) * fps),
                live=self.live is not None,
            )
        keep = bool(leg.record_path or leg.record_both_path or leg.script)
        vad = self.vad.fresh() if director is not None else None
        return MediaPort(self.bank, self._loop, director=director, vad=vad, keep=keep, frame_ms=frame_ms)

    def _stop_media(self, slot: _Slot) -> None:
        """Freeze the port's logs into the leg (once), and time the turns."""
        port, leg = slot.port, slot.leg
        if port is None or leg.media is not None:
            return
        leg.media = port.stop()
        leg.frames_received = port.frames_received
        if leg.script is not None:
            sent = voiced_flags(leg.media.sent, self.vad)
            received = voiced_flags(leg.media.received, self.vad)
            # a far-end pause shorter than the turn gap does not end its turn: merge across it
            merge = max(1, round(self.args.turn_gap_ms / self.frame_ms))
            leg.timing = analyse_turns(sent, received, leg.script.records, merge_frames=merge,
                                       frame_ms=self.frame_ms)

    def on_transfer_request(self, slot: _Slot, prm: pj.OnCallTransferRequestParam) -> None:
        leg = slot.leg
        leg.event(f"REFER to {prm.dstUri}")
        leg.transfer = {"target": prm.dstUri, "notify_codes": [], "new_call_status": None}
        if self.answer_mode or not self.args.follow_refer:
            prm.statusCode = 603
            return
        prm.statusCode = 202
        leg.transfer["notify_codes"].append(100)  # pjsua's initial NOTIFY after the 202
        child = _Slot(Leg(leg.index, time.monotonic(), self._record_path(leg.index, "-xfer")), parent=leg)
        leg.child = child.leg
        assert self.acc is not None
        child.call = _Call(self, self.acc, child)
        prm.newCall = child.call  # pjsua places the call through this object: we get its callbacks
        self.slots.append(child)

    def on_transfer_status(self, slot: _Slot, prm: pj.OnCallTransferStatusParam) -> None:
        tr = slot.leg.transfer
        if tr is None:
            return
        tr["notify_codes"].append(prm.statusCode)
        slot.leg.event(f"NOTIFY {prm.statusCode} {prm.reason}")
        if prm.finalNotify:
            tr["final"] = prm.statusCode
            prm.cont = False
            slot.timers.append((time.monotonic(), "hangup", "transferred"))

    # timers
    def _arm_answer_timers(self, slot: _Slot, now: float) -> None:
        a = self.args
        if a.hangup_after is not None and not (self._turns or a.listen or self.live):  # else: quiet after last turn
            slot.timers.append((now + a.hangup_after, "hangup", "hangup-after"))
        for digits, at in [] if self.answer_mode or slot.parent else a.dtmf:
            slot.timers.append((now + at, "dtmf", digits))
        if self.answer_mode and a.xfer_to:
            slot.timers.append((now + a.xfer_after, "xfer", a.xfer_to))

    def _run_timers(self, now: float) -> None:
        for slot in list(self.slots):
            if slot.call is not None and slot.leg.disconnected_at is None:
                if slot.leg.script is not None:
                    self._follow_script(slot, slot.leg.script)
                if slot.media_index is not None and now >= slot.rtp_sampled_at + RTP_SAMPLE_S:
                    self._sample_rtp(slot)
            if slot.call is None or slot.leg.disconnected_at is not None or not slot.timers:
                continue
            due = sorted(t for t in slot.timers if t[0] <= now)
            for t in due:
                slot.timers.remove(t)
                try:
                    self._fire(slot, slot.call, t[1], t[2])
                except pj.Error as exc:
                    slot.leg.event(f"{t[1]} failed: {exc.info()}")

    def _sample_rtp(self, slot: _Slot) -> None:
        """Receive-path health of the call so far (jitter buffer and RTCP receive stats)."""
        if slot.call is None or slot.media_index is None:
            return
        slot.rtp_sampled_at = time.monotonic()
        try:
            st = slot.call.getStreamStat(slot.media_index)
        except pj.Error:
            return
        jb, rx = st.jbuf, st.rtcp.rxStat
        slot.leg.rtp = {
            "rx_packets": rx.pkt,
            "tx_packets": st.rtcp.txStat.pkt,
            "rx_lost": rx.loss,
            "rx_jitter_max_ms": round(rx.jitterUsec.max / 1000, 1) if rx.jitterUsec.n else None,
            "jb_delay_ms": {"min": jb.minDelayMsec, "avg": jb.avgDelayMsec, "max": jb.maxDelayMsec},
            "jb_empty": jb.empty,
            "jb_discard": jb.discard,
            "jb_lost": jb.lost,
        }

    def _follow_script(self, slot: _Slot, script: CallerScript[int]) -> None:
        """Log turns the clock thread started; hang up once the script is done."""
        records = script.records
        while slot.turns_logged < len(records):
            rec = records[slot.turns_logged]
            slot.turns_logged += 1
            slot.leg.event(f"turn {rec.index + 1} at frame {rec.start} ({rec.trigger})")
        if self.live is not None:
            self._follow_live(slot, script)
        if script.finished is not None and not slot.leg.hangup_requested:
            self._hangup(slot, script.finished)

    def _follow_live(self, slot: _Slot, script: CallerScript[int]) -> None:
        """Ask for the turn the script waits for; hand it over once made (never waits here)."""
        assert self.live is not None
        want = script.wanted
        if want is not None and slot.turns_asked <= want.index and slot.port is not None:
            slot.turns_asked = want.index + 1
            self.live.ask(want.index + 1, slot.port.received[want.heard_from:want.at], want.trigger)
        for answer in self.live.ready():
            if answer.frames is None:
                script.close(answer.hangup)
            else:
                script.supply(self.bank.add(answer.frames), last=answer.last)

    def _fire(self, slot: _Slot, call: _Call, kind: str, arg: str) -> None:
        leg = slot.leg
        if kind == "dtmf":
            prm = pj.CallSendDtmfParam()
            prm.method = (
                pj.PJSUA_DTMF_METHOD_SIP_INFO if self.args.dtmf_method == "info" else pj.PJSUA_DTMF_METHOD_RFC2833
            )
            prm.digits = arg
            call.sendDtmf(prm)
            leg.dtmf_sent += arg
            leg.event(f"dtmf sent {arg} ({self.args.dtmf_method})")
        elif kind == "answer":
            leg.hangup_requested = int(arg) >= 300  # rejecting ends the call from our side
            leg.event(f"answer {arg}")
            self._answer(call, int(arg))
        elif kind == "xfer":
            leg.transfer = {"target": arg, "notify_codes": []}
            leg.event(f"REFER sent to {arg}")
            call.xfer(arg, pj.CallOpParam(True))
        elif kind == "cancel":
            if leg.answered_at is None:
                self._hangup(slot, "cancel-after")
        else:
            self._hangup(slot, arg)

    def _hangup(self, slot: _Slot, why: str) -> None:
        if slot.call is None or slot.leg.disconnected_at is not None:
            return
        self._sample_rtp(slot)
        slot.leg.hangup_requested = True
        slot.leg.event(f"hangup ({why})")
        slot.call.hangup(pj.CallOpParam(True))

    def _hangup_all(self, why: str) -> None:
        for slot in self.slots:
            try:
                self._hangup(slot, why)
            except pj.Error as exc:
                slot.leg.event(f"hangup failed: {exc.info()}")

    # bookkeeping
    def _reap(self, now: float) -> None:
        """Drop a Call once DISCONNECTED; its port PORT_LINGER_S later (docs/DESIGN.md §3)."""
        for slot in self.slots:
            end = slot.leg.disconnected_at
            if end is None:
                continue
            slot.call = None
            if slot.port is not None and now - end >= PORT_LINGER_S:
                self._retired_ports.append(slot.port)
                slot.port = None

    def _release(self, slot: _Slot) -> None:
        self._stop_media(slot)
        slot.call = None
        if slot.port is not None:
            self._retired_ports.append(slot.port)
        slot.port = None

    def _finished(self) -> bool:
        if not self.answer_mode:
            return bool(self.slots) and self._idle()
        n = self.args.max_calls
        return n is not None and len(self.slots) >= n and self._idle()

    def _idle(self) -> bool:
        return all(s.leg.disconnected_at is not None and s.port is None for s in self.slots)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.mode == "call" and args.turn and args.play:
        parser.error("--play and --turn exclude each other (turns are played once, silence in between)")
    if args.mode == "answer" and (args.reply or args.greeting) and args.play:
        parser.error("--play and --reply/--greeting exclude each other")
    if args.mode == "call" and args.live_turns and (args.calls > 1 or args.play):
        parser.error("--live-turns needs a single call (--calls 1) and no --play")
    # pjlib prints to fd 1; keep the real stdout for the one JSON object only.
    json_fd = os.dup(1)
    os.dup2(2, 1)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="softphone %(message)s")
    phone = _Phone(args)
    if args.mode == "call" and args.live_turns:
        phone.live = LiveTurns(json_fd, Path(args.live_turns), 0, write_wav, phone.load_frames)

    def _on_signal(signum: int, _frame: Any) -> None:
        phone.stop_requested = True  # the loop hangs up and exits within ~10 ms

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    code = 0
    error: str | None = None
    try:
        phone.start()
        phone.run()
    except Exception as exc:  # report, then still tear down cleanly
        log.exception("softphone failed")
        error, code = f"{type(exc).__name__}: {exc.info() if isinstance(exc, pj.Error) else exc}", 1
    phone.release()
    try:
        phone.write_recordings()
    except OSError as exc:
        error, code = error or f"recording: {exc}", 1
    if phone.live is not None:
        phone.live.close()  # its request lines come before the result line
    out = phone.result()
    if error:
        out["error"] = error
    with os.fdopen(json_fd, "w") as f:
        f.write(json.dumps(out) + "\n")
    phone.exit(code)


if __name__ == "__main__":
    sys.exit(main())
