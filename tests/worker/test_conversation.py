"""Spoken conversations over real SIP: the caller speaks (offline voice), the gateway listens
(offline recogniser), answers, can be interrupted, falls back, and uses tools."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.media.audio import dominant_frequency, load_wav, rms_dbfs, save_wav, tone
from gateway.speech.vendors.local import WhisperSTT
from tests.support.agents import AGENT_BARGE, plans_dir, serving, tool_agent
from tests.support.gateway import REPO, GatewayProcess
from tests.support.phones import Answerer, call
from tests.support.speech import speech_wav


def heard_text(pcm: bytes) -> str:
    return WhisperSTT().transcribe(pcm).text.lower()


def test_booking_agent_holds_a_spoken_conversation(tmp_path):
    plans = tmp_path / "dialplans"
    plans.mkdir()
    (plans / "+15550100.yaml").write_text((REPO / "dialplans" / "+15550100.yaml").read_text())
    (plans / "default.yaml").write_text("reject: 404\n")
    import shutil
    shutil.copytree(REPO / "dialplans" / "agents", plans / "agents")
    turns = [speech_wav(tmp_path, f"t{i}", text) for i, text in enumerate([
        "I would like to book an appointment.",
        "My name is John Smith.",
        "Yes, that's right.",
        "Friday, please.",
        "Two pm.",
        "Yes.",  # in case the recogniser was unsure of the time and reads it back
    ])]
    rec = tmp_path / "rec.wav"
    with GatewayProcess(tmp_path, plans) as gw:
        args = [a for t in turns for a in ("--turn", str(t))]
        out = call(gw.target, "+15550100", *args, "--record", str(rec), "--max-duration", "90",
                   "--hangup-after", "8", timeout=120)["calls"][0]
        assert out["status"] == 200
        record = gw.wait_records(1)[-1]
    assert record["variables"]["intent"] == "book", record["transcript"]
    assert "john" in record["variables"]["caller_name"].lower()
    assert record["variables"]["day"] == "friday"
    assert record["variables"]["time"] == "2 pm"
    assert record["outcome"] == "completed"
    assert len(record["turn_latencies_ms"]) >= 4
    # What the caller heard last is recognised back: the booking confirmation.
    tail = load_wav(rec)[-8000 * 2 * 14:]
    heard = heard_text(tail)
    assert "friday" in heard and "reminder" in heard, heard


def test_barge_in_silences_the_agent_and_becomes_the_answer(tmp_path):
    plans = plans_dir(tmp_path, {"barge": AGENT_BARGE})
    turn = speech_wav(tmp_path, "name", "My name is Alice.")
    with GatewayProcess(tmp_path, plans) as gw:
        out = call(gw.target, "+15550301", "--turn", str(turn), "--barge-in-ms", "1500",
                   "--greeting-wait", "5", "--hangup-after", "4", "--max-duration", "40")["calls"][0]
        record = gw.wait_records(1)[-1]
        barge_ins = gw.metric("gateway_barge_ins_total")
    assert out["status"] == 200
    stop_ms = out["turns"][0]["barge_in_stop_ms"]
    assert stop_ms is not None and stop_ms <= 100, out["turns"]
    assert barge_ins >= 1
    assert "alice" in record["variables"]["answer"].lower(), record["transcript"]


AGENT_SILENCE = """
name: silence
disclosure: false
fallback: {max_no_input: 1, escalate_to: operator}
steps:
  - gather: {name: answer, prompt: "Please say something.", timeout: 2}
  - hangup: true
"""


def test_silence_reprompts_then_escalates_to_a_person(tmp_path):
    plans = plans_dir(tmp_path, {"silence": AGENT_SILENCE})
    with Answerer(tmp_path) as operator:
        with GatewayProcess(tmp_path, plans, env={"GATEWAY_OPERATOR_URI": operator.uri}) as gw:
            out = call(gw.target, "+15550301", "--follow-refer", "--max-duration", "40")["calls"][0]
            record = gw.wait_records(1)[-1]
    assert out["transfer"] is not None and out["transfer"]["new_call_status"] == 200
    said = [t["text"] for t in record["transcript"] if t["who"] == "agent"]
    assert any("didn't hear" in s for s in said), said
    assert record["outcome"] == "transferred"


AGENT_CLIP = """
name: clip
disclosure: false
clips:
  hello: {{text: "Hello from a recording.", file: {clip}}}
