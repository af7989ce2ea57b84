"""CallResults -> the tidy DataFrame; the column contract (names, order, dtypes) lives here.

Why: every front end returns the same frame, and analysis code (pivot_table, plots, history) relies
on its columns being the same whether 0, 1 or N calls succeeded (conventions §2.7).

Contract: one row per returned sample; a failed call with nothing received is one row with
``sample`` = <NA> and ``error``/``error_type`` set; a broken stream keeps its partial ``output``
*and* the error. Rows are in declared (call, sample) order, never completion order. Lists and dicts
are JSON strings. Keys, request bodies and raw provider payloads are never in the frame; the last
column, ``request``, is the call's ChatSpec as JSON (no keys) so that failed rows can be re-run;
``call_key`` is the call's Idempotency-Key, so a re-run is the same call to the server.

Token counts are per call: the v4 wire reports ``usage`` once per response, not per sample. They
are the columns ``call_prompt_tokens``, ``call_generation_tokens``, ``call_total_tokens``, filled on
the call's first row and <NA> on its other sample rows, so ``df.call_total_tokens.sum()`` over any
frame (a sweep, a filter by config, history) counts each call's usage exactly once, and ``mean()``
is the mean per call. The names say so because the value cannot be split by sample: with
``/chat-experiment`` the samples of one call may come from different configs, and the call's usage
is on the row of its first sample. (Before, ``prompt_tokens``/``generation_tokens``/``total_tokens``
repeated the call's usage on every sample row; history written then is read back into the new
columns.) ``latency_s`` is per call too and repeats; summary() takes it once per call.

Parameter columns hold the value the server used: the value sent (``/chat``), else the registered
config's (the other endpoints, ``configs`` fetched per config id), else the parameter's wire
default (``spec.PARAMETERS``), so identical configs never split a groupby. They stay <NA> only
where the config is unknown (a failed non-/chat call) or the parameter has no default (``seed``).
"""
from __future__ import annotations

import json
import re
import time
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from .parse import last_user_text
from .spec import PARAMETERS, SPEC_FIELDS, ChatSpec
from .template import VARIABLE

if TYPE_CHECKING:
    import pandas as pd

    from .call import CallResult

# (name, dtype) in order; ``inputs.<name>`` columns are inserted before OUTPUT_COLUMNS
ID_COLUMNS = [("call", "Int64"), ("sample", "Int64"), ("log_id", "string"), ("call_key", "string")]
CONFIG_COLUMNS = [
    ("endpoint", "string"), ("project", "string"), ("project_id", "string"),
    *((parameter.name, parameter.dtype) for parameter in PARAMETERS),
    ("environment", "string"), ("experiment_id", "string"), ("model_config_id", "string"),
]
# frame column -> the v4 ``usage`` field it holds (once per call)
USAGE_FIELDS = {"call_prompt_tokens": "prompt_tokens", "call_generation_tokens": "generation_tokens",
                "call_total_tokens": "total_tokens"}
TOKEN_COLUMNS = list(USAGE_FIELDS)
# the columns of frames written before the token counts were per call (repeated on each sample row)
LEGACY_TOKEN_COLUMNS = {usage: column for column, usage in USAGE_FIELDS.items()}
OUTPUT_COLUMNS = [
    ("prompt", "string"), ("output", "string"), ("finish_reason", "string"), ("tool_calls", "string"),
    ("upstream_model", "string"),  # the model the provider says served the call (``model`` is the one asked)
    *((name, "Int64") for name in TOKEN_COLUMNS),
    ("latency_s", "float64"), ("created_at", "datetime64[ns, UTC]"), ("cached", "bool"),
]
ERROR_COLUMNS = [("error", "string"), ("error_type", "string")]
# last: the call as JSON (no keys), what ``retry(df)`` re-runs failed rows from
REQUEST_COLUMNS = [("request", "string")]
VOLATILE_COLUMNS = ["log_id", "call_key", "latency_s", "created_at", "cached", "project_id"]
CONFIG_KEYS = [parameter.name for parameter in PARAMETERS]


