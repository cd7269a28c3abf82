"""Small pjsua2 helpers shared by the gateway's SIP layer and the test softphone.

Everything here follows the measured facts in docs/DESIGN.md §3; call these only on the
thread that owns the Endpoint, except read_frame_bytes/write_frame_bytes, which are
meant for the media clock thread's frame callbacks.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Iterable, Sequence

import pjsua2 as pj

from gateway.media.framing import DEFAULT_FRAME_MS, SAMPLE_RATE, frame_bytes

CLOCK_RATE = SAMPLE_RATE
PTIME_MS = DEFAULT_FRAME_MS
FRAME_BYTES = frame_bytes(PTIME_MS)  # PCM16 mono: 320 bytes per 20 ms

# Offered in this order; everything else (speex, iLBC, GSM, L16) is disabled, or two
# pjsua peers settle on speex/16000. telephone-event is added to the SDP by pjsua itself.
DEFAULT_CODECS: tuple[str, ...] = ("PCMU/8000", "PCMA/8000", "G722/16000")


def endpoint_config(
    *, log_level: int = 1, max_calls: int | None = None, user_agent: str = "gateway", frame_ms: int = PTIME_MS
) -> pj.EpConfig:
    """EpConfig for an Endpoint polled by one thread with libHandleEvents(), its media clock
    ticking every `frame_ms` (see media_frames)."""
    cfg = pj.EpConfig()
    ua = cfg.uaConfig
    ua.threadCnt = 0  # no pjsua worker threads: the owner thread polls
    ua.mainThreadOnly = True  # timers and callbacks run inside libHandleEvents()
    # Default: the module's compiled PJSUA_MAX_CALLS (the stock wheel's 4, the build's 512).
    ua.maxCalls = max_calls if max_calls is not None else pj.UaConfig().maxCalls
    ua.userAgent = user_agent
    cfg.logConfig.level = log_level
    cfg.logConfig.consoleLevel = log_level
    med = cfg.medConfig
    med.clockRate = CLOCK_RATE  # G.711 is not resampled 8k -> 16k -> 8k inside the bridge
    med.sndClockRate = CLOCK_RATE
    med.noVad = True
    med.ecTailLen = 0
    if frame_ms != PTIME_MS:
        media_frames(med, frame_ms)
    return cfg


def media_frames(med: pj.MediaConfig, frame_ms: int) -> None:
    """Bridge clock and RTP packets of `frame_ms`. `ptime` makes every stream send packets of
    that length whatever the codec's default or the peer's a=ptime says (pjsua overrides the
    stream's frames per packet with it); set_codec_priorities(frame_ms=...) puts the same
    packetisation into the SDP offer (a=ptime)."""
    med.audioFramePtime = frame_ms
    med.ptime = frame_ms


def set_codec_priorities(
    ep: pj.Endpoint, order: Sequence[str] = DEFAULT_CODECS, *, plc: bool = False, frame_ms: int = PTIME_MS
) -> list[str]:
    """Enable exactly `order` (id prefixes such as "PCMU/8000"); returns enabled ids, best first.
    Codecs with 10 ms frames (G.711, G.722) are packed `frame_ms` to an RTP packet."""
    ids = [info.codecId for info in ep.codecEnum2()]
    for codec_id in ids:
        ep.codecSetPriority(codec_id, 0)
    enabled: list[str] = []
    for rank, prefix in enumerate(order):
        for codec_id in ids:
            if codec_id.lower().startswith(prefix.lower()) and codec_id not in enabled:
                ep.codecSetPriority(codec_id, 255 - rank)
                enabled.append(codec_id)
                param = ep.codecGetParam(codec_id)
                changed = False
                if codec_id.startswith(("PCMU", "PCMA")) and not plc:
                    param.setting.plc = False  # a lost packet becomes silence, not a guess
                    changed = True
                per_packet = frame_ms // param.info.frameLen if param.info.frameLen else 0
                if per_packet >= 1 and frame_ms % param.info.frameLen == 0 \
                        and param.setting.frmPerPkt != per_packet:
                    param.setting.frmPerPkt = per_packet
                    changed = True
                if changed:
                    ep.codecSetParam(codec_id, param)
    return enabled


def with_ptime(sdp: str, ptime_ms: int) -> str:
    """The SDP with `a=ptime` in each audio section that has none: pjsua sends packets of its
    configured length but does not say so, and a peer sends what the SDP asks for."""
    lines = sdp.split("\r\n")
    out: list[str] = []
    in_audio = has_ptime = False
    for line in lines:
        if line.startswith("m=") or (line == "" and in_audio):
            if in_audio and not has_ptime:
                out.append(f"a=ptime:{ptime_ms}")
            in_audio, has_ptime = line.startswith("m=audio"), False
        elif line.startswith("a=ptime:"):
            has_ptime = True
        out.append(line)
    if in_audio and not has_ptime:
        out.append(f"a=ptime:{ptime_ms}")
    return "\r\n".join(out)


def pcm_port_format(clock_rate: int = CLOCK_RATE, ptime_ms: int = PTIME_MS) -> pj.MediaFormatAudio:
    """Format for an AudioMediaPort: PCM16 mono frames of ptime_ms."""
    fmt = pj.MediaFormatAudio()
    fmt.init(pj.PJMEDIA_FORMAT_PCM, clock_rate, 1, ptime_ms * 1000, 16)
    return fmt


def transport_config(bound_address: str, port: int = 0, *, tcp: bool = False) -> pj.TransportConfig:
    """SIP transport bound to one address; port 0 lets the OS choose (see transport_port)."""
    cfg = pj.TransportConfig()
    cfg.port = port
    cfg.boundAddress = bound_address
    if tcp:
        # Without TCP_NODELAY a 100 Trying followed at once by a 200 OK on one connection
        # waits for the peer's delayed ACK (Nagle): +40 ms setup. UDP sockets reject it.
        opt = pj.SockOpt()
        opt.level = socket.IPPROTO_TCP
        opt.optName = socket.TCP_NODELAY
        opt.setOptValInt(1)
        params = cfg.sockOptParams
        opts = params.sockOpts
        opts.append(opt)
        params.sockOpts = opts
        cfg.sockOptParams = params
    return cfg


def transport_port(ep: pj.Endpoint, transport_id: int) -> int:
    """The port a transport created with port 0 actually bound."""
    return int(ep.transportGetInfo(transport_id).localName.rsplit(":", 1)[1])


# --- frame access -------------------------------------------------------------------
# bytes(frame.buf) walks the SWIG vector element by element (~115 µs per 20 ms frame).
# MediaFrame.buf is a std::vector<unsigned char>; with libstdc++ its first two words are
# the begin and end pointers, so one ctypes read of those plus string_at copies the data.


def _vector_offset() -> int:
    probe = pj.MediaFrame()
    probe.buf = pj.ByteVector(b"\x01\x02\x03")
    offset = int(probe.buf.this) - int(probe.this)
    begin, end = _WORDS.unpack(ctypes.string_at(int(probe.this) + offset, _WORDS.size))
    if end - begin != 3 or ctypes.string_at(begin, 3) != b"\x01\x02\x03":
        raise RuntimeError("unexpected std::vector layout; fast frame read unavailable")
    return offset


_WORDS = struct.Struct("@PP")
_BUF_OFFSET = _vector_offset()
_string_at = ctypes.string_at
_unpack_words = _WORDS.unpack
_WORDS_SIZE = _WORDS.size


def read_frame_bytes(frame: pj.MediaFrame) -> bytes:
    """Copy of frame.buf's contents in ~2 µs (vs ~115 µs for bytes(frame.buf))."""
    begin, end = _unpack_words(_string_at(int(frame.this) + _BUF_OFFSET, _WORDS_SIZE))
    return _string_at(begin, end - begin) if end > begin else b""


def write_frame_bytes(frame: pj.MediaFrame, pcm: bytes | pj.ByteVector) -> None:
    """Fill a frame in onFrameRequested (a prebuilt ByteVector saves the conversion)."""
    frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
    frame.buf = pcm if isinstance(pcm, pj.ByteVector) else pj.ByteVector(pcm)


def caused_by_remote(e: pj.SipEvent) -> bool:
    """Whether a call state change (OnCallStateParam.e) came from a far-end message,
    as opposed to our own request, a timeout or a transport error."""
    if e.type == pj.PJSIP_EVENT_TSX_STATE:
        return bool(e.body.tsxState.type == pj.PJSIP_EVENT_RX_MSG)
    return bool(e.type == pj.PJSIP_EVENT_RX_MSG)


# --- SIP message text -----------------------------------------------------------------


def sip_header_vector(lines: Iterable[str]) -> pj.SipHeaderVector:
    """"Name: value" strings -> headers for SipTxOption.headers (e.g. X- headers)."""
    vec = pj.SipHeaderVector()
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"header must look like 'Name: value': {line!r}")
        hdr = pj.SipHeader()
        hdr.hName = name.strip()
        hdr.hValue = value.strip()
        vec.append(hdr)
    return vec


