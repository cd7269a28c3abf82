"""Provider faults on the wire: servers that stall, close mid-stream, answer 5xx, trickle one
byte at a time or send garbage, through the vendors' real SDKs and the fallback adapters.

Every fault ends in a retryable ProviderError within its deadline (never a hang), and the
fallback hands the work to the next provider without losing or repeating what the caller hears.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

import pytest

pytest.importorskip("deepgram", reason="pip install 'gateway[cloud]'")
pytest.importorskip("google.cloud.texttospeech_v1", reason="pip install 'gateway[cloud]'")
grpc = pytest.importorskip("grpc", reason="pip install 'gateway[cloud]'")

from gateway.errors import ProviderError  # noqa: E402
from gateway.speech.base import BYTES_PER_SECOND, SpeechToText, SttStream, TextToSpeech  # noqa: E402
from gateway.speech.breaker import CircuitBreaker  # noqa: E402
from gateway.speech.fallback import FallbackSpeechToText, FallbackTextToSpeech, unsaid  # noqa: E402
from gateway.speech.frames import TranscriptEvent  # noqa: E402
from tests.fakes.deepgram_server import FakeDeepgram, Utterance  # noqa: E402
from tests.fakes.google_tts_server import FakeGoogleTTS  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI, Reply  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:websockets.legacy is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:websockets.exceptions.InvalidStatusCode is deprecated:DeprecationWarning"),
    pytest.mark.timeout(60),
]
FRAME = 320


def run(coro: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def speech_frame(i: int) -> bytes:
    return b"".join((((i * 160 + j) * 97) % 16000 - 8000).to_bytes(2, "little", signed=True)
                    for j in range(160))


async def talk(stream: SttStream, seconds: float) -> None:
    """Push caller audio in real time, as a call does."""
    for i in range(int(seconds * 50)):
        stream.push_audio(speech_frame(i))
        await asyncio.sleep(0.02)


async def events_or_error(stream: SttStream) -> tuple[list[TranscriptEvent], ProviderError | None, float]:
    started = time.monotonic()
    events: list[TranscriptEvent] = []
    try:
        async for event in stream.events():
            events.append(event)
    except ProviderError as exc:
        return events, exc, time.monotonic() - started
    return events, None, time.monotonic() - started


# -- the recogniser ------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["stall", "close", "garbage", "abort"])
def test_deepgram_faults_end_the_stream_in_time(fault: str) -> None:
    from gateway.speech.vendors.deepgram import DeepgramSTT

    knobs = {"stall": {"stall_after_bytes": 4000}, "close": {"close_after_bytes": 4000},
             "garbage": {"garbage_after_bytes": 4000}, "abort": {"drop_after_bytes": 4000}}[fault]

    async def scenario() -> tuple[ProviderError | None, float]:
        async with FakeDeepgram(**knobs) as fake:
            stream = DeepgramSTT(api_key="k", url=fake.url, stall_timeout=1.0).stream()
            talker = asyncio.create_task(talk(stream, 6.0))
            _events, error, took = await events_or_error(stream)
            talker.cancel()
            await stream.aclose()
            return error, took

    error, took = run(scenario())
    assert error is not None and error.retryable, error
    assert took < 4.0, took      # 0.5 s of audio, then at most the 1 s stall limit and a bit
    if fault == "stall":
        assert "no word from the service" in str(error)


def test_deepgram_5xx_at_connect_is_retryable() -> None:
    from gateway.speech.vendors.deepgram import DeepgramSTT

    async def scenario() -> ProviderError | None:
        async with FakeDeepgram(status=503) as fake:
            stream = DeepgramSTT(api_key="k", url=fake.url).stream()
            stream.push_audio(speech_frame(0))
            _events, error, _took = await events_or_error(stream)
            await stream.aclose()
            return error

    error = run(scenario())
    assert error is not None and error.retryable and "503" in str(error)


def test_a_quiet_deepgram_hands_the_turn_in_progress_to_the_next_recogniser() -> None:
    from gateway.speech.vendors.deepgram import DeepgramSTT

    offline = _CountingSTT("offline")

    async def scenario() -> list[TranscriptEvent]:
        async with FakeDeepgram(stall_after_bytes=4000) as fake:
            cloud = DeepgramSTT(api_key="k", url=fake.url, stall_timeout=1.0)
            stream = FallbackSpeechToText([cloud, offline]).stream()
            await talk(stream, 3.0)
            stream.end_input()
            events = [e async for e in stream.events()]
            await stream.aclose()
            return events

    events = run(scenario())
    # Nothing was final before the stall: the next recogniser heard the whole turn from its start.
    assert offline.heard[0] == pytest.approx(3.0 * BYTES_PER_SECOND, rel=0.02)
    assert events[-1].text == "offline" and events[-1].start == pytest.approx(0.0)


def test_the_first_words_are_not_heard_twice_after_a_hand_over() -> None:
    from gateway.speech.vendors.deepgram import DeepgramSTT

    offline = _CountingSTT("offline")

    async def scenario() -> list[TranscriptEvent]:
        script = [Utterance("first words", after_bytes=8000)]       # final after 1 s of audio
        async with FakeDeepgram(script, drop_after_bytes=16000) as fake:
            cloud = DeepgramSTT(api_key="k", url=fake.url)
            stream = FallbackSpeechToText([cloud, offline]).stream()
            await talk(stream, 3.0)
            stream.end_input()
            events = [e async for e in stream.events()]
            await stream.aclose()
            return events

    events = run(scenario())
    assert [e.text for e in events if e.is_final and e.text][:1] == ["first words"]
    # Only the audio after the final words (about 1 s before the drop, then the rest) is replayed.
    assert offline.heard[0] == pytest.approx(2.0 * BYTES_PER_SECOND, rel=0.1)


class _CountingSTT(SpeechToText):
    """An offline stand-in: says its name once the input ends, and how much audio it heard."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.heard: list[int] = []

    def stream(self, *, language: str = "en", keyterms: Sequence[str] = ()) -> SttStream:
        owner = self

        class _Stream(SttStream):
            name = owner.name

            async def _run(self) -> None:
                total = 0
                while (pcm := await self._read_audio()) is not None:
                    total += len(pcm)
                owner.heard.append(total)
                self._emit(TranscriptEvent(owner.name, True, 1.0, 0.0, total / BYTES_PER_SECOND, True))

        return _Stream()