def columns(input_names: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The full ordered schema for a frame with these input names."""
    inputs = [(f"inputs.{name}", "string") for name in input_names]
    return [*ID_COLUMNS, *CONFIG_COLUMNS, *inputs, *OUTPUT_COLUMNS, *ERROR_COLUMNS, *REQUEST_COLUMNS]


def _json_function(sort_keys: bool = True, default: Callable[[Any], Any] | None = None) -> Callable[[Any], str]:
    """``json.dumps(value, sort_keys=..., default=...)`` reusing one C encoder: building an encoder
    per call was a third of the frame's assembly time. Without the circular check (frame values are
    plain JSON from plan.py; a cycle still raises, as RecursionError)."""
    encoder = json.JSONEncoder(sort_keys=sort_keys, default=default, check_circular=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode
    one = make(None, encoder.default, json.encoder.encode_basestring_ascii, None, ": ", ", ", sort_keys, False, True)
    return lambda value: "".join(one(value, 0))


_json_text = _json_function()  # json.dumps(value, sort_keys=True)
_json_spec = _json_function(default=str)  # spec_to_json's settings
_json_plain = _json_function(sort_keys=False)  # json.dumps(value): template.render_text's stringify


def _stringify(value: Any) -> str:
    """``template._stringify`` (spec §5.1: non-string input values as JSON), faster."""
    if type(value) is str:
        return value
    return str(value) if type(value) is int else _json_plain(value)


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if type(value) is int:
        return str(value)  # what json.dumps gives
    return _json_text(value)


def effective_params(sent: dict[str, Any], registered: dict[str, Any] | None, known: bool) -> tuple[Any, ...]:
    """The parameter values the server used, in ``CONFIG_KEYS`` order: the value sent, else the
    registered config's, else (when the config is ``known``) the wire default of spec §5."""
    values = []
    for parameter in PARAMETERS:
        value = sent.get(parameter.name)
        if value is None and registered:
            value = registered.get(parameter.name)
        if value is None and known:
            value = parameter.default
        values.append(_text(value) if parameter.name == "stop" else value)
    return tuple(values)


# -- assembly ------------------------------------------------------------------------------------
_HEAD_FIELDS = [name for name in sorted(SPEC_FIELDS) if name < "inputs"]
_TAIL_FIELDS = [name for name in sorted(SPEC_FIELDS) if name > "inputs"]


class _SpecParts:
    """What many calls share, computed once within one ``to_frame`` call: the ``request`` JSON
    around the inputs and the prompt template (per distinct spec fields), the parameter values
    (per config).

    Spec fields are keyed by ``id()`` of the specs' shared dicts and tuples (a sweep's specs are
    ``replace``d from one base, so they share them); every result stays alive during the call, so
    no id is reused.
    """

    def __init__(self, configs: dict[str, dict[str, Any]]) -> None:
        self.configs = configs
        self._request: dict[tuple, tuple[str, str]] = {}
        self._renderers: dict[int, Callable[[dict[str, Any]], Any]] = {}
        self._params: dict[tuple, int] = {}
        self.param_values: list[tuple[Any, ...]] = []  # distinct parameter values, in CONFIG_KEYS order

    def request(self, spec: ChatSpec) -> str:
        """``spec_to_json(spec)`` byte for byte: sorted keys, so the inputs sit between the fields
        before ``inputs`` and those after it."""
        head, tail = self._request_parts(spec)
        return head + _json_spec(spec.inputs) + tail

    def prompt(self, spec: ChatSpec) -> Any:
        """``last_user_text(render(spec.messages, spec.inputs))``, the template split once."""
        renderer = self._renderers.get(id(spec.messages))
        if renderer is None:
            renderer = self._renderers[id(spec.messages)] = _prompt_renderer(spec.messages)
        return renderer(spec.inputs)

    def _request_parts(self, spec: ChatSpec) -> tuple[str, str]:
        key = (spec.endpoint, spec.environment, spec.experiment_id, id(spec.messages), id(spec.metadata),
               id(spec.model_config), spec.model_config_id, spec.num_samples, spec.project, spec.project_id,
               spec.save, spec.session_id, spec.source, spec.stream)
        parts = self._request.get(key)
        if parts is None:
            head = _json_spec({name: getattr(spec, name) for name in _HEAD_FIELDS})
            tail = _json_spec({name: getattr(spec, name) for name in _TAIL_FIELDS})
            parts = self._request[key] = (head[:-1] + ', "inputs": ', ", " + tail[1:])
        return parts

    def params(self, spec: ChatSpec, config_id: str | None) -> int:
        """The number of the row's parameter values in ``self.param_values``."""
        key = (id(spec.model_config), spec.endpoint == "chat", config_id)
        number = self._params.get(key)
        if number is None:
            registered = self.configs.get(config_id or "")
            known = spec.endpoint == "chat" or registered is not None
            number = self._params[key] = len(self.param_values)
            self.param_values.append(effective_params(spec.model_config, registered, known))
        return number


