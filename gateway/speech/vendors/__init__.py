"""One module per engine: local (offline: faster-whisper, piper), deepgram, google_tts,
openai_llm. Each implements the interfaces in gateway.speech.base."""
