"""A worker's lifespan: SIP events → dialplan route → call logic; metrics; drain on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from gateway.worker import metrics
from gateway.worker.runner import TRANSFER_FAILED_TEXT, ScriptEnded, ScriptRunner
from gateway.script.model import AgentScript
from gateway.conversation.turns import TurnConfig
from gateway.worker.call import Call
from gateway.worker.http import HttpServer
from gateway.worker.leg import Leg, SipLeg
from gateway.worker.whip import WhipCalls
from gateway.config.settings import Settings
from gateway.dialplan import model as dp
from gateway.dialplan.loader import flow_texts
from gateway.dialplan.store import DialplanStore
from gateway.errors import CallError
from gateway.media.audio import load_wav
from gateway.speech.prompts import PromptRenderer
from gateway.speech.vendors.local import PiperTTS, WhisperSTT
from gateway.speech.engines import Engines
from gateway.worker.session import CallSession, count_failover
from gateway.worker.records import RecordWriter, final_record
from gateway.compliance.policy import RecordPolicy
from gateway.store.purge import purge
from gateway.sip import events as ev
from gateway.sip.endpoint import SipEndpoint

log = logging.getLogger("gateway")
_RELOAD_SECONDS = 1.0
_RECORDS_RETRY_SECONDS = 5.0
_PURGE_SECONDS = 3600.0


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dialplans = DialplanStore(settings.dialplans)
        self.records = RecordWriter(settings.records_target, settings.journal, metrics.record_write_failed)
        self.prompts = PromptRenderer(settings.cache_dir / "prompts")
        self._voice = PiperTTS(self.prompts)
        self._stt = WhisperSTT()
        self._engines = Engines.from_settings(settings, self._voice, self._stt, on_failover=count_failover)
        self.calls: dict[int, Call] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tts = ThreadPoolExecutor(1, thread_name_prefix="tts")
        self._io = ThreadPoolExecutor(2, thread_name_prefix="io")
        self._clips: dict[Path, bytes] = {}
        self._started_journal: dict[int, asyncio.Future[None]] = {}
        self._stop = asyncio.Event()
        self._loop_beat = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.endpoint: SipEndpoint | None = None
        self.http: HttpServer | None = None

    async def run(self) -> None:
        for error in self.dialplans.errors:
            log.error("dialplan: %s", error)
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._stop.set)
        self._recover_journal()
        self.endpoint = SipEndpoint(self.settings, self._post_threadsafe)
        metrics.serve(self.settings.metrics_address, self.settings.metrics_port, self._beats)
        await self._loop.run_in_executor(None, self.endpoint.start)
        await self._serve_http()
        log.info("worker ready: SIP %s:%s, metrics http://%s:%s/metrics",
                 self.settings.sip_address, self.settings.sip_port,
                 self.settings.metrics_address, self.settings.metrics_port)
        if self.settings.ready_file:
            self.settings.ready_file.write_text(str(os.getpid()))
        background = [asyncio.create_task(self._reload_loop()), asyncio.create_task(self._warm()),
                      asyncio.create_task(self._heartbeat()), asyncio.create_task(self._records_upkeep())]
        try:
            await self._stop.wait()
            await self._drain()
        finally:
            for task in background:
                task.cancel()
            if self.http is not None:
                await self.http.stop()
            await self._loop.run_in_executor(None, self.endpoint.stop)
            self._tts.shutdown(wait=False, cancel_futures=True)
            self._io.shutdown(wait=True)
            self.records.shutdown()
            log.info("worker stopped")

    def stop(self) -> None:
        self._stop.set()

    @property
    def draining(self) -> bool:
        return self._stop.is_set()

    async def _serve_http(self) -> None:
        """One HTTP server for every feature that has routes: WebRTC over WHIP and the call page."""
        if not self.settings.http_port:
            return
        self.http = HttpServer(self.settings.http_address, self.settings.http_port)
        WhipCalls(self).install(self.http)
        await self.http.start()
        log.info("HTTP %s: WebRTC calls at /whip/<number>, the call page at /", self.http.url)

    def _recover_journal(self) -> None:
        """Open the call store (a corrupt file stops the start, naming it); calls a crashed
        predecessor left open become `failed` records, not silence."""
        for call_id in self.records.open():
            log.warning("call %s was in progress when the worker died: recorded as failed", call_id)

    async def _records_upkeep(self) -> None:
        """Retries records the store refused (disk full, server away) and applies retention."""
        loop = asyncio.get_running_loop()
        last_purge = 0.0
        while True:
            await asyncio.sleep(_RECORDS_RETRY_SECONDS)
            await asyncio.wrap_future(self.records.submit(self.records.retry))
            metrics.records_pending(len(self.records.pending))
            if time.monotonic() - last_purge >= _PURGE_SECONDS and self.records.store is not None:
                last_purge = time.monotonic()
                try:
                    done = await loop.run_in_executor(None, purge, self.records.store, time.time())
                except Exception:  # noqa: BLE001 - retention must not stop the worker; it runs again
                    log.exception("retention purge failed")
                    continue
                if done:
                    log.info("retention: %d transcripts, %d recordings, %d calls purged",
                             len(done.transcripts), len(done.recordings), len(done.calls))

    async def _heartbeat(self) -> None:
        """Proves that this loop and the pj thread still run: to /health/live, and to the
        supervisor through the heartbeat file (pjsua answers OPTIONS anyway)."""
        path = self.settings.heartbeat_file
        while True:
            self._loop_beat = time.monotonic()
            if path is not None and all(
                    self._loop_beat - beat < metrics.LIVE_WITHIN for beat in self._beats().values()):
                path.touch()
            await asyncio.sleep(1.0)

    def _beats(self) -> dict[str, float]:
        pj_beat = self.endpoint.last_beat if self.endpoint is not None else 0.0
        return {"loop": self._loop_beat, "pj": pj_beat}

    # ---- events from the pj thread ----
    def _post_threadsafe(self, event: ev.Event) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_event, event)

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.IncomingCall):
            self._start_call(event)
        elif isinstance(event, ev.Rejected):
            metrics.invite_rejected(event.reason)
            log.info("INVITE refused %s %s: %s (from %s, to %s)", event.code, event.reason,
                     event.call_id, event.source or "?", event.dialled or "?")
        elif isinstance(event, ev.TransferRefused):
            metrics.transfer_request_refused(event.kind)
            log.warning("audit: call %s: far end's %s to %s refused with %s%s", event.key,
                        event.kind.upper() if event.kind == "refer" else "INVITE with Replaces",
                        event.target, event.code, f" (from {event.source})" if event.source else "")
        elif isinstance(event, ev.FloodStats):
            metrics.flood(len(event.banned), event.dropped, event.rejected, event.tcp_closed)
            for source in event.banned:
                log.warning("audit: banned SIP source %s for %.0f s: more than %g requests/s",
                            source, self.settings.ban_seconds, self.settings.flood_rate)
        elif isinstance(event, ev.MediaHijack):
            metrics.rtp_source_refused()
            log.warning("audit: call %s: RTP from %s, which the call never signalled: call ended",
                        event.key, event.source)
        elif isinstance(event, ev.MediaStats):
            metrics.rtp_frames(event.received, event.sent, event.underruns)
        elif isinstance(event, ev.Registration):
            metrics.registration(event.trunk, event.active)
        else:
            call = self.calls.get(getattr(event, "key", -1))
            if call is None:
                return
            if isinstance(event, ev.Dtmf):
                metrics.dtmf_digit(event.method)
            call.deliver(event)

    # ---- one call ----
    def start_call(self, incoming: ev.IncomingCall, leg: Leg) -> Call:
        """A call that came in by another door (WebRTC): from here on the same path as SIP."""
        return self._start_call(incoming, leg)

    def _start_call(self, incoming: ev.IncomingCall, leg: Leg | None = None) -> Call:
        call = Call(leg or SipLeg(self.endpoint, incoming.key), incoming)  # type: ignore[arg-type]
        self.calls[call.key] = call
        metrics.call_started(call.transport)
        # Journal the call off the loop: a crash from here on still leaves a record, and every
        # step the audit trail logs goes to the journal after it, in order.
        call.audit.sink = lambda call_id, event: self.records.submit(self.records.event, call_id, event)
        self._started_journal[call.key] = asyncio.wrap_future(
            self.records.submit(self.records.started, asdict(call.record)))
        task = asyncio.create_task(self._handle(call), name=f"call-{call.key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return call

    async def _handle(self, call: Call) -> None:
        record = call.record
        try:
            route = dp.route(self.dialplans.current, call.incoming.dialled, call.incoming.caller,
                             datetime.now(timezone.utc))
            record.dialplan = route.dialplan
            call.policy = route.records
            call.audit.kinds = route.records.redact
            call.audit.log("routed", dialplan=route.dialplan, retention=route.records.retention.as_dict())
            record.outcome = await self._follow(call, route)
        except asyncio.CancelledError:
            record.outcome = "drained"
            await call.hangup()
        except CallError as exc:
            record.outcome = "caller_hangup" if call.disconnected.is_set() else "failed"
            log.info("call %s: %s", call.key, exc)
        except Exception:  # noqa: BLE001 - one call's bug must not take the worker down
            log.exception("call %s failed", call.key)
            record.outcome = "failed"
            await call.hangup()
        finally:
            await self._finish(call)

    async def _follow(self, call: Call, route: dp.Route) -> str:
        action = route.action
        await call.set_transfers(route.transfers.resolve(self.settings.operator_uri))
        if isinstance(action, dp.RejectAction):
            await call.reject(action.code, action.reason)
            metrics.invite_rejected("dialplan")
            return "rejected"
        if route.ring_seconds > 0 and not call.outbound:
            await call.ringing()
            try:
                await asyncio.wait_for(call.disconnected.wait(), route.ring_seconds)
                return "cancelled"
            except TimeoutError:
                pass
        await call.answer()
        setup = time.monotonic() - call.incoming.received_at - route.ring_seconds
        call.record.setup_ms = round(setup * 1000, 2)
        metrics.call_answered(setup, call.transport)
        if isinstance(action, dp.AgentAction):
            work = self._converse(call, action.script, timezone=route.timezone)
        else:  # a flow, or a transfer: a script that needs no recogniser
            work = self._converse(call, action.script(route.dialplan), listen=False,
                                 timezone=route.timezone)
        flow = asyncio.create_task(work)
        hangup = asyncio.create_task(call.disconnected.wait())
        try:
            await asyncio.wait({flow, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hangup.cancel()
        if flow.done():
            return flow.result()
        if not call.by_remote:
            # We hung up ourselves: the flow is finishing its own hangup step.
            try:
                return await asyncio.wait_for(flow, 2.0)
            except (TimeoutError, CallError):
                return "completed"
        flow.cancel()
        try:
            await flow
        except (asyncio.CancelledError, ScriptEnded, CallError):
            pass
        return "caller_hangup"

    async def _finish(self, call: Call) -> None:
        # Wait for pjsua's DISCONNECTED so the record holds the final code.
        try:
            await asyncio.wait_for(call.disconnected.wait(), 5.0)
        except TimeoutError:
            log.warning("call %s: no disconnect seen", call.key)
        record = call.record
        record.ended = time.time()
        record.end_code = call.disconnect_code
        if record.outcome == "completed" and call.by_remote:
            record.outcome = "caller_hangup"
        if record.outcome == "caller_hangup" and record.answered is None:
            record.outcome = "cancelled"
        self.calls.pop(call.key, None)
        metrics.call_ended(record.outcome, record.dialplan or "none", call.transport)
        call.audit.log("hangup", outcome=record.outcome, code=record.end_code,
                       by="caller" if call.by_remote else "gateway")
        policy = getattr(call, "policy", None) or RecordPolicy()
        data = final_record(record, call.audit, policy, worker=self.settings.worker_name)
        await self._started_journal.pop(call.key)
        if not await asyncio.wrap_future(self.records.submit(self.records.finished, data)):
            log.warning("call %s: record kept in the journal until the call store takes it", call.key)
        log.info("call %s %s → %s: %s", record.call_id, record.caller, record.dialled, record.outcome)

    async def _converse(self, call: Call, script: AgentScript, listen: bool = True,
                        timezone: str = "UTC") -> str:
        """A script on the configured engines: hear, think, speak until the script ends. Without
        listen (a dialplan flow), only keys are heard: no recogniser runs."""
        turn_config = TurnConfig(frame_ms=self.settings.frame_ms)
        if script.end_of_turn_ms:
            turn_config = replace(turn_config, end_silence_ms=script.end_of_turn_ms)
        if script.barge_in_min_ms is not None:
            turn_config = replace(turn_config, barge_in_min_ms=script.barge_in_min_ms)
        engines = self._engines
        session = CallSession(call, engines.stt, engines.tts, turn_config, self._clip,
                              keyterms=script.vocabulary)
        if listen:
            await session.start()
        runner = ScriptRunner(script, session, self.settings.operator_uri,
                              {"caller": call.incoming.caller, "called": call.incoming.dialled},
                              llm=engines.llm if listen else None, timezone=timezone)
        try:
            return await runner.run()
        finally:
            record = call.record
            record.transcript = session.transcript
            record.turn_latencies_ms = session.turn_latencies_ms
            record.barge_ins = session.barge_ins
            record.variables = dict(runner.variables)
            await session.close()

    # ---- audio sources ----
    async def _clip(self, path: Path) -> bytes:
        pcm = self._clips.get(path)
        if pcm is None:
            pcm = await asyncio.get_running_loop().run_in_executor(self._io, load_wav, path)
            self._clips[path] = pcm
        return pcm

    async def _warm(self) -> None:
        """Render every dialplan prompt ahead of the first call that needs it."""
        texts = flow_texts(self.dialplans.current) | {TRANSFER_FAILED_TEXT}
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._tts, self._stt.warm_up)
        for text in sorted(texts):
            if self.prompts.cached(text) is None:
                try:
                    await loop.run_in_executor(self._tts, self.prompts.render, text)
                except Exception:  # noqa: BLE001
                    log.exception("cannot render prompt %r", text)
        # The engines' models are loaded for good: move their objects out of the collector's
        # reach. A full collection over them holds the GIL for milliseconds, and pjmedia's clock
        # thread, which needs the GIL for every audio frame, would send its RTP late.
        gc.collect()
        gc.freeze()
        log.info("engines warm: %d prompts ready", len(texts))

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(_RELOAD_SECONDS)
            try:
                await self._reload_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad reload must not end reloading for good
                metrics.DIALPLAN_RELOAD_ERRORS.inc()
                log.exception("dialplan reload failed, keeping the last good set")

    async def _reload_once(self) -> None:
        """Dialplans, agent scripts and clips read on a thread (a hostile file cannot hold the
        loop), swapped in whole or not at all."""
        errors = await self.dialplans.refresh()
        if errors is None:
            return
        if errors:
            metrics.DIALPLAN_RELOAD_ERRORS.inc()
            for error in errors:
                log.error("dialplan reload refused, keeping the last good set: %s", error)
            return
        self._clips.clear()  # edited clip files are read again on their next play
        log.info("dialplans reloaded (%d numbers)", len(self.dialplans.current.plans))
        await self._warm()

    # ---- drain ----
    async def _drain(self) -> None:
        assert self.endpoint is not None
        log.info("draining: refusing new calls, %d active", len(self.calls))
        metrics.DRAINING.set(1)
        await self.endpoint.set_draining(True)
        deadline = time.monotonic() + self.settings.drain_timeout
        while self.calls and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if self.calls:
            log.info("drain timeout: ending %d calls", len(self.calls))
            for task in list(self._tasks):
                task.cancel()
            await self.endpoint.hangup_all()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
