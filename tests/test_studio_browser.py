"""The studio page in a real browser (Debian's chromium and chromium-driver, installed by .ci/setup):
type a two-speaker script, see a script error where it is, render, play, render one turn again."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import served

from soundstorm.doors.server import create_app

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER) and not os.environ.get("CI"),
        reason="needs chromium and chromium-driver (apt; .ci/setup installs them, and CI fails without them)",
    ),
]


@pytest.fixture(scope="module")
def studio_url(tiny_bundle):


    from soundstorm.chain.synthesize import Synthesizer

    synth = Synthesizer.from_checkpoint(str(tiny_bundle), device="cpu")
    with served(create_app(synth)) as port:
        yield f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_write_render_play_and_render_one_turn_again(browser, studio_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 120)
    browser.get(studio_url)
    editor = browser.find_element(By.ID, "script")
    wait.until(lambda d: "turns" in d.find_element(By.ID, "status").text)  # the example was checked

    editor.clear()
    editor.send_keys("[S1] Good morning, how are you?\n[S2 fine")
    wait.until(lambda d: "line 2, column 1" in d.find_element(By.ID, "status").text)

    editor.clear()
    editor.send_keys("[A] Good morning, how are you?\n[B] Very well, thank you.")
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("2 turns"))
    pickers = browser.find_elements(By.CSS_SELECTOR, "#speakers select")
    assert [p.get_attribute("data-speaker") for p in pickers] == ["A", "B"]
    assert pickers[0].get_attribute("value") != pickers[1].get_attribute("value")  # two voices by default

    browser.find_element(By.ID, "render").click()
    wait.until(lambda d: d.find_element(By.ID, "result").is_displayed())
    mix = browser.find_element(By.ID, "mix")
    wait.until(lambda d: d.execute_script("return arguments[0].readyState >= 1", mix))
    seconds = float(mix.get_attribute("data-seconds"))
    duration = browser.execute_script("return arguments[0].duration", mix)
    assert seconds > 0.5 and abs(duration - seconds) < 0.02  # playable, and as long as the rendered mix
    rows = browser.find_elements(By.CSS_SELECTOR, "#turns tr")
    assert len(rows) == 2 and len(browser.find_elements(By.CSS_SELECTOR, "audio.turn-audio")) == 2
    first_turn = browser.find_element(By.CSS_SELECTOR, "#turns tr:nth-child(2) .text").text
    assert first_turn == "Very well, thank you."

    kept = "const t = current.turns[1], r = current.rate;" \
        "return Array.from(current.channels[0].slice(Math.round(t.start_s * r), Math.round(t.end_s * r)));"
    second_before = browser.execute_script(kept)
    browser.find_element(By.ID, "again-0").click()  # only turn 1 again, with another seed
    wait.until(lambda d: d.find_element(By.ID, "mix").get_attribute("data-renders") == "2")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#turns tr")) == 2
    assert browser.execute_script(kept) == second_before  # turn 2's samples kept as they were
    links = [a.text for a in browser.find_elements(By.CSS_SELECTOR, ".downloads a")]
    assert "Download the mix" in links and "Stem A" in links and "Subtitles (.srt)" in links
