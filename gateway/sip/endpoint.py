"""The pjsua2 endpoint on its own thread, and the command queue asyncio uses to drive it.

Every pj object lives and dies on this thread (docs/DESIGN.md §3). asyncio submits callables with
`run()` and gets plain results back; callbacks leave as plain events through `post`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Concatenate, ParamSpec, TypeVar

import pjsua2 as pj

from gateway.config.codecs import load_codec_profile
from gateway.config.settings import Settings
from gateway.errors import CallError, GatewayError
from gateway.sip import events as ev
from gateway.sip import pjutil
from gateway.sip.build import BuildInfo, describe
from gateway.sip.calls import GatewayCall, IncomingPolicy, rtp_source_allowed
from gateway.sip.flood import FloodConfig, FloodGuard
from gateway.sip.message import printable
from gateway.sip.pjfilter import RequestFilter
from gateway.sip.tcp_caps import TcpCaps
from gateway.sip.port import CLOCK_RATE, PortPool
from gateway.sip.trunks import TrunkAccount

log = logging.getLogger("gateway.sip")
_PJ_LEVELS = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}
_POLL_MS = 5
_RTP_CHECK_SECONDS = 0.2  # how long a hijacked stream could carry a call's audio at most
P = ParamSpec("P")
T = TypeVar("T")


class _LogWriter(pj.LogWriter):
    """pjlib's log into Python logging; spots the 486 pjsua sends on its own when full."""

    def __init__(self, on_too_many_calls: Callable[[], None]) -> None:
        super().__init__()
        self._on_too_many_calls = on_too_many_calls

    def write(self, entry: pj.LogEntry) -> None:
        msg = entry.msg.rstrip()
        if "too many calls" in msg:
            self._on_too_many_calls()
        log.log(_PJ_LEVELS.get(entry.level, logging.DEBUG), "pj: %s", msg.strip())


class _Account(pj.Account):
    """The gateway's catch-all local identity: receives INVITEs that match no trunk account."""

    def __init__(self, owner: SipEndpoint) -> None:
        super().__init__()
        self._owner = owner

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:  # noqa: N802
        self._owner._on_incoming(self, prm)


