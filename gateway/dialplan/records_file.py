"""A dialplan's record keys, as written: `redact`, `retention`, `recording`.

    redact: [card, ssn, phone, email, dob]    # the default is all of them; `redact: off` turns it off
    retention: {transcripts: 30d, recordings: 7d, audit: 365d}   # each kept for good when left out
    recording: {consent: required}            # or `recording: on`; the default is off
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import AfterValidator, BeforeValidator, Field

from gateway.compliance.policy import RecordPolicy
from gateway.compliance.redact import KINDS
from gateway.compliance.retention import Retention, parse_duration
from gateway.config.schema import Strict, Text, listed


def _kind(text: str) -> str:
    kind = text.strip().lower()
    if kind not in KINDS:
        raise ValueError(f"no PII kind {text!r}: one of {', '.join(KINDS)} (or `redact: off`)")
    return kind


def _off(value: Any) -> Any:
    # YAML reads a bare `off` as False: that is the explicit "redact nothing".
    if value is False or (isinstance(value, str) and value.strip().lower() == "off"):
        return []
    return value


def _duration(text: Any) -> float:
    return parse_duration(text)


Duration = Annotated[Union[Text, float], AfterValidator(_duration)]


class RetentionFile(Strict):
    """How long each part of a call's record is kept after the call ends (30d, 12h, 90m, 1y)."""

    transcripts: Duration = Field(None, description="turns, tool arguments, gathered values")
    recordings: Duration = Field(None, description="the call's audio file")
    audit: Duration = Field(None, description="the whole call, audit trail included")


def _recording(value: Any) -> Any:
    if value is True or (isinstance(value, str) and value.strip().lower() == "on"):
        return {}
    if value is False or (isinstance(value, str) and value.strip().lower() == "off"):
        return {"enabled": False}
    return value


class RecordingFile(Strict):
    """Record the call (stereo WAV: caller left, agent right; PII toned out)."""

    enabled: bool = True
    consent: Annotated[Text, AfterValidator(lambda v: _choice(v, ("required", "not_required")))] = "not_required"


def _choice(value: str, choices: tuple[str, ...]) -> str:
    if value.lower() not in choices:
        raise ValueError(f"one of {', '.join(choices)}, not {value!r}")
    return value.lower()


RedactKinds = Annotated[listed(Annotated[Text, AfterValidator(_kind)]), BeforeValidator(_off)]
Recording = Annotated[RecordingFile, BeforeValidator(_recording)]


def record_policy(redact: list[str] | None, retention: RetentionFile | None,
                  recording: RecordingFile | None) -> RecordPolicy:
    r, rec = retention, recording
    return RecordPolicy(
        redact=KINDS if redact is None else tuple(dict.fromkeys(redact)),
        retention=Retention() if r is None else Retention(r.transcripts, r.recordings, r.audit),
        recording=rec is not None and rec.enabled,
        recording_consent=rec is not None and rec.enabled and rec.consent == "required")
