"""A WHIP offer, checked before any peer connection is made for it: an SDP that parses, with an
audio section offering a codec this side speaks. What a far end sent never reaches a log raw."""

from __future__ import annotations

import re

from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.sdp import SessionDescription

MAX_OFFER_BYTES = 32 * 1024  # a browser's offer is 3-6 KiB; more is not an offer
_PRINTABLE = re.compile(r"[^\x20-\x7e]")


class OfferError(ValueError):
    """The offer cannot be answered; the text is safe to send back and to log."""


def printable(text: str, limit: int = 80) -> str:
    return _PRINTABLE.sub("?", text)[:limit]


def audio_codecs() -> set[str]:
    return {c.mimeType.lower() for c in RTCRtpSender.getCapabilities("audio").codecs}


def check_offer(text: str) -> SessionDescription:
    if len(text.encode()) > MAX_OFFER_BYTES:
        raise OfferError(f"the offer is over {MAX_OFFER_BYTES} bytes")
    if not text.startswith("v=0") or "\no=" not in text:
        raise OfferError("not an SDP offer (it must start with v=0 and have an o= line)")
    try:
        parsed = SessionDescription.parse(text)
    except Exception as exc:  # noqa: BLE001 - aiortc's parser asserts, indexes and splits freely
        raise OfferError(f"malformed SDP ({type(exc).__name__})") from None
    audio = [m for m in parsed.media if m.kind == "audio"]
    if not audio:
        kinds = sorted({printable(m.kind, 16) for m in parsed.media}) or ["nothing"]
        raise OfferError(f"the offer has no audio (it offers {', '.join(kinds)})")
    ours = audio_codecs()
    offered = {c.mimeType.lower() for m in audio for c in m.rtp.codecs}
    if not offered & ours:
        names = ", ".join(sorted(printable(c.split("/", 1)[-1], 24) for c in offered)) or "none"
        raise OfferError(f"no common audio codec: offered {names}; this gateway speaks "
                         f"{', '.join(sorted(c.split('/', 1)[1] for c in ours))}")
    if not all(m.ice.usernameFragment and m.ice.password for m in audio):
        raise OfferError("the offer has no ICE credentials (a=ice-ufrag / a=ice-pwd)")
    if not all(m.dtls is not None and m.dtls.fingerprints for m in audio):
        raise OfferError("the offer has no DTLS fingerprint (a=fingerprint)")
    return parsed
