"""The chat panel in a real JupyterLab page: cells run by keyboard, controls edited and Run clicked by hand.

Why: the widget tests drive ``ChatPanel`` from Python; this one checks what a user sees and does —
the panel renders in Lab, typed text reaches the kernel, the Run button runs the sweep and the
results table appears inside the panel. The kernel uses the embedded server with the mock provider,
whose reply starts with ``"<model>: <last user text>"``. A full-page screenshot is saved to
``test-artifacts/panel_ui.png`` (also when the test fails).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

# not imported from conftest: tests/conftest.py is also importable as "conftest" (pythonpath = tests)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

KERNEL_TIMEOUT_MS = 90_000  # kernel start plus the first import of hl_notebook: 10+ s on 2 cores
RUN_TIMEOUT_MS = 60_000
MODEL = "ui-typed-model"
CITIES = ["Lisbon", "Osaka", "Quito"]
KERNEL_IDLE = re.compile(r"^(?!No Kernel\b).+ \| Idle$")  # status bar: "Python 3 (ipykernel) | Idle"


def test_panel_runs_a_sweep_typed_in_the_browser(page, lab):  # page first: no browser, no Lab started
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
        # a kernel must be attached and idle before the first Shift+Enter. Not the toolbar's execution
        # indicator: it reads "idle" while the status bar still says "No Kernel | Initializing", and a
        # cell run then opens a "Select Kernel" dialog instead of executing.
        expect(page.locator(".jp-StatusBar-TextItem", has_text=KERNEL_IDLE)).to_have_count(1, timeout=KERNEL_TIMEOUT_MS)

        # run the code cells up to the panel (%load_ext, cities = ..., panel) by keyboard, one at a time;
        # stop before the cell that drives the panel from code, so every row below comes from the browser
        cells = notebook.locator(".jp-Notebook .jp-Cell")
        code_cells = notebook.locator(".jp-Notebook .jp-CodeCell")
        panel_cell = cells.filter(has_text="hl_notebook.panel()")
        expect(panel_cell).to_have_count(1)
        code_cells.first.locator(".jp-InputArea-editor").click()
        for index in range(3):
            page.keyboard.press("Shift+Enter")
            expect(code_cells.nth(index).locator(".jp-InputPrompt")).to_have_text(
                re.compile(r"\[\d+\]"), timeout=KERNEL_TIMEOUT_MS)
        expect(panel_cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"))

        panel = panel_cell.locator(".jp-OutputArea-output .widget-vbox").first
        run = panel.locator(".widget-button", has_text=re.compile(r"^\s*Run\s*$"))
        expect(run).to_be_visible(timeout=RUN_TIMEOUT_MS)
        expect(run).to_be_enabled()
        expect(panel.locator("table.hl-results")).to_have_count(0)

        # edit three controls by hand: the model name, the messages and the inputs variable
        def control(kind: str, label: str):
            """The input of the panel's ``kind`` widget whose description label reads ``label``."""
            label_element = page.locator("label.widget-label", has_text=re.compile(f"^{label}$"))
            widget = panel.locator(f".widget-{kind}", has=label_element)
            expect(widget).to_have_count(1)
            return widget.locator("textarea" if kind == "textarea" else "input")

        model = control("text", "Model")
        expect(model).to_have_value("demo-model")
        model.fill(MODEL)
        control("textarea", "Messages").fill("system: Be brief.\nuser: One fact about {{city}}.")
        control("text", "Inputs").fill("cities")
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
        assert all(r["error"] == "" for r in shown), [r["error"] for r in shown]  # no error, no "<NA>"
        # the status line (an HTML widget of its own, not the table's) gives the run's one-line summary
        status = panel.locator(".widget-html:not(:has(table))", has_text=re.compile(r"\d+ ok, \d+ failed"))
        expect(status).to_have_text(f"{len(CITIES)} ok, 0 failed")
    except Exception as exc:
        raise AssertionError(f"{exc}\n--- browser errors:\n" + "\n".join(console[-20:])) from exc
    finally:
        # Lab's page never scrolls (the notebook scrolls inside its panel), so a "full page" shot is the
        # viewport: bring the panel's cell to the top first so the controls and the table are in it
        try:
            page.locator(".jp-NotebookPanel:visible .jp-CodeCell").filter(has_text="hl_notebook.panel()").evaluate(
                "cell => cell.scrollIntoView({block: 'start'})", timeout=5_000)
        except Exception:  # noqa: BLE001 - the screenshot matters more than the scroll
            pass
        page.screenshot(path=str(screenshot), full_page=True)