def _prompt_renderer(messages: Sequence[dict[str, Any]]) -> Callable[[dict[str, Any]], Any]:
    """A function of the inputs giving the prompt; the template is split once (spec §5.1 rules,
    as ``template.render_text``: one pass, a variable without a value stays as written)."""
    text = last_user_text(list(messages))
    if not isinstance(text, str) or "{{" not in text:
        return lambda inputs: text
    pieces: list[tuple[str, str, str]] = []  # (literal before, variable name, as written)
    end = 0
    for match in VARIABLE.finditer(text):
        pieces.append((text[end:match.start()], match.group(1), match.group(0)))
        end = match.end()
    rest = text[end:]
    if len(pieces) == 1:  # the common template: one variable
        (literal, name, written), = pieces

        def render_one(inputs: dict[str, Any]) -> str:
            return literal + (_stringify(inputs[name]) if name in inputs else written) + rest
        return render_one

    def render(inputs: dict[str, Any]) -> str:
        out = []
        for literal, name, written in pieces:
            out.append(literal)
            out.append(_stringify(inputs[name]) if name in inputs else written)
        out.append(rest)
        return "".join(out)
    return render


_NO_SAMPLE = ({"index": None},)  # the one row of a call that returned no sample
_NOTHING: dict[str, Any] = {}


class SpecColumns:
    """The frame's per-call columns that the calls' specs alone decide, built before the answers.

    Why: a sweep's calling thread only waits while the calls run, and these columns (above all
    each call's ``request`` JSON and ``prompt``) were half of the frame's own work after the last
    answer. ``build_some`` makes them a little at a time (the workers keep the GIL most of the
    time); ``to_frame`` takes them, finishing what is left, when its results' specs are
    ``specs`` in this order (the same objects), and builds them itself otherwise.
    """

    STEP = 128  # specs per step of a column

    def __init__(self, specs: Sequence[ChatSpec]) -> None:
        self.specs = list(specs)
        self.names = _input_names(self.specs)
        shared = _SpecParts({})

        def inputs(name: str) -> Callable[[ChatSpec], Any]:
            return lambda spec: spec.inputs.get(name)

        # column name -> its value for one spec
        self._makers: dict[str, Callable[[ChatSpec], Any]] = {
            "endpoint": attrgetter("endpoint"), "project": attrgetter("project"),
            "environment": attrgetter("environment"), "experiment_id": attrgetter("experiment_id"),
            **{f"inputs.{name}": inputs(name) for name in self.names},
            "prompt": shared.prompt, "request": shared.request}
        self.arrays: dict[str, Any] = {}  # column name -> one value per call, converted to its dtype
        self._todo = [(name, dtype) for name, dtype in columns(self.names) if name in self._makers]
        self._values: list[Any] = []  # of the column being made

    @property
    def complete(self) -> bool:
        return not self._todo

    def build_some(self, seconds: float = 0.001) -> bool:
        """Build for about ``seconds`` (at least one step); True while columns remain."""
        deadline = time.perf_counter() + seconds
        while self._todo:
            name, dtype = self._todo[0]
            done = len(self._values)
            self._values.extend(map(self._makers[name], self.specs[done:done + self.STEP]))
            if len(self._values) == len(self.specs):
                values = _input_texts(self._values) if name.startswith("inputs.") else self._values
                self.arrays[name] = _array(values, dtype)
                self._todo.pop(0)
                self._values = []
            if time.perf_counter() >= deadline:
                break
        return bool(self._todo)

    def serves(self, specs: Sequence[ChatSpec]) -> bool:
        """Whether these columns are those of ``specs`` (the same spec objects, in order)."""
        return len(specs) == len(self.specs) and all(a is b for a, b in zip(specs, self.specs))

    def finished(self) -> dict[str, Any]:
        while self.build_some(seconds=float("inf")):
            pass
        return self.arrays