class SipEndpoint:
    def __init__(self, settings: Settings, post: Callable[[ev.Event], None]) -> None:
        self.settings = settings
        self._post = post
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name="pj", daemon=True)
        self._started: Future[None] = Future()
        self._stopping = threading.Event()
        self.policy = IncomingPolicy(settings)
        self.flood = FloodGuard(
            FloodConfig(settings.flood_rate, settings.flood_burst, settings.ban_seconds,
                        settings.unknown_sources),  # type: ignore[arg-type]
            trusted=self.policy.trusted_host)
        self._filter = RequestFilter(lambda source, method: self.flood.verdict(
            source, method, time.monotonic()), on_digit=self._on_info_digit)
        self._tcp_caps: TcpCaps | None = None
        self.calls: dict[int, GatewayCall] = {}
        self.ports = PortPool(settings.frame_ms)
        self.trunks: list[TrunkAccount] = []
        self._accounts: list[pj.Account] = []
        self._ep: pj.Endpoint | None = None
        self.build: BuildInfo | None = None  # what the loaded pjsua2 module can do
        self._log_writer: _LogWriter | None = None
        self.last_beat = time.monotonic()  # the pj thread's loop, for liveness

    # ---- asyncio side ------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._started.result(timeout=30)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run fn on the pj thread and return its result (errors come back without traceback)."""
        fut: Future[T] = Future()
        self._commands.put((fn, fut))
        return await asyncio.wrap_future(fut)

    async def call_command(self, key: int, command: Callable[Concatenate[GatewayCall, P], T],
                           *args: P.args, **kwargs: P.kwargs) -> T:
        """Run command(call, *args) on the pj thread for the call with this key, e.g.
        `call_command(key, GatewayCall.respond, 180)`; CallError when the call is gone."""

        def on_call() -> T:
            call = self.calls.get(key)
            if call is None:
                raise CallError("call has ended")
            return command(call, *args, **kwargs)

        return await self.run(on_call)

    async def set_draining(self, draining: bool) -> None:
        def command() -> None:
            self.policy.draining = draining

        await self.run(command)

    async def hangup_all(self) -> int:
        def command() -> int:
            calls = list(self.calls.values())
            for call in calls:
                try:
                    call.end()
                except pj.Error:
                    pass
            return len(calls)

        return await self.run(command)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)

    # ---- pj thread ---------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._create()
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            detail = exc.info() if isinstance(exc, pj.Error) else str(exc)
            self._started.set_exception(GatewayError(f"SIP endpoint failed to start: {detail}"))
            self._destroy()
            return
        self._started.set_result(None)
        next_tick = time.monotonic() + 1.0
        next_rtp_check = 0.0
        while not self._stopping.is_set():
            try:
                self._ep.libHandleEvents(_POLL_MS)
                self._drain_commands()
                now = time.monotonic()
                self.last_beat = now
                if now >= next_rtp_check:
                    next_rtp_check = now + _RTP_CHECK_SECONDS
                    self._check_rtp_sources()
                    self._ring_late_answers(now)
                if now >= next_tick:
                    next_tick = now + 1.0
                    self._tick(now)
            except Exception:  # noqa: BLE001 - this thread must outlive any one bug
                log.exception("error on the SIP thread")
        self._shutdown()

    def _drain_commands(self) -> None:
        while True:
            try:
                fn, fut = self._commands.get_nowait()
            except queue.Empty:
                return
            if not fut.set_running_or_notify_cancel():
                continue  # the asyncio side gave up waiting
            try:
                fut.set_result(fn())
            except pj.Error as exc:
                fut.set_exception(CallError(exc.info()))
            except Exception as exc:  # noqa: BLE001
                # No traceback across threads: frames may hold pj objects (docs/DESIGN.md §3).
                fut.set_exception(type(exc)(*exc.args) if _plain(exc) else CallError(str(exc)))

    def _tick(self, now: float) -> None:
        received, sent = self.ports.take_counters()
        underruns = sum(c.take_underruns() for c in self.calls.values())
        if received or sent or underruns:
            self._post(ev.MediaStats(received, sent, underruns))
        for trunk in self.trunks:
            trunk.maybe_retry(now)
        closed = self._tcp_caps.enforce() if self._tcp_caps is not None else 0
        counters = self.flood.take_counters()
        if counters.bans or counters.dropped or counters.rejected or closed:
            self._post(ev.FloodStats(tuple(counters.bans), counters.dropped, counters.rejected,
                                     closed))

    def _ring_late_answers(self, now: float) -> None:
        """180 Ringing for an INVITE the call's logic has not answered within LATE_ANSWER s (a busy
        loop, a slow dialplan step): the caller hears ringback, not silence, and a CANCEL meets
        an unanswered call (487) instead of racing a 200."""
        for call in list(self.calls.values()):
            if call.awaiting_answer(now):
                try:
                    call.respond(180)
                except pj.Error:
                    pass

    def _check_rtp_sources(self) -> None:
        for call in list(self.calls.values()):
            try:
                source, allowed = call.rtp_source()
            except pj.Error:
                continue
            if rtp_source_allowed(source, allowed, self.policy.trusted_host):
                continue
            self._post(ev.MediaHijack(call.key, source))
            try:
                call.end()
            except pj.Error:
                pass

    def _create(self) -> None:
        s = self.settings
        ep = pj.Endpoint()
        self._ep = ep
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = s.calls_per_worker
        cfg.uaConfig.userAgent = "gateway"
        self._log_writer = _LogWriter(self._on_too_many_calls)
        cfg.logConfig.writer = self._log_writer
        cfg.logConfig.level = 2
        cfg.logConfig.consoleLevel = 2
        cfg.logConfig.decor = 0
        # 8 kHz bridge: G.711 is not resampled 8→16→8; no VAD/EC so frames flow untouched.
        cfg.medConfig.clockRate = CLOCK_RATE
        cfg.medConfig.sndClockRate = CLOCK_RATE
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        # Bridge tick and RTP packets of settings.frame_ms (10 ms is the low-latency profile of docs/DESIGN.md §3).
        pjutil.media_frames(cfg.medConfig, s.frame_ms)
        ep.libInit(cfg)
        build = self._report_build(ep)
        bind = "" if s.sip_address in ("0.0.0.0", "") else s.sip_address
        ids = {}
        for kind in (pj.PJSIP_TRANSPORT_UDP, pj.PJSIP_TRANSPORT_TCP):
            tcfg = pjutil.transport_config(bind, s.sip_port, tcp=kind == pj.PJSIP_TRANSPORT_TCP)
            if s.public_address:
                tcfg.publicAddress = s.public_address
            ids[kind] = ep.transportCreate(kind, tcfg)
        self._create_tls(ep, bind)
        ep.libStart()
        self._filter.install(ep, bind, pjutil.transport_port(ep, ids[pj.PJSIP_TRANSPORT_UDP]))
        shut_out = (lambda host: True) if s.unknown_sources == "drop" else (
            lambda host: self.flood.banned(host, time.monotonic()))
        self._tcp_caps = TcpCaps(pjutil.transport_port(ep, ids[pj.PJSIP_TRANSPORT_TCP]),
                                 allowed=self.policy.trusted_host, shut_out=shut_out)
        ep.audDevManager().setNullDev()
        codecs = load_codec_profile(self.settings.codec_profile, build.codecs)
        enabled = pjutil.set_codec_priorities(ep, codecs, frame_ms=s.frame_ms)
        log.info("codecs: %s; %d ms frames", ", ".join(enabled), s.frame_ms)
        local = _Account(self)
        acfg = pj.AccountConfig()
        host = s.public_address or (s.sip_address if s.sip_address not in ("0.0.0.0", "") else "localhost")
        acfg.idUri = f"sip:gateway@{host}:{s.sip_port}"
        self._media_config(acfg)
        local.create(acfg, True)
        self._accounts.append(local)
        for trunk in s.trunks:
            if trunk.registrar and s.register_trunks:
                account = TrunkAccount(self, trunk)
                account.register()
                self.trunks.append(account)
        log.info("SIP listening on %s:%s (udp+tcp)%s; SRTP %s", s.sip_address, s.sip_port,
                 f", tls on {s.tls_port}" if s.tls_port else "", s.srtp)

    def _report_build(self, ep: pj.Endpoint) -> BuildInfo:
        self.build = build = describe(ep)
        log.info("%s", build.summary())
        if self.settings.calls_per_worker > build.max_calls:
            log.warning("calls_per_worker is %d but this pjsua2 module holds %d calls: call %d on "
                        "gets 486 (scripts/setup installs the gateway's own build)",
                        self.settings.calls_per_worker, build.max_calls, build.max_calls + 1)
        return build

    def _create_tls(self, ep: pj.Endpoint, bind: str) -> None:
        """The SIP over TLS listener (sip.tls), which also carries TLS requests going out."""
        s = self.settings
        if not s.tls_port:
            return
        if not (s.tls_cert and s.tls_key):
            raise GatewayError("sip.tls needs cert and key (or --tls-cert and --tls-key)")
        tcfg = pjutil.transport_config(bind, s.tls_port, tcp=True)
        pjutil.tls_config(tcfg, cert=str(s.tls_cert), key=str(s.tls_key),
                          ca=str(s.tls_ca or ""), verify_peer=s.tls_verify_peer)
        if s.public_address:
            tcfg.publicAddress = s.public_address
        ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)

    def media_config(self, acfg: pj.AccountConfig) -> None:
        self._media_config(acfg)

    def _media_config(self, acfg: pj.AccountConfig) -> None:
        s = self.settings
        tcfg = acfg.mediaConfig.transportConfig
        tcfg.port = s.rtp_port_start
        tcfg.portRange = s.rtp_port_count
        if s.sip_address not in ("0.0.0.0", ""):
            tcfg.boundAddress = s.sip_address
        if s.public_address:
            tcfg.publicAddress = s.public_address
        pjutil.set_srtp(acfg.mediaConfig, s.srtp)

    # ---- callbacks (pj thread) -----------------------------------------------------------
    def _on_incoming(self, account: pj.Account, prm: pj.OnIncomingCallParam) -> None:
        call = GatewayCall(self, account, prm.callId)
        decision = self.policy.decide(prm.rdata.wholeMsg, prm.rdata.srcAddress)
        call.info = decision.info
        call.trunk = decision.trunk
        call.source = prm.rdata.srcAddress
        call.offered_at = time.monotonic()
        self.calls[call.key] = call
        if decision.reject:
            code, reason = decision.reject
            self._post(ev.Rejected(reason=decision.reason, code=code, source=prm.rdata.srcAddress,
                                   dialled=decision.info.dialled, caller=decision.info.caller,
                                   call_id=decision.info.call_id))
            # Not from inside onIncomingCall: refusing an INVITE without SDP there aborts
            # pjsua (rdata assertion). The command queue runs right after this callback.
            self._defer(lambda: self._reject(call.key, code, reason))
            return
        self._post(ev.IncomingCall(
            key=call.key, dialled=decision.info.dialled, caller=decision.info.caller,
            call_id=decision.info.call_id, source=prm.rdata.srcAddress, trunk=decision.trunk,
            received_at=time.monotonic(), playout=call.playout))

    def registration(self, trunk: str, host: str, up: bool) -> None:
        self.policy.registration(trunk, host, up)

    def incoming_on_trunk(self, account: pj.Account, prm: pj.OnIncomingCallParam) -> None:
        self._on_incoming(account, prm)

    def _on_info_digit(self, call_id: str, digit: str) -> None:
        """An `application/dtmf` INFO digit that the strict edge answered: to its call."""
        wanted = printable(call_id)
        for call in self.calls.values():
            if call.info is not None and call.info.call_id == wanted:
                self._post(ev.Dtmf(call.key, digit, "info"))
                return

    def _defer(self, fn: Callable[[], Any]) -> None:
        self._commands.put((fn, Future()))

    def _reject(self, key: int, code: int, reason: str) -> None:
        call = self.calls.get(key)
        if call is not None:
            call.reject(code, reason)

    def _on_too_many_calls(self) -> None:
        self._post(ev.Rejected(reason="too_many_calls", code=486, source="", dialled="",
                               caller="", call_id=""))

    def post(self, event: ev.Event) -> None:
        self._post(event)

    def adopt(self, leg: GatewayCall, *, referred_by: int, target: str) -> None:
        """A leg pjsua dials for an allowed REFER: tracked like an incoming call, so it is
        recorded, counted and drained; it runs the referring call's dialplan once answered."""
        parent = self.calls.get(referred_by)
        info = parent.info if parent is not None else None
        leg.info = info
        self.calls[leg.key] = leg
        self._post(ev.IncomingCall(
            key=leg.key, dialled=info.dialled if info else "", caller=target,
            call_id=f"{info.call_id if info else leg.key};referred", source="",
            trunk=parent.trunk if parent is not None else "", received_at=time.monotonic(),
            playout=leg.playout, referred_by=referred_by))

    def forget(self, call: GatewayCall) -> None:
        self.calls.pop(call.key, None)

    # ---- shutdown (pj thread) ------------------------------------------------------------
    def _shutdown(self) -> None:
        ep = self._ep
        try:
            ep.hangupAllCalls()
        except pj.Error:
            pass
        for trunk in self.trunks:
            trunk.unregister()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and (self.calls or any(t.busy() for t in self.trunks)):
            ep.libHandleEvents(_POLL_MS)
            self._drain_commands()
        # Ports detached from the bridge asynchronously: let the clock pass them (docs/DESIGN.md §3).
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            ep.libHandleEvents(_POLL_MS)
        self._destroy()

    def _destroy(self) -> None:
        self._fail_pending()
        self.calls.clear()
        self.trunks.clear()
        self._accounts.clear()
        self.ports.clear()
        gc.collect()
        if self._ep is not None:
            try:
                self._ep.libDestroy()
            except pj.Error:
                pass
        self._ep = None
        self._log_writer = None

    def _fail_pending(self) -> None:
        while True:
            try:
                _fn, fut = self._commands.get_nowait()
            except queue.Empty:
                return
            if fut.set_running_or_notify_cancel():
                fut.set_exception(CallError("SIP endpoint stopped"))


def _plain(exc: Exception) -> bool:
    try:
        type(exc)(*exc.args)
    except Exception:  # noqa: BLE001
        return False
    return True
