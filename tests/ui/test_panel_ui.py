"""The chat panel in a real JupyterLab 4 and Notebook 7 page, on a 1024 px laptop screen, driven by hand.

Why: the widget tests drive ``ChatPanel`` from Python; these check what a user sees and does — the
panel renders, nothing is cut off at 1024 px with the file browser open, typed text reaches the
kernel, Load finds the last ``%%hlchat`` cell, errors read in the panel's words, progress and rows
appear while a slow sweep runs, the header and status text stay readable (contrast ≥ 4.5:1) in the
light and dark themes, an experiment is created and a config deployed without code and both
endpoints run, and Save as assigns the rows. The kernel uses the embedded server with the mock
provider (reply ``"<model>: <last user text>"``), slowed down to 150 ms per call. A screenshot of
each step is saved under ``test-artifacts/panel_ui_*.png`` (the last one also when a step fails).
"""
from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

pytestmark = pytest.mark.browser

# not imported from conftest: tests/conftest.py is also importable as "conftest" (pythonpath = tests)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

KERNEL_TIMEOUT_MS = 90_000  # kernel start plus the first import of hl_notebook: 10+ s on 2 cores
RUN_TIMEOUT_MS = 60_000
MODEL = "ui-typed-model"
CITIES = ["Lisbon", "Osaka", "Quito"]
SLOW_CALLS = 12
KERNEL_IDLE = re.compile(r"^(?!No Kernel\b).+ \| Idle$")  # Lab's status bar: "Python 3 (ipykernel) | Idle"
# cells the test adds to its copy of notebooks/panel.ipynb, after %load_ext: a slow mock and a bigger sweep
SETUP_CELL = (f"%config HLSettings.mock_latency_ms = 150\n"
              f"many = [{{'city': f'town {{i}}'}} for i in range({SLOW_CALLS})]")

