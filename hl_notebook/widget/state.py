"""The panel's state and every decision it shows, as plain objects and pure functions (no widgets).

Why: the widget panel is only a view. What Run will send (through the magic's ``make_specs``, so
equal inputs give equal specs and DataFrames), what each control is called, whether a value is in
range, which controls apply to an endpoint, the status and progress wording and which rows are
shown are all decided here, so they can be tested without widgets.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..errors import CellSyntaxError, HLError, HLUsageError, MissingInputError
from ..frame import printable_frame
from ..manage import DEFAULT_PROJECT
from ..parse import parse_cell
from ..plan import is_missing, make_specs
from ..spec import PARAMETER, PARAMETERS, ChatSpec

if TYPE_CHECKING:
    import pandas as pd

    from ..call import CallResult
    from ..pool import Run

ENDPOINT_LABELS = {"chat": "/chat (inline config)", "model-config": "/chat-model-config",
                   "experiment": "/chat-experiment", "deployed": "/chat-deployed"}
# the controls' starting values; parameters not named here start unset
DEFAULT_PARAMETERS = {"model": "demo-model", "provider": "mock", "temperature": 0.7, "top_p": 1.0,
                      "presence_penalty": 0.0, "frequency_penalty": 0.0}
# which groups of controls apply to each endpoint (the view maps each group to its box)
SECTIONS = {"chat": ("parameters",), "model-config": ("config",), "experiment": ("experiment", "new_experiment"),
            "deployed": ("environment", "deploy")}
# the control that sets each magic option, for errors worded in the panel's terms
OTHER_LABELS = {"inputs": "Inputs", "num_samples": "Samples", "concurrency": "Concurrency", "project": "Project",
                "model_config_id": "Config", "experiment_id": "Experiment", "environment": "Environment"}
NO_LIMIT = "no limit"  # what max_tokens shows for -1, the wire's "no limit" (spec §5)
THUMBS = ("👍", "👎")  # the rate buttons: they send PanelState.rating_values (good, bad) in this order
RATED_LABEL_CHARS = 40  # output shown in a row's label in the rate picker


def label(name: str) -> str:
    """The control label of a parameter or run option (``top_p`` -> "Top p", ``stop`` -> "Stop sequence")."""
    if name == "stop":
        return "Stop sequence"  # "Stop" is the button that stops a run
    return OTHER_LABELS.get(name) or name.replace("_", " ").capitalize()


_OPTIONS = sorted(((p.option, label(p.name)) for p in PARAMETERS), key=lambda item: -len(item[0])) + \
    [("--" + name.replace("_", "-"), text) for name, text in OTHER_LABELS.items()]


def explain(error: HLError) -> str:
    """``error`` in the panel's words: controls instead of magic options, no class names."""
    if isinstance(error, MissingInputError):
        names = ", ".join(f"`{name}`" for name in error.names)
        return f"no value for {names}: define {names} in the notebook or set Inputs"
    text = str(error)
    if isinstance(error, CellSyntaxError):
        text = text.replace("the cell has no messages", "no messages").replace("below the magic line", "in Messages")
        text = f"Messages, {text}" if error.line else f"Messages: {text}"
    for option, name in _OPTIONS:
        text = re.sub(rf"(?<![\w-]){re.escape(option)}(?![\w-])", name, text)
    return text


def check_parameter(name: str, value: Any) -> Any:
    """A control's value for the wire: None when unset (blank, or max_tokens' -1), else checked.

    Raises:
        HLUsageError: out of range or of the wrong type, naming the control ("Temperature: …").
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    checked = PARAMETER[name].check(value.strip() if isinstance(value, str) else value, label(name))
    return None if name == "max_tokens" and checked == -1 else checked


def parameter_problem(name: str, value: Any) -> str:
    """What is wrong with a control's value ("" when nothing): shown next to the control."""
    try:
        check_parameter(name, value)
    except HLUsageError as exc:
        return str(exc)
    return ""


def shown_value(name: str, value: Any) -> Any:
    """A parameter value as its control shows it: max_tokens -1 (no limit) shows blank, under the
    "no limit" placeholder; whole numbers show as text, blank when unset."""
    if PARAMETER[name].kind is not int:
        return value
    if value is None or (name == "max_tokens" and str(value).strip() == "-1"):
        return ""
    return value if isinstance(value, str) else str(value)


