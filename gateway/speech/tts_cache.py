"""A disk cache in front of a cloud voice: a phrase asked for again is a file read, not a
round trip to the vendor (greetings, disclosures, "Could you repeat that?").

A phrase is stored the second time it is synthesised in this process: fixed phrases repeat
from call to call, while a language model's sentences rarely do, so they are not written to
disk at all. The cache holds at most `max_entries` files; the oldest go first. Keys cover the
provider, its voice and the text, so changing the voice never replays the old one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from gateway.media.audio import SAMPLE_RATE, load_wav, save_wav
from gateway.speech.base import TextToSpeech

log = logging.getLogger("gateway.providers")


class CachedTTS(TextToSpeech):
    def __init__(self, inner: TextToSpeech, cache_dir: Path, *, identity: str = "",
                 max_entries: int = 2000) -> None:
        self.inner = inner
        self.name = inner.name
        self.first_audio_timeout = inner.first_audio_timeout
        self.cache_dir = Path(cache_dir)
        self._identity = identity  # what else changes the audio: the configured voice, model...
        self._max_entries = max_entries
        self._seen: set[str] = set()  # keys synthesised once in this process
        self.hits = 0

    def key(self, text: str, voice: str | None) -> str:
        fields = (self.inner.name, self._identity, voice or "", text)
        return hashlib.sha256("\0".join(fields).encode("utf-8")).hexdigest()

    async def _synthesize(self, text: str, *, voice: str | None) -> AsyncIterator[bytes]:
        key = self.key(text, voice)
        path = self.cache_dir / f"{key}.wav"
        try:
            pcm = load_wav(path)
        except ValueError:
            pcm = None  # missing or unreadable: synthesise again
        if pcm:
            self.hits += 1
            yield pcm
            return
        keep = key in self._seen
        self._seen.add(key)
        chunks: list[bytes] = []
        async for chunk in self.inner.synthesize(text, voice=voice):
            if keep:
                chunks.append(chunk)
            yield chunk
        # Only a complete rendering is stored: a stream cut short by a barge-in is not.
        if keep and chunks:
            self._store(path, b"".join(chunks))

    def _store(self, path: Path, pcm: bytes) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".tmp")
            os.close(fd)
            try:
                save_wav(tmp, pcm, SAMPLE_RATE)
                os.replace(tmp, path)  # atomic: a concurrent reader sees no half file
            finally:
                Path(tmp).unlink(missing_ok=True)
            self._trim()
        except OSError as exc:  # a full or read-only disk costs the cache, not the call
            log.warning("voice cache %s: not stored: %s", self.cache_dir, exc)

    def _trim(self) -> None:
        files = sorted(self.cache_dir.glob("*.wav"), key=lambda p: p.stat().st_mtime)
        for old in files[: max(0, len(files) - self._max_entries)]:
            old.unlink(missing_ok=True)
