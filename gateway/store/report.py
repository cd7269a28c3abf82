"""What `gateway calls` prints: a list of calls, one call's timeline, exports (JSON lines, CSV)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

LIST_COLUMNS = ("started", "call_id", "caller", "dialled", "dialplan", "outcome", "duration_s")
CSV_COLUMNS = ("call_id", "started", "answered", "ended", "duration_s", "caller", "dialled", "source", "trunk",
               "dialplan", "outcome", "end_code", "transfer_target", "setup_ms", "barge_ins", "turns", "tools",
               "consents", "recording", "audit_count", "purged")


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def duration(call: Mapping[str, Any]) -> float | None:
    if call.get("ended") is None or call.get("started") is None:
        return None
    return round(call["ended"] - call["started"], 1)


def table(calls: Iterable[Mapping[str, Any]]) -> str:
    rows = [[when(c.get("started")), str(c.get("call_id", ""))[:36], c.get("caller") or "", c.get("dialled") or "",
             c.get("dialplan") or "", c.get("outcome") or "", "-" if duration(c) is None else f"{duration(c):.1f}"]
            for c in calls]
    head = [c.replace("_s", " s") for c in LIST_COLUMNS]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    return "\n".join(lines) + f"\n{len(rows)} calls"


def _quoted(text: Any, limit: int = 100) -> str:
    text = "" if text is None else str(text)
    return json.dumps(text if len(text) <= limit else text[:limit] + "…", ensure_ascii=False)


def _event_line(event: Mapping[str, Any]) -> str:
    kind, d = event["kind"], event.get("data")
    if d is None:
        return f"{kind} (content purged)"
    if kind in ("caller_turn", "agent_turn", "disclosure"):
        who = {"caller_turn": "caller", "agent_turn": "agent", "disclosure": "disclosure"}[kind]
        conf = f" ({d['confidence']:.2f})" if d.get("confidence") is not None else ""
        return f"{who:<10} {_quoted(d.get('text'))}{conf}"
    if kind in ("tool_call", "webhook"):
        return f"{kind:<10} {d.get('name')}({json.dumps(d.get('arguments'), ensure_ascii=False)[:80]}) " \
               f"{d.get('status')} {d.get('duration_ms')} ms"
    if kind.startswith("consent_"):
        return f"{kind:<10} {d.get('topic')}: {d.get('answer')} (by {d.get('via')})"
    if kind == "purged":
        return f"purged     {d.get('what')} (retention {d.get('retention_s', 0) / 86400:g} d)"
    extra = " ".join(f"{k}={v}" for k, v in d.items() if v not in (None, "", {}, []))
    return f"{kind:<10} {extra}".rstrip()


def show(call: Mapping[str, Any]) -> str:
    start = call.get("started") or 0.0
    transfer = call.get("transfer") or {}
    answered = "-" if call.get("answered") is None else f"+{call['answered'] - start:.2f} s"
    lasted = "-" if duration(call) is None else duration(call)
    lines = [
        f"call {call['call_id']}",
        f"  from {call.get('caller')} to {call.get('dialled')} (trunk {call.get('trunk')}, source "
        f"{call.get('source')}), dialplan {call.get('dialplan') or '-'}",
        f"  started {when(call.get('started'))} UTC, answered {answered}, lasted {lasted} s, "
        f"setup {call.get('setup_ms') or '-'} ms",
        f"  outcome {call.get('outcome')} (SIP {call.get('end_code')})"
        + (f", transfer to {transfer.get('target')}: {transfer.get('code')} {transfer.get('reason')}" if transfer else ""),
    ]
    if call.get("recording"):
        lines.append(f"  recording {call['recording']}")
    if call.get("purged"):
        lines.append(f"  purged by retention: {', '.join(call['purged'])}")
    latencies = call.get("turn_latencies_ms") or []
    if latencies:
        lines.append(f"  turn latency (end of speech → first agent audio): {', '.join(f'{v:.0f}' for v in latencies)} ms")
    for stage in call.get("turn_stages") or []:
        lines.append("    " + ", ".join(f"{k} {v}" for k, v in stage.items()))
    if call.get("variables"):
        lines.append(f"  values: {json.dumps(call['variables'], ensure_ascii=False)}")
    lines.append(f"  audit trail ({len(call.get('audit') or [])} events, chained):")
    for event in call.get("audit") or []:
        lines.append(f"  {event['seq']:>3}  +{event['at'] - start:7.2f} s  {_event_line(event)}")
    return "\n".join(lines)


def jsonl(calls: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(c, ensure_ascii=False, default=str) + "\n" for c in calls)


def csv_text(calls: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for c in calls:
        writer.writerow({**c, "duration_s": duration(c), "transfer_target": (c.get("transfer") or {}).get("target"),
                         "turns": len(c.get("transcript") or ()), "tools": len(c.get("tools") or ()),
                         "consents": ";".join(f"{x.get('topic')}={x.get('answer')}" for x in c.get("consents") or ()),
                         "purged": ";".join(c.get("purged") or ())})
    return out.getvalue()