# WCAG contrast of an element's text over its (composited) background, from computed styles
CONTRAST_JS = """el => {
  const parse = s => { const m = s.match(/rgba?\\(([^)]+)\\)/); if (!m) throw new Error('colour ' + s);
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const over = (top, bottom) => [0, 1, 2].map(i => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const layers = [];
  for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
    const c = parse(getComputedStyle(node).backgroundColor);
    if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
  }
  let bg = [255, 255, 255, 1];
  for (const c of layers.reverse()) bg = over(c, bg);
  const fg = over(parse(getComputedStyle(el).color), bg);
  const lum = c => { const [r, g, b] = c.slice(0, 3).map(v => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const [a, b] = [lum(fg), lum(bg)];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""
# every visible control, label and text of the panel that sticks out of the visible notebook area
CLIPPED_JS = """panel => {
  const out = panel.closest('.jp-OutputArea-output') || panel;
  const host = panel.closest('.jp-NotebookPanel') || document.body;
  const o = out.getBoundingClientRect(), n = host.getBoundingClientRect();
  const right = Math.min(window.innerWidth, o.right, n.right), left = Math.max(0, o.left, n.left);
  const clipped = [];
  for (const el of panel.querySelectorAll('input, select, textarea, button, .widget-label, .widget-html-content, .lm-TabBar-tab')) {
    const r = el.getBoundingClientRect();
    if (!el.offsetParent || r.width === 0 || r.height === 0) continue;
    if (r.right > right + 1 || r.left < left - 1)
      clipped.push(`${el.tagName} "${(el.innerText || el.value || el.placeholder || '').trim().slice(0, 30)}" `
                   + `${Math.round(r.left)}..${Math.round(r.right)} outside ${Math.round(left)}..${Math.round(right)}`);
  }
  return clipped;
}"""


def write_notebook(lab: Any, name: str) -> str:
    """A copy of notebooks/panel.ipynb with the setup cell after %load_ext (a fresh kernel per copy)."""
    notebook = json.loads((lab.root / "panel.ipynb").read_text())
    cell = {"cell_type": "code", "execution_count": None, "id": "ui-setup", "metadata": {}, "outputs": [],
            "source": SETUP_CELL.splitlines(True)}
    notebook["cells"].insert(2, cell)
    (lab.root / name).write_text(json.dumps(notebook))
    return name


class PanelPage:
    """One notebook page (Lab or Notebook 7) with the panel: cells, controls, screenshots."""

    def __init__(self, page: Any, prefix: str) -> None:
        self.page, self.prefix, self.step, self.runs = page, prefix, 0, 0
        self.notebook = page.locator(".jp-NotebookPanel:visible")
        self.panel_cell = self.notebook.locator(".jp-CodeCell").filter(has_text="hl_notebook.panel()")
        self.panel = self.panel_cell.locator(".jp-OutputArea-output .widget-vbox").first

    def run_cells_up_to_the_panel(self) -> None:
        """Run each code cell up to the panel's by keyboard (click its editor, Shift+Enter), waiting for
        its prompt number, so the panel below is driven only from the browser."""
        from playwright.sync_api import expect

        cells = self.notebook.locator(".jp-Notebook .jp-CodeCell")
        for index in range(cells.count()):
            cell = cells.nth(index)
            cell.locator(".jp-InputArea-editor").click()
            self.page.keyboard.press("Shift+Enter")
            expect(cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"), timeout=KERNEL_TIMEOUT_MS)
            if "hl_notebook.panel()" in cell.inner_text():
                break
        expect(self.button("Run")).to_be_visible(timeout=RUN_TIMEOUT_MS)

    def button(self, text: str) -> Any:
        return self.panel.locator(".widget-button", has_text=re.compile(rf"^\s*{re.escape(text)}\s*$"))

    def control(self, kind: str, label: str) -> Any:
        """The input of the panel's ``kind`` widget whose description label reads ``label``."""
        label_element = self.page.locator("label.widget-label", has_text=re.compile(f"^{re.escape(label)}$"))
        widget = self.panel.locator(f".widget-{kind}", has=label_element)
        tag = {"textarea": "textarea", "dropdown": "select", "select-multiple": "select"}.get(kind, "input")
        return widget.locator(tag)

    def status(self) -> Any:
        return self.panel.locator(".hl-status-line .hl-status")

    def rows(self) -> Any:
        return self.panel.locator(".hl-rows table.hl-results tbody tr")

    def run(self, rows: int) -> None:
        """Click Run and wait for this run's summary (it comes after the finished table), then check
        the table has ``rows`` rows."""
        from playwright.sync_api import expect

        self.runs += 1
        self.button("Run").click()
        expect(self.status()).to_have_text(re.compile(rf"^run {self.runs}: \d+ ok, \d+ failed"), timeout=RUN_TIMEOUT_MS)
        expect(self.button("Run")).to_be_enabled()
        expect(self.rows()).to_have_count(rows)

    def endpoint(self, label: str) -> None:
        self.panel.locator(".widget-toggle-button", has_text=label).click()

    def clipped(self) -> list[str]:
        return self.panel.evaluate(CLIPPED_JS)

    def check_nothing_clipped_on_any_endpoint(self) -> None:
        for endpoint in ("/chat-model-config", "/chat-experiment", "/chat-deployed", "/chat (inline config)"):
            self.endpoint(endpoint)
            assert self.clipped() == [], (endpoint, self.clipped())
        self.shot("layout_1024", self.panel.locator(".hl-title"))

    def contrast(self, locator: Any) -> float:
        return locator.first.evaluate(CONTRAST_JS)

    def shot(self, name: str, target: Any = None) -> None:
        """Screenshot ``panel_ui_<prefix><n>_<name>.png`` with ``target`` (default the status) in view."""
        self.step += 1
        try:
            (target or self.panel.locator(".hl-status-line")).first.scroll_into_view_if_needed(timeout=5_000)
        except Exception:  # noqa: BLE001 - the screenshot matters more than the scroll
            pass
        self.page.screenshot(path=str(ARTIFACTS / f"panel_ui_{self.prefix}{self.step:02d}_{name}.png"))