def to_frame(results: Iterable["CallResult"], configs: dict[str, dict[str, Any]] | None = None,
             prepared: SpecColumns | None = None) -> "pd.DataFrame":
    """The contract frame for ``results`` in (call, sample) order.

    Built by columns: each column is one pass over the calls (or the rows, or the distinct
    configs), converted to its dtype at that level and then spread to the rows by position (no
    per-row dicts, no transposing, no second pass through ``conform``); what calls share is
    computed once (``_SpecParts``). Columns are lists of plain values, never a tuple per row: a
    million small containers kept alive make the garbage collector run over and over. The columns
    the specs alone decide come from ``SpecColumns``: ``prepared`` (built ahead) when it holds
    these results' specs, else made here.
    """
    import numpy as np

    ordered = sorted(results, key=attrgetter("call"))
    specs = [result.spec for result in ordered]
    responses = [result.response or _NOTHING for result in ordered]
    samples = [_samples(response) for response in responses]
    counts = [len(entries) for entries in samples]
    entries = [entry for call_entries in samples for entry in call_entries]
    # each row's call (None: row i is call i), and each row's call on its first row only (-1: none)
    row_call = first_rows = None
    if len(entries) != len(specs):
        row_call = np.repeat(np.arange(len(specs)), counts)
        first_rows = np.full(len(entries), -1)
        first_rows[np.cumsum([0, *counts[:-1]])] = np.arange(len(specs))
    row_specs = specs if row_call is None else [specs[call] for call in row_call.tolist()]
    shared = _SpecParts(configs or {})
    names = _input_names(specs)
    config_ids = [entry.get("model_config_id") or spec.model_config_id for entry, spec in zip(entries, row_specs)]
    numbers = np.array([shared.params(spec, config_id)  # each row's parameter values, by number
                        for spec, config_id in zip(row_specs, config_ids)], dtype=np.intp)
    per_config = dict(zip(CONFIG_KEYS, map(list, zip(*shared.param_values)))) if shared.param_values \
        else dict.fromkeys(CONFIG_KEYS, [])
    per_call = _call_columns(ordered, specs, responses)
    per_row = _row_columns(entries, config_ids)
    usage = [response.get("usage") or _NOTHING for response in responses]
    from_specs = (prepared if prepared is not None and prepared.serves(specs) else SpecColumns(specs)).finished()
    data = {}
    for name, dtype in columns(names):  # each column made, converted and let go before the next
        if name in from_specs:
            data[name] = _spread(from_specs[name], row_call)
        elif name in per_call:
            data[name] = _spread(_array(per_call[name](), dtype), row_call)
        elif name in USAGE_FIELDS:  # usage is the call's: on its first row only
            counts_of_call = [used.get(USAGE_FIELDS[name]) for used in usage]
            data[name] = _spread(_array(counts_of_call, dtype), first_rows, fill=True)
        elif name in per_config:
            data[name] = _spread(_array(per_config[name], dtype), numbers)
        else:
            data[name] = _array(per_row[name](), dtype)
    return _frame(data, len(entries))


def _call_columns(ordered: list["CallResult"], specs: list[ChatSpec], responses: list[dict[str, Any]]
                  ) -> dict[str, Callable[[], list[Any]]]:
    """The other columns with one value per call (``SpecColumns`` has those of the specs alone),
    each made when asked: a column of 100k values alive at a time, not thirty (a list is a
    container the garbage collector walks whole)."""
    return {
        "call": lambda: [result.call for result in ordered], "call_key": lambda: [spec.call_key for spec in specs],
        "project_id": lambda: [response.get("project_id") or spec.project_id
                               for response, spec in zip(responses, specs)],
        "latency_s": lambda: [result.latency_s for result in ordered],
        "created_at": lambda: [result.created_at for result in ordered],
        "cached": lambda: [result.cached for result in ordered],
        "error": lambda: [None if result.error is None else str(result.error) for result in ordered],
        "error_type": lambda: [None if result.error is None else type(result.error).__name__ for result in ordered],
        "upstream_model": lambda: [_served_model(response) for response in responses],
    }


def _served_model(response: dict[str, Any]) -> str | None:
    """``provider_responses[0].model``: what the provider says answered (a local server names its
    weights file, an alias its dated model); None when it said nothing (a cached call, a failure)."""
    answers = response.get("provider_responses")
    model = answers[0].get("model") if answers and isinstance(answers[0], dict) else None
    return model if isinstance(model, str) else None


