"""The demo in a real browser: Debian's headless Chromium driven by Playwright uploads the bundled
example, waits for the report, sees the measurements and the three views, drags a slice slider
and the view changes, clicks the lesion in the table and the views go back to it. The page is saved as a screenshot (FM_APP_SCREENSHOT=path keeps a copy)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from fm.core.examples import example_paths
from fm.demo.page import DemoSettings, launch

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("FM_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def url():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no browser at {CHROMIUM}: run tools/browser-env (apt chromium), or leave it out: -m 'not browser'"
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(DemoSettings(), port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def test_a_visitor_uploads_the_example_reads_the_report_and_moves_a_slice(url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # an empty user-data dir: nothing from another session
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1800},
        )
        page = browser.new_page()
        page.goto(url)
        page.locator("input[type=file]").first.set_input_files([str(p) for p in example_paths()])
        page.get_by_label("Contrasts (optional, one per scan, e.g. t1c,flair)").fill("t1c,flair")
        page.get_by_role("button", name="Analyse the upload").click()
        expect(page.locator("#status")).to_contain_text("Impression", timeout=240_000)
        expect(page.locator("#measurements")).to_contain_text("lesion 1")
        expect(page.locator("#measurements")).to_contain_text("volume (mL)")
        for view in ("axial", "coronal", "sagittal"):
            expect(page.locator(f"#view-{view} img")).to_be_visible()
        expect(page.locator("#narrative")).to_contain_text("Faithfulness check")

        axial = page.locator("#view-axial img")
        before = axial.get_attribute("src")
        slice_number = page.locator("#slider-axial input[type=number]")
        at_lesion = slice_number.input_value()  # the views open through the largest lesion
        track = page.locator("#slider-axial input[type=range]").bounding_box()
        page.mouse.click(track["x"] + track["width"] * 0.25, track["y"] + track["height"] / 2)
        expect(axial).not_to_have_attribute("src", before, timeout=60_000)  # the view was redrawn
        assert slice_number.input_value() != at_lesion
        page.locator("#measurements").get_by_text("lesion 1").click()  # back to the lesion
        expect(slice_number).to_have_value(at_lesion, timeout=60_000)
        shot = tmp_path / "app.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("FM_APP_SCREENSHOT"):
        shutil.copy(shot, os.environ["FM_APP_SCREENSHOT"])