def request_uri(whole_msg: str) -> str:
    """Request-URI from a request's start line ("INVITE sip:+1555@host SIP/2.0")."""
    parts = whole_msg.split("\r\n", 1)[0].split()
    return parts[1] if len(parts) == 3 else ""


def sip_headers(whole_msg: str) -> list[tuple[str, str]]:
    """(name, value) pairs of a message's header section, folded lines joined."""
    head = whole_msg.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
    out: list[tuple[str, str]] = []
    for line in head:
        if line[:1] in (" ", "\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if sep:
            out.append((name.strip(), value.strip()))
    return out


# --- TLS and SRTP ------------------------------------------------------------------------

SRTP_MODES = {"off": pj.PJMEDIA_SRTP_DISABLED, "optional": pj.PJMEDIA_SRTP_OPTIONAL,
              "mandatory": pj.PJMEDIA_SRTP_MANDATORY}


def set_srtp(media: pj.AccountMediaConfig, mode: str) -> None:
    """SRTP (SDES keys in the SDP) off, offered and accepted when the peer has it ("optional"),
    or required ("mandatory": a plain RTP offer is answered 488). Keys may travel over any
    signalling transport: carriers send SRTP over UDP and TCP as well as TLS."""
    media.srtpUse = SRTP_MODES[mode]
    media.srtpSecureSignaling = 0


def tls_config(tcfg: pj.TransportConfig, *, cert: str = "", key: str = "", ca: str = "",
               verify_peer: bool = False) -> None:
    """A TLS transport's certificate, key and trusted CAs. verify_peer: a server's certificate
    must chain to `ca` when we connect out, and a client must present one when it connects in."""
    tls = tcfg.tlsConfig
    tls.certFile = cert
    tls.privKeyFile = key
    tls.CaListFile = ca
    tls.verifyServer = verify_peer
    tls.verifyClient = verify_peer
    tls.requireClientCert = verify_peer
