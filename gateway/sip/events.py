"""Plain data that leaves the pj thread. No pjsua2 object ever crosses to asyncio."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.media.playout import PlayoutBuffer


@dataclass(frozen=True, slots=True)
class IncomingCall:
    key: int                 # our own id: pjsua reuses its call ids at once
    dialled: str
    caller: str
    call_id: str
    source: str              # "ip:port" of the sender
    trunk: str
    received_at: float       # time.monotonic() when the INVITE reached the gateway
    playout: PlayoutBuffer
    # A leg the gateway dials itself (a caller's REFER the dialplan allowed): answered by the far end.
    referred_by: int | None = None


@dataclass(frozen=True, slots=True)
class CallState:
    key: int
    state: str               # "early" | "confirmed" | "disconnected"
    code: int
    reason: str
    by_remote: bool = False


@dataclass(frozen=True, slots=True)
class MediaReady:
    key: int


@dataclass(frozen=True, slots=True)
class PlayoutDrained:
    """Everything written to the call's PlayoutBuffer has gone out."""

    key: int


@dataclass(frozen=True, slots=True)
class Dtmf:
    key: int
    digit: str
    method: str              # "rfc4733" | "info"


@dataclass(frozen=True, slots=True)
class TransferStatus:
    key: int
    code: int
    reason: str
    final: bool


@dataclass(frozen=True, slots=True)
class Registration:
    trunk: str
    code: int
    reason: str
    active: bool
    expires: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """An INVITE refused on the pj thread (allowlist, drain, malformed, pjsua's call limit)."""

    reason: str
    code: int
    source: str
    dialled: str
    caller: str
    call_id: str


@dataclass(frozen=True, slots=True)
class MediaStats:
    received: int
    sent: int
    underruns: int


@dataclass(frozen=True, slots=True)
class TransferRefused:
    """The far end asked to move a call (REFER, INVITE with Replaces) and was refused."""

    key: int
    kind: str                # "refer" | "replaces"
    target: str              # printable: bounded and escaped
    code: int
    source: str = ""


@dataclass(frozen=True, slots=True)
class FloodStats:
    """What the flood guard did since the last tick."""

    banned: tuple[str, ...]  # sources banned (IP addresses)
    dropped: int             # requests dropped unanswered
    rejected: int            # strangers' INVITEs refused with 403 before pjsua saw them
    tcp_closed: int = 0      # strangers' TCP connections over the caps, shut down


@dataclass(frozen=True, slots=True)
class MediaHijack:
    """RTP for a call arrived from an address the far end never signalled: the call was ended."""

    key: int
    source: str


Event = (IncomingCall | CallState | MediaReady | PlayoutDrained | Dtmf | TransferStatus | Registration
         | Rejected | MediaStats | TransferRefused | FloodStats
         | MediaHijack)
