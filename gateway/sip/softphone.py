"""Scripted SIP phone for integration tests and `gateway call`.

    python -m gateway.sip.softphone call --to 127.0.0.1:5080 --number +15550100 [...]
    python -m gateway.sip.softphone answer --bind 127.0.0.1 --port 0 --ready-file PORT [...]

One pjsua2 Endpoint owned by the main thread (DESIGN.md §3), timers checked between
libHandleEvents() polls, one JSON object on stdout at exit, logs on stderr. A process
holds at most 4 calls (the wheel's PJSUA_MAX_CALLS), transfer legs included.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import re
import signal
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pjsua2 as pj

from gateway.sip import pjutil

log = logging.getLogger("gateway.sip.softphone")

RATE = pjutil.CLOCK_RATE
FRAME_BYTES = pjutil.FRAME_BYTES
SILENCE = bytes(FRAME_BYTES)
PORT_LINGER_S = 0.5  # the bridge drops ports asynchronously: keep them this long after a call
DISCONNECT_GRACE_S = 5.0  # how long shutdown waits for BYE/CANCEL to complete
MAX_CALLS = 4
_DTMF_RE = re.compile(r"^([0-9*#A-Da-d]+)(?:@(\d+(?:\.\d*)?))?$")


# --- audio --------------------------------------------------------------------------


def load_play_frames(spec: str | None) -> list[bytes]:
    """`tone:HZ`, a WAV path, or None (silence) -> 20 ms PCM16 8 kHz frames to loop."""
    if not spec:
        return [SILENCE]
    if spec.startswith("tone:"):
        hz = float(spec[5:])
        t = np.arange(RATE) / RATE  # one second: whole cycles for integer HZ, seamless loop
        pcm = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    else:
        pcm = _read_wav_8k(Path(spec))
    data = pcm.tobytes()
    data += bytes(-len(data) % FRAME_BYTES)
    return [data[i : i + FRAME_BYTES] for i in range(0, len(data), FRAME_BYTES)] or [SILENCE]


def _read_wav_8k(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768
    elif width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    else:
        raise ValueError(f"{path}: only 8/16-bit PCM WAV is supported")
    x = x.reshape(-1, channels).mean(axis=1)
    if rate != RATE:
        import soxr

        x = np.asarray(soxr.resample(x, rate, RATE), dtype=np.float32)  # HQ: offline, lag is harmless
    return (np.clip(x, -1, 1) * 32767).astype("<i2")


def write_wav(path: str, frames: list[bytes]) -> None:
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"".join(frames))


class _MediaPort(pj.AudioMediaPort):
    """Loops the play frames out, keeps received frames; callbacks run on the clock thread."""

    def __init__(self, out: list[pj.ByteVector], record: bool) -> None:
        super().__init__()
        self._out = out
        self._next = 0
        self.active = True  # cleared at DISCONNECTED so the tail of silence is not recorded
        self.frames: list[bytes] | None = [] if record else None
        self.received = 0

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        # getattr: at teardown a callback can reach a proxy without our attributes.
        if not getattr(self, "active", False):
            return
        self.received += 1
        if self.frames is not None:
            data = pjutil.read_frame_bytes(frame) if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO else b""
            self.frames.append(data or SILENCE)  # a NONE frame still took 20 ms

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        if not getattr(self, "active", False):
            return
        pjutil.write_frame_bytes(frame, self._out[self._next])
        self._next = (self._next + 1) % len(self._out)


# --- per-call state -----------------------------------------------------------------


@dataclass
class _Leg:
    """Plain data about one call; never holds pj objects, so it outlives them safely."""

    index: int
    t0: float  # INVITE sent (call mode) or received (answer mode)
    record_path: str | None = None
    status: int | None = None
    reason: str = ""
    answered_at: float | None = None
    disconnected_at: float | None = None
    disconnect_by: str | None = None
    disconnect_code: int | None = None
    hangup_requested: bool = False
    codec: str | None = None
    dtmf_sent: str = ""
    dtmf_received: str = ""
    frames_received: int = 0
    pcm: list[bytes] | None = None
    transfer: dict[str, Any] | None = None
    child: _Leg | None = None  # call placed because of a REFER we accepted
    remote_uri: str = ""
    local_uri: str = ""
    request_uri: str = ""
    x_headers: dict[str, str] = field(default_factory=dict)
    events: list[list[Any]] = field(default_factory=list)

    def event(self, text: str) -> None:
        self.events.append([round(time.monotonic() - self.t0, 3), text])
        log.info("call %d: %s", self.index, text)

    def caller_json(self) -> dict[str, Any]:
        ans = self.answered_at
        out: dict[str, Any] = {
            "status": self.status,
            "reason": self.reason,
            "answered": ans is not None,
            "setup_ms": round((ans - self.t0) * 1000, 1) if ans is not None else None,
            "disconnect": None,
            "codec": self.codec,
            "dtmf_sent": self.dtmf_sent,
            "dtmf_received": self.dtmf_received,
            "record": self.record_path,
            "frames_received": self.frames_received,
            "transfer": dict(self.transfer) if self.transfer else None,
            "events": self.events,
        }
        if self.disconnected_at is not None:
            out["disconnect"] = {
                "by": self.disconnect_by,
                "code": self.disconnect_code,
                "after_s": round(self.disconnected_at - ans, 3) if ans is not None else None,
            }
        if self.child is not None and out["transfer"] is not None:
            out["transfer"]["new_call"] = self.child.caller_json()
        return out

    def answerer_json(self) -> dict[str, Any]:
        ans, end = self.answered_at, self.disconnected_at
        return {
            "from": self.remote_uri,
            "to": self.local_uri,
            "request_uri": self.request_uri,
            "x_headers": self.x_headers,
            "status": self.status,
            "answered": ans is not None,
            "duration_s": round(end - ans, 3) if ans is not None and end is not None else None,
            "disconnect_by": self.disconnect_by,
            "codec": self.codec,
            "dtmf": self.dtmf_received,
            "record": self.record_path,
            "frames_received": self.frames_received,
            "transfer": self.transfer,
            "events": self.events,
        }


@dataclass
class _Slot:
    """The pj objects of one leg, owned by the main thread; released in _reap()."""

    leg: _Leg
    call: _Call | None = None
    port: _MediaPort | None = None
    parent: _Leg | None = None
    timers: list[tuple[float, str, str]] = field(default_factory=list)


class _Call(pj.Call):
    def __init__(self, phone: _Phone, acc: pj.Account, slot: _Slot, call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(acc, call_id)
        self._phone = phone
        self._slot = slot

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        self._phone.on_state(self._slot, self, pjutil.caused_by_remote(prm.e))

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        self._phone.on_media(self._slot, self)

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

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.answer_mode = args.mode == "answer"
        self.slots: list[_Slot] = []
        self.stop_requested = False
        frames = load_play_frames(args.play)
        self._out = [pj.ByteVector(f) for f in frames]
        self.ep: pj.Endpoint | None = None
        self.acc: _Account | None = None
        self.port = 0

    # lifecycle
    def start(self) -> None:
        a = self.args
        ep = self.ep = pj.Endpoint()
        ep.libCreate()
        ep.libInit(pjutil.endpoint_config(log_level=a.log_level, user_agent="gateway-softphone"))
        ep.audDevManager().setNullDev()  # setNoDev would leave the bridge without a clock
        pjutil.set_codec_priorities(ep)
        tcp = a.transport == "tcp"
        tcfg = pjutil.transport_config(a.bind, a.port, tcp=tcp)
        tid = ep.transportCreate(pj.PJSIP_TRANSPORT_TCP if tcp else pj.PJSIP_TRANSPORT_UDP, tcfg)
        self.port = pjutil.transport_port(ep, tid)
        ep.libStart()
        acfg = pj.AccountConfig()
        user = a.from_user if not self.answer_mode else "answer"
        acfg.idUri = f"sip:{user}@{a.bind}:{self.port}" + (";transport=tcp" if tcp else "")
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
        """Drop every pj object on this thread and collect, so none dies after libDestroy()."""
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

    def destroy(self) -> None:
        if self.ep is not None:
            self.ep.libDestroy()
            self.ep = None

    def result(self) -> dict[str, Any]:
        if self.answer_mode:
            return {"port": self.port, "calls": [s.leg.answerer_json() for s in self.slots]}
        return {"calls": [s.leg.caller_json() for s in self.slots if s.parent is None]}

    def write_recordings(self) -> None:
        for slot in self.slots:
            leg = slot.leg
            if leg.record_path:
                Path(leg.record_path).parent.mkdir(parents=True, exist_ok=True)
                write_wav(leg.record_path, leg.pcm or [])

    # placing and answering
    def _record_path(self, index: int, suffix: str = "") -> str | None:
        a = self.args
        if self.answer_mode:
            return str(Path(a.record_dir) / f"call-{index}{suffix}.wav") if a.record_dir else None
        if not a.record:
            return None
        p = Path(a.record)
        tag = f"-{index}" if a.calls > 1 else ""
        return str(p.with_name(f"{p.stem}{tag}{suffix}{p.suffix or '.wav'}"))

    def _place_call(self, index: int) -> None:
        a = self.args
        uri = f"sip:{a.number}@{a.to}" + (";transport=tcp" if a.transport == "tcp" else "")
        slot = _Slot(_Leg(index, time.monotonic(), self._record_path(index)))
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
        slot = _Slot(_Leg(len(self.slots) + 1, now, self._record_path(len(self.slots) + 1)))
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
            if slot.port is not None:
                slot.port.active = False
                leg.frames_received, leg.pcm = slot.port.received, slot.port.frames
        parent = slot.parent
        if parent is not None and parent.transfer is not None:
            # pjsua NOTIFYs the transferor with the new call's progress until a final code
            codes = parent.transfer["notify_codes"]
            if codes[-1] < 200:
                codes.append(code or 100)
            if leg.status is not None:
                parent.transfer["new_call_status"] = leg.status

    def _mark_disconnected(self, leg: _Leg, code: int | None, reason: str, by: str) -> None:
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
            if slot.port is None:
                port = _MediaPort(self._out, record=slot.leg.record_path is not None)
                port.createPort(f"softphone-{slot.leg.index}", pjutil.pcm_port_format())
                slot.port = port
                si = call.getStreamInfo(mi.index)
                slot.leg.codec = f"{si.codecName}/{si.codecClockRate}"
                slot.leg.event(f"media active {slot.leg.codec}")
            am.startTransmit(slot.port)
            slot.port.startTransmit(am)

    def on_transfer_request(self, slot: _Slot, prm: pj.OnCallTransferRequestParam) -> None:
        leg = slot.leg
        leg.event(f"REFER to {prm.dstUri}")
        leg.transfer = {"target": prm.dstUri, "notify_codes": [], "new_call_status": None}
        if self.answer_mode or not self.args.follow_refer:
            prm.statusCode = 603
            return
        prm.statusCode = 202
        leg.transfer["notify_codes"].append(100)  # pjsua's initial NOTIFY after the 202
        child = _Slot(_Leg(leg.index, time.monotonic(), self._record_path(leg.index, "-xfer")), parent=leg)
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
        if a.hangup_after is not None:
            slot.timers.append((now + a.hangup_after, "hangup", "hangup-after"))
        for digits, at in [] if self.answer_mode or slot.parent else a.dtmf:
            slot.timers.append((now + at, "dtmf", digits))
        if self.answer_mode and a.xfer_to:
            slot.timers.append((now + a.xfer_after, "xfer", a.xfer_to))

    def _run_timers(self, now: float) -> None:
        for slot in list(self.slots):
            if slot.call is None or slot.leg.disconnected_at is not None or not slot.timers:
                continue
            due = sorted(t for t in slot.timers if t[0] <= now)
            for t in due:
                slot.timers.remove(t)
                try:
                    self._fire(slot, slot.call, t[1], t[2])
                except pj.Error as exc:
                    slot.leg.event(f"{t[1]} failed: {exc.info()}")

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
        """Drop a Call once DISCONNECTED; its port PORT_LINGER_S later (DESIGN.md §3)."""
        for slot in self.slots:
            end = slot.leg.disconnected_at
            if end is None:
                continue
            slot.call = None
            if slot.port is not None and now - end >= PORT_LINGER_S:
                slot.port = None

    def _release(self, slot: _Slot) -> None:
        if slot.port is not None and slot.leg.pcm is None:
            slot.port.active = False
            slot.leg.frames_received, slot.leg.pcm = slot.port.received, slot.port.frames
        slot.call = None
        slot.port = None

    def _finished(self) -> bool:
        if not self.answer_mode:
            return bool(self.slots) and self._idle()
        n = self.args.max_calls
        return n is not None and len(self.slots) >= n and self._idle()

    def _idle(self) -> bool:
        return all(s.leg.disconnected_at is not None and s.port is None for s in self.slots)


# --- command line -------------------------------------------------------------------


def _dtmf_spec(text: str) -> tuple[str, float]:
    m = _DTMF_RE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"DTMF must be DIGITS[@SECONDS], got {text!r}")
    return m.group(1).upper(), float(m.group(2) or 1.0)


def _calls(text: str) -> int:
    n = int(text)
    if not 1 <= n <= MAX_CALLS:
        raise argparse.ArgumentTypeError(f"--calls must be 1..{MAX_CALLS} (PJSUA_MAX_CALLS of this build)")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway.sip.softphone", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bind", default="127.0.0.1", help="local address for SIP and RTP")
    common.add_argument("--port", type=int, default=0, help="local SIP port (0 = any free port)")
    common.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    common.add_argument("--play", help="tone:HZ or a WAV file, looped (default: silence)")
    common.add_argument("--hangup-after", type=float, help="seconds after answer")
    common.add_argument("--log-level", type=int, default=1, help="pjsua log level on stderr (0-6)")
    c = sub.add_parser("call", parents=[common], help="place call(s) and report the outcome")
    c.add_argument("--to", required=True, help="HOST:PORT of the far end")
    c.add_argument("--number", required=True, help="user part of the Request-URI")
    c.add_argument("--from-user", default="softphone")
    c.add_argument("--calls", type=_calls, default=1, help="identical concurrent calls (1-4)")
    c.add_argument("--record", help="WAV of received audio (OUT-1.wav, OUT-2.wav... when --calls > 1)")
    c.add_argument("--dtmf", type=_dtmf_spec, action="append", default=[], help="DIGITS[@SECONDS after answer, default 1]")
    c.add_argument("--dtmf-method", choices=("rfc2833", "info"), default="rfc2833")
    c.add_argument("--cancel-after", type=float, help="CANCEL this many seconds after the INVITE if unanswered")
    c.add_argument("--max-duration", type=float, default=30.0, help="hang up everything after this long")
    c.add_argument("--follow-refer", action="store_true", help="accept REFER and place the new call")
    c.add_argument("--extra-header", action="append", default=[], help='"Name: value" added to the INVITE')
    s = sub.add_parser("answer", parents=[common], help="answer every INVITE")
    s.add_argument("--ready-file", help="write the bound SIP port here once listening")
    s.add_argument("--record-dir", help="write DIR/call-N.wav per call")
    s.add_argument("--answer-delay", type=float, default=0.0, help="send 180, answer this much later")
    s.add_argument("--status", type=int, default=200, help="final answer code (e.g. 486 to refuse)")
    s.add_argument("--xfer-to", help="blind-transfer (REFER) each answered call to this URI")
    s.add_argument("--xfer-after", type=float, default=1.0, help="seconds after answer for --xfer-to")
    s.add_argument("--max-calls", type=int, help="exit after this many calls have ended")
    s.add_argument("--max-duration", type=float, default=3600.0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # pjlib prints to fd 1; keep the real stdout for the one JSON object only.
    json_fd = os.dup(1)
    os.dup2(2, 1)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="softphone %(message)s")
    phone = _Phone(args)

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
        error, code = f"{type(exc).__name__}: {getattr(exc, 'info', lambda: exc)()}", 1
    phone.release()
    # Results first: libDestroy() takes ~1 s and a SIGTERM'd caller wants the JSON now.
    try:
        phone.write_recordings()
    except OSError as exc:
        error, code = error or f"recording: {exc}", 1
    out = phone.result()
    if error:
        out["error"] = error
    with os.fdopen(json_fd, "w") as f:
        f.write(json.dumps(out) + "\n")
    phone.destroy()
    return code


if __name__ == "__main__":
    sys.exit(main())
