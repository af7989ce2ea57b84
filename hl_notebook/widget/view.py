"""ChatPanel: an ipywidgets view over PanelState, the shared run path and the project's registry.

Why: many users would rather click than type options. The widgets only edit a PanelState and show
what it decides (``state``, ``render``); Run builds specs with ``PanelState.specs`` and runs them with
``pool.run_specs`` — the magic's path — on a background thread, so Stop stays clickable, progress and
rows appear as calls finish, and finished rows are kept. Widget values are set from that thread
(ipywidgets sends them from any thread). The config controls are made from ``spec.PARAMETERS``.
"""
from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any, Callable

import ipywidgets as w

from ..errors import HLError, HLUsageError
from ..spec import PARAMETERS, Parameter
from .registry import Registry, server_providers
from .render import frame_html, hint_html, status_html, stream_html, table_html, title_html
from .state import (ENDPOINT_LABELS, STOPPING, THUMBS, LiveRun, PanelState, comparison_labels, explain, failed_badge,
                    label, load_messages, outcome, parameter_problem, run_started, shown_value, with_run)

if TYPE_CHECKING:
    import pandas as pd

_CONTROL_ALIASES = {"num_samples": "samples", "model_config_id": "config_picker",
                    "experiment_id": "experiment_picker"}
_LABEL_STYLE = {"description_width": "130px"}  # "Frequency penalty" in full
TITLE = ("Chat panel", "%%hlchat with controls: pick an endpoint, edit the messages, click Run.")


def _row(*children: w.Widget, **layout: Any) -> w.HBox:
    """A row that wraps instead of clipping on a narrow window (pitfall 20)."""
    return w.HBox(list(children), layout=w.Layout(flex_flow="row wrap", align_items="center", **layout))


def _hidden(widget: w.Widget, hidden: bool) -> None:
    widget.layout.display = "none" if hidden else None


