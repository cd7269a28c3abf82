"""WebRTC call legs on the asyncio loop (aiortc): an SDP offer in, an answer out, and the call's
audio between Opus at 48 kHz and the pipeline's 8 kHz frames, paced by its own 20 ms clock.
Knows nothing of dialplans or sessions: the worker drives a leg exactly as it drives a SIP call.
Never imports pjsua2."""
