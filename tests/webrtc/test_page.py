"""The call page in headless Chromium: the browser's fake microphone plays a spoken turn, the
page places a WHIP call to the booking agent and shows both sides' transcript live; a
screenshot of the page is kept with the test's files."""

from __future__ import annotations

import shutil
import time

import pytest

from gateway.media.audio import load_wav, save_wav, silence
from tests.support.gateway import GatewayProcess
from tests.support.speech import speech_wav
from tests.webrtc.test_whip import _plans

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="needs Debian's chromium and chromium-driver (scripts/setup --test)")


def _browser(audio_wav):  # noqa: ANN001, ANN202
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={audio_wav}%noloop", "--window-size=900,900",
                 "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def _transcript(driver) -> list[tuple[str, str]]:  # noqa: ANN001
    # One read in the page: a partial line is replaced while the recogniser works.
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#transcript li')].map(li => [li.className, li.innerText])")
    return [(cls, text) for cls, text in rows]


def test_the_call_page_places_a_call_and_shows_the_conversation(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    words = load_wav(speech_wav(tmp_path, "book", "I would like to book an appointment."))
    # Quiet through the greeting (about 11 s), the answer, then quiet while the agent replies.
    turn = tmp_path / "turn.wav"
    save_wav(turn, silence(13.0) + words + silence(20.0))
    with GatewayProcess(tmp_path, _plans(tmp_path)) as gw:
        driver = _browser(turn)
        try:
            driver.get(f"http://127.0.0.1:{gw.http_port}/")
            deadline = time.monotonic() + 10
            while not driver.find_elements(By.CSS_SELECTOR, "#number option") and time.monotonic() < deadline:
                time.sleep(0.1)
            Select(driver.find_element(By.ID, "number")).select_by_value("+15550100")
            driver.find_element(By.ID, "call").click()
            deadline = time.monotonic() + 60
            rows: list[tuple[str, str]] = []
            while time.monotonic() < deadline:
                rows = _transcript(driver)
                if any("agent" in cls and "name" in text.lower() for cls, text in rows):
                    break
                time.sleep(0.25)
            status = driver.find_element(By.ID, "status").text
            driver.save_screenshot(str(tmp_path / "call-page.png"))
            driver.find_element(By.ID, "hangup").click()
            ended = time.monotonic() + 5
            while "hung up" not in driver.find_element(By.ID, "status").text and time.monotonic() < ended:
                time.sleep(0.1)
        finally:
            driver.quit()
        record = gw.wait_records(1)[-1]
    assert any("agent" in cls and "Springfield Dental" in text for cls, text in rows), rows
    assert any("caller" in cls and "appointment" in text.lower() for cls, text in rows), rows
    assert any("agent" in cls and "name" in text.lower() for cls, text in rows), rows
    assert any("ms after you stopped speaking" in text for cls, text in rows), rows
    assert "in call" in status, status
    assert (tmp_path / "call-page.png").stat().st_size > 10_000
    assert record["transport"] == "webrtc" and record["outcome"] == "caller_hangup", record["outcome"]
    assert record["variables"]["intent"] == "book"
