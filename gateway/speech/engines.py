"""The speech and language engines a worker uses, built once from settings."""

from __future__ import annotations

import json
from dataclasses import dataclass

from gateway.config.settings import Settings
from gateway.speech.base import LanguageModel, SpeechToText, TextToSpeech
from gateway.speech.registry import make_llm, make_stt, make_tts
from gateway.speech.tts_cache import CachedTTS

_LOCAL = ("local", "whisper", "piper")


@dataclass(frozen=True, slots=True)
class Engines:
    stt: tuple[SpeechToText, ...]         # in order: the next takes over when one fails
    tts: TextToSpeech
    fallback_tts: TextToSpeech | None     # the offline voice behind a cloud one
    llm: LanguageModel | None

    @classmethod
    def from_settings(cls, s: Settings, local_tts: TextToSpeech, local_stt: SpeechToText) -> Engines:
        """Raises ProviderError naming the missing key or package for a cloud provider."""
        options = s.provider_options
        stt = tuple(local_stt if name in _LOCAL else make_stt(name, **options.get(name, {}))
                    for name in s.stt) or (local_stt,)
        if s.tts in _LOCAL:
            tts, fallback = local_tts, None
        else:
            # The offline voice caches its own renderings; a cloud voice gets a disk cache.
            tts = CachedTTS(make_tts(s.tts, **options.get(s.tts, {})), s.cache_dir / "tts" / s.tts,
                            identity=json.dumps(options.get(s.tts, {}), sort_keys=True, default=str))
            fallback = local_tts
        llm = None
        if s.llm:
            llm_options = dict(s.llm)
            name = str(llm_options.pop("provider", "openai"))
            llm = make_llm(name, **llm_options)
        return cls(stt, tts, fallback, llm)
