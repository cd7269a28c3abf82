"""The recogniser stream's base (queues, threads, close, errors) and the fallback adapters, on
scripted providers: no models, no sockets."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence

import pytest

from gateway.errors import ProviderError
from gateway.speech.base import SpeechToText, SttStream, TextToSpeech
from gateway.speech.fallback import Failover, FallbackSpeechToText, FallbackTextToSpeech
from gateway.speech.frames import TranscriptEvent

FRAME = b"\x01\x00" * 160  # 20 ms


class _Echo(SttStream):
    """A final per `every` frames, timed on its own clock; fails after `fail_after` frames."""

    def __init__(self, name: str, every: int, fail_after: int | None, error: Exception | None) -> None:
        super().__init__()
        self.name = name
        self._every = every
        self._fail_after = fail_after
        self._error = error
        self.frames = 0

    async def _run(self) -> None:
        while await self._read_audio() is not None:
            self.frames += 1
            if self._fail_after is not None and self.frames > self._fail_after:
                raise self._error or ProviderError(self.name, "dropped", retryable=True)
            if self.frames % self._every == 0:
                at = self.frames * 0.02
                self._emit(TranscriptEvent(f"{self.name} {self.frames}", True, 1.0, at - 0.02, at))


class _EchoSTT(SpeechToText):
    def __init__(self, name: str, every: int = 5, fail_after: int | None = None,
                 error: Exception | None = None) -> None:
        self.name = name
        self._args = (every, fail_after, error)
        self.streams: list[_Echo] = []

    def stream(self, *, language: str = "en", keyterms: Sequence[str] = ()) -> SttStream:
        stream = _Echo(self.name, *self._args)
        self.streams.append(stream)
        return stream


async def _feed(stream: SttStream, frames: int, paced: bool = False) -> list[TranscriptEvent]:
    """Push the frames (at once, or one per loop turn as a call does), then end the input."""
    for _ in range(frames):
        stream.push_audio(FRAME)
        if paced:
            await asyncio.sleep(0.001)
    stream.end_input()
    return [event async for event in stream.events()]


def test_base_stream_queues_audio_ends_on_end_input_and_again_at_once() -> None:
    async def scenario() -> tuple[list[TranscriptEvent], list[TranscriptEvent]]:
        stream = _EchoSTT("echo").stream()
        events = await _feed(stream, 10)
        again = [event async for event in stream.events()]
        await stream.aclose()
        await stream.aclose()  # idempotent
        return events, again

    events, again = asyncio.run(scenario())
    assert [e.text for e in events] == ["echo 5", "echo 10"]
    assert again == []


def test_base_stream_takes_audio_from_another_thread() -> None:
    async def scenario() -> list[TranscriptEvent]:
        stream = _EchoSTT("echo").stream()  # made on the loop: bound to it
        pusher = threading.Thread(target=lambda: [stream.push_audio(FRAME) for _ in range(10)])
        pusher.start()
        pusher.join()
        await asyncio.sleep(0.05)
        stream.end_input()
        return [event async for event in stream.events()]

    assert [e.text for e in asyncio.run(scenario())] == ["echo 5", "echo 10"]


def test_base_stream_turns_vendor_trouble_into_a_retryable_provider_error() -> None:
    async def scenario() -> ProviderError:
        stream = _EchoSTT("echo", fail_after=2, error=OSError("reset by peer")).stream()
        with pytest.raises(ProviderError) as caught:
            await _feed(stream, 5)
        await stream.aclose()
        return caught.value

    error = asyncio.run(scenario())
    assert error.retryable and error.provider == "echo" and "OSError: reset by peer" in str(error)


def test_aclose_before_any_audio_ends_events() -> None:
    async def scenario() -> list[TranscriptEvent]:
        stream = _EchoSTT("echo").stream()
        await stream.aclose()
        stream.push_audio(FRAME)  # ignored after close
        return [event async for event in stream.events()]

    assert asyncio.run(scenario()) == []


def test_fallback_stt_carries_on_with_the_next_provider_on_one_clock() -> None:
    seen: list[Failover] = []
    primary, secondary = _EchoSTT("cloud", fail_after=7), _EchoSTT("offline")
    stt = FallbackSpeechToText([primary, secondary], on_failover=seen.append)

    events = asyncio.run(_feed(stt.stream(), 20, paced=True))

    assert [e.text for e in events] == ["cloud 5", "offline 5", "offline 10", "offline 15"]
    # The second stream heard again the 3 frames after the last final words (6-8), then the
    # rest: its clock starts at frame 5 and its times are shifted onto ours.
    assert events[1].end == pytest.approx(0.10 + 0.10)
    assert events[3].end == pytest.approx(0.10 + 0.30)
    assert [(f.kind, f.failed, f.next) for f in seen] == [("stt", "cloud", "offline")]
    assert seen[0].error.retryable
    assert secondary.streams[0].frames == 3 + 12  # the words in progress, then every later frame


def test_fallback_stt_raises_the_last_providers_error() -> None:
    seen: list[Failover] = []
    stt = FallbackSpeechToText([_EchoSTT("a", fail_after=1), _EchoSTT("b", fail_after=1)],
                               on_failover=seen.append)

    async def scenario() -> ProviderError:
        stream = stt.stream()
        with pytest.raises(ProviderError) as caught:
            await _feed(stream, 10, paced=True)
        await stream.aclose()
        return caught.value

    assert asyncio.run(scenario()).provider == "b"
    assert [f.failed for f in seen] == ["a"]


def test_fallback_stt_close_reaches_the_current_provider() -> None:
    primary = _EchoSTT("cloud")
    stt = FallbackSpeechToText([primary, _EchoSTT("offline")])

    async def scenario() -> list[TranscriptEvent]:
        stream = stt.stream()
        for _ in range(5):
            stream.push_audio(FRAME)
        await asyncio.sleep(0.05)
        await stream.aclose()
        return [event async for event in stream.events()]

    assert [e.text for e in asyncio.run(scenario())] == ["cloud 5"]
    assert primary.streams[0]._closed


class _Voice(TextToSpeech):
    def __init__(self, name: str, fail_after: int | None = None) -> None:
        self.name = name
        self._fail_after = fail_after
        self.voices: list[str | None] = []

    async def _synthesize(self, text: str, *, voice: str | None) -> AsyncIterator[bytes]:
        self.voices.append(voice)
        for i, word in enumerate(text.split()):
            if self._fail_after is not None and i >= self._fail_after:
                raise ProviderError(self.name, "UNAVAILABLE", retryable=True)
            yield f"{self.name}:{word}".encode()


def test_fallback_tts_says_it_again_with_the_next_voice() -> None:
    seen: list[Failover] = []
    cloud, offline = _Voice("google", fail_after=1), _Voice("piper")
    tts = FallbackTextToSpeech([cloud, offline], on_failover=seen.append)

    async def scenario() -> list[bytes]:
        return [chunk async for chunk in tts.synthesize("hello there", voice="en-US-Chirp3-HD-Charon")]

    assert asyncio.run(scenario()) == [b"google:hello", b"piper:hello", b"piper:there"]
    assert [(f.kind, f.failed, f.next) for f in seen] == [("tts", "google", "piper")]
    assert cloud.voices == ["en-US-Chirp3-HD-Charon"] and offline.voices == [None]


def test_fallback_tts_raises_when_no_voice_is_left() -> None:
    tts = FallbackTextToSpeech([_Voice("google", fail_after=0), _Voice("piper", fail_after=0)])

    async def scenario() -> None:
        async for _ in tts.synthesize("hello"):
            pass

    with pytest.raises(ProviderError, match="piper"):
        asyncio.run(scenario())


def test_fallback_needs_a_provider() -> None:
    with pytest.raises(ValueError, match="at least one"):
        FallbackSpeechToText([])