def _row_columns(entries: list[dict[str, Any]], config_ids: list[Any]) -> dict[str, Callable[[], list[Any]]]:
    """The columns with one value per sample (``entries``), each made when asked."""
    return {
        "sample": lambda: [entry.get("index", 0) for entry in entries],
        "log_id": lambda: [entry.get("id") for entry in entries], "model_config_id": lambda: config_ids,
        "output": lambda: [entry.get("output") for entry in entries],
        "finish_reason": lambda: [entry.get("finish_reason") for entry in entries],
        "tool_calls": lambda: _input_texts([entry.get("tool_calls") for entry in entries]),
    }


def _spread(array: Any, positions: Any, fill: bool = False) -> Any:
    """``array`` (one value per call or per config) at ``positions`` (one per row); -1 is <NA>
    with ``fill``. ``None`` positions: already one value per row."""
    import numpy as np

    if positions is None:
        return array
    if isinstance(array, np.ndarray):
        return array[positions]
    return array.take(positions, allow_fill=fill)


def _samples(response: dict[str, Any]) -> Sequence[dict[str, Any]]:
    """The call's samples in index order (the server's list itself when it is: no new list kept)."""
    samples = response.get("data") or _NO_SAMPLE
    if len(samples) > 1:
        indexes = [entry.get("index", 0) for entry in samples]
        if indexes != sorted(indexes):
            return sorted(samples, key=_sample_index)
    return samples


def _sample_index(entry: dict[str, Any]) -> int:
    return entry.get("index", 0)


def _input_names(specs: list[ChatSpec]) -> list[str]:
    return list(dict.fromkeys(name for spec in specs for name in spec.inputs))


def _input_texts(values: list[Any]) -> list[Any]:
    """A text column (``inputs.<name>``, ``tool_calls``): strings as they are, other values as JSON."""
    return values if _NO_TYPE_OR_STR.issuperset(map(type, values)) else list(map(_text, values))


_NO_TYPE_OR_STR = {str, type(None)}


def _frame(data: dict[str, Any], length: int) -> "pd.DataFrame":
    import pandas as pd

    return result_frame(pd.DataFrame(data, index=pd.RangeIndex(length)))


