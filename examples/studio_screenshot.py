"""The README's studio picture: `python examples/studio_screenshot.py [-o examples/studio.png]`.

Serves the studio with the shipped bundle on a free loopback port, opens it in headless chromium
(Debian's chromium and chromium-driver, as the browser test), turns "check" on, renders the page's own
example script with its default voices and saves the window once the result is shown.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import served  # noqa: E402  (the tests' uvicorn-in-a-thread helper)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("examples/studio.png"))
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from soundstorm.chain.synthesize import Synthesizer
    from soundstorm.doors.server import create_app

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000"):
        options.add_argument(flag)
    synth = Synthesizer.from_checkpoint("tiny", device="cpu")
    with served(create_app(synth)) as port:
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            wait = WebDriverWait(driver, 300)
            driver.get(f"http://127.0.0.1:{port}/")
            wait.until(lambda d: "turns" in d.find_element(By.ID, "status").text)
            driver.find_element(By.ID, "check").click()
            driver.find_element(By.ID, "render").click()
            wait.until(lambda d: d.find_element(By.ID, "result").is_displayed())
            driver.save_screenshot(str(args.output))
        finally:
            driver.quit()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
