"""The consent step on a live call: asked, answered by speech or keypad, logged in the audit trail
and the record, and the answer is a call variable the script branches on."""

from __future__ import annotations

from tests.support.agents import plans_dir
from tests.support.gateway import GatewayProcess
from tests.support.phones import call
from tests.support.speech import speech_wav

AGENT = """
name: consent
disclosure: false
steps:
  - consent: {topic: recording, ask: "May we record this call? Say yes or no, or press 1 or 2."}
  - branch: {variable: consent_recording, cases: {"no": [{say: "We will not record."}]}, default: [{say: "Thank you."}]}
  - hangup: true
"""


def test_consent_by_speech_and_by_keypad_is_logged_and_set(tmp_path):
    plans = plans_dir(tmp_path, {"consent": AGENT})
    yes = speech_wav(tmp_path, "yes", "Yes, that's fine.")
    with GatewayProcess(tmp_path, plans) as gw:
        spoken = call(gw.target, "+15550301", "--turn", str(yes), "--greeting-wait", "6",
                      "--hangup-after", "5", "--max-duration", "40", timeout=90)["calls"][0]
        keyed = call(gw.target, "+15550301", "--dtmf", "2@5", "--max-duration", "15", timeout=60)["calls"][0]
        records = gw.wait_records(2, timeout=20)
    assert spoken["status"] == 200 and keyed["status"] == 200
    by_speech, by_keypad = records[-2], records[-1]
    assert by_speech["variables"]["consent_recording"] == "yes", by_speech["transcript"]
    assert [(c["topic"], c["answer"], c["via"]) for c in by_speech["consents"]] == [("recording", "yes", "speech")]
    assert [(c["topic"], c["answer"], c["via"]) for c in by_keypad["consents"]] == [("recording", "no", "keypad")]
    assert any(t["text"] == "We will not record." for t in by_keypad["transcript"])
    for record, given in ((by_speech, "consent_given"), (by_keypad, "consent_refused")):
        kinds = [e["kind"] for e in record["audit"]]
        assert kinds.index("consent_asked") < kinds.index(given), kinds
        asked = next(e for e in record["audit"] if e["kind"] == "consent_asked")
        assert asked["data"]["question"] == "May we record this call? Say yes or no, or press 1 or 2."