steps:
  - say: "Hello from a recording."
  - hangup: true
"""


def test_recorded_clip_replaces_synthesis(tmp_path):
    clip = tmp_path / "hello.wav"
    save_wav(clip, tone(1500, 1.5))
    plans = plans_dir(tmp_path, {"clip": AGENT_CLIP.format(clip=clip)})
    rec = tmp_path / "rec.wav"
    with GatewayProcess(tmp_path, plans) as gw:
        out = call(gw.target, "+15550301", "--record", str(rec), "--max-duration", "10")["calls"][0]
    assert out["status"] == 200
    loud = [w for w in (load_wav(rec)[i:i + 1600] for i in range(0, len(load_wav(rec)) - 1600, 1600))
            if rms_dbfs(w) > -30]
    assert sum(abs(dominant_frequency(w) - 1500) < 15 for w in loud) >= 8


class _Webhook(BaseHTTPRequestHandler):
    calls: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Webhook.calls.append(body)
        answer = json.dumps({"free_slot": "three pm"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass




def test_llm_tool_call_to_a_webhook_changes_the_answer(tmp_path):
    from tests.fakes.openai_server import FakeOpenAI, Reply, ScriptedToolCall

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake = FakeOpenAI([
        Reply(tool_calls=[ScriptedToolCall("check_slot", '{"day": "tuesday"}')]),
        Reply(text_pieces=["We have a free slot ", "at three pm on Tuesday."]),
    ])
    try:
        with serving(fake):
            plans = plans_dir(tmp_path, {"llm": tool_agent("llm", server.server_address[1])})
            turn = speech_wav(tmp_path, "ask", "Is there anything free on Tuesday?")
            extra = {"llm": {"provider": "openai", "base_url": f"http://127.0.0.1:{fake.port}/v1",
                             "model": "test"}}
            with GatewayProcess(tmp_path, plans, extra=extra) as gw:
                out = call(gw.target, "+15550301", "--turn", str(turn), "--hangup-after", "6",
                           "--max-duration", "40")["calls"][0]
                record = gw.wait_records(1)[-1]
    finally:
        server.shutdown()
    assert out["status"] == 200
    assert _Webhook.calls == [{"day": "tuesday"}]
    said = " ".join(t["text"] for t in record["transcript"] if t["who"] == "agent")
    assert "three pm" in said
    # The model saw the caller's words and the webhook's answer.
    second = fake.requests[1].body if hasattr(fake.requests[1], "body") else None
    assert second is None or "free_slot" in json.dumps(second)


AGENT_KEYS = """
name: keys
disclosure: false
steps:
  - say: "How can I help?"
  - llm:
      instructions: "You press keys for the caller."
      tools: [send_dtmf]
      max_turns: 1
  - hangup: true
