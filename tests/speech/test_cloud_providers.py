"""Cloud providers through their real SDKs against local servers speaking the vendors' wire
protocols (Deepgram websocket JSON, Google gRPC, OpenAI SSE)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import types
import warnings
from collections.abc import Coroutine
from typing import Any

import pytest

# The cloud SDKs come with the `cloud` (and `test`) extra; without them there is nothing to test.
pytest.importorskip("deepgram", reason="pip install 'gateway[cloud]'")
pytest.importorskip("google.cloud.texttospeech_v1", reason="pip install 'gateway[cloud]'")
grpc = pytest.importorskip("grpc", reason="pip install 'gateway[cloud]'")

from gateway.errors import ProviderError  # noqa: E402
from gateway.speech.frames import ToolSpec, TranscriptEvent  # noqa: E402
from gateway.speech import registry  # noqa: E402
from tests.fakes.deepgram_server import FakeDeepgram, Utterance  # noqa: E402
from tests.fakes.google_tts_server import FakeGoogleTTS  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI, Reply, ScriptedToolCall  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

pytestmark = [
    # deepgram-sdk still imports websockets' legacy client; that is the SDK's business, not ours.
    pytest.mark.filterwarnings("ignore:websockets.legacy is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:websockets.exceptions.InvalidStatusCode is deprecated:DeprecationWarning"),
    pytest.mark.timeout(30),
]

FRAME = 320  # 20 ms of PCM16 at 8 kHz


def run(coro: Coroutine[Any, Any, Any], timeout: float = 15.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def speech(seconds: float) -> bytes:
    """A deterministic non-silent PCM16 waveform (a sawtooth), in whole 20 ms frames."""
    n = int(seconds * 8000) // 160 * 160
    return b"".join(((i * 97) % 16000 - 8000).to_bytes(2, "little", signed=True) for i in range(n))


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]


async def collect_until_speech_final(stream: Any) -> list[TranscriptEvent]:
    events: list[TranscriptEvent] = []
    async for event in stream.events():
        events.append(event)
        if event.speech_final:
            break
    return events


# -- Deepgram ---------------------------------------------------------------------------------


def test_deepgram_streams_mulaw_and_maps_results() -> None:
    from gateway.speech.vendors.deepgram import DeepgramSTT

    pcm = speech(1.2)

    async def scenario() -> tuple[list[TranscriptEvent], list[TranscriptEvent], FakeDeepgram]:
        async with FakeDeepgram([Utterance("book a table for four", after_bytes=8000, confidence=0.91)]) as fake:
            stt = DeepgramSTT(api_key="test-key", url=fake.url, model="nova-3", endpointing_ms=250)
            stream = stt.stream(language="en-US", keyterms=["Trattoria Roma", "calzone"])
            for frame in frames(pcm):
                stream.push_audio(frame)
            events = await collect_until_speech_final(stream)
            await stream.aclose()
            rest = [e async for e in stream.events()]  # ends cleanly after aclose
            return events, rest, fake

    events, rest, fake = run(scenario())

    interim, final = events[0], events[-1]
    assert not interim.is_final and interim.text == "book a"
    assert final.is_final and final.speech_final
    assert final.text == "book a table for four"
    assert final.confidence == pytest.approx(0.91)
    assert final.start == 0.0 and final.end == pytest.approx(1.0)
    assert rest == []  # the UtteranceEnd after a speech_final adds nothing

    session = fake.sessions[0]
    assert session.path == "/v1/listen"
    assert session.param("encoding") == "mulaw"
    assert session.param("sample_rate") == "8000"
    assert session.param("channels") == "1"
    assert session.param("model") == "nova-3"
    assert session.param("language") == "en-US"
    assert session.param("interim_results") == "true"
    assert session.param("endpointing") == "250"
    assert session.param("utterance_end_ms") == "1000"
    assert session.query["keyterm"] == ["Trattoria Roma", "calzone"]
    assert session.headers["Authorization"] == "Token test-key"
    assert bytes(session.audio) == audioop.lin2ulaw(pcm, 2)  # μ-law, one byte per sample
    assert session.control[-1] == "CloseStream"


def test_deepgram_older_models_get_keywords() -> None:
    from gateway.speech.vendors.deepgram import DeepgramSTT

    stt = DeepgramSTT(api_key="k", model="nova-2-phonecall")
    opts = stt.connect_options("en", ["Acme"])
    assert opts["keywords"] == ["Acme"] and "keyterm" not in opts


def test_deepgram_utterance_end_closes_an_open_turn() -> None:
    from deepgram.listen.v1.types import ListenV1UtteranceEnd

    from gateway.speech.vendors.deepgram import DeepgramSTT

    async def scenario() -> tuple[Any, Any]:
        stream = DeepgramSTT(api_key="k").stream()
        # A final without speech_final leaves the turn open; UtteranceEnd then ends it.
        stream._turn_open = True
        ended = stream._to_event(ListenV1UtteranceEnd(channel=[0, 1], last_word_end=2.5))
        again = stream._to_event(ListenV1UtteranceEnd(channel=[0, 1], last_word_end=2.5))
        await stream.aclose()
        return ended, again

    ended, again = run(scenario())
    assert ended == TranscriptEvent(text="", is_final=True, confidence=1.0, start=2.5, end=2.5, speech_final=True)
    assert again is None


def test_deepgram_audio_from_another_thread() -> None:
    from gateway.speech.vendors.deepgram import DeepgramSTT

    pcm = speech(0.6)

    async def scenario() -> tuple[list[TranscriptEvent], FakeDeepgram]:
        async with FakeDeepgram([Utterance("hello", after_bytes=4000)]) as fake:
            stream = DeepgramSTT(api_key="k", url=fake.url).stream()  # bound to this loop
            pusher = threading.Thread(target=lambda: [stream.push_audio(f) for f in frames(pcm)])
            pusher.start()
            events = await collect_until_speech_final(stream)
            pusher.join()
            await stream.aclose()
            return events, fake

    events, fake = run(scenario())
    assert events[-1].text == "hello"
    assert len(fake.sessions[0].audio) == len(pcm) // 2


def test_deepgram_dropped_socket_is_retryable() -> None:
    from gateway.speech.vendors.deepgram import DeepgramSTT

    async def scenario() -> ProviderError:
        async with FakeDeepgram([Utterance("never said", after_bytes=80000)], drop_after_bytes=1600) as fake:
            stream = DeepgramSTT(api_key="k", url=fake.url).stream()
            for frame in frames(speech(0.5)):
                stream.push_audio(frame)
            with pytest.raises(ProviderError) as caught:
                async for _ in stream.events():
                    pass
            await stream.aclose()
            return caught.value

    err = run(scenario())
    assert err.retryable and err.provider == "deepgram"


def test_deepgram_rejected_key_is_not_retryable() -> None:
    from gateway.speech.vendors.deepgram import DeepgramSTT

    async def scenario() -> ProviderError:
        async with FakeDeepgram(api_key="right") as fake:
            stream = DeepgramSTT(api_key="wrong", url=fake.url).stream()
            with pytest.raises(ProviderError) as caught:
                async for _ in stream.events():
                    pass
            await stream.aclose()
            return caught.value

    err = run(scenario())
    assert not err.retryable and "401" in str(err)


def test_deepgram_unreachable_server_is_retryable() -> None:
    from gateway.speech.vendors.deepgram import DeepgramSTT

    async def scenario() -> ProviderError:
        async with FakeDeepgram() as fake:
            url = fake.url  # the port is closed again once the fake has stopped
        stream = DeepgramSTT(api_key="k", url=url, connect_timeout=2.0).stream()
        stream.push_audio(b"\x00" * FRAME)
        with pytest.raises(ProviderError) as caught:
            async for _ in stream.events():
                pass
        await stream.aclose()
        return caught.value

    assert run(scenario()).retryable


# -- Google TTS -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "wav_header"),
    [("streaming", False), ("streaming", True), ("unary", False)],
)
def test_google_tts_yields_pcm16_8k(mode: str, wav_header: bool) -> None:
    from gateway.speech.vendors.google_tts import GoogleTTS

    text = "Your table is booked for eight."

    async def scenario() -> tuple[list[bytes], FakeGoogleTTS]:
        async with FakeGoogleTTS(seconds_per_char=0.02, wav_header_in_stream=wav_header) as fake:
            tts = GoogleTTS(endpoint=fake.endpoint, insecure=True, mode=mode)  # type: ignore[arg-type]
            chunks = [chunk async for chunk in tts.synthesize(text, voice="en-GB-Chirp3-HD-Aoede")]
            return chunks, fake

    chunks, fake = run(scenario())
    pcm = b"".join(chunks)
    assert len(pcm) == len(text) * 0.02 * 8000 * 2  # 20 ms per character, 2 bytes per sample
    assert len(chunks) > 1 if mode == "streaming" else True
    assert max(abs(s) for s in memoryview(pcm).cast("h")) > 6000  # the tone, not a header or silence
    rec = fake.recorded
    assert rec.methods == ["StreamingSynthesize" if mode == "streaming" else "SynthesizeSpeech"]
    assert rec.voices == ["en-GB-Chirp3-HD-Aoede"]
    assert rec.encodings == [5] and rec.rates == [8000]  # MULAW at 8 kHz: no resampling
    assert rec.texts == [text]


def test_google_tts_auto_mode_picks_streaming_for_chirp3_only() -> None:
    from gateway.speech.vendors.google_tts import GoogleTTS

    tts = GoogleTTS(endpoint="127.0.0.1:1", insecure=True)
    assert tts._streams("en-US-Chirp3-HD-Charon")
    assert not tts._streams("en-US-Neural2-F")


@pytest.mark.parametrize(("code", "retryable"), [("UNAVAILABLE", True), ("INVALID_ARGUMENT", False)])
def test_google_tts_errors_become_provider_errors(code: str, retryable: bool) -> None:
    from gateway.speech.vendors.google_tts import GoogleTTS

    async def scenario() -> ProviderError:
        async with FakeGoogleTTS(fail_with=getattr(grpc.StatusCode, code)) as fake:
            tts = GoogleTTS(endpoint=fake.endpoint, insecure=True)
            with pytest.raises(ProviderError) as caught:
                async for _ in tts.synthesize("hello"):
                    pass
            return caught.value

    err = run(scenario())
    assert err.retryable is retryable and err.provider == "google"


# -- OpenAI -----------------------------------------------------------------------------------


def test_openai_streams_text_and_one_joined_tool_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.speech.vendors.openai_llm import OpenAILLM

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    args = '{"date": "2025-05-01", "time": "19:30", "party_size": 4}'
    reply = Reply(text_pieces=["Let me", " check", " that."], tool_calls=[ScriptedToolCall("book_table", args, 5)])
    tool = ToolSpec("book_table", "Book a table", {"type": "object", "properties": {"date": {"type": "string"}}})

    async def scenario() -> tuple[list[Any], FakeOpenAI]:
        async with FakeOpenAI([reply]) as fake:
            llm = OpenAILLM(base_url=fake.base_url, model="test-model")  # local server: no key needed
            deltas = [d async for d in llm.chat([{"role": "user", "content": "table for 4"}], [tool])]
            await llm.aclose()
            return deltas, fake

    deltas, fake = run(scenario())
    assert [d.text for d in deltas if d.text] == ["Let me", " check", " that."]
    calls = [d.tool_call for d in deltas if d.tool_call]
    assert len(calls) == 1
    assert calls[0].name == "book_table" and calls[0].arguments == args and calls[0].id.startswith("call_")
    assert deltas[-1].finish_reason == "tool_calls"

    request = fake.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.body["stream"] is True and request.body["model"] == "test-model"
    assert request.body["tools"][0]["function"]["name"] == "book_table"
    assert request.body["tools"][0]["function"]["parameters"]["properties"]["date"] == {"type": "string"}


def test_openai_parallel_tool_calls_come_out_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.speech.vendors.openai_llm import OpenAILLM

    calls = [ScriptedToolCall("lookup", '{"id": 1}', 3), ScriptedToolCall("notify", '{"to": "desk"}', 4)]

    async def scenario() -> list[Any]:
        async with FakeOpenAI([Reply(tool_calls=calls)]) as fake:
            llm = OpenAILLM(base_url=fake.base_url, api_key="sk-test")
            return [d async for d in llm.chat([{"role": "user", "content": "x"}])]

    deltas = run(scenario())
    got = [(d.tool_call.name, d.tool_call.arguments) for d in deltas if d.tool_call]
    assert got == [("lookup", '{"id": 1}'), ("notify", '{"to": "desk"}')]


@pytest.mark.parametrize(("reply", "retryable"), [
    (Reply(status=500), True),
    (Reply(status=429), True),
    (Reply(status=401, error_message="Incorrect API key"), False),
    (Reply(text_pieces=["a", "b", "c"], drop_after_chunks=2), True),
])
def test_openai_failures_become_provider_errors(reply: Reply, retryable: bool) -> None:
    from gateway.speech.vendors.openai_llm import OpenAILLM

    async def scenario() -> ProviderError:
        async with FakeOpenAI([reply]) as fake:
            llm = OpenAILLM(base_url=fake.base_url, api_key="sk-test")
            with pytest.raises(ProviderError) as caught:
                async for _ in llm.chat([{"role": "user", "content": "x"}]):
                    pass
            return caught.value

    err = run(scenario())
    assert err.retryable is retryable and err.provider == "openai"
    if reply.status == 401:
        assert "Incorrect API key" in str(err)


# -- Keys, extras and the registry ------------------------------------------------------------


def test_missing_keys_name_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DEEPGRAM_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ProviderError, match="DEEPGRAM_API_KEY"):
        registry.make_stt("deepgram")
    with pytest.raises(ProviderError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        registry.make_tts("google")
    with pytest.raises(ProviderError, match="OPENAI_API_KEY"):
        registry.make_llm("openai")
    with pytest.raises(ProviderError, match="OPENAI_API_KEY"):  # OpenAI's own host always needs one
        registry.make_llm("openai", base_url="https://api.openai.com/v1")
    # A self-hosted OpenAI-compatible server needs none.
    assert registry.make_llm("local", base_url="http://127.0.0.1:8000/v1").name == "openai"


def test_keys_from_env_and_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-env")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert registry.make_stt("deepgram", model="nova-3").name == "deepgram"
    assert registry.make_llm("openai", model="gpt-4o-mini").name == "openai"
    missing = tmp_path / "nope.json"
    with pytest.raises(ProviderError, match="cannot load credentials"):
        registry.make_tts("google", credentials_file=str(missing))


def test_google_service_account_file_is_loaded(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
    from cryptography.hazmat.primitives import serialization

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "1", "private_key": pem,
        "client_email": "tts@p.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    tts = registry.make_tts("google", voice="en-US-Chirp3-HD-Charon")
    assert tts._credentials.service_account_email == "tts@p.iam.gserviceaccount.com"  # type: ignore[attr-defined]
    path.write_text(json.dumps({"type": "external_account"}))
    with pytest.raises(ProviderError, match="unsupported type 'external_account'"):
        registry.make_tts("google")


def test_registry_rejects_unknown_names_and_options() -> None:
    with pytest.raises(ProviderError, match="choose one of: deepgram, local, whisper"):
        registry.make_stt("acme")
    with pytest.raises(ProviderError, match="base_url"):
        registry.make_llm("local")
    with pytest.raises(ProviderError, match="bad option"):
        registry.make_stt("deepgram", api_key="k", colour="blue")


def test_registry_missing_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "gateway.speech.vendors.deepgram", raising=False)
    monkeypatch.setitem(sys.modules, "deepgram", None)  # as if deepgram-sdk were not installed
    with pytest.raises(ProviderError, match=r"missing deepgram\): pip install 'gateway\[cloud\]'"):
        registry.make_stt("deepgram", api_key="k")


def test_registry_local_names_resolve_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    local = types.ModuleType("gateway.speech.vendors.local")

    class WhisperSTT:
        def __init__(self, **opts: Any) -> None:
            self.opts = opts

    class PiperTTS(WhisperSTT):
        pass

    local.WhisperSTT = WhisperSTT  # type: ignore[attr-defined]
    local.PiperTTS = PiperTTS  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gateway.speech.vendors.local", local)
    stt = registry.make_stt("whisper", model="tiny.en")
    assert isinstance(stt, WhisperSTT) and stt.opts == {"model": "tiny.en"}
    assert isinstance(registry.make_stt("local"), WhisperSTT)
    assert isinstance(registry.make_tts("piper"), PiperTTS)
    assert isinstance(registry.make_tts("local"), PiperTTS)


# -- the voice cache in front of a cloud voice ------------------------------------------------


def test_repeated_phrase_is_synthesised_twice_then_served_from_disk(tmp_path: Any) -> None:
    from gateway.speech.vendors.google_tts import GoogleTTS
    from gateway.speech.tts_cache import CachedTTS

    fixed, once = "Thanks for calling.", "Your order number is four two."

    async def scenario() -> tuple[list[bytes], FakeGoogleTTS, CachedTTS]:
        async with FakeGoogleTTS(seconds_per_char=0.01) as fake:
            tts = CachedTTS(GoogleTTS(endpoint=fake.endpoint, insecure=True, mode="streaming"),  # type: ignore[arg-type]
                            tmp_path, identity="en-US-Chirp3-HD-Charon")
            out = []
            for text in (fixed, once, fixed, fixed, fixed):
                out.append(b"".join([c async for c in tts.synthesize(text)]))
            return out, fake, tts

    out, fake, tts = run(scenario())
    assert fake.recorded.texts == [fixed, once, fixed]  # the third time on came from disk
    assert tts.hits == 2
    assert out[0] == out[2] == out[3] == out[4] and len(out[0]) == len(fixed) * 0.01 * 8000 * 2
    assert len(list(tmp_path.glob("*.wav"))) == 1  # the one-off sentence was never stored


def test_voice_cache_keys_on_voice_and_stays_bounded(tmp_path: Any) -> None:
    from gateway.speech.vendors.google_tts import GoogleTTS
    from gateway.speech.tts_cache import CachedTTS

    async def scenario() -> FakeGoogleTTS:
        async with FakeGoogleTTS(seconds_per_char=0.01) as fake:
            inner = GoogleTTS(endpoint=fake.endpoint, insecure=True, mode="streaming")  # type: ignore[arg-type]
            a = CachedTTS(inner, tmp_path, identity="voice-a", max_entries=2)
            b = CachedTTS(inner, tmp_path, identity="voice-b", max_entries=2)
            for tts in (a, a, b, b):  # each synthesises twice, so each stores its own copy
                _ = [c async for c in tts.synthesize("Hello.")]
            for text in ("One.", "One.", "Two.", "Two."):
                _ = [c async for c in a.synthesize(text)]
            return fake

    fake = run(scenario())
    assert fake.recorded.texts.count("Hello.") == 4  # voice b never replayed voice a's audio
    assert len(list(tmp_path.glob("*.wav"))) == 2