# -- the voice ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("knobs,why", [
    ({"stall_after_chunks": 2}, "audio stopped mid-sentence"),
    ({"chunk_bytes": 2, "pause_seconds": 0.2}, "slower than real time"),   # a trickle
    ({"fail_with": grpc.StatusCode.UNAVAILABLE}, "ServiceUnavailable"),
    ({"fail_after_chunks": 2}, "ServiceUnavailable"),
])
def test_google_tts_faults_end_in_time(knobs: dict, why: str) -> None:
    from gateway.speech.vendors.google_tts import GoogleTTS

    async def scenario() -> tuple[ProviderError | None, float]:
        async with FakeGoogleTTS(seconds_per_char=0.05, **knobs) as fake:
            tts = GoogleTTS(endpoint=fake.endpoint, insecure=True, mode="streaming")
            tts.chunk_timeout = 1.0
            started = time.monotonic()
            try:
                async for _chunk in tts.synthesize("We are open Monday to Friday, nine to five."):
                    pass
            except ProviderError as exc:
                return exc, time.monotonic() - started
            return None, time.monotonic() - started

    error, took = run(scenario())
    assert error is not None and why in str(error), error
    assert took < 4.0, took


def test_a_voice_cut_off_mid_sentence_is_not_repeated() -> None:
    from gateway.speech.vendors.google_tts import GoogleTTS

    offline = _WordVoice("offline")
    text = "We are open Monday to Friday from nine in the morning to five in the evening."

    async def scenario() -> list[bytes]:
        # 0.05 s per character in 0.1 s chunks: 12 chunks = 1.2 s = 3 words out before the cut.
        async with FakeGoogleTTS(seconds_per_char=0.05, fail_after_chunks=12) as fake:
            cloud = GoogleTTS(endpoint=fake.endpoint, insecure=True, mode="streaming")
            tts = FallbackTextToSpeech([cloud, offline])
            return [chunk async for chunk in tts.synthesize(text)]

    run(scenario())
    assert offline.texts == [" ".join(text.split()[3:])]


