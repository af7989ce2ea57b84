"""The HTML report in headless Chromium: it opens from a file with the network cut off, and its tables
and chart images render. A full-page screenshot is saved to ``test-artifacts/report.png``."""
from __future__ import annotations

from pathlib import Path

import pytest

import hl_notebook
from hl_notebook.pricing import clear_prices

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ROWS = [{"topic": t} for t in ("tea", "rain", "maps", "snow")]


def test_the_report_opens_offline_and_shows_its_tables_and_images(page, point, server, tmp_path):
    point(server)
    frame = hl_notebook.sweep("user: about {{topic}}", model=["a", "b", "c"], temperature=0, inputs=ROWS)
    frame = hl_notebook.score(frame, lambda row: len(row["output"]), name="chars")
    frame = hl_notebook.judge(frame, "user: {{output}} pass", name="judge", model="j")
    hl_notebook.set_price("a", prompt=2, generation=4)
    hl_notebook.set_price("b", prompt=1, generation=1)
    try:
        path = hl_notebook.report(hl_notebook.add_cost(frame), tmp_path / "report.html", title="Report UI check")
    finally:
        clear_prices()

    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.context.set_offline(True)  # viewing needs no network
    screenshot = ARTIFACTS / "report.png"
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.goto(path.as_uri(), wait_until="load")
        assert page.title() == "Report UI check"
        tables = page.locator("table")
        assert tables.count() == 3
        for index in range(3):
            assert tables.nth(index).is_visible() and tables.nth(index).locator("tbody tr").count() > 0
        images = page.locator("img")
        assert images.count() == 3  # mean score.chars, mean score.judge, total cost
        for index in range(images.count()):
            size = images.nth(index).evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
            assert size[0] and size[1] > 100 and size[2] > 50, size  # decoded, not a broken-image icon
            assert images.nth(index).is_visible()
        assert page.locator("#rows tbody tr").count() == len(frame)
        assert "c: about snow" in page.locator("#comparison").inner_text()
    finally:
        page.screenshot(path=str(screenshot), full_page=True)
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []
