"""The `consent:` step: ask a yes/no question (recording, data use, ...), take the answer by speech
or keypad (1 yes, 2 no), set a call variable to yes / no / unanswered; the runner logs it in the
audit trail. With `recording: {consent: required}` in the dialplan, a `consent` step with
`topic: recording` answered yes is what starts the recording.

    - consent: {topic: recording, ask: "May we record this call for quality? Say yes or no, or press 1 or 2."}
    - branch: {variable: consent_recording, cases: {no: [...]}}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from gateway.config.schema import Strict, Text, Whole, between

_TOPIC = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
ANSWERS = ("yes", "no", "unanswered")


@dataclass(frozen=True, slots=True)
class Consent:
    topic: str
    ask: str
    variable: str
    timeout: float = 6.0
    attempts: int = 2


def _topic(text: str) -> str:
    if not _TOPIC.match(text):
        raise ValueError(f"a topic is a lower-case word like recording or data_use, not {text!r}")
    return text


class ConsentFile(Strict):
    """A yes/no question whose answer is logged: `{topic, ask, [variable], [timeout], [attempts]}`."""

    topic: Annotated[Text, AfterValidator(_topic)] = Field(description="what is consented to: recording, data_use, ...")
    ask: Text = Field(description="the question, spoken as written")
    variable: Annotated[Text, AfterValidator(lambda v: _topic(v.lower()))] = Field(
        None, description="the call variable set to yes, no or unanswered (default consent_<topic>)")
    timeout: between(float, above=0, at_most=60) = 6.0
    attempts: between(Whole, at_least=1, at_most=5) = 2

    def build(self) -> Consent:
        return Consent(self.topic, self.ask, self.variable or consent_variable(self.topic), self.timeout, self.attempts)


def consent_variable(value: Any) -> str:
    """The variable a consent step sets, from its topic (or its file mapping)."""
    if isinstance(value, dict):
        return str(value.get("variable") or consent_variable(str(value.get("topic", ""))))
    return f"consent_{value}"
