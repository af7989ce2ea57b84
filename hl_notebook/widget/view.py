"""ChatPanel: an ipywidgets front end over PanelState and the shared run path.

Why: many users would rather click than type options. The widgets only edit a PanelState; Run
builds specs with ``PanelState.specs`` and runs them with ``pool.run_specs`` — the magic's path —
on a background thread, so Stop stays clickable and finished rows are kept. The config controls
are made from ``spec.PARAMETERS``, one per parameter.
"""
from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..errors import HLError, HLUsageError
from ..spec import PARAMETERS, Parameter
from .state import ENDPOINT_LABELS, PanelState

if TYPE_CHECKING:
    import pandas as pd

_CONTROL_ALIASES = {"num_samples": "samples", "model_config_id": "config_picker",
                    "experiment_id": "experiment_picker"}
TABLE_COLUMNS = ["call", "sample", "endpoint", "model", "temperature", "inputs", "output", "finish_reason",
                 "total_tokens", "latency_s", "error"]


class ChatPanel(w.VBox):
    """The panel. ``.result`` holds the accumulated DataFrame; ``.state`` the PanelState."""

    def __init__(self, state: PanelState | None = None, shell: Any = None) -> None:
        self.state = state or PanelState()
        self.shell = shell
        self.result: "pd.DataFrame | None" = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._build()
        super().__init__([self._header, self._selector_box, self._messages_box, self._options_box,
                          self._compare_box, self._actions, self._progress, self._status, self._stream_area,
                          self._table, self._save_box], layout=w.Layout(width="100%"))
        self._on_endpoint_change({"new": self.state.endpoint})

    # -- construction ----------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.state
        wide = w.Layout(width="98%")
        label = {"description_width": "100px"}
        self._endpoint = w.ToggleButtons(style=label, options=[(text, key) for key, text in ENDPOINT_LABELS.items()],
                                         value=s.endpoint, description="Endpoint")
        self._project = w.Text(style=label, value=s.project, description="Project", placeholder="default")
        self._header = w.VBox([self._endpoint, self._project])
        # /chat inline config: one control per parameter, two per row
        self._controls = {p.name: _control(p, s.parameters.get(p.name), label) for p in PARAMETERS}
        for name, control in self._controls.items():
            setattr(self, f"_{name}", control)  # ``panel._temperature`` etc., as ipywidgets tests expect
        controls = list(self._controls.values())
        self._chat_box = w.VBox([w.HBox(controls[i:i + 2]) for i in range(0, len(controls), 2)])
        # registered configs, experiments, deployments
        self._config_picker = w.Dropdown(style=label, options=[], description="Config")
        self._experiment_picker = w.Dropdown(style=label, options=[], description="Experiment")
        self._environment = w.Text(style=label, value=s.environment, description="Environment",
                                   placeholder="production")
        self._refresh = w.Button(description="Refresh", icon="refresh", tooltip="list the project's configs")
        self._config_box = w.HBox([self._config_picker, self._refresh])
        self._experiment_box = w.HBox([self._experiment_picker])
        self._deployed_box = w.HBox([self._environment])
        self._selector_box = w.VBox([])
        # messages
        self._messages = w.Textarea(style=label, value=s.messages_text, description="Messages", rows=6, layout=wide,
                                    placeholder="system: …\nuser: …")
        self._load_name = w.Text(style=label, description="Load from", placeholder="variable (blank: last %%hlchat cell)",
                                  layout=w.Layout(width="420px"))
        self._load = w.Button(description="Load", icon="download")
        self._messages_box = w.VBox([self._messages, w.HBox([self._load_name, self._load])])
        # run options
        self._inputs = w.Text(style=label, value=s.inputs_variable, description="Inputs",
                              placeholder="variable (optional)")
        self._samples = w.BoundedIntText(style=label, value=s.num_samples, min=1, max=100, description="Samples")
        self._stream = w.Checkbox(value=s.stream, description="Stream")
        self._concurrency = w.BoundedIntText(style=label, value=s.concurrency, min=1, max=64, description="Concurrency")
        self._options_box = w.HBox([self._inputs, self._samples, self._concurrency, self._stream])
        # comparison
        self._add = w.Button(description="Add to comparison", icon="plus", layout=w.Layout(width="auto"))
        self._clear = w.Button(description="Clear comparison", icon="times", layout=w.Layout(width="auto"))
        self._compare_list = w.HTML()
        self._compare_box = w.VBox([w.HBox([self._add, self._clear]), self._compare_list])
        # actions and results
        self._run = w.Button(description="Run", button_style="primary", icon="play")
        self._stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self._clear_results = w.Button(description="Clear results", icon="eraser")
        self._actions = w.HBox([self._run, self._stop_button, self._clear_results])
        self._progress = w.IntProgress(value=0, min=0, max=1, description="", layout=w.Layout(visibility="hidden"))
        self._status = w.HTML()
        self._stream_area = w.Textarea(value="", rows=4, disabled=True, layout=w.Layout(width="98%", display="none"))
        self._table = w.HTML()
        self._save_name = w.Text(style=label, description="Save as", placeholder="variable name")
        self._save = w.Button(description="Save", icon="save")
        self._save_box = w.HBox([self._save_name, self._save])
        self._wire()

    def _wire(self) -> None:
        self._endpoint.observe(self._on_endpoint_change, names="value")
        self._refresh.on_click(self._on_refresh_click)
        self._load.on_click(self._on_load_click)
        self._add.on_click(self._on_add_click)
        self._clear.on_click(self._on_clear_click)
        self._run.on_click(self._on_run_click)
        self._stop_button.on_click(self._on_stop_click)
        self._clear_results.on_click(self._on_clear_results_click)
        self._save.on_click(self._on_save_click)

    # -- state <-> widgets -----------------------------------------------------------------------
    def sync_state(self) -> PanelState:
        """Copy the controls into the state (the only place widgets are read)."""
        s = self.state
        s.endpoint, s.project, s.messages_text = self._endpoint.value, self._project.value, self._messages.value
        s.parameters = {name: control.value for name, control in self._controls.items()}
        s.current_config()  # a value out of range or of the wrong type is reported now, before Run
        s.model_config_id = self._config_picker.value or ""
        s.experiment_id = self._experiment_picker.value or ""
        s.environment = self._environment.value.strip()
        s.inputs_variable, s.num_samples = self._inputs.value, self._samples.value
        s.stream, s.concurrency = self._stream.value, self._concurrency.value
        return s

    def _namespace(self) -> dict[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

    def _say(self, text: str, error: bool = False) -> None:
        color = "#b00020" if error else "#333"
        self._status.value = f'<span style="color:{color}">{html.escape(text)}</span>' if text else ""

    # -- handlers --------------------------------------------------------------------------------
    def _on_endpoint_change(self, change: dict[str, Any]) -> None:
        boxes = {"chat": self._chat_box, "model-config": self._config_box,
                 "experiment": self._experiment_box, "deployed": self._deployed_box}
        self._selector_box.children = [boxes[change["new"]]]

    def _on_refresh_click(self, _: Any = None) -> None:
        """Fill the config and experiment pickers from the server (the project by name)."""
        from ..connection import connect

        try:
            client = connect().client
            name = self._project.value.strip() or "default"
            projects = [p for p in client.projects() if p["name"] == name]
            if not projects:
                self._say(f"no project named {name!r} on the server yet", error=True)
                return
            configs = client.project_configs(projects[0]["id"])
            experiments = client.project_experiments(projects[0]["id"])
        except HLError as exc:
            self._say(f"{type(exc).__name__}: {exc}", error=True)
            return
        _fill(self._config_picker, [(f"{c['config'].get('name')} ({c['config']['id']})", c["config"]["id"])
                                    for c in configs])
        _fill(self._experiment_picker, [(f"{e['name']} ({e['id']})", e["id"]) for e in experiments])
        self._say(f"{len(configs)} configs, {len(experiments)} experiments in {name}")

    def _on_load_click(self, _: Any = None) -> None:
        """Load messages from a variable (cell text or a list of messages) or the last %%hlchat cell."""
        import json

        name = self._load_name.value.strip()
        namespace = self._namespace()
        if name:
            if name not in namespace:
                self._say(f"variable {name!r} is not defined in the notebook", error=True)
                return
            value = namespace[name]
            self._messages.value = value if isinstance(value, str) else json.dumps(value, indent=1)
            self._say(f"loaded messages from {name}")
            return
        cells = [c for c in namespace.get("In", []) if c.lstrip().startswith("%%hlchat")]
        if not cells:
            self._say("no %%hlchat cell has run yet; give a variable name", error=True)
            return
        self._messages.value = cells[-1].lstrip().split("\n", 1)[1] if "\n" in cells[-1].lstrip() else ""
        self._say("loaded the last %%hlchat cell")

    def _on_add_click(self, _: Any = None) -> None:
        try:
            entry = self.sync_state().add_to_comparison()
        except HLError as exc:
            self._say(f"{type(exc).__name__}: {exc}", error=True)
            return
        self._render_comparison()
        self._say(f"added {_describe(entry)}")

    def _on_clear_click(self, _: Any = None) -> None:
        self.state.comparison.clear()
        self._render_comparison()

    def _render_comparison(self) -> None:
        items = "".join(f"<li>{html.escape(_describe(e))}</li>" for e in self.state.comparison)
        self._compare_list.value = f"<b>Comparing {len(self.state.comparison)}:</b><ol>{items}</ol>" if items else ""

    def _on_run_click(self, _: Any = None) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        from ..connection import connect

        try:
            connection = connect()
            specs = self.sync_state().specs(self._namespace(), connection.default_provider)
        except HLError as exc:
            self._say(f"{type(exc).__name__}: {exc}", error=True)
            return
        self._stopping.clear()
        self._run.disabled, self._stop_button.disabled = True, False
        self._progress.max, self._progress.value = len(specs), 0
        self._progress.layout.visibility = "visible"
        self._stream_area.value = ""
        self._stream_area.layout.display = "block" if self.state.stream and len(specs) == 1 else "none"
        self._say(f"running {len(specs)} call{'s' if len(specs) > 1 else ''}…")
        self._thread = threading.Thread(target=self._run_in_background, args=(specs, connection), daemon=True,
                                        name="hl_notebook-panel")
        self._thread.start()

    def _run_in_background(self, specs: list, connection: Any) -> None:
        from ..pool import run_specs

        try:
            run = run_specs(specs, connection=connection, concurrency=self.state.concurrency, progress=False,
                            on_delta=self._on_delta, stop=self._stopping, on_result=self._on_result)
            self._show(run)
        except Exception as exc:  # noqa: BLE001 - shown in the panel, never lost in a thread
            self._say(f"{type(exc).__name__}: {exc}", error=True)
            if not isinstance(exc, HLError) and self.shell is not None:
                self.shell.showtraceback()
        finally:
            self._run.disabled, self._stop_button.disabled = False, True

    def _on_delta(self, call: int, sample: int, delta: str) -> None:
        self._stream_area.value += delta

    def _on_result(self, result: Any) -> None:
        self._progress.value += 1

    def _show(self, run: Any) -> None:
        import pandas as pd

        frame = run.frame
        if len(frame):
            self.result = frame if self.result is None else pd.concat([self.result, frame], ignore_index=True)
        self._table.value = _table_html(self.result)
        text, problem = run.status()
        self._say(text, error=problem)

    def _on_stop_click(self, _: Any = None) -> None:
        self._stopping.set()
        self._say("stopping: pending calls cancelled, finished rows kept")

    def _on_clear_results_click(self, _: Any = None) -> None:
        self.result = None
        self._table.value = ""

    def _on_save_click(self, _: Any = None) -> None:
        name = self._save_name.value.strip()
        if not name.isidentifier():
            self._say(f"{name!r} is not a valid variable name", error=True)
            return
        if self.result is None:
            self._say("nothing to save yet: click Run first", error=True)
            return
        self._namespace()[name] = self.result
        self._say(f"saved {len(self.result)} rows as {name}")

    def set(self, **values: Any) -> "ChatPanel":
        """Set controls by name (``messages``, ``model``, ``temperature``, ``inputs``, ``samples``, …),
        as a user would, e.g. ``panel.set(messages="user: hi", inputs="rows").run()``."""
        for name, value in values.items():
            widget = getattr(self, f"_{_CONTROL_ALIASES.get(name, name)}", None)
            if not isinstance(widget, w.ValueWidget) or isinstance(widget, (w.HTML, w.IntProgress)):
                raise HLUsageError(f"no control named {name!r}")
            widget.value = value
        return self

    def run(self, wait: bool = True, timeout: float | None = None) -> "pd.DataFrame | None":
        """Click Run; with ``wait``, block until it ends and return ``.result``."""
        self._run.click()
        if wait:
            self.wait(timeout)
        return self.result

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current run ends (for scripts and tests)."""
        if self._thread is not None:
            self._thread.join(timeout)


def _control(parameter: Parameter, value: Any, style: dict[str, str]) -> w.ValueWidget:
    """The control for one parameter: a dropdown where the wire lists the values, a number field
    for ranged numbers (checked against the table when read, never silently clamped), else text
    (optional whole numbers such as ``seed`` may be left blank)."""
    description = parameter.name.replace("_", " ").capitalize()
    common = {"description": description, "style": style, "tooltip": parameter.help}
    if parameter.choices:
        return w.Dropdown(options=parameter.choices, value=value, **common)
    if parameter.kind is float:
        return w.FloatText(value=value, **common)
    text = "" if value is None else str(value)
    placeholder = "no limit" if parameter.name == "max_tokens" else "optional"
    return w.Text(value=text, placeholder=placeholder, **common)


def _fill(picker: w.Dropdown, options: list[tuple[str, str]]) -> None:
    """New options, keeping the selection when it is still there, else the first option."""
    previous = picker.value
    picker.options = options
    ids = [value for _, value in options]
    picker.value = previous if previous in ids else (ids[0] if ids else None)


def _describe(entry: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in entry.items())


TABLE_STYLE = ("<style>.hl-results{border-collapse:collapse;font-size:12px;width:100%}"
               ".hl-results th,.hl-results td{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left;"
               "vertical-align:top}.hl-results th{background:#f4f4f4;position:sticky;top:0}</style>")


def _table_html(frame: "pd.DataFrame | None") -> str:
    """The results as an HTML table (missing values blank, text escaped, latency rounded)."""
    if frame is None or not len(frame):
        return ""
    shown = frame.copy()
    inputs = [c for c in shown.columns if str(c).startswith("inputs.")]
    shown["inputs"] = shown[inputs].astype("string").fillna("").agg(", ".join, axis=1) if inputs else ""
    shown["latency_s"] = shown["latency_s"].round(3)
    shown = shown[TABLE_COLUMNS].astype(object)
    shown = shown.where(shown.notna(), "")  # to_html's na_rep misses pd.NA in string columns
    table = shown.to_html(index=False, classes="hl-results", escape=True, border=0)
    return f'{TABLE_STYLE}<div style="max-height:420px;overflow:auto">{table}</div>'


def panel(shell: Any = None) -> ChatPanel:
    """A new ChatPanel bound to the running IPython shell (for inputs and Save as)."""
    if shell is None:
        from IPython import get_ipython
        shell = get_ipython()
    return ChatPanel(shell=shell)