"""


def test_llm_send_dtmf_tool_presses_keys_on_the_call(tmp_path):
    from tests.fakes.openai_server import FakeOpenAI, Reply, ScriptedToolCall

    fake = FakeOpenAI([
        Reply(tool_calls=[ScriptedToolCall("send_dtmf", '{"digits": "x"}'),
                          ScriptedToolCall("send_dtmf", '{"digits": "42#"}')]),
        Reply(text_pieces=["I have pressed the keys."]),
    ])
    with serving(fake):
        plans = plans_dir(tmp_path, {"keys": AGENT_KEYS})
        turn = speech_wav(tmp_path, "ask", "Please press four two and hash.")
        extra = {"llm": {"provider": "openai", "base_url": f"http://127.0.0.1:{fake.port}/v1",
                         "model": "test"}}
        with GatewayProcess(tmp_path, plans, extra=extra) as gw:
            out = call(gw.target, "+15550301", "--turn", str(turn), "--hangup-after", "6",
                       "--max-duration", "40")["calls"][0]
            record = gw.wait_records(1)[-1]
    assert out["status"] == 200
    assert out["dtmf_received"] == "42#", out
    # Both results went back to the model: the refusal of "x", then what was sent and how.
    results = [m["content"] for m in fake.requests[1].body["messages"] if m["role"] == "tool"]
    assert '"ok": false' in results[0] and "keypad digits" in results[0], results
    assert json.loads(results[1]) == {"ok": True, "sent": "42#", "method": "rfc4733"}
    said = " ".join(t["text"] for t in record["transcript"] if t["who"] == "agent")
    assert "pressed the keys" in said


@pytest.mark.parametrize("_", [0])
def test_recogniser_failure_falls_back_to_the_offline_engine(tmp_path, _):
    from tests.fakes.deepgram_server import FakeDeepgram

    fake = FakeDeepgram(drop_after_bytes=8000, api_key="k")
    with serving(fake):
        plans = plans_dir(tmp_path, {"fallback": AGENT_BARGE.replace("name: barge", "name: fallback")})
        turn = speech_wav(tmp_path, "name", "My name is Alice.")
        extra = {"stt": ["deepgram", "local"],
                 "provider_options": {"deepgram": {"url": fake.url, "api_key_env": "FAKE_DG_KEY"}}}
        with GatewayProcess(tmp_path, plans, extra=extra, env={"FAKE_DG_KEY": "k"}) as gw:
            out = call(gw.target, "+15550301", "--turn", str(turn), "--greeting-wait", "5",
                       "--hangup-after", "4", "--max-duration", "60")["calls"][0]
            record = gw.wait_records(1)[-1]
            errors = gw.metric("gateway_provider_errors_total", provider="deepgram")
    assert out["status"] == 200
    assert errors >= 1
    assert "alice" in record["variables"].get("answer", "").lower(), record["transcript"]


class _Context(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        _Context.seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        answer = json.dumps({"customer": "Ada", "not_declared": "ignored"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


AGENT_CONTEXT = """
name: context
disclosure: "This is an automated assistant."
context_webhook: {{url: "http://127.0.0.1:{port}/context", timeout: 2}}
webhooks: {{allow: [127.0.0.1/32]}}
variables: {{customer: "there"}}
steps:
  - say: "Hello {{customer}}."
  - hangup: true
"""


def test_caller_context_is_fetched_at_call_start(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Context)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        plans = plans_dir(tmp_path, {"context": AGENT_CONTEXT.format(port=server.server_address[1])})
        with GatewayProcess(tmp_path, plans) as gw:
            out = call(gw.target, "+15550301", "--max-duration", "15")["calls"][0]
            record = gw.wait_records(1)[-1]
    finally:
        server.shutdown()
    assert out["status"] == 200
    assert _Context.seen == [{"caller": "softphone", "called": "+15550301"}]
    said = [t["text"] for t in record["transcript"] if t["who"] == "agent"]
    assert "Hello Ada." in said, said
    assert "not_declared" not in record["variables"]


AGENT_GREETING = """
name: greeting
disclosure: false
steps:
  - say: "Thank you for calling the test line."
  - hangup: true
"""


def test_cloud_voice_speaks_and_a_repeated_phrase_comes_from_its_cache(tmp_path):
    pytest.importorskip("google.cloud.texttospeech_v1", reason="pip install 'gateway[cloud]'")
    from tests.fakes.google_tts_server import FakeGoogleTTS

    fake = FakeGoogleTTS(seconds_per_char=0.04)
    with serving(fake):
        plans = plans_dir(tmp_path, {"greeting": AGENT_GREETING})
        extra = {"tts": "google", "provider_options": {"google": {"endpoint": fake.endpoint, "insecure": True}}}
        with GatewayProcess(tmp_path, plans, extra=extra) as gw:
            outs = [call(gw.target, "+15550301", "--record", str(tmp_path / f"r{i}.wav"),
                         "--max-duration", "20")["calls"][0] for i in range(3)]
            gw.wait_records(3)
    assert [o["status"] for o in outs] == [200, 200, 200]
    # Synthesised on the first two calls (the second stores it), read from disk on the third.
    assert fake.recorded.texts == ["Thank you for calling the test line."] * 2
    for i in range(3):  # every caller heard the voice: the fake's 440 Hz tone
        assert dominant_frequency(load_wav(tmp_path / f"r{i}.wav")) == pytest.approx(440, abs=15)
