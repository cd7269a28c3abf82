"""One worker holds many conversational calls at once: no 4-call wall with the gateway's pjsua2 build.

48 calls through ONE `gateway run` worker (zero-latency fake providers, tests/bench/instant.py), each
caller speaking turns that the agent answers; every call is answered, every turn gets its
reply, and the worker's own gauge shows all 48 up together. The callers are pjsua2 softphones of the same
build (12 calls per process). Calls per core are measured by tests/bench/bench_capacity.py.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.bench.bench_turns import INSTANT, crisp
from tests.support.agents import plans_dir
from tests.support.gateway import GatewayProcess
from tests.support.phones import result, start_call
from tests.support.speech import speech_wav

pj = pytest.importorskip("pjsua2")
pytestmark = pytest.mark.skipif(pj.UaConfig().maxCalls < 48, reason="the stock pjsua2 wheel holds 4 calls")

CALLS, PER_PHONE, TURNS = 48, 12, 3
AGENT = """
name: capacity
disclosure: false
end_of_turn_ms: 500
steps:
""" + "".join(f'  - gather: {{name: a{i}, prompt: "Thank you. Tell me more."}}\n' for i in range(8))


@pytest.mark.timeout(240)
def test_one_worker_holds_48_conversational_calls(tmp_path: Path) -> None:
    plans = plans_dir(tmp_path, {"capacity": AGENT})
    turn = crisp(speech_wav(tmp_path, "turn", "Certainly."))
    extra = {**INSTANT, "calls_per_worker": CALLS}
    with GatewayProcess(tmp_path, plans, extra=extra) as gw:
        peak = [0.0]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], gw.metric("gateway_calls_active"))
                except OSError:
                    pass
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        args = ["--calls", str(PER_PHONE), "--max-duration", "90"]
        args += [a for _ in range(TURNS) for a in ("--turn", str(turn))]
        phones = [start_call(gw.target, "+15550301", *args) for _ in range(CALLS // PER_PHONE)]
        calls = [c for phone in phones for c in result(phone, 180)["calls"]]
        done.set()
        watcher.join(5)
        records = gw.wait_records(CALLS, 20)
    (tmp_path / "calls.json").write_text(json.dumps(calls, indent=1))  # kept for a failure's evidence
    assert len(calls) == CALLS
    failed = [(c["status"], c["reason"]) for c in calls if not c["answered"] or c["status"] != 200]
    assert failed == []
    assert all(len(c["turns"]) == TURNS for c in calls), [len(c["turns"]) for c in calls]
    latencies = [[t["latency_ms"] for t in c["turns"]] for c in calls]
    assert all(None not in row for row in latencies), latencies
    assert peak[0] == CALLS, f"at most {peak[0]} calls were up at once"
    assert len(records) == CALLS
    assert {r.get("outcome") for r in records} == {"caller_hangup"}
