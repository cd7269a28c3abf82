"""Embedded engines with their real models: piper speaks, tiny.en listens.

Timings are printed (run with -s) rather than asserted tightly: other suites share the CPU.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.errors import ProviderError
from gateway.speech.frames import TranscriptEvent
from gateway.media import audio
from gateway.speech.prompts import PromptRenderer
from gateway.media.vad import FRAME_BYTES, FRAME_SECONDS
from gateway.speech.vendors.local import PiperTTS, WhisperSTT, WhisperStream

BOOKING = "I would like to book an appointment on Tuesday at two pm"
BILLING = "Can you transfer me to the billing department please?"
LONG = (
    "Hello, I am calling because my internet connection keeps dropping every evening, "
    "and I have already restarted the router twice."
)


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> PromptRenderer:
    return PromptRenderer(tmp_path_factory.mktemp("tts-cache"))


@pytest.fixture(scope="module")
def tts(renderer: PromptRenderer) -> PiperTTS:
    return PiperTTS(renderer)


@pytest.fixture(scope="module")
def stt() -> WhisperSTT:
    engine = WhisperSTT()
    t0 = time.perf_counter()
    engine.warm_up()
    print(f"\nwhisper tiny.en load: {engine.load_seconds or time.perf_counter() - t0:.2f} s")
    return engine


async def speak(tts: PiperTTS, text: str) -> bytes:
    return b"".join([chunk async for chunk in tts.synthesize(text)])


@pytest.fixture(scope="module")
def booking(tts: PiperTTS) -> bytes:
    return asyncio.run(speak(tts, BOOKING))


@pytest.fixture(scope="module")
def billing(tts: PiperTTS) -> bytes:
    return asyncio.run(speak(tts, BILLING))


def chunks20(pcm: bytes) -> list[bytes]:
    pcm += bytes(-len(pcm) % FRAME_BYTES)
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


async def collect(stream: WhisperStream, pcm: bytes) -> list[TranscriptEvent]:
    """Push everything at once, end the input, and gather every event."""
    for frame in chunks20(pcm):
        stream.push_audio(frame)
    stream.end_input()
    return [ev async for ev in stream.events()]


# -- TTS ---------------------------------------------------------------------------


def test_tts_streams_sentences_fast_and_caches(tts: PiperTTS, renderer: PromptRenderer) -> None:
    text = "Your table is booked. We will send a text message to confirm. Goodbye."

    async def scenario() -> tuple[float, list[bytes], float, list[bytes]]:
        tts.warm_up()  # the voice load is not part of time to first audio
        t0 = time.perf_counter()
        chunks: list[bytes] = []
        first = 0.0
        async for chunk in tts.synthesize(text):
            if not chunks:
                first = time.perf_counter() - t0
            chunks.append(chunk)
        t0 = time.perf_counter()
        cached = [c async for c in tts.synthesize(text)]
        return first, chunks, time.perf_counter() - t0, cached

    first, chunks, hit, cached = asyncio.run(scenario())
    pcm = b"".join(chunks)
    seconds = len(pcm) / 16000
    print(
        f"\npiper: voice load {renderer.load_seconds:.2f} s, first chunk {first * 1000:.0f} ms, "
        f"{len(chunks)} chunks / {seconds:.2f} s audio; cache hit {hit * 1000:.1f} ms"
    )
    assert len(chunks) >= 3  # one or more per sentence: playout can start after the first
    assert 2.0 < seconds < 10.0
    assert audio.rms_dbfs(pcm) > -35
    assert first < 1.5
    assert cached == [pcm]  # fixed phrases come back whole from the disk cache
    assert tts.first_audio_seconds < 0.1


def test_tts_cancelled_mid_sentence_leaves_no_cache_entry(tts: PiperTTS, renderer: PromptRenderer) -> None:
    text = "First sentence here. Second sentence that nobody hears. Third one."

    async def barge_in() -> bytes:
        gen = tts.synthesize(text)
        chunk = await gen.__anext__()
        second = asyncio.ensure_future(gen.__anext__())  # synthesis thread now busy
        await asyncio.sleep(0)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        await gen.aclose()
        return chunk

    assert asyncio.run(barge_in())
    time.sleep(1.0)  # the thread finishes its sentence, then closes the generator
    assert renderer.cached(text) is None
    # The voice is still usable, and a complete rendering is cached.
    assert asyncio.run(speak(tts, text)) == renderer.cached(text)


def test_tts_unknown_voice_is_a_provider_error(tts: PiperTTS) -> None:
    async def scenario() -> None:
        async for _ in tts.synthesize("Hello.", voice="amy"):
            pass

    with pytest.raises(ProviderError, match="amy"):
        asyncio.run(scenario())


# -- STT ---------------------------------------------------------------------------


def test_transcribe_time_and_rtf(stt: WhisperSTT, booking: bytes) -> None:
    pcm = audio.silence(0.2) + booking[: 3 * 16000]  # a 3 s utterance
    runs = [stt.transcribe(pcm) for _ in range(3)]
    best = min(r.seconds for r in runs)
    seconds = len(pcm) / 16000
    print(
        f"\nwhisper: {seconds:.2f} s utterance -> {best * 1000:.0f} ms "
        f"(runs {[round(r.seconds * 1000) for r in runs]} ms), RTF {best / seconds:.2f}; "
        f"text {runs[0].text!r} conf {runs[0].confidence:.2f}"
    )
    assert "appointment" in runs[0].text.lower()
    assert 0.5 < runs[0].confidence <= 1.0


def test_round_trip_tts_to_stt_in_real_time(stt: WhisperSTT, booking: bytes) -> None:
    """Frames arrive at the call's pace; latency = end of the audio -> the final transcript."""

    async def scenario() -> tuple[list[TranscriptEvent], float, WhisperStream]:
        stream = stt.stream(keyterms=["appointment"])
        got: list[TranscriptEvent] = []
        final_at = asyncio.get_running_loop().create_future()

        async def listen() -> None:
            async for ev in stream.events():
                got.append(ev)
                if ev.is_final and not final_at.done():
                    final_at.set_result(time.perf_counter())

        listener = asyncio.create_task(listen())
        t0 = time.perf_counter()
        frames = chunks20(booking)
        for i, frame in enumerate(frames + chunks20(audio.silence(1.0))):
            if i == len(frames):
                end_of_audio = time.perf_counter()
            await asyncio.sleep(max(0.0, t0 + i * FRAME_SECONDS - time.perf_counter()))
            stream.push_audio(frame)
        latency = await asyncio.wait_for(final_at, 10) - end_of_audio
        await stream.aclose()
        await listener
        return got, latency, stream

    got, latency, stream = asyncio.run(scenario())
    finals = [ev for ev in got if ev.is_final]
    assert len(finals) == 1, got
    final = finals[0]
    transcribe = stream.last_transcription.seconds if stream.last_transcription else float("nan")
    print(
        f"\nround trip: {final.text!r} conf {final.confidence:.2f} "
        f"[{final.start:.2f}-{final.end:.2f} s of {len(booking) / 16000:.2f} s]; "
        f"end of audio -> final {latency * 1000:.0f} ms (transcribe {transcribe * 1000:.0f} ms)"
    )
    text = final.text.lower()
    assert "appointment" in text and "tuesday" in text
    assert final.speech_final
    assert 0.0 <= final.start < 0.6 and final.start < final.end <= len(booking) / 16000 + 0.2
    assert latency < 5.0


