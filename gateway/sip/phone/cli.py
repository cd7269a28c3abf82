"""Command line of the test softphone (`python -m gateway.sip.phone.softphone call|answer ...`)."""

from __future__ import annotations

import argparse
import re
from importlib import metadata

from gateway.sip.target import target_arg

__all__ = ["MAX_CALLS", "build_parser"]



def _max_calls() -> int:
    """PJSUA_MAX_CALLS of the installed pjsua2, read from its distribution: the caller tools
    import this module and must not load pjsua2 itself (tests/test_house.py)."""
    try:
        metadata.version("pjsua2")  # scripts/build-pjsua2's wheel (deploy/pjproject/config_site.h)
        return 512
    except metadata.PackageNotFoundError:
        return 4  # the stock pjsua2-python wheel


MAX_CALLS = _max_calls()  # a process never holds more
_DTMF_RE = re.compile(r"^([0-9*#A-Da-d]+)(?:@(\d+(?:\.\d*)?))?$")
_DESCRIPTION = "Scripted SIP phone for integration tests and `gateway call`."


def _dtmf_spec(text: str) -> tuple[str, float]:
    m = _DTMF_RE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"DTMF must be DIGITS[@SECONDS], got {text!r}")
    return m.group(1).upper(), float(m.group(2) or 1.0)


def _calls(text: str) -> int:
    n = int(text)
    if not 1 <= n <= MAX_CALLS:
        raise argparse.ArgumentTypeError(f"--calls must be 1..{MAX_CALLS} (PJSUA_MAX_CALLS of this build)")
    return n


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway.sip.phone.softphone", description=_DESCRIPTION)
    sub = p.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bind", default="127.0.0.1", help="local address for SIP and RTP")
    common.add_argument("--port", type=int, default=0, help="local SIP port (0 = any free port)")
    common.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    common.add_argument("--srtp", choices=("off", "optional", "mandatory"), default="off",
                        help="SRTP media: off, optional (offered, plain RTP accepted) or mandatory")
    common.add_argument("--ca-file", help="PEM CA certificates the far end's TLS certificate must chain to")
    common.add_argument("--tls-cert", help="PEM certificate of this phone's TLS listener (answer mode)")
    common.add_argument("--tls-key", help="PEM private key of --tls-cert")
    common.add_argument("--play", help="tone:HZ or a WAV file, looped (default: silence)")
    common.add_argument(
        "--hangup-after", type=float,
        help="seconds after answer; with --turn: seconds of far-end silence after the last turn (default 2)",
    )
    common.add_argument("--log-level", type=int, default=1, help="pjsua log level on stderr (0-6)")
    common.add_argument("--vad", choices=("auto", "energy", "webrtc"), default="auto",
                        help="voiced-frame detector for turns and timing (auto: webrtcvad if installed)")
    common.add_argument("--vad-threshold-db", type=float, default=-45.0, help="frame RMS (dBFS) counted as loud")
    common.add_argument("--frame-ms", type=int, choices=(10, 20), default=20,
                        help="media frame and RTP packet length; 10 needs a peer that sends 10 ms packets too")
    c = sub.add_parser("call", parents=[common], help="place call(s) and report the outcome")
    c.add_argument("--to", required=True, type=target_arg,
                   help="HOST[:PORT] or sip:[USER@]HOST[:PORT] (sips: too) of the far end")
    c.add_argument("--number", default="", help="user part of the Request-URI (default: the --to URI's)")
    c.add_argument("--from-user", default="softphone")
    c.add_argument("--calls", type=_calls, default=1, help=f"identical concurrent calls (1-{MAX_CALLS})")
    c.add_argument("--record", help="WAV of received audio (OUT-1.wav, OUT-2.wav... when --calls > 1)")
    c.add_argument("--record-both", help="stereo WAV, frame-aligned: left = sent, right = received")
    c.add_argument("--turn", action="append", default=[], metavar="FILE.wav",
                   help="a spoken turn, in order: played once after the far end speaks and pauses")
    c.add_argument("--live-turns", metavar="DIR",
                   help="after the --turn files, ask for each further turn on stdout and read it on stdin "
                        "(protocol: gateway/sip/phone/live_turns.py; what the far end said goes to DIR)")
    c.add_argument("--listen", action="store_true",
                   help="follow the conversation even without --turn (timing JSON; --hangup-after as with --turn)")
    c.add_argument("--turn-gap-ms", type=_non_negative, default=700.0,
                   help="far-end silence that ends its turn (default 700)")
    c.add_argument("--barge-in-ms", type=_non_negative,
                   help="start each turn this long after the far end STARTS speaking (interrupt it)")
    c.add_argument("--reply-timeout", type=_non_negative, default=15.0,
                   help="hang up if the far end has not started replying to a turn after this long (default 15)")
    c.add_argument("--greeting-wait", type=_non_negative, default=3.0,
                   help="seconds to wait for the far end to speak before the first turn (0: speak first)")
    c.add_argument("--dtmf", type=_dtmf_spec, action="append", default=[],
                   help="DIGITS[@SECONDS after answer, default 1]")
    c.add_argument("--dtmf-method", choices=("rfc2833", "info"), default="rfc2833")
    c.add_argument("--cancel-after", type=float, help="CANCEL this many seconds after the INVITE if unanswered")
    c.add_argument("--max-duration", type=float, default=30.0, help="hang up everything after this long")
    c.add_argument("--follow-refer", action="store_true", help="accept REFER and place the new call")
    c.add_argument("--extra-header", action="append", default=[], help='"Name: value" added to the INVITE')
    s = sub.add_parser("answer", parents=[common], help="answer every INVITE")
    s.add_argument("--ready-file", help="write the bound SIP port here once listening")
    s.add_argument("--record-dir", help="write DIR/call-N.wav per call")
    s.add_argument("--answer-delay", type=float, default=0.0, help="send 180, answer this much later")
    s.add_argument("--status", type=int, default=200, help="final answer code (e.g. 486 to refuse)")
    s.add_argument("--xfer-to", help="blind-transfer (REFER) each answered call to this URI")
    s.add_argument("--xfer-after", type=float, default=1.0, help="seconds after answer for --xfer-to")
    s.add_argument("--max-calls", type=int, help="exit after this many calls have ended")
    s.add_argument("--reply", help="WAV (or tone:HZ) played once after each burst of caller speech")
    s.add_argument("--reply-delay-ms", type=_non_negative, default=300.0,
                   help="the reply starts after exactly this much received silence (by frame count)")
    s.add_argument("--greeting", help="WAV (or tone:HZ) played once when media starts")
    s.add_argument("--reply-stop-ms", type=_non_negative,
                   help="cut a greeting/reply short once the caller has talked over it this long")
    s.add_argument("--max-duration", type=float, default=3600.0)
    return p
