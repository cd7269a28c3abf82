"""Per-call report of the test softphone: plain data that outlives the call's pj objects,
and the JSON the softphone prints for it (caller and answerer views)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.sip.phone.conversation import CallerScript, MediaLog, Replier

__all__ = ["Leg"]

log = logging.getLogger("gateway.sip.phone.softphone")


@dataclass
class Leg:
    """Plain data about one call; never holds pj objects, so it outlives them safely."""

    index: int
    t0: float  # INVITE sent (call mode) or received (answer mode)
    record_path: str | None = None
    record_both_path: str | None = None
    status: int | None = None
    reason: str = ""
    answered_at: float | None = None
    disconnected_at: float | None = None
    disconnect_by: str | None = None
    disconnect_code: int | None = None
    hangup_requested: bool = False
    codec: str | None = None
    dtmf_sent: str = ""
    dtmf_received: str = ""
    frames_received: int = 0
    media: MediaLog | None = None  # both directions, frame-aligned (when kept)
    script: CallerScript[int] | None = None  # --turn: the caller's turn-taking (pure data)
    replier: Replier[int] | None = None  # --reply/--greeting: the reference far end
    timing: dict[str, Any] | None = None  # analyse_turns() once the call has ended
    rtp: dict[str, Any] | None = None  # last sample of the receive path's stats
    transfer: dict[str, Any] | None = None
    child: Leg | None = None  # call placed because of a REFER we accepted
    remote_uri: str = ""
    local_uri: str = ""
    request_uri: str = ""
    x_headers: dict[str, str] = field(default_factory=dict)
    events: list[list[Any]] = field(default_factory=list)

    def event(self, text: str) -> None:
        self.events.append([round(time.monotonic() - self.t0, 3), text])
        log.info("call %d: %s", self.index, text)

    def caller_json(self) -> dict[str, Any]:
        ans = self.answered_at
        out: dict[str, Any] = {
            "status": self.status,
            "reason": self.reason,
            "answered": ans is not None,
            "setup_ms": round((ans - self.t0) * 1000, 1) if ans is not None else None,
            "disconnect": None,
            "codec": self.codec,
            "dtmf_sent": self.dtmf_sent,
            "dtmf_received": self.dtmf_received,
            "record": self.record_path,
            "record_both": self.record_both_path,
            "frames_received": self.frames_received,
            "transfer": dict(self.transfer) if self.transfer else None,
            "media_clock": self.clock_json(),
            "rtp": self.rtp,
            "turns": self.timing["turns"] if self.timing else [],
            "segments": self.timing["segments"] if self.timing else None,
            "events": self.events,
        }
        if self.disconnected_at is not None:
            out["disconnect"] = {
                "by": self.disconnect_by,
                "code": self.disconnect_code,
                "after_s": round(self.disconnected_at - ans, 3) if ans is not None else None,
            }
        if self.child is not None and out["transfer"] is not None:
            out["transfer"]["new_call"] = self.child.caller_json()
        return out

    def answerer_json(self) -> dict[str, Any]:
        ans, end = self.answered_at, self.disconnected_at
        return {
            "from": self.remote_uri,
            "to": self.local_uri,
            "request_uri": self.request_uri,
            "x_headers": self.x_headers,
            "status": self.status,
            "answered": ans is not None,
            "duration_s": round(end - ans, 3) if ans is not None and end is not None else None,
            "disconnect_by": self.disconnect_by,
            "codec": self.codec,
            "dtmf": self.dtmf_received,
            "record": self.record_path,
            "frames_received": self.frames_received,
            "transfer": self.transfer,
            "media_clock": self.clock_json(),
            "rtp": self.rtp,
            "replies": [r.to_json() for r in self.replier.records] if self.replier else [],
            "events": self.events,
        }

    def clock_json(self) -> dict[str, Any] | None:
        """The call's media clock: frame k spans [k, k+1) x frame_ms from `t0_monotonic`
        (time.monotonic() of this process, i.e. the host's CLOCK_MONOTONIC)."""
        m = self.media
        if m is None:
            return None
        t0 = m.t0_monotonic
        return {
            "frame_ms": m.frame_ms,
            "frames": m.ticks,
            "t0_monotonic": round(t0, 6) if t0 is not None else None,
            "start_after_invite_s": round(t0 - self.t0, 3) if t0 is not None else None,
            "late_max_ms": round(m.late_max * 1000, 1),
            "vad": m.vad or None,
        }
