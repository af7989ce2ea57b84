"""The chat panel in a real JupyterLab page: cells run by keyboard, controls edited and Run clicked by hand.

Why: the widget tests drive ``ChatPanel`` from Python; this one checks what a user sees and does —
the panel renders in Lab, typed text reaches the kernel, the Run button runs the sweep and the
results table appears inside the panel. The kernel uses the embedded server with the mock provider,
whose reply starts with ``"<model>: <last user text>"``. A full-page screenshot is saved to
``test-artifacts/panel_ui.png`` (also when the test fails).
"""
from __future__ import annotations

import re

import pytest

from conftest import ARTIFACTS  # tests/ui/conftest.py (pytest puts this folder first on sys.path)

pytestmark = pytest.mark.browser

KERNEL_TIMEOUT_MS = 90_000  # kernel start plus the first import of hl_notebook: 10+ s on 2 cores
RUN_TIMEOUT_MS = 60_000
MODEL = "ui-typed-model"
CITIES = ["Lisbon", "Osaka", "Quito"]


def test_panel_runs_a_sweep_typed_in_the_browser(lab, page):
    from playwright.sync_api import expect

    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    screenshot = ARTIFACTS / "panel_ui.png"
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.goto(f"{lab.url}/lab/tree/panel.ipynb?reset", wait_until="domcontentloaded")
        notebook = page.locator(".jp-NotebookPanel:visible")
        expect(notebook.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=KERNEL_TIMEOUT_MS)
        # the kernel must be idle before the first Shift+Enter, or the execute request can be lost
        expect(notebook.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
            "data-status", "idle", timeout=KERNEL_TIMEOUT_MS)

        # run cells 1-4 (markdown, %load_ext, cities = ..., panel) by keyboard; stop before the cell
        # that drives the panel from code, so every row below comes from the browser
        cells = notebook.locator(".jp-Notebook .jp-Cell")
        panel_cell = cells.filter(has_text="hl_notebook.panel()")
        expect(panel_cell).to_have_count(1)
        cells.nth(1).locator(".jp-InputArea-editor").click()
        for _ in range(3):
            page.keyboard.press("Shift+Enter")
        expect(panel_cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"), timeout=KERNEL_TIMEOUT_MS)

        panel = panel_cell.locator(".jp-OutputArea-output .widget-vbox").first
        run = panel.locator(".widget-button", has_text=re.compile(r"^\s*Run\s*$"))
        expect(run).to_be_visible(timeout=RUN_TIMEOUT_MS)
        expect(run).to_be_enabled()
        expect(panel.locator("table.hl-results")).to_have_count(0)

        # edit three controls by hand: the model name, the messages and the inputs variable
        model = panel.locator(".widget-text", has=page.locator("label", has_text=re.compile(r"^Model$"))).locator("input")
        expect(model).to_have_value("demo-model")
        model.fill(MODEL)
        messages = panel.locator(".widget-textarea", has=page.locator("label", has_text=re.compile(r"^Messages$")))
        messages.locator("textarea").fill("system: Be brief.\nuser: One fact about {{city}}.")
        inputs = panel.locator(".widget-text", has=page.locator("label", has_text=re.compile(r"^Inputs$")))
        inputs.locator("input").fill("cities")
        run.click()

        table = panel.locator("table.hl-results")
        rows = table.locator("tbody tr")
        expect(rows).to_have_count(len(CITIES), timeout=RUN_TIMEOUT_MS)
        expect(run).to_be_enabled(timeout=RUN_TIMEOUT_MS)  # re-enabled once the run has ended
        headers = [h.strip() for h in table.locator("thead th").all_inner_texts()]
        for column in ("model", "inputs", "output", "error"):
            assert column in headers, headers
        shown = [dict(zip(headers, (c.strip() for c in row.locator("td").all_inner_texts())))
                 for row in rows.all()]
        assert sorted(r["inputs"] for r in shown) == CITIES, shown
        for row in shown:  # the mock replies "<model>: <last user text>" (+ " ~ words" when temperature > 0)
            assert row["output"].startswith(f"{MODEL}: One fact about {row['inputs']}."), row
            assert row["model"] == MODEL, row
        assert all(r["error"] == "" for r in shown), [r["error"] for r in shown]
        status = panel.locator(".widget-html", has_text=re.compile(r"\bcalls?\b")).first
        expect(status).to_be_visible()
        assert "#b00020" not in (status.inner_html() or ""), f"the status line shows an error: {status.inner_text()}"
    except Exception as exc:
        raise AssertionError(f"{exc}\n--- browser errors:\n" + "\n".join(console[-20:])) from exc
    finally:
        page.screenshot(path=str(screenshot), full_page=True)
