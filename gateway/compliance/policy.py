"""What a dialplan asks of its calls' records: which PII kinds to redact, how long each part is
kept, whether calls are recorded (and whether only after the caller's consent)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.compliance.redact import KINDS
from gateway.compliance.retention import Retention


@dataclass(frozen=True, slots=True)
class RecordPolicy:
    redact: tuple[str, ...] = KINDS      # () only when the dialplan says `redact: off`
    retention: Retention = Retention()
    recording: bool = False
    recording_consent: bool = False      # recording: {consent: required}

    def as_dict(self) -> dict[str, object]:
        return {"redact": list(self.redact), "retention": self.retention.as_dict(),
                "recording": self.recording, "recording_consent": self.recording_consent}