def provider_choices(info: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The providers to offer: the server's ``GET /server-info`` list, else every provider the wire names."""
    listed = (info or {}).get("providers")
    if isinstance(listed, list) and listed and all(isinstance(name, str) for name in listed):
        return tuple(listed)
    return PARAMETER["provider"].choices


def last_hlchat_cell(history: Sequence[str]) -> str | None:
    """The messages of the last ``%%hlchat`` cell in the raw input history (``input_hist_raw``:
    ``In`` holds the transformed ``run_cell_magic(...)`` call, pitfall 19), or None."""
    for source in reversed(history):
        text = source.lstrip()
        if re.match(r"%%hlchat(\s|$)", text):
            return text.split("\n", 1)[1] if "\n" in text else ""
    return None


def load_messages(name: str, namespace: Mapping[str, Any], history: Sequence[str]) -> tuple[str, str]:
    """Messages text for Load, and the status line: from the variable ``name`` (cell text, or a
    list of messages shown as JSON), else, with ``name`` blank, from the last ``%%hlchat`` cell.

    Raises:
        HLUsageError: the variable is not defined, or no ``%%hlchat`` cell has run.
    """
    import json

    name = name.strip()
    if name:
        if name not in namespace:
            raise HLUsageError(f"Load from: {name!r} is not defined in the notebook")
        value = namespace[name]
        return (value if isinstance(value, str) else json.dumps(value, indent=1)), f"loaded the messages from {name}"
    body = last_hlchat_cell(history)
    if body is None:
        raise HLUsageError("no %%hlchat cell has run yet: run one, or give a variable in Load from")
    return body, "loaded the messages of the last %%hlchat cell"


def run_started(number: int, calls: int) -> str:
    return f"run {number}: {calls} call{'s' if calls != 1 else ''}…"


STOPPING = "stopping: pending calls cancelled, finished rows kept"


# -- readable labels -------------------------------------------------------------------------------
def _value_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def distinct_labels(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A label per config row: its ``name`` when someone chose one, else its model plus the
    parameters whose values differ between the rows (``m1 · temperature 0.7``); a label that would
    repeat gets the row's id (or position)."""
    def value(row: Mapping[str, Any], name: str) -> Any:
        found = row.get(name)
        return None if found is None or is_missing(found) else found

    differing = [p.name for p in PARAMETERS if p.name != "model"
                 and len({repr(value(row, p.name)) for row in rows}) > 1]
    labels = []
    for row in rows:
        name = value(row, "name")
        if name and not _generated_name(row, name):
            labels.append(str(name))
            continue
        parts = [str(value(row, "model") or "config")]
        parts += [f"{label(p).lower()} {_value_text(value(row, p))}" for p in differing if value(row, p) is not None]
        labels.append(" · ".join(parts))
    repeated = {text for text in labels if labels.count(text) > 1}
    for i, text in enumerate(labels):
        if text in repeated:
            ident = rows[i].get("config_id") or rows[i].get("id")
            labels[i] = f"{text} ({ident[-6:]})" if ident else f"{text} #{i + 1}"
    return labels


def _generated_name(row: Mapping[str, Any], name: str) -> bool:
    """The server names an unnamed config ``<model>-<last 6 of its id>``: not a name anyone chose."""
    ident = str(row.get("config_id") or row.get("id") or "")
    return bool(ident) and name == f"{row.get('model')}-{ident[-6:]}"


def comparison_labels(entries: Sequence[Mapping[str, Any]], config_names: Mapping[str, str] | None = None,
                      experiment_names: Mapping[str, str] | None = None) -> list[str]:
    """A readable line per comparison entry: inline configs by what sets them apart, registered
    configs and experiments by name (ids only when they are not known)."""
    config_names, experiment_names = config_names or {}, experiment_names or {}
    inline = [e for e in entries if e["endpoint"] == "chat"]
    inline_labels = iter(distinct_labels(inline))
    labels = []
    for entry in entries:
        if entry["endpoint"] == "chat":
            labels.append(f"/chat · {next(inline_labels)}")
        elif entry["endpoint"] == "model-config":
            labels.append(f"config {config_names.get(entry['model_config_id'], entry['model_config_id'])}")
        elif entry["endpoint"] == "experiment":
            labels.append(f"experiment {experiment_names.get(entry['experiment_id'], entry['experiment_id'])}")
        else:
            labels.append(f"deployed · {entry.get('environment') or 'default environment'}")
    return labels


# -- progress and outcome --------------------------------------------------------------------------
def duration(seconds: float) -> str:
    """``4.2 s``, ``1 min 05 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


def progress_text(done: int, total: int, elapsed: float) -> str:
    """``3 / 10 · 1.2 s · ETA 2.8 s`` (no ETA before the first call finishes)."""
    text = f"{done} / {total} · {duration(elapsed)}"
    if 0 < done < total:
        text += f" · ETA {duration(elapsed / done * (total - done))}"
    return text


def outcome(run: "Run", number: int, stopped: bool, elapsed: float) -> tuple[str, str]:
    """The status line after run ``number`` and its tone ("ok" or "error"). A run stopped on
    purpose is not an error: only failed calls are."""
    problem = run.fatal
    if problem is None and run.total == 1 and run.failed:
        problem = run.failed[0].error
    if problem is not None:
        return f"run {number}: {explain(problem)}", "error"
    failed, cancelled = len(run.failed), run.cancelled
    text = f"run {number}: {len(run.results) - failed - cancelled} ok, {failed} failed"
    if cancelled:
        text += f", {cancelled} cancelled" + (" (stopped)" if stopped else "")
    return f"{text} · {duration(elapsed)}", "error" if failed else "ok"


def failed_badge(failed: int, failed_only: bool) -> str:
    """The failed-rows toggle's caption: ``3 failed — show`` / ``3 failed — show all``; "" when none."""
    if not failed:
        return ""
    return f"{failed} failed — {'show all' if failed_only else 'show'}"


class LiveRun:
    """One run in progress: finished calls, streamed text per (call, sample), timing.

    Results arrive on the runner thread and deltas on worker threads, so both go through a lock.
    """

    def __init__(self, total: int, number: int, clock: Callable[[], float] = time.monotonic,
                 redraw_every: float = 0.25) -> None:
        self.total, self.number, self.clock, self.redraw_every = total, number, clock, redraw_every
        self.started = clock()
        self.results: dict[int, "CallResult"] = {}
        self.streams: dict[tuple[int, int], str] = {}
        self.ended: float | None = None
        self._lock = threading.Lock()
        self._drawn_at: float | None = None

    def record(self, result: "CallResult") -> None:
        with self._lock:
            self.results[result.call] = result

    def delta(self, call: int, sample: int, text: str) -> None:
        with self._lock:
            self.streams[(call, sample)] = self.streams.get((call, sample), "") + text

    @property
    def done(self) -> int:
        return len(self.results)

    @property
    def elapsed(self) -> float:
        return (self.ended if self.ended is not None else self.clock()) - self.started

    def finish(self) -> None:
        """The run ended: the elapsed time stops here (progress and status then agree)."""
        if self.ended is None:
            self.ended = self.clock()

    def progress(self) -> str:
        return progress_text(self.done, self.total, self.elapsed)

    def due(self) -> bool:
        """Whether to redraw the table/streams now: at most every ``redraw_every`` seconds."""
        now = self.clock()
        if self._drawn_at is not None and now - self._drawn_at < self.redraw_every:
            return False
        self._drawn_at = now
        return True

    def frame(self) -> "pd.DataFrame":
        """The finished calls as rows (declared order), with this run's number."""
        from ..frame import to_frame

        with self._lock:
            results = list(self.results.values())
        return with_run(to_frame(results), self.number)

    def stream_sections(self) -> list[tuple[str, str]]:
        """(caption, text) per streamed sample, in (call, sample) order; captions name the call and
        sample when there are several."""
        with self._lock:
            items = sorted(self.streams.items())
        calls = {call for call, _ in (key for key, _ in items)}
        samples = {sample for _, sample in (key for key, _ in items)}
        sections = []
        for (call, sample), text in items:
            parts = ([f"call {call}"] if len(calls) > 1 else []) + ([f"sample {sample}"] if len(samples) > 1 else [])
            sections.append((" · ".join(parts), text))
        return sections


def row_place(row: Mapping[str, Any]) -> str:
    """Where a result row is: ``run 2 · call 0 · sample 1``."""
    return f"run {row['run']} · call {row['call']} · sample {row['sample']}"


def with_run(frame: "pd.DataFrame", number: int) -> "pd.DataFrame":
    """``frame`` with a first column ``run`` (1, 2, … per Run click) so runs can be told apart."""
    frame = frame.copy()
    if "run" in frame.columns:
        frame = frame.drop(columns="run")
    frame.insert(0, "run", [number] * len(frame))
    frame["run"] = frame["run"].astype("Int64")
    return frame


# -- the state ---------------------------------------------------------------------------------------
@dataclass
class PanelState:
    """Everything the controls describe, and the results so far. Unset optional values are None
    (or "" for text). ``parameters`` holds one value per ``spec.PARAMETERS`` entry (/chat's inline config).
    """

    endpoint: str = "chat"
    project: str = ""
    messages_text: str = "system: You are a helpful assistant.\nuser: Hello!"
    parameters: dict[str, Any] = field(default_factory=lambda: {p.name: DEFAULT_PARAMETERS.get(p.name)
                                                                for p in PARAMETERS})
    model_config_id: str = ""
    experiment_id: str = ""
    environment: str = ""
    inputs_variable: str = ""
    num_samples: int = 1
    stream: bool = False
    concurrency: int = 8
    comparison: list[dict[str, Any]] = field(default_factory=list)
    providers: tuple[str, ...] = PARAMETER["provider"].choices
    runs: int = 0  # Run clicks that started a run
    failed_only: bool = False
    result: "pd.DataFrame | None" = None
    # 👍/👎 send feedback of this type with these values (the default experiment positive label is rating/good)
    rating_type: str = "rating"
    rating_values: tuple[str, str] = ("good", "bad")

    # -- what the controls mean --------------------------------------------------------------------
    def sections(self) -> tuple[str, ...]:
        return SECTIONS[self.endpoint]

    def problems(self) -> dict[str, str]:
        """Parameter -> what is wrong with its value, for the parameters with a problem."""
        return {name: text for name, value in self.parameters.items() if (text := parameter_problem(name, value))}

    def current_config(self) -> dict[str, Any]:
        """The inline config the controls show: set values only, checked against the parameter table."""
        config = {}
        for name, value in self.parameters.items():
            checked = check_parameter(name, value) if name != "stop" else None
            if checked is not None:
                config[name] = checked
        return config

    def project_name(self) -> str:
        """The project the panel works in: the Project field, else ``HLSettings.project``, else the
        project /chat logs under (``manage.DEFAULT_PROJECT``) — the same for every endpoint."""
        from ..config import HLSettings

        return self.project.strip() or HLSettings.instance().project or DEFAULT_PROJECT

    def current_selector(self) -> dict[str, Any]:
        """What picks the config on the chosen endpoint, as one comparison entry."""
        if self.endpoint == "chat":
            if not str(self.parameters.get("model") or "").strip():
                raise HLUsageError("/chat needs a model: fill in Model")
            return self.current_config()
        if self.endpoint == "model-config":
            if not self.model_config_id:
                raise HLUsageError("/chat-model-config needs a config: click Refresh and pick one")
            return {"model_config_id": self.model_config_id}
        if self.endpoint == "experiment":
            if not self.experiment_id:
                raise HLUsageError("/chat-experiment needs an experiment: click Refresh and pick one, "
                                   "or create one from configs")
            return {"experiment_id": self.experiment_id}
        return {"environment": self.environment} if self.environment else {}

    def add_to_comparison(self) -> str:
        """Add what the controls select (once); returns the status line."""
        entry = {"endpoint": self.endpoint, **self.current_selector()}
        if entry not in self.comparison:
            self.comparison.append(entry)
        return self.comparison_status()

    def remove_from_comparison(self, index: int | None = None) -> str:
        """Remove one entry (all with ``index`` None); returns the status line."""
        if index is None:
            self.comparison.clear()
        elif 0 <= index < len(self.comparison):
            del self.comparison[index]
        return self.comparison_status()

    def comparison_status(self) -> str:
        if not self.comparison:
            return "no comparison: Run calls what the controls show"
        return f"comparing {len(self.comparison)}: {self.run_label()} sweeps them all"

    def run_label(self) -> str:
        """The Run button's caption: it says when Run will sweep the comparison list."""
        n = len(self.comparison)
        return f"Run {n} config{'s' if n > 1 else ''}" if n else "Run"

    def specs(self, namespace: Mapping[str, Any], default_provider: str | None = None) -> list[ChatSpec]:
        """The calls Run makes: the comparison list (or the current controls) × inputs × samples.

        Raises:
            HLUsageError: in the panel's words (``explain``); nothing is sent.
        """
        try:
            return self._specs(namespace, default_provider)
        except HLUsageError as exc:
            raise HLUsageError(explain(exc)) from None

    def _specs(self, namespace: Mapping[str, Any], default_provider: str | None) -> list[ChatSpec]:
        if int(self.concurrency) < 1:  # refused before a run starts, not by the run
            raise HLUsageError("--concurrency must be at least 1")
        messages = parse_cell(self.messages_text)
        inputs = None
        if self.inputs_variable.strip():
            name = self.inputs_variable.strip()
            if name not in namespace:
                raise HLUsageError(f"Inputs: {name!r} is not defined in the notebook")
            inputs = namespace[name]
        entries = self.comparison or [{"endpoint": self.endpoint, **self.current_selector()}]
        stop = self.parameters.get("stop") or None
        specs: list[ChatSpec] = []
        for entry in entries:
            entry = dict(entry)
            endpoint = entry.pop("endpoint")
            axes = {name: [value] for name, value in entry.items()}
            # /chat-deployed needs a project; the others log under the server's default when blank, as the magic does
            project = self.project_name() if endpoint == "deployed" else (self.project.strip() or None)
            specs.extend(make_specs(messages, endpoint=endpoint, axes=axes, inputs=inputs,
                                    deployed=endpoint == "deployed", stop=stop if endpoint == "chat" else None,
                                    project=project, num_samples=int(self.num_samples), stream=self.stream,
                                    default_provider=default_provider, namespace=namespace))
        if not specs:  # (an empty --inputs list or DataFrame: a filter that matched nothing)
            raise HLUsageError("--inputs has no rows; nothing was sent")
        return specs

    # -- results -----------------------------------------------------------------------------------
    def start_run(self, total: int) -> LiveRun:
        self.runs += 1
        return LiveRun(total, self.runs)

    def add_rows(self, frame: "pd.DataFrame") -> None:
        """Append a finished run's rows (``frame`` from ``LiveRun.frame`` or with a ``run`` column)."""
        import pandas as pd

        if len(frame):
            self.result = frame if self.result is None else pd.concat([self.result, frame], ignore_index=True)

    def clear_results(self) -> None:
        self.result, self.failed_only = None, False

    # -- ratings (👍/👎 per row: feedback on the row's log) ------------------------------------------
    @property
    def rating_column(self) -> str:
        """Where a row's rating is kept: the column ``hl_notebook.feedback`` adds (so Save as has it)."""
        return f"feedback.{self.rating_type}"

    def rating_options(self) -> list[tuple[str, str]]:
        """(label, log id) of each row the table shows that has a log (a failed call has none), in
        the table's order: ``run 2 · call 0 · sample 1 · m: the output…``."""
        frame = self.rows()
        if frame is None or "log_id" not in frame.columns:
            return []
        frame = printable_frame(frame[frame["log_id"].notna()])
        outputs = frame["output"].astype("string").fillna("").str.replace("\n", " ") if "output" in frame else \
            [""] * len(frame)
        options = []
        for row, output in zip(frame[["run", "call", "sample", "log_id"]].to_dict("records"), outputs):
            shown = output if len(output) <= RATED_LABEL_CHARS else output[:RATED_LABEL_CHARS - 1] + "…"
            options.append((f"{row_place(row)} · {shown}", str(row["log_id"])))
        return options

    def rating_frame(self, log_id: str | None) -> "pd.DataFrame":
        """The stored rows of ``log_id``: what 👍/👎 hands to ``hl_notebook.feedback``.

        Raises:
            HLUsageError: no row picked, or the row is not among the results (cleared).
        """
        rows = None if self.result is None or not log_id else self.result[self.result["log_id"] == log_id]
        if rows is None or not len(rows):
            raise HLUsageError("nothing to rate: run first, then pick a row in Rate")
        return rows

    def record_rating(self, log_id: str, value: str, sent: "pd.DataFrame") -> tuple[str, str]:
        """Keep the rating ``hl_notebook.feedback`` sent (``sent``: its frame) in the row; returns the
        status line and its tone. A row the server refused keeps its old rating."""
        import pandas as pd

        rows = self.rating_frame(log_id)
        where = row_place(rows.iloc[0])
        error = sent[self.rating_column + ".error"].iloc[0]
        if not is_missing(error):
            return f"{where}: {str(error).removeprefix('not sent: ')}", "error"
        assert self.result is not None
        if self.rating_column not in self.result.columns:
            self.result[self.rating_column] = pd.Series(pd.NA, index=self.result.index, dtype="string")
        self.result.loc[rows.index, self.rating_column] = value
        return f"rated {where} {self.thumb(value)} {value}", "ok"

    def thumb(self, value: Any) -> str:
        """How the table shows a rating: 👍/👎 for the two rating values, else the value itself."""
        if is_missing(value):
            return ""
        return dict(zip(self.rating_values, THUMBS)).get(str(value), str(value))

    def next_to_rate(self, log_id: str) -> str | None:
        """The row after ``log_id`` in the rate picker (the last one stays), so 👍/👎 walk the table."""
        ids = [ident for _, ident in self.rating_options()]
        if log_id not in ids:
            return ids[0] if ids else None
        return ids[min(ids.index(log_id) + 1, len(ids) - 1)]

    def failed_rows(self, extra: "pd.DataFrame | None" = None) -> int:
        frame = self.rows(extra, filtered=False)
        return 0 if frame is None else int(frame["error"].notna().sum())

    def rows(self, extra: "pd.DataFrame | None" = None, filtered: bool = True) -> "pd.DataFrame | None":
        """The rows the table shows: the newest run first (``extra``, a run in progress, on top), each
        run in its declared order; only the failed ones when the filter is on."""
        import pandas as pd

        runs = [] if self.result is None else [run for _, run in self.result.groupby("run", sort=False)][::-1]
        frames = [f for f in [extra, *runs] if f is not None and len(f)]
        if not frames:
            return None
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        return frame[frame["error"].notna()] if filtered and self.failed_only else frame

    def table_rows(self, extra: "pd.DataFrame | None" = None) -> "pd.DataFrame | None":
        """``rows`` plus, once a row is rated, a ``rating`` column as the table shows it (👍/👎)."""
        frame = self.rows(extra)
        if frame is None or self.rating_column not in frame.columns:
            return frame
        return frame.assign(rating=[self.thumb(value) for value in frame[self.rating_column]])

    def analysis_frame(self) -> "pd.DataFrame | None":
        """The rows for ``compare``/``summary``: call numbers restart with every run, so each
        (run, call) gets a number of its own (they count calls once per call)."""
        if not self.can_save:
            return None
        frame = self.result.copy()
        frame["call"] = frame.groupby(["run", "call"], sort=False).ngroup()
        return frame

    @property
    def can_save(self) -> bool:
        return self.result is not None and len(self.result) > 0

    def save_as(self, name: str, namespace: dict[str, Any]) -> str:
        """Assign the rows to the notebook variable ``name``; returns the status line.

        Raises:
            HLUsageError: ``name`` is not a variable name, or there are no rows yet.
        """
        name = name.strip()
        if not name.isidentifier():
            raise HLUsageError(f"Save as: {name!r} is not a valid variable name")
        if not self.can_save:
            raise HLUsageError("nothing to save yet: click Run first")
        namespace[name] = self.result
        return f"saved {len(self.result)} rows as {name}"
