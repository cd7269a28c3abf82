"""Dialplan flows run on the same runner as agent scripts: their `say` steps speak through the
configured voice, not only the offline one."""

from __future__ import annotations

import pytest

from gateway.media.audio import dominant_frequency, load_wav
from tests.support.agents import serving
from tests.support.gateway import GatewayProcess
from tests.support.phones import call

FLOW = """
numbers: ["+15550401"]
flow:
  - say: "Welcome to the keypad line."
  - hangup: true
"""


def test_dialplan_say_speaks_with_the_configured_voice(tmp_path):
    pytest.importorskip("google.cloud.texttospeech_v1", reason="pip install 'gateway[cloud]'")
    from tests.fakes.google_tts_server import FakeGoogleTTS

    plans = tmp_path / "dialplans"
    plans.mkdir()
    (plans / "default.yaml").write_text("reject: 404\n")
    (plans / "keypad.yaml").write_text(FLOW)
    rec = tmp_path / "rec.wav"
    fake = FakeGoogleTTS(seconds_per_char=0.04)
    with serving(fake):
        extra = {"tts": "google", "provider_options": {"google": {"endpoint": fake.endpoint, "insecure": True}}}
        with GatewayProcess(tmp_path, plans, extra=extra) as gw:
            out = call(gw.target, "+15550401", "--record", str(rec), "--max-duration", "20")["calls"][0]
            record = gw.wait_records(1)[-1]
    assert out["status"] == 200 and record["outcome"] == "completed"
    assert fake.recorded.texts == ["Welcome to the keypad line."]
    # The caller heard the configured voice (the fake's 440 Hz tone), not the offline one.
    assert dominant_frequency(load_wav(rec)) == pytest.approx(440, abs=15)