def _array(values: Sequence[Any], dtype: str) -> Any:
    """``values`` as a column of ``dtype``; a value of the wrong type (a registered config is the
    server's data) becomes <NA> rather than costing the frame."""
    import numpy as np
    import pandas as pd

    if not isinstance(values, (list, tuple)):
        values = list(values)
    if values and values[0] is None and values.count(None) == len(values):  # unused: no per-value work
        return _missing(len(values), dtype)
    try:
        if dtype == "float64":
            return np.array(values, dtype="float64")
        if dtype == "bool":
            return np.array(values, dtype=bool)
        if dtype.startswith("datetime"):
            return pd.to_datetime(values, utc=True).astype(dtype).array
        return string_array(values) if dtype == "string" else pd.array(values, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        return _coerce(pd.Series(values, dtype=object), dtype).array


def string_array(values: Any) -> Any:
    """``values`` (str or None) as a "string" array in pandas' default storage; in Python storage
    when pyarrow cannot hold them (a lone surrogate, valid in a Python str, is not UTF-8)."""
    import pandas as pd

    if pd.StringDtype().storage == "pyarrow":  # straight to Arrow: pd.array checks every value first
        import pyarrow as pa

        try:
            return pd.arrays.ArrowStringArray(pa.array(values, type=pa.large_string(), from_pandas=True))
        except (pa.ArrowException, UnicodeEncodeError, TypeError, ValueError):
            pass  # not all str (pd.array makes them str) or not UTF-8 (below)
    try:
        return pd.array(values, dtype="string")
    except UnicodeEncodeError:
        return pd.array(values, dtype=pd.StringDtype("python"))


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with each lone surrogate as U+FFFD, for what is shown or written to a file: a Python
    str may hold one, UTF-8 cannot, and Jupyter's messages and report files are UTF-8 (the frame's
    values keep it)."""
    return text if text.isascii() else _LONE_SURROGATE.sub("\ufffd", text)


def printable_frame(frame: "pd.DataFrame") -> "pd.DataFrame":
    """``frame``, or a copy of it whose text has U+FFFD for each lone surrogate, for the views made
    from frames (diff, compare, report, the panel's table). Why: pandas moves text columns to
    its default string storage along the way (groupby keys, comparisons, pivots), and Arrow storage
    refuses a lone surrogate, so a view of a frame holding one raised; what a view shows must be
    UTF-8 anyway. Only text columns in Python storage or of object dtype can hold one."""
    import pandas as pd

    clean = {}
    for name in frame.columns:
        column = frame[name]
        dtype = column.dtype
        if not (dtype == object or (isinstance(dtype, pd.StringDtype) and dtype.storage == "python")):
            continue
        values = column.tolist()
        if not _LONE_SURROGATE.search("".join(v for v in values if type(v) is str and not v.isascii())):
            continue
        values = [printable(v) if type(v) is str else v for v in values]
        clean[name] = pd.Series(values, index=frame.index, dtype=object) if dtype == object \
            else pd.Series(string_array(values), index=frame.index)
    return frame.assign(**clean) if clean else frame


def _missing(length: int, dtype: str) -> Any:
    """An all-<NA> column without converting ``length`` Nones one by one."""
    import numpy as np
    import pandas as pd

    if dtype == "Int64":
        return pd.arrays.IntegerArray(np.zeros(length, dtype="int64"), np.ones(length, dtype=bool))
    if dtype == "bool":
        return np.zeros(length, dtype=bool)
    if dtype == "string" and pd.StringDtype().storage == "pyarrow":  # ~5 us, against ~110 us through a Series
        import pyarrow as pa

        return pd.arrays.ArrowStringArray(pa.nulls(length, pa.large_string()))
    return pd.Series(None, index=pd.RangeIndex(length), dtype=dtype).array


def _coerce(series: "pd.Series", dtype: str) -> "pd.Series":
    import pandas as pd

    if dtype == "bool":
        return series.fillna(False).astype(bool)
    if dtype.startswith("datetime"):
        return pd.to_datetime(series, utc=True, errors="coerce").astype(dtype)
    if dtype == "string":
        return pd.Series(string_array(series.astype("object").where(series.notna(), None).to_numpy()),
                         index=series.index)
    try:
        return series.astype(dtype)
    except (TypeError, ValueError, OverflowError):
        numbers = pd.to_numeric(series, errors="coerce")
        if dtype == "Int64":
            numbers = numbers.where(numbers.isna() | (numbers == numbers.round()))
        return numbers.astype(dtype)


def conform(records: list[dict[str, Any]] | "pd.DataFrame") -> "pd.DataFrame":
    """Records (or a frame, e.g. loaded from history) with the contract's columns, order and dtypes."""
    import pandas as pd

    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(records)
    input_names = [c[len("inputs."):] for c in frame.columns if str(c).startswith("inputs.")]
    schema = columns(input_names)
    frame = frame.reindex(columns=[name for name, _ in schema])
    for name, dtype in schema:
        if str(frame[name].dtype) != dtype:
            frame[name] = _coerce(frame[name], dtype)
    return result_frame(frame)


# -- display -------------------------------------------------------------------------------------
# shown only on request: wide or technical columns that push ``output`` out of pandas' default view
HIDDEN_IN_DISPLAY = ["request", "log_id", "call_key", "project_id", "created_at", "cached", "tool_calls"]
# the view's first columns: short ids, then the text people read
VIEW_LEAD = ["session", "run", "call", "sample", "output"]
WRAPPED_IN_DISPLAY = ["output", "error"]  # wrapped, shown up to OUTPUT_CHARS characters
OUTPUT_CHARS = 500
SHORT_CHARS = 40  # prompt and inputs in the view (the frame keeps them whole)
ID_CHARS = 12  # e.g. ``config_a1b2c…``
SHORT_IDS = ["model_config_id", "experiment_id", "session"]


def result_frame(frame: "pd.DataFrame") -> "pd.DataFrame":
    """``frame`` as a ResultFrame: all columns kept, a compact view when displayed."""
    return _result_frame_class()(frame)


def display_view(frame: "pd.DataFrame") -> "pd.DataFrame":
    """What a ResultFrame shows: ``output`` first after the short ids, technical and all-empty
    columns left out, ids, times and secondary text shortened. A new frame: the data is untouched."""
    import pandas as pd

    hidden = [c for c in HIDDEN_IN_DISPLAY if c in frame.columns]
    hidden += [c for c in frame.columns if c not in hidden and c not in WRAPPED_IN_DISPLAY
               and frame[c].isna().all()]
    view = pd.DataFrame(frame).drop(columns=hidden)
    lead = [c for c in VIEW_LEAD if c in view.columns]
    view = view[lead + [c for c in view.columns if c not in lead]]
    rows = _shown_rows(len(view))
    for name in view.columns:
        column = view[name]
        if name in SHORT_IDS or name == "prompt" or str(name).startswith("inputs."):
            limit = ID_CHARS if name in SHORT_IDS else SHORT_CHARS
            view.iloc[rows, view.columns.get_loc(name)] = _elide(_coerce(column.iloc[rows], "string"), limit).array
        elif str(column.dtype).startswith("datetime64"):
            view[name] = column.dt.floor("s").dt.tz_localize(None)  # UTC, to the second
        elif name == "latency_s":
            view[name] = column.round(3)
    return view


def _shown_rows(n: int) -> Any:
    """The row positions pandas will display (head and tail when truncated): only they are shortened."""
    import numpy as np
    import pandas as pd

    max_rows = pd.get_option("display.max_rows")
    if not max_rows or n <= max_rows:
        return slice(None)
    shown = min(pd.get_option("display.min_rows") or max_rows, max_rows)
    half = max(shown // 2, 1)
    return np.r_[0:half, n - half:n]


def _elide(values: "pd.Series", limit: int) -> "pd.Series":
    long = values.str.len() > limit
    return values.where(~long.fillna(False), values.str.slice(0, limit - 1) + "…")


def _wrap_css(view: "pd.DataFrame") -> tuple[str, str]:
    """A class name and the rules that wrap and widen ``output``/``error`` in pandas' table. Cells
    are picked by position: from the start for the lead columns and from the end for the others,
    so both stay right when pandas leaves out middle columns (``display.max_columns``)."""
    picks = []  # (CSS pseudo-class, the class-name part)
    count = len(view.columns)
    for name in WRAPPED_IN_DISPLAY:
        if name in view.columns:
            position = view.columns.get_loc(name)
            if position < count / 2:
                nth = view.index.nlevels + position + 1
                picks.append((f"nth-child({nth})", f"c{nth}"))
            else:
                picks.append((f"nth-last-child({count - position})", f"l{count - position}"))
    if not picks:
        return "", ""
    name = "hl-frame-" + "-".join(part for _, part in picks)
    cells = ", ".join(f".{name} td:{pseudo}" for pseudo, _ in picks)
    rule = (f"<style>.{name} td {{vertical-align: top}} {cells} {{white-space: pre-wrap; text-align: left; "
            f"overflow-wrap: anywhere; min-width: 30ch; max-width: 80ch}}</style>")
    return name, rule


def _result_frame_class() -> type:
    global _ResultFrame
    if _ResultFrame is None:
        import pandas as pd

        class ResultFrame(pd.DataFrame):
            """A DataFrame whose display leaves out technical and all-empty columns and shows
            ``output`` first, wrapped, up to 500 characters. Data and every operation are plain
            pandas; derived frames are plain DataFrames."""

            @property
            def _constructor(self) -> type:
                return pd.DataFrame

            def display_view(self) -> "pd.DataFrame":
                return display_view(self)

            def _hidden_note(self, view: "pd.DataFrame") -> int:
                return len(self.columns) - len(view.columns)

            def _repr_html_(self) -> str | None:
                view = self.display_view()
                with pd.option_context("display.max_colwidth", OUTPUT_CHARS):
                    html = view._repr_html_()
                if html is None:
                    return None
                hidden = self._hidden_note(view)
                note = f"<p><small>{hidden} empty or technical columns not shown; all are in the frame " \
                       f"(<code>list(df.columns)</code>)</small></p>" if hidden else ""
                name, rule = _wrap_css(view)
                return printable(f'<div class="{name}">{rule}{html}{note}</div>')

            def __repr__(self) -> str:
                view = self.display_view()
                # a terminal's auto-fit (max_columns 0) would drop the wide output column: wrap instead
                columns = pd.get_option("display.max_columns") or 20
                with pd.option_context("display.max_colwidth", OUTPUT_CHARS, "display.max_columns", columns):
                    text = repr(view)
                hidden = self._hidden_note(view)
                return printable(text + (f"\n({hidden} empty or technical columns not shown)" if hidden else ""))

        _ResultFrame = ResultFrame
    return _ResultFrame


_ResultFrame: type | None = None
