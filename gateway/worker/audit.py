"""One call's audit trail on the loop: each step is redacted, chained (compliance/audit.py) and
handed at once to the journal, so a crash mid-call still leaves every step before it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from gateway.compliance.audit import AuditChain
from gateway.compliance.redact import KINDS, redact_value

Sink = Callable[[str, dict[str, Any]], None]
MAX_TEXT = 2000  # characters of one event's text: a model or a caller can produce any amount
# What a caller, the agent or a tool said is redacted; the CDR's numbers (dialplan, transfer
# target) are what the record is for, and stay.
CONTENT = frozenset({"text", "arguments", "question", "value", "values"})


class CallAudit:
    def __init__(self, call_id: str, sink: Sink | None = None, clock: Callable[[], float] = time.time) -> None:
        self.call_id = call_id
        self.sink = sink
        self.kinds: tuple[str, ...] = KINDS
        self.chain = AuditChain()
        self.tools: list[dict[str, Any]] = []
        self.consents: list[dict[str, Any]] = []
        self._clock = clock

    def log(self, kind: str, **data: Any) -> dict[str, Any]:
        """Append one event (its strings redacted and bounded); returns it as stored."""
        clean = {k: redact_value(_bounded(v), self.kinds) if k in CONTENT else _bounded(v) for k, v in data.items()}
        event = self.chain.append(kind, clean, self._clock()).as_dict()
        if self.sink is not None:
            self.sink(self.call_id, event)
        return event

    def tool(self, kind: str, name: str, arguments: str | dict, status: str, duration_ms: float) -> None:
        """A tool call or webhook: name, arguments (redacted here; the tool got them as they were),
        status and duration. Secrets never reach this: they live in headers, not arguments."""
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except ValueError:
                arguments = {"text": arguments}
        entry = {"kind": kind, "name": name, "arguments": redact_value(arguments, self.kinds),
                 "status": status, "duration_ms": round(duration_ms, 1), "at": round(self._clock(), 3)}
        self.tools.append(entry)
        self.log("tool_call" if kind == "tool" else "webhook", name=name, arguments=entry["arguments"],
                 status=status, duration_ms=entry["duration_ms"])

    def consent(self, topic: str, question: str, answer: str, via: str) -> None:
        entry = {"topic": topic, "question": question, "answer": answer, "via": via, "at": round(self._clock(), 3)}
        self.consents.append(entry)
        self.log("consent_" + ("given" if answer == "yes" else "refused" if answer == "no" else "unanswered"),
                 topic=topic, answer=answer, via=via)


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT] + "…"
    return value