def open_notebook(page: Any, url: str, lab_ui: bool) -> None:
    from playwright.sync_api import expect

    page.goto(url, wait_until="domcontentloaded")
    expect(page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").first).to_be_visible(
        timeout=KERNEL_TIMEOUT_MS)
    # a kernel must be attached and idle before the first Shift+Enter, or a "Select Kernel" dialog
    # opens instead of the cell running; Lab says so in its status bar, Notebook 7 in its toolbar
    if lab_ui:
        expect(page.locator(".jp-StatusBar-TextItem", has_text=KERNEL_IDLE)).to_have_count(1, timeout=KERNEL_TIMEOUT_MS)
    else:
        expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(
            1, timeout=KERNEL_TIMEOUT_MS)
        expect(page.locator(".jp-KernelName")).not_to_have_text(re.compile("No Kernel"), timeout=KERNEL_TIMEOUT_MS)


@contextmanager
def driving(page: Any, prefix: str) -> Iterator[PanelPage]:
    """The page as a PanelPage; on a failure, a last screenshot and the browser's errors."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    ARTIFACTS.mkdir(exist_ok=True)
    ui = PanelPage(page, prefix)
    try:
        yield ui
    except Exception as exc:
        ui.shot("failed")
        raise AssertionError(f"{exc}\n--- browser errors:\n" + "\n".join(errors[-20:])) from exc


def test_panel_in_jupyterlab_on_a_laptop_screen(laptop_page, lab):  # page first: no browser, no Lab started
    from playwright.sync_api import expect

    page = laptop_page
    with driving(page, "lab") as ui:
        open_notebook(page, f"{lab.url}/lab/tree/{write_notebook(lab, 'panel_lab.ipynb')}?reset", lab_ui=True)
        expect(page.locator("#filebrowser")).to_be_visible()  # the side panel takes its share of the 1024 px
        ui.run_cells_up_to_the_panel()
        expect(ui.rows()).to_have_count(0)
        ui.check_nothing_clipped_on_any_endpoint()

        # Load with a blank name: the messages of the %%hlchat cell run above
        ui.button("Load").click()
        expect(ui.control("textarea", "Messages")).to_have_value("system: Be brief.\nuser: One fact about {{city}}.")
        expect(ui.status()).to_have_text("loaded the messages of the last %%hlchat cell")
        ui.shot("load", ui.control("textarea", "Messages"))

        # a template variable without a value: the panel's words, nothing sent
        ui.button("Run").click()
        expect(ui.status()).to_have_text("no value for `city`: define `city` in the notebook or set Inputs")
        ui.shot("missing_variable")

        # a typed run: model and inputs edited by hand
        expect(ui.control("text", "Model")).to_have_value("demo-model")
        ui.control("text", "Model").fill(MODEL)
        ui.control("text", "Inputs").fill("cities")
        ui.run(len(CITIES))
        expect(ui.status()).to_have_text(re.compile(rf"^run 1: {len(CITIES)} ok, 0 failed · "))
        table = ui.panel.locator(".hl-rows table.hl-results")
        headers = [h.strip() for h in table.locator("thead th").all_inner_texts()]
        shown = [dict(zip(headers, (c.strip() for c in row.locator("td").all_inner_texts())))
                 for row in ui.rows().all()]
        assert sorted(r["inputs"] for r in shown) == CITIES, shown
        for row in shown:  # the mock replies "<model>: <last user text>" (+ " ~ words" when temperature > 0)
            assert row["output"].startswith(f"{MODEL}: One fact about {row['inputs']}."), row
            assert (row["model"], row["run"], row["error"]) == (MODEL, "1", ""), row
        alignment = table.evaluate("t => [...t.rows].map(r => [...r.cells].map(c => getComputedStyle(c).textAlign))")
        assert all(row == alignment[0] for row in alignment), alignment  # headers align like their cells
        assert ui.clipped() == [], ui.clipped()
        ui.shot("run", table)

        # a slow sweep: "n / N" and rows while it runs
        ui.control("text", "Inputs").fill("many")
        ui.control("text", "Concurrency").fill("1")
        ui.runs += 1
        ui.button("Run").click()
        page.wait_for_function(
            """([panel, total, before]) => {
                 const text = panel.querySelector('.hl-progress')?.innerText || '';
                 const match = text.match(/^(\\d+) \\/ (\\d+) · .* · ETA /);
                 const rows = panel.querySelectorAll('.hl-rows table.hl-results tbody tr').length;
                 return match && +match[2] === total && +match[1] > 0 && rows > before && rows < before + total;
               }""", arg=[ui.panel.element_handle(), SLOW_CALLS, len(CITIES)], timeout=RUN_TIMEOUT_MS)
        ui.shot("slow_sweep_running", ui.panel.locator(".hl-progress"))
        expect(ui.panel.locator(".hl-progress")).to_have_text(re.compile(rf"^{SLOW_CALLS} / {SLOW_CALLS} · "),
                                                              timeout=RUN_TIMEOUT_MS)
        expect(ui.status()).to_have_text(re.compile(rf"^run 2: {SLOW_CALLS} ok, 0 failed · "))
        elapsed = float(re.search(r"· ([\d.]+) s$", ui.status().inner_text()).group(1))
        assert elapsed >= SLOW_CALLS * 0.15, elapsed  # one call at a time: the typed Concurrency reached the kernel
        expect(ui.rows()).to_have_count(len(CITIES) + SLOW_CALLS)

        # readable header and status in the light theme, then in JupyterLab Dark
        light = [ui.contrast(table.locator("th")), ui.contrast(ui.status())]
        page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Theme$")).hover()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile("^JupyterLab Dark$")).click()
        expect(page.locator("body[data-jp-theme-light='false']")).to_have_count(1, timeout=20_000)
        page.wait_for_timeout(500)  # the theme's style sheet applies after the attribute changes
        dark = [ui.contrast(table.locator("th")), ui.contrast(ui.status())]
        assert min(light) >= 4.5 and min(dark) >= 4.5, {"light": light, "dark": dark}
        ui.shot("dark_theme", table)

        # an out-of-range value is said beside its control and stops Run; nothing is clamped
        temperature = ui.control("text", "Temperature")
        temperature.fill("3")
        temperature.press("Tab")
        hint = ui.panel.locator(".hl-hint")
        expect(hint).to_have_text("Temperature: 3.0 is out of range (0 to 2)")
        assert ui.contrast(hint) >= 4.5
        ui.button("Run").click()
        expect(ui.status()).to_have_text("Temperature: 3.0 is out of range (0 to 2)")
        expect(temperature).to_have_value("3")
        ui.shot("out_of_range", temperature)
        temperature.fill("0.7")
        temperature.press("Tab")
        expect(hint).to_have_count(0)

        # the comparison list: readable entries, removable one at a time, and Run says what it sweeps
        for model in ("cmp-a", "cmp-b"):
            ui.control("text", "Model").fill(model)
            ui.button("Add to comparison").click()
        expect(ui.button("Run 2 configs")).to_be_visible()
        entries = ui.panel.locator(".widget-html-content", has_text=re.compile(r"^\d\. /chat · "))
        expect(entries).to_have_text(["1. /chat · cmp-a", "2. /chat · cmp-b"])
        ui.shot("comparison", entries.first)
        ui.panel.locator(".widget-button[title='remove /chat · cmp-a']").click()
        expect(entries).to_have_text(["1. /chat · cmp-b"])
        expect(ui.button("Run 1 config")).to_be_visible()
        ui.button("Clear comparison").click()
        expect(ui.button("Run")).to_be_visible()

        # the Summary tab: hl_notebook.summary of the rows so far
        ui.panel.locator(".lm-TabBar-tab", has_text="Summary").click()
        summary = ui.panel.locator(".widget-html", has=page.locator("th", has_text="latency_p50_s"))
        expect(summary).to_be_visible()
        ui.shot("summary_tab", summary)
        ui.panel.locator(".lm-TabBar-tab", has_text="Rows").click()

        # an experiment made and run without code: register two configs, select them, create, run
        ui.control("text", "Inputs").fill("")
        ui.control("textarea", "Messages").fill("user: Pick a colour.")
        for model in ("exp-a", "exp-b"):
            ui.control("text", "Model").fill(model)
            ui.button("Register config").click()
            expect(ui.status()).to_have_text(re.compile(f"^registered config {model}"))
        ui.endpoint("/chat-experiment")
        ui.button("Refresh").click()
        expect(ui.status()).to_have_text(re.compile(r"^\d+ configs, 0 experiments in default$"))
        configs = ui.control("select-multiple", "Configs")
        labels = [o.strip() for o in configs.locator("option").all_inner_texts()]
        chosen = [text for text in labels if text.startswith("exp-")]  # Select widgets show spaces as \xa0
        assert len(chosen) == 2 and not [text for text in labels if "config_" in text], labels  # readable labels
        configs.select_option(label=chosen)
        ui.control("text", "Name").fill("ui-experiment")
        ui.button("Create experiment").click()
        expect(ui.status()).to_have_text("created experiment ui-experiment in default")
        ui.run(len(CITIES) + SLOW_CALLS + 1)
        newest = ui.rows().first.locator("td").all_inner_texts()
        assert "experiment" in newest and ({"exp-a", "exp-b"} & set(newest)), newest  # the newest run on top
        ui.shot("experiment", ui.control("select-multiple", "Configs"))

        # deploy a config to the default environment of the default project (Project left blank), run
        ui.endpoint("/chat-deployed")
        ui.button("Refresh").click()
        expect(ui.status()).to_have_text(re.compile(r"^\d+ configs, 1 experiment in default$"))
        target = ui.control("dropdown", "Deploy")
        options = target.locator("option").all_inner_texts()
        option = next((o for o in options if o.replace("\xa0", " ").startswith("config exp-b")), None)
        assert option, options
        target.select_option(label=option)
        ui.button("Deploy to environment").click()
        expect(ui.status()).to_have_text(re.compile(r"^deployed config exp-b.* to the default environment of default$"))
        ui.run(len(CITIES) + SLOW_CALLS + 2)
        newest = ui.rows().first.locator("td").all_inner_texts()
        assert "deployed" in newest and "exp-b" in newest, newest
        assert ui.clipped() == [], ui.clipped()
        ui.shot("deployed")

        # Save as assigns the rows in the kernel
        ui.control("text", "Save as").fill("ui_rows")
        ui.button("Save").click()
        expect(ui.status()).to_have_text(f"saved {len(CITIES) + SLOW_CALLS + 2} rows as ui_rows")
        ui.shot("save_as", ui.panel.locator(".widget-text", has=page.locator("label", has_text="Save as")))


def test_panel_in_notebook_7(laptop_page, lab):
    from playwright.sync_api import expect

    page = laptop_page
    with driving(page, "nb7_") as ui:
        open_notebook(page, f"{lab.url}/notebooks/{write_notebook(lab, 'panel_nb7.ipynb')}", lab_ui=False)
        ui.run_cells_up_to_the_panel()
        ui.check_nothing_clipped_on_any_endpoint()
        ui.button("Load").click()
        ui.control("text", "Inputs").fill("cities")
        ui.run(len(CITIES))
        expect(ui.status()).to_have_text(re.compile(rf"^run 1: {len(CITIES)} ok, 0 failed · "))
        table = ui.panel.locator(".hl-rows table.hl-results")
        assert ui.contrast(table.locator("th")) >= 4.5 and ui.contrast(ui.status()) >= 4.5
        assert ui.clipped() == [], ui.clipped()
        ui.shot("run", table)
