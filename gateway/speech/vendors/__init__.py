"""One module per engine: local (offline: faster-whisper, piper), deepgram, google_tts,
openai_llm. Each writes only what is its own (a recogniser stream's `_run`, a voice's
`_synthesize`, a model's `_chat`); gateway.speech.base owns queues, close and errors."""