def test_silence_gives_no_transcript(stt: WhisperSTT) -> None:
    stream = stt.stream()
    assert asyncio.run(collect(stream, audio.silence(3.0))) == []


def test_two_utterances_give_two_finals(stt: WhisperSTT, booking: bytes, billing: bytes) -> None:
    pcm = booking + audio.silence(1.0) + billing + audio.silence(1.0)
    events = asyncio.run(collect(stt.stream(), pcm))
    assert [ev.is_final for ev in events] == [True, True], events
    first, second = events
    assert "tuesday" in first.text.lower()
    assert "billing" in second.text.lower()
    assert first.end < second.start
    assert second.start == pytest.approx(len(booking) / 16000 + 1.0, abs=0.5)


def test_concurrent_streams_queue_and_both_finish(stt: WhisperSTT, booking: bytes, billing: bytes) -> None:
    async def scenario() -> list[list[TranscriptEvent]]:
        tail = audio.silence(1.0)
        return list(
            await asyncio.gather(collect(stt.stream(), booking + tail), collect(stt.stream(), billing + tail))
        )

    a, b = asyncio.run(scenario())
    assert len(a) == 1 and "appointment" in a[0].text.lower()
    assert len(b) == 1 and "billing" in b[0].text.lower()


def test_interims_during_long_speech(renderer: PromptRenderer) -> None:
    stt = WhisperSTT(interim_interval=1.0)
    long = renderer.render(LONG)

    async def scenario() -> list[TranscriptEvent]:
        stream = stt.stream()
        got: list[TranscriptEvent] = []

        async def listen() -> None:
            async for ev in stream.events():
                got.append(ev)

        listener = asyncio.create_task(listen())
        t0 = time.perf_counter()
        for i, frame in enumerate(chunks20(long + audio.silence(0.6))):
            await asyncio.sleep(max(0.0, t0 + i * FRAME_SECONDS - time.perf_counter()))
            stream.push_audio(frame)
        stream.end_input()
        await listener
        return got

    got = asyncio.run(scenario())
    interims = [ev for ev in got if not ev.is_final]
    finals = [ev for ev in got if ev.is_final]
    print(f"\ninterims: {[ev.text for ev in interims]}")
    assert interims, got
    assert got[-1] is finals[-1] and len(finals) == 1
    assert "router" in finals[0].text.lower()
    assert all(ev.end <= finals[0].end + 0.5 for ev in interims)


def test_aclose_drops_pending_and_ends_events(stt: WhisperSTT, booking: bytes) -> None:
    async def scenario() -> list[TranscriptEvent]:
        stream = stt.stream()
        for frame in chunks20(booking + audio.silence(1.0)):
            stream.push_audio(frame)
        await stream.aclose()
        await stream.aclose()  # idempotent
        stream.push_audio(booking)  # ignored after close
        return [ev async for ev in stream.events()]

    assert asyncio.run(scenario()) == []


def test_only_english(stt: WhisperSTT) -> None:
    assert stt.stream(language="en-US") is not None
    with pytest.raises(ProviderError, match="English"):
        stt.stream(language="de")