def test_a_voice_that_is_down_is_skipped_and_probed_back() -> None:
    from gateway.speech.vendors.google_tts import GoogleTTS

    offline = _WordVoice("offline")

    async def scenario() -> tuple[list[float], int, bool]:
        async with FakeGoogleTTS(fail_with=grpc.StatusCode.UNAVAILABLE) as fake:
            cloud = GoogleTTS(endpoint=fake.endpoint, insecure=True, mode="streaming")
            tts = FallbackTextToSpeech([cloud, offline])
            breaker = tts.breakers[0]
            breaker.probe_every = 0.2
            costs = []
            for _ in range(5):                      # five sentences, as five calls would say them
                started = time.monotonic()
                async for _chunk in tts.synthesize("Hello there."):
                    pass
                costs.append(time.monotonic() - started)
            cloud_tries = len(fake.recorded.texts)
            fake.fail_with = None                   # the service comes back
            await asyncio.sleep(1.0)                # the background probe finds it
            reopened = not breaker.open
            await breaker.aclose()
            return costs, cloud_tries, reopened

    costs, cloud_tries, back = run(scenario())
    assert cloud_tries <= 3 + 5        # three failures open the breaker; then only probes reach it
    assert max(costs[3:]) < 0.2, costs  # once open, a sentence costs no waiting for the cloud
    assert back


class _WordVoice(TextToSpeech):
    def __init__(self, name: str) -> None:
        self.name = name
        self.texts: list[str] = []

    async def _synthesize(self, text: str, *, voice: str | None) -> AsyncIterator[bytes]:
        self.texts.append(text)
        yield bytes(FRAME)


def test_unsaid_words_follow_the_audio_already_out() -> None:
    assert unsaid("one two three four", 0.0) == "one two three four"
    assert unsaid("one two three four", 0.8) == "three four"
    assert unsaid("one two", 5.0) == ""


def test_breaker_opens_after_repeated_failures_in_its_window() -> None:
    now = [0.0]
    breaker = CircuitBreaker("voice x", threshold=3, window=10.0, clock=lambda: now[0])
    for t in (0.0, 20.0, 40.0):     # spread out: never three within the window
        now[0] = t
        breaker.failed()
    assert not breaker.open
    for t in (41.0, 42.0):
        now[0] = t
        breaker.failed()
    assert breaker.open and breaker.opened == 1
    breaker.succeeded()
    assert not breaker.open


# -- the language model ----------------------------------------------------------------------------

@pytest.mark.parametrize("reply,why", [
    (Reply(text_pieces=["Hello", " there", " friend."], stall_after_chunks=2), "stopped mid-way"),
    (Reply(text_pieces=["Hello"], status=503), "503"),
    (Reply(text_pieces=["Hello", " there."], garbage_after_chunks=1), ""),
    (Reply(text_pieces=["Hello", " there."], drop_after_chunks=2), ""),
])
def test_llm_faults_end_in_time(reply: Reply, why: str) -> None:
    from gateway.speech.vendors.openai_llm import OpenAILLM

    async def scenario() -> tuple[ProviderError | None, float]:
        async with FakeOpenAI([reply]) as fake:
            llm = OpenAILLM(base_url=fake.base_url, model="fake", max_retries=0)
            llm.token_timeout = 1.0
            started = time.monotonic()
            try:
                async for _delta in llm.chat([{"role": "user", "content": "hi"}]):
                    pass
            except ProviderError as exc:
                return exc, time.monotonic() - started
            return None, time.monotonic() - started

    error, took = run(scenario())
    assert error is not None and why in str(error), error
    assert took < 4.0, took