class ChatPanel(w.VBox):
    """The panel. ``.result`` holds the accumulated DataFrame; ``.state`` the PanelState."""

    def __init__(self, state: PanelState | None = None, shell: Any = None) -> None:
        self.state = state or PanelState()
        self.registry = Registry()
        self.shell = shell
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped_by_user = False
        self._live: LiveRun | None = None
        self._build()
        super().__init__([self._title, self._header, self._selector_box, self._messages_box, self._options_box,
                          self._compare_box, self._actions, self._progress_box, self._status_box, self._streams,
                          self._tabs, self._rate_box, self._save_box], layout=w.Layout(width="100%"))
        self._on_endpoint_change()
        self._draw_results()
        # the provider list comes from the server (GET /server-info); asked off the kernel's thread
        self._providers_thread = threading.Thread(target=self._load_providers, daemon=True, name="hl_notebook-info")
        self._providers_thread.start()

    @property
    def result(self) -> "pd.DataFrame | None":
        return self.state.result

    # -- construction ----------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.state
        self._title = w.HTML(title_html(*TITLE))
        self._endpoint = w.ToggleButtons(style={**_LABEL_STYLE, "button_width": "auto"}, description="Endpoint",
                                         options=[(text, key) for key, text in ENDPOINT_LABELS.items()],
                                         value=s.endpoint, layout=w.Layout(flex_flow="row wrap", width="auto"))
        self._project = w.Text(style=_LABEL_STYLE, value=s.project, description="Project",
                               placeholder=s.project_name())
        self._header = w.VBox([self._endpoint, _row(self._project)])
        self._build_parameters()
        self._build_registry()
        self._messages = w.Textarea(style=_LABEL_STYLE, value=s.messages_text, description="Messages", rows=6,
                                    layout=w.Layout(width="98%"), placeholder="system: …\nuser: …")
        self._load_name = w.Text(style=_LABEL_STYLE, description="Load from",
                                 placeholder="blank: last %%hlchat cell")
        self._load = w.Button(description="Load", icon="download")
        self._messages_box = w.VBox([self._messages, _row(self._load_name, self._load)])
        self._inputs = w.Text(style=_LABEL_STYLE, value=s.inputs_variable, description=label("inputs"),
                              placeholder="variable (optional)")
        # continuous_update: the typed number reaches the kernel at once, not only when the field loses focus
        self._samples = w.IntText(style=_LABEL_STYLE, value=s.num_samples, description=label("num_samples"),
                                  continuous_update=True)
        self._stream = w.Checkbox(value=s.stream, description="Stream", indent=False, layout=w.Layout(width="auto"))
        self._concurrency = w.IntText(style=_LABEL_STYLE, value=s.concurrency, description=label("concurrency"),
                                      continuous_update=True)
        self._options_box = _row(self._inputs, self._samples, self._concurrency, self._stream)
        self._add = w.Button(description="Add to comparison", icon="plus", layout=w.Layout(width="auto"))
        self._clear = w.Button(description="Clear comparison", icon="times", layout=w.Layout(width="auto"))
        self._compare_list = w.VBox([])
        self._compare_box = w.VBox([_row(self._add, self._clear), self._compare_list])
        self._build_results()
        self._wire()

    def _build_parameters(self) -> None:
        """/chat's inline config: one control per parameter, its range problem shown beside it."""
        s = self.state
        self._controls = {p.name: _control(p, s.parameters.get(p.name), s) for p in PARAMETERS}
        self._hints = {name: w.HTML() for name in self._controls}
        for name, control in self._controls.items():
            setattr(self, f"_{name}", control)  # ``panel._temperature`` etc., as ipywidgets tests expect
        cells = [w.VBox([control, self._hints[name]]) for name, control in self._controls.items()]
        self._register = w.Button(description="Register config", icon="bookmark", layout=w.Layout(width="auto"),
                                  tooltip="save these settings as a config of the project (for the other endpoints)")
        self._chat_box = w.VBox([_row(*cells), _row(self._register)])

    def _build_registry(self) -> None:
        """Registered configs, experiments and deployments: pick, create, deploy."""
        s = self.state
        self._refresh = w.Button(description="Refresh", icon="refresh",
                                 tooltip="list the project's configs and experiments")
        def wide() -> dict[str, Any]:  # their labels are long
            return {"style": _LABEL_STYLE, "layout": w.Layout(width="98%", max_width="640px")}

        self._config_picker = w.Dropdown(options=[], description="Config", **wide())
        self._experiment_picker = w.Dropdown(options=[], description="Experiment", **wide())
        self._environment = w.Text(style=_LABEL_STYLE, value=s.environment, description="Environment",
                                   placeholder="default environment")
        self._experiment_configs = w.SelectMultiple(options=[], rows=4, description="Configs", **wide())
        self._experiment_name = w.Text(style=_LABEL_STYLE, description="Name", placeholder="blank: the configs' labels")
        self._create_experiment = w.Button(description="Create experiment", icon="flask", layout=w.Layout(width="auto"))
        self._deploy_target = w.Dropdown(options=[], description="Deploy", **wide())
        self._deploy = w.Button(description="Deploy to environment", icon="rocket", layout=w.Layout(width="auto"))
        self._deployments = w.HTML()
        self._sections = {  # Refresh sits beside each picker; one section with it shows at a time
            "config": _row(self._config_picker, self._refresh),
            "experiment": _row(self._experiment_picker, self._refresh),
            "new_experiment": _row(self._experiment_configs, self._experiment_name, self._create_experiment),
            "environment": _row(self._environment),
            "deploy": w.VBox([_row(self._deploy_target, self._refresh), _row(self._deploy), self._deployments]),
            "parameters": self._chat_box,
        }
        self._selector_box = w.VBox([])

    def _build_results(self) -> None:
        self._run = w.Button(description=self.state.run_label(), button_style="primary", icon="play",
                             layout=w.Layout(width="auto"))
        self._stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self._clear_results = w.Button(description="Clear results", icon="eraser", layout=w.Layout(width="auto"))
        self._actions = _row(self._run, self._stop_button, self._clear_results)
        self._progress = w.IntProgress(value=0, min=0, max=1)
        self._progress_text = w.HTML()
        self._progress_text.add_class("hl-progress")
        self._progress_box = _row(self._progress, self._progress_text)
        self._status = w.HTML()
        self._status.add_class("hl-status-line")
        self._failed_toggle = w.Button(layout=w.Layout(width="auto"), tooltip="show only the failed rows, or all")
        self._status_box = _row(self._status, self._failed_toggle)
        # wide HTML: its own box scrolls sideways instead of pushing the panel past the window's edge
        self._streams, self._table, self._compare_view, self._summary_view = (
            w.HTML(layout=w.Layout(width="98%")) for _ in range(4))
        for view in (self._streams, self._table, self._compare_view, self._summary_view):
            view.add_class("hl-wide")
        self._table.add_class("hl-rows")
        self._tabs = w.Tab(children=[self._table, self._compare_view, self._summary_view],
                           titles=["Rows", "Compare", "Summary"], layout=w.Layout(width="98%"))
        # 👍/👎: feedback on the picked row's log, sent at once (an HTML table cannot hold buttons)
        kind, (good, bad) = self.state.rating_type, self.state.rating_values
        self._rate_row = w.Dropdown(options=[], description="Rate", style=_LABEL_STYLE,
                                    layout=w.Layout(width="98%", max_width="640px"),
                                    tooltip="the row to rate; 👍/👎 move on to the next one")
        self._thumbs_up = w.Button(description=THUMBS[0], layout=w.Layout(width="auto"),
                                   tooltip=f"send feedback {kind} = {good} on this row's log")
        self._thumbs_down = w.Button(description=THUMBS[1], layout=w.Layout(width="auto"),
                                     tooltip=f"send feedback {kind} = {bad} on this row's log")
        self._rate_box = _row(self._rate_row, self._thumbs_up, self._thumbs_down)
        self._save_name = w.Text(style=_LABEL_STYLE, description="Save as", placeholder="variable name")
        self._save = w.Button(description="Save", icon="save")
        self._save_box = _row(self._save_name, self._save)
        _hidden(self._progress_box, True)

    def _wire(self) -> None:
        self._endpoint.observe(self._on_endpoint_change, names="value")
        self._project.observe(self._on_project_change, names="value")
        for name, control in self._controls.items():
            control.observe(functools.partial(self._on_parameter_change, name), names="value")
        for button, handler in ((self._refresh, self._on_refresh_click), (self._register, self._on_register_click),
                                (self._create_experiment, self._on_create_experiment_click),
                                (self._deploy, self._on_deploy_click), (self._load, self._on_load_click),
                                (self._add, self._on_add_click), (self._clear, self._on_clear_click),
                                (self._run, self._on_run_click), (self._stop_button, self._on_stop_click),
                                (self._clear_results, self._on_clear_results_click),
                                (self._failed_toggle, self._on_failed_toggle_click), (self._save, self._on_save_click),
                                (self._thumbs_up, self._on_thumbs_up_click),
                                (self._thumbs_down, self._on_thumbs_down_click)):
            button.on_click(handler)

    # -- state <-> widgets -----------------------------------------------------------------------
    def sync_state(self) -> PanelState:
        """Copy the controls into the state (the only place widgets are read)."""
        s = self.state
        s.endpoint, s.project, s.messages_text = self._endpoint.value, self._project.value, self._messages.value
        s.parameters = {name: control.value for name, control in self._controls.items()}
        s.model_config_id = self._config_picker.value or ""
        s.experiment_id = self._experiment_picker.value or ""
        s.environment = self._environment.value.strip()
        s.inputs_variable, s.num_samples = self._inputs.value, self._samples.value
        s.stream, s.concurrency = self._stream.value, self._concurrency.value
        self.registry.project = s.project_name()
        return s

    def _namespace(self) -> dict[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

    def _say(self, text: str, tone: str = "") -> None:
        self._status.value = status_html(text, tone)

    def _fail(self, error: HLError) -> None:
        self._say(explain(error), "error")

    # -- handlers: controls and registry ---------------------------------------------------------------
    def _on_endpoint_change(self, _: Any = None) -> None:
        self.state.endpoint = self._endpoint.value
        self._selector_box.children = [self._sections[name] for name in self.state.sections()]

    def _on_project_change(self, change: dict[str, Any]) -> None:
        self.state.project = change["new"]
        self._project.placeholder = self.state.project_name()

    def _on_parameter_change(self, name: str, change: dict[str, Any]) -> None:
        shown = shown_value(name, change["new"])
        if shown != change["new"]:
            self._controls[name].value = shown  # max_tokens -1 reads "no limit"; observed again
            return
        self._hints[name].value = hint_html(parameter_problem(name, change["new"]))

    def _load_providers(self) -> None:
        from ..connection import connect

        try:
            providers = server_providers(connect())
        except HLError:
            return  # no server to ask: every wire provider stays listed
        self.state.providers = providers
        _fill(self._provider, [(name, name) for name in providers])

    def _fill_registry(self) -> None:
        options = self.registry.config_options()
        _fill(self._config_picker, options)
        self._experiment_configs.options = options
        _fill(self._experiment_picker, self.registry.experiment_options())
        _fill(self._deploy_target, self.registry.deploy_options())
        self._deployments.value = status_html("; ".join(self.registry.deployment_lines()))

    def _change_registry(self, change: Callable[[], str], tone: str = "ok") -> bool:
        """Run one registry operation with the controls copied into the state, refill the pickers
        and show its status line; False (the error shown) when it failed."""
        self.sync_state()
        try:
            text = change()
        except HLError as exc:
            self._fail(exc)
            return False
        self._fill_registry()
        self._say(text, tone)
        return True

    def _on_refresh_click(self, _: Any = None) -> None:
        self._change_registry(lambda: self.registry.refresh(self.state.project_name()), tone="")

    def _on_register_click(self, _: Any = None) -> None:
        self._change_registry(lambda: self.registry.register(self.state.current_config()))

    def _on_create_experiment_click(self, _: Any = None) -> None:
        if self._change_registry(lambda: self.registry.create_experiment(list(self._experiment_configs.value),
                                                                         self._experiment_name.value)):
            self._experiment_picker.value = self.registry.created

    def _on_deploy_click(self, _: Any = None) -> None:
        self._change_registry(lambda: self.registry.deploy(self._deploy_target.value or "", self._environment.value))

    def _on_load_click(self, _: Any = None) -> None:
        history = getattr(getattr(self.shell, "history_manager", None), "input_hist_raw", None) or []
        try:
            self._messages.value, text = load_messages(self._load_name.value, self._namespace(), history)
        except HLError as exc:
            self._fail(exc)
            return
        self._say(text)

    # -- handlers: comparison ----------------------------------------------------------------------
    def _on_add_click(self, _: Any = None) -> None:
        try:
            text = self.sync_state().add_to_comparison()
        except HLError as exc:
            self._fail(exc)
            return
        self._draw_comparison()
        self._say(text)

    def _on_clear_click(self, _: Any = None) -> None:
        self._say(self.state.remove_from_comparison())
        self._draw_comparison()

    def _on_remove_click(self, index: int, _: Any = None) -> None:
        self._say(self.state.remove_from_comparison(index))
        self._draw_comparison()

    def _draw_comparison(self) -> None:
        rows = []
        labels = comparison_labels(self.state.comparison, self.registry.config_names(),
                                   self.registry.experiment_names())
        for index, text in enumerate(labels):
            remove = w.Button(icon="times", tooltip=f"remove {text}", layout=w.Layout(width="32px"))
            remove.on_click(functools.partial(self._on_remove_click, index))
            rows.append(_row(remove, w.HTML(status_html(f"{index + 1}. {text}"))))
        self._compare_list.children = rows
        self._run.description = self.state.run_label()

    # -- handlers: run -----------------------------------------------------------------------------
    def _on_run_click(self, _: Any = None) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        from ..connection import connect

        _hidden(self._progress_box, True)  # a stale bar never sits above a new error
        try:
            connection = connect()
            specs = self.sync_state().specs(self._namespace(), connection.default_provider)
        except HLError as exc:
            self._fail(exc)
            return
        self._stopping.clear()
        self._stopped_by_user = False
        live = self._live = self.state.start_run(len(specs))
        self._run.disabled, self._stop_button.disabled = True, False
        self._progress.max, self._progress.value = len(specs), 0
        self._progress_text.value = status_html(live.progress())
        _hidden(self._progress_box, False)
        self._streams.value = ""
        _hidden(self._streams, not self.state.stream)
        self._say(run_started(live.number, len(specs)))
        self._thread = threading.Thread(target=self._run_in_background, args=(specs, connection, live), daemon=True,
                                        name="hl_notebook-panel")
        self._thread.start()

    def _run_in_background(self, specs: list, connection: Any, live: LiveRun) -> None:
        """Run, then show the rows, the analysis, and last the status line and the enabled Run
        button (so whoever waits for them sees the finished table)."""
        from ..pool import run_specs

        text, tone = f"run {live.number}: ended without a result", "error"
        try:
            run = run_specs(specs, connection=connection, concurrency=self.state.concurrency, progress=False,
                            on_delta=self._on_delta, stop=self._stopping, on_result=self._on_result)
            self._live = None
            live.finish()
            self.state.add_rows(with_run(run.frame, live.number))
            self._draw_analysis()
            text, tone = outcome(run, live.number, self._stopped_by_user, live.elapsed)
        except Exception as exc:  # noqa: BLE001 - shown in the panel, never lost in a thread
            problem = explain(exc) if isinstance(exc, HLError) else f"{type(exc).__name__}: {exc}"
            text = f"run {live.number}: {problem}"
            if not isinstance(exc, HLError) and self.shell is not None:
                self.shell.showtraceback()
        finally:
            self._live = None
            live.finish()
            self._progress_text.value = status_html(live.progress())
            self._streams.value = stream_html(live.stream_sections())
            self._draw_results()
            self._say(text, tone)
            self._run.disabled, self._stop_button.disabled = False, True

    def _on_delta(self, call: int, sample: int, delta: str) -> None:
        live = self._live
        if live is not None:
            live.delta(call, sample, delta)
            if live.due():
                self._streams.value = stream_html(live.stream_sections())

    def _on_result(self, result: Any) -> None:
        live = self._live
        if live is None:
            return
        live.record(result)
        self._progress.value = live.done
        self._progress_text.value = status_html(live.progress())
        if live.due():
            self._draw_results(live.frame())
            if self.state.stream:
                self._streams.value = stream_html(live.stream_sections())

    def _on_stop_click(self, _: Any = None) -> None:
        self._stopped_by_user = True
        self._stopping.set()
        self._say(STOPPING)

    # -- handlers: results -------------------------------------------------------------------------
    def _draw_results(self, running: "pd.DataFrame | None" = None) -> None:
        """Table, failed-rows toggle, tabs and Save as, from the state (plus a run in progress)."""
        self._table.value = table_html(self.state.table_rows(running))
        if running is None:  # only finished rows can be rated
            _fill(self._rate_row, self.state.rating_options())
            _hidden(self._rate_box, not self._rate_row.options)
        badge = failed_badge(self.state.failed_rows(running), self.state.failed_only)
        self._failed_toggle.description = badge
        _hidden(self._failed_toggle, not badge)
        _hidden(self._tabs, self.state.rows(running, filtered=False) is None)
        _hidden(self._save_box, not self.state.can_save)

    def _draw_analysis(self) -> None:
        from ..analysis import compare, summary

        views = {self._compare_view: compare, self._summary_view: summary}
        frame = self.state.analysis_frame()
        for view, make in views.items():
            try:
                view.value = frame_html(None if frame is None else make(frame))
            except HLError as exc:
                view.value = status_html(explain(exc))

    def _on_thumbs_up_click(self, _: Any = None) -> None:
        self._rate(self.state.rating_values[0])

    def _on_thumbs_down_click(self, _: Any = None) -> None:
        self._rate(self.state.rating_values[1])

    def _rate(self, value: str) -> None:
        """Send the picked row's rating now (``hl_notebook.feedback``), show it, pick the next row."""
        from ..learning import feedback

        log_id = self._rate_row.value
        try:
            sent = feedback(self.state.rating_frame(log_id), value, type=self.state.rating_type)
            text, tone = self.state.record_rating(log_id, value, sent)
        except HLError as exc:
            self._fail(exc)
            return
        live = self._live
        self._draw_results(live.frame() if live is not None else None)
        if tone == "ok":
            self._rate_row.value = self.state.next_to_rate(log_id)
        self._say(text, tone)

    def _on_failed_toggle_click(self, _: Any = None) -> None:
        self.state.failed_only = not self.state.failed_only
        self._draw_results()

    def _on_clear_results_click(self, _: Any = None) -> None:
        self.state.clear_results()
        self._progress.value = 0
        _hidden(self._progress_box, True)
        self._progress_text.value = self._streams.value = ""
        self._compare_view.value = self._summary_view.value = ""
        self._say("")
        self._draw_results()

    def _on_save_click(self, _: Any = None) -> None:
        try:
            self._say(self.state.save_as(self._save_name.value, self._namespace()), "ok")
        except HLError as exc:
            self._fail(exc)

    # -- scripting ---------------------------------------------------------------------------------
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


def _control(parameter: Parameter, value: Any, state: PanelState) -> w.ValueWidget:
    """The control for one parameter: a dropdown where the wire lists the values, a number field
    for ranged numbers (checked against the table, never clamped), else text (optional whole
    numbers such as ``seed`` may be left blank; max_tokens blank reads "no limit")."""
    common = {"description": label(parameter.name), "style": _LABEL_STYLE, "tooltip": parameter.help}
    if parameter.choices:
        options = state.providers if parameter.name == "provider" else parameter.choices
        return w.Dropdown(options=options, value=value if value in options else None, **common)
    if parameter.kind is float:
        return w.FloatText(value=value, **common)
    placeholder = "no limit" if parameter.name == "max_tokens" else "optional"
    return w.Text(value=shown_value(parameter.name, value) or "", placeholder=placeholder, **common)


def _fill(picker: w.Dropdown, options: list[tuple[str, str]]) -> None:
    """New options, keeping the selection when it is still there, else the first option."""
    previous = picker.value
    picker.options = options
    ids = [value for _, value in options]
    picker.value = previous if previous in ids else (ids[0] if ids else None)


def panel(shell: Any = None) -> ChatPanel:
    """A new ChatPanel bound to the running IPython shell (for inputs, Load and Save as)."""
    if shell is None:
        from IPython import get_ipython
        shell = get_ipython()
    return ChatPanel(shell=shell)
