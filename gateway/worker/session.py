"""A conversation's audio side: hear the caller (VAD → turns → recogniser) and speak to them
(sentences → clips or streamed TTS → PlayoutBuffer), with barge-in.

Everything runs on the asyncio loop; inbound frames arrive from pjmedia's clock thread through
`call_soon_threadsafe`. The script runner (gateway/worker/runner.py) asks for `say()` and
`next_answer()`; this module owns timing. It holds one recogniser and one voice: fallback
between providers happens inside them (gateway/speech/fallback.py), not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.worker import metrics
from gateway.conversation import turns as tt
from gateway.conversation.utterance import kind_of
from gateway.worker.call import Call
from gateway.errors import ProviderError
from gateway.speech.frames import TranscriptEvent
from gateway.media.vad import Vad
from gateway.speech.base import SpeechToText, SttStream, TextToSpeech
from gateway.speech.fallback import Failover

log = logging.getLogger("gateway.worker.session")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
# After the caller's turn ends, how long to wait for the recogniser's final words. Generous:
# an offline recogniser on a busy machine can take seconds, and giving up early loses the answer.
_TRANSCRIPT_WAIT = 6.0
MAX_QUEUED_FRAMES = 500  # 10 s of 20 ms frames
_FLUSH_WAIT = 5.0  # seconds a closed recogniser stream may take to hand over its last words


@dataclass(frozen=True, slots=True)
class Answer:
    """What the caller gave: words (with confidence), keypad digits, or nothing."""

    text: str = ""
    confidence: float = 0.0
    digits: str = ""
    speech_end: float = 0.0  # loop time the caller stopped talking (for turn latency)

    @property
    def empty(self) -> bool:
        return not self.text.strip() and not self.digits


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def count_failover(failover: Failover) -> None:
    """What a provider handing over to the next costs in metrics (the fallback adapters' listener)."""
    metrics.provider_error(failover.failed)
    metrics.fallback("provider_error")


class CallSession:
    def __init__(self, call: Call, stt: SpeechToText, tts: TextToSpeech, turn_config: tt.TurnConfig,
                 load_clip: Callable[[Path], Awaitable[bytes]], keyterms: Sequence[str] = ()) -> None:
        self.call = call
        self._stt = stt
        self._tts = tts
        self._load_clip = load_clip
        self._keyterms = keyterms
        self.turns = tt.TurnDetector(turn_config)
        # One frame size for the whole inbound path: the port's frames, the VAD, the turn clock.
        self._frame_seconds = turn_config.frame_ms / 1000
        self._vad = Vad(frame_ms=turn_config.frame_ms)
        # Bounded: a loop that stalls drops the oldest audio instead of growing without end.
        self._frames: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED_FRAMES)
        self._finals: list[TranscriptEvent] = []
        self._answers: deque[Answer] = deque()
        # Woken, not polled: a poll would add up to its period to every turn's latency.
        self._final_arrived = asyncio.Event()
        self._answer_arrived = asyncio.Event()
        self._stream: SttStream | None = None
        self._recognising: asyncio.Task[None] | None = None
        self._stream_frames = 0  # audio time of the recogniser stream, in frames
        self._speaking: asyncio.Task[bool] | None = None
        self._agent_audio = False
        self._tasks: list[asyncio.Task[None]] = []
        self.transcript: list[dict] = []
        self.turn_latencies_ms: list[float] = []
        self.barge_ins = 0
        self._pending_turn_end: float | None = None
        self._finishing = 0  # turns ended whose words are not in yet
        # The last inbound frame: its end on the loop clock and the recogniser's audio time
        # there, to put the recogniser's word times on the turn-taking clock.
        self._clock = (0.0, 0.0)
        self.partial = ""  # the recogniser's latest partial words (interim results)
        self.partials = 0
        self._stages: dict[float, dict] = {}  # per turn, by its speech end, until the reply

    # ---- lifecycle ----
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._stream = self._stt.stream(keyterms=self._keyterms)
        self._recognising = asyncio.create_task(self._recognise(self._stream), name=f"recognise-{self.call.key}")
        await self.call.listen(lambda pcm: loop.call_soon_threadsafe(self._queue_frame, pcm))
        self._tasks = [asyncio.create_task(self._hear(), name=f"hear-{self.call.key}")]

    def _queue_frame(self, pcm: bytes) -> None:
        if self._frames.full():
            self._frames.get_nowait()
        self._frames.put_nowait(pcm)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._stream is not None:
            with contextlib.suppress(Exception):
                await self._stream.aclose()
        if self._recognising is not None:
            # Closing lets the recogniser flush its last words; they still go in the transcript.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._recognising, _FLUSH_WAIT)

    # ---- hearing ----
    async def _hear(self) -> None:
        loop = asyncio.get_running_loop()
        step = self._frame_seconds
        heard = 0
        origin = 0.0
        while True:
            frame = await self._frames.get()
            # Frame times on the audio clock (earliest arrival + one frame per frame): arrival
            # times wobble by milliseconds, and a wobble across a deadline costs a whole frame.
            origin = min(origin, loop.time() - heard * step) if heard else loop.time()
            now = origin + heard * step
            heard += 1
            if self._stream is not None:
                self._stream.push_audio(frame)
                self._stream_frames += 1
            self._clock = (now, self._stream_frames * step)
            self._act(self.turns.on_vad(self._vad.is_speech(frame), now))

    def _on_turn_clock(self, stream_seconds: float) -> float:
        """A recogniser time (seconds of audio pushed) on the loop clock of the frames."""
        loop_now, audio_now = self._clock
        return loop_now - (audio_now - stream_seconds)

    def expect(self, words: Sequence[str] = (), kind: str | None = None) -> None:
        """What the next answer is likely to be: the expected words (recogniser hints) and the
        kind of answer (semantic endpointing; guessed from the words when not given)."""
        self.turns.expect(kind or kind_of(words), [w.lower() for w in words])
        if self._stream is not None:
            self._stream.hint(words)

    async def _recognise(self, stream: SttStream) -> None:
        try:
            async for event in stream.events():
                until = self._on_turn_clock(event.end)
                if not event.is_final:
                    if event.text.strip():
                        self.partial = event.text.strip()
                        self.partials += 1
                        self.call.notify("partial", who="caller", text=self.partial)
                        self._act(self.turns.on_transcript(event.text, False, False,
                                                           asyncio.get_running_loop().time(), until=until))
                    continue
                if event.text.strip():
                    self._finals.append(event)
                    self._final_arrived.set()
                    self.call.audit.log("caller_turn", text=event.text.strip(),
                                        confidence=round(event.confidence, 2))
                    self.transcript.append({"who": "caller", "text": event.text.strip(),
                                            "confidence": round(event.confidence, 2),
                                            "at": round(time.time(), 3)})
                    self.call.notify("transcript", **self.transcript[-1])
                self._act(self.turns.on_transcript(event.text, True, event.speech_final,
                                                   asyncio.get_running_loop().time(), until=until))
        except ProviderError as exc:  # the last configured recogniser failed: no more words
            metrics.provider_error(exc.provider)
            log.warning("call %s: recogniser %s failed: %s", self.call.key, exc.provider, exc)
            self._stream = None

    def _act(self, actions: list[tt.TurnAction]) -> None:
        for action in actions:
            if isinstance(action, tt.PausePlayout):
                self.call.playout.pause()
            elif isinstance(action, tt.ResumePlayout):
                self.call.playout.resume()
            elif isinstance(action, tt.ConfirmBargeIn):
                self.barge_ins += 1
                metrics.barge_in()
                if self._speaking is not None and not self._speaking.done():
                    self._speaking.cancel()
                self.call.clear_playout()
            elif isinstance(action, tt.TurnEnded):
                if self._stream is not None:
                    self._stream.finalize()  # the words now, not after the recogniser's own silence
                self._finishing += 1
                task = asyncio.get_running_loop().create_task(self._finish_turn(action))
                self._tasks.append(task)

    async def _finish_turn(self, ended: tt.TurnEnded) -> None:
        """Wait for the recogniser to catch up with the turn, then hand over the words."""
        loop = asyncio.get_running_loop()
        # Recognisers time words by audio received; map the turn onto that clock from now.
        audio_now = self._stream_frames * self._frame_seconds
        start = audio_now - (ended.at - ended.speech_start) - 0.3
        stop = audio_now - (ended.at - ended.speech_end) - 0.2
        deadline = loop.time() + _TRANSCRIPT_WAIT
        while not any(e.end >= stop for e in self._finals) and loop.time() < deadline:
            self._final_arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._final_arrived.wait(), deadline - loop.time())
        metrics.stage_latency("asr_final", loop.time() - ended.speech_end)
        metrics.stage_latency("endpoint", ended.at - ended.speech_end)
        metrics.stage_latency("asr_tail", loop.time() - ended.at)
        verdict = self.turns.last_verdict
        self._stages[ended.speech_end] = {
            "endpoint_ms": round((ended.at - ended.speech_end) * 1000, 1),
            "asr_tail_ms": round((loop.time() - ended.at) * 1000, 1),
            "endpoint": verdict.value if verdict is not None else "silence",
            "words_at": loop.time(),
        }
        while len(self._stages) > 8:  # turns nobody replied to (a keypad answer, a hangup)
            self._stages.pop(next(iter(self._stages)))
        words = [e for e in self._finals if e.end > start]
        self._finals = [e for e in self._finals if e.end <= start]
        text = " ".join(e.text.strip() for e in words).strip()
        confidence = min((e.confidence for e in words), default=0.0)
        self._finishing -= 1
        self._answers.append(Answer(text=text, confidence=confidence, speech_end=ended.speech_end))
        self._answer_arrived.set()

    async def next_answer(self, timeout: float, dtmf: bool = True, max_digits: int = 1) -> Answer:
        """The caller's next turn (words) or keypad entry; an empty Answer after `timeout`
        seconds of nothing (timer paused while the caller is talking)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._answers:
                return self._answers.popleft()
            if dtmf and self.call.pending_digit():
                digits = ""
                while len(digits) < max_digits:
                    digit = await self.call.next_digit(3.0 if digits else 0.01)
                    if digit is None or digit == "#":
                        break
                    digits += digit
                return Answer(digits=digits, confidence=1.0, speech_end=loop.time())
            if self.turns.state is not tt.TurnState.IDLE or self._finishing:
                # They are talking, or their words are being recognised: keep listening.
                deadline = max(deadline, loop.time() + 1.0)
            if loop.time() >= deadline:
                return Answer()
            # Words wake this at once; keypad digits and the deadline are checked each frame time.
            self._answer_arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answer_arrived.wait(), min(0.02, deadline - loop.time()))

    def has_answer(self) -> bool:
        """Words already heard and not yet taken (empty turns are dropped)."""
        while self._answers and self._answers[0].empty:
            self._answers.popleft()
        return bool(self._answers)

    def flush_answers(self) -> None:
        self._answers.clear()

    # ---- speaking ----
    async def say(self, text: str, interruptible: bool = True, clip: Path | None = None,
                  turn_end: float | None = None) -> bool:
        """Speak text (or a recorded clip). Returns False if the caller barged in."""
        self.transcript.append({"who": "agent", "text": text, "at": round(time.time(), 3)})
        self.call.notify("transcript", **self.transcript[-1])
        self.call.audit.log("agent_turn", text=text, clip=clip.name if clip is not None else None)
        self.turns.set_interruptible(interruptible)
        self._pending_turn_end = turn_end
        self._speaking = asyncio.ensure_future(self._speak(text, clip))
        try:
            return await self._speaking
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            return False
        finally:
            self._speaking = None
            self.turns.set_interruptible(True)

    async def _speak(self, text: str, clip: Path | None) -> bool:
        loop = asyncio.get_running_loop()
        self._act(self.turns.agent_speaking(True, loop.time()))
        self.call.playout.begin_stream()
        try:
            if clip is not None:
                self._write(await self._load_clip(clip))
            else:
                # Whole text to the engine: it streams sentence by sentence itself, and a fixed
                # phrase is then one cache entry (no gaps between its sentences).
                await self._speak_sentence(text)
            self.call.playout.end_stream()
            await self.call.wait_drained()
            return True
        finally:
            self.call.playout.end_stream()
            self._act(self.turns.agent_speaking(False, loop.time()))

    async def _speak_sentence(self, sentence: str) -> None:
        loop = asyncio.get_running_loop()
        started, first = loop.time(), True
        chunks = self._tts.synthesize(sentence)
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    if first:
                        metrics.stage_latency("tts_first_audio", loop.time() - started)
                        stage = self._stages.get(self._pending_turn_end)  # type: ignore[arg-type]
                        if stage is not None:
                            stage["tts_first_audio_ms"] = round((loop.time() - started) * 1000, 1)
                        first = False
                    self._write(chunk)
        except ProviderError as exc:  # the last configured voice failed
            metrics.provider_error(exc.provider)
            metrics.fallback("provider_error")
            log.warning("call %s: TTS %s failed: %s", self.call.key, exc.provider, exc)
            log.error("call %s: no voice could say %r", self.call.key, sentence)

    def _write(self, pcm: bytes) -> None:
        if self._pending_turn_end is not None and pcm:
            # Turn latency: caller's end of speech → first agent audio handed to the wire.
            now = asyncio.get_running_loop().time()
            latency = now - self._pending_turn_end
            self.turn_latencies_ms.append(round(latency * 1000, 1))
            metrics.turn_latency(latency, self.call.transport)
            stage = self._stages.pop(self._pending_turn_end, None)
            if stage is not None:
                # From the words to the first audio: the agent's step, its voice, the playout.
                reply = now - stage.pop("words_at")
                stage["reply_ms"] = round(reply * 1000, 1)
                stage["total_ms"] = round(latency * 1000, 1)
                metrics.stage_latency("reply", reply)
                self.call.record.turn_stages.append(stage)
            self.call.notify("latency", ms=round(latency * 1000, 1), stages=stage or {})
            self._pending_turn_end = None
        self.call.write_audio(pcm)
