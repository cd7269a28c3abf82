"""The speech and language engines a worker uses, built once from settings: one recogniser and
one voice, each a fallback chain when more than one provider is configured."""

from __future__ import annotations

import json
from dataclasses import dataclass

from gateway.config.settings import Settings
from gateway.speech.base import LanguageModel, SpeechToText, TextToSpeech
from gateway.speech.fallback import FailoverListener, FallbackSpeechToText, FallbackTextToSpeech
from gateway.speech.registry import make_llm, make_stt, make_tts
from gateway.speech.tts_cache import CachedTTS

_LOCAL = ("local", "whisper", "piper")


@dataclass(frozen=True, slots=True)
class Engines:
    stt: SpeechToText   # the configured recognisers in order: the next takes over when one fails
    tts: TextToSpeech   # a cloud voice has the offline one behind it
    llm: LanguageModel | None

    @classmethod
    def from_settings(cls, s: Settings, local_tts: TextToSpeech, local_stt: SpeechToText,
                      on_failover: FailoverListener | None = None) -> Engines:
        """Raises ProviderError naming the missing key or package for a cloud provider."""
        options = s.provider_options
        recognisers = [local_stt if name in _LOCAL else make_stt(name, **options.get(name, {}))
                       for name in s.stt] or [local_stt]
        stt = recognisers[0] if len(recognisers) == 1 else FallbackSpeechToText(recognisers, on_failover=on_failover)
        if s.tts in _LOCAL:
            tts = local_tts
        else:
            # The offline voice caches its own renderings; a cloud voice gets a disk cache.
            cloud = CachedTTS(make_tts(s.tts, **options.get(s.tts, {})), s.cache_dir / "tts" / s.tts,
                              identity=json.dumps(options.get(s.tts, {}), sort_keys=True, default=str))
            tts = FallbackTextToSpeech([cloud, local_tts], on_failover=on_failover)
        llm = None
        if s.llm:
            llm_options = dict(s.llm)
            name = str(llm_options.pop("provider", "openai"))
            llm = make_llm(name, **llm_options)
        return cls(stt, tts, llm)
