"""CallResults -> the tidy DataFrame; the column contract (names, order, dtypes) lives here.

Why: every front end returns the same frame, and analysis code (pivot_table, plots, history) relies
on its columns being the same whether 0, 1 or N calls succeeded (conventions §2.7).

Contract: one row per returned sample; a failed call with nothing received is one row with
``sample`` = <NA> and ``error``/``error_type`` set; a broken stream keeps its partial ``output``
*and* the error. Usage is per response, so with ``num_samples > 1`` the token counts repeat on each
sample row. Rows are in declared (call, sample) order, never completion order. Lists and dicts are
JSON strings. Keys, request bodies and raw provider payloads are never in the frame; the last
column, ``request``, is the call's ChatSpec as JSON (no keys) so that failed rows can be re-run;
``call_key`` is the call's Idempotency-Key, so a re-run is the same call to the server.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable

from .parse import last_user_text
from .spec import PARAMETERS, spec_to_json
from .template import render

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
OUTPUT_COLUMNS = [
    ("prompt", "string"), ("output", "string"), ("finish_reason", "string"), ("tool_calls", "string"),
    ("prompt_tokens", "Int64"), ("generation_tokens", "Int64"), ("total_tokens", "Int64"),
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


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _base_row(result: "CallResult", configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec = result.spec
    response = result.response or {}
    row: dict[str, Any] = {
        "call": result.call, "call_key": spec.call_key, "endpoint": spec.endpoint, "project": spec.project,
        "project_id": response.get("project_id") or spec.project_id, "environment": spec.environment,
        "experiment_id": spec.experiment_id, "model_config_id": spec.model_config_id,
        "prompt": last_user_text(render(list(spec.messages), spec.inputs)),
        "latency_s": result.latency_s, "created_at": result.created_at, "cached": result.cached,
        "request": spec_to_json(spec),
    }
    row.update({k: _text(v) if k == "stop" else v for k, v in spec.model_config.items() if k in CONFIG_KEYS})
    row.update({f"inputs.{k}": _text(v) for k, v in spec.inputs.items()})
    usage = response.get("usage") or {}
    row.update(prompt_tokens=usage.get("prompt_tokens"), generation_tokens=usage.get("generation_tokens"),
               total_tokens=usage.get("total_tokens"))
    if result.error is not None:
        row.update(error=str(result.error), error_type=type(result.error).__name__)
    return row


def rows(result: "CallResult", configs: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The frame rows of one call (see the module contract)."""
    configs = configs or {}
    base = _base_row(result, configs)
    samples = (result.response or {}).get("data") or []
    if not samples:
        return [{**base, "sample": None}]
    out = []
    for entry in sorted(samples, key=lambda e: e.get("index", 0)):
        row = {**base, "sample": entry.get("index", 0), "log_id": entry.get("id"),
               "model_config_id": entry.get("model_config_id") or base["model_config_id"],
               "output": entry.get("output"), "finish_reason": entry.get("finish_reason"),
               "tool_calls": _text(entry.get("tool_calls"))}
        params = configs.get(row["model_config_id"] or "")
        if params:  # fill the config columns of deployed/experiment/model-config calls
            row.update({k: _text(params.get(k)) if k == "stop" else params.get(k)
                        for k in CONFIG_KEYS if row.get(k) is None})
        out.append(row)
    return out


def to_frame(results: Iterable["CallResult"], configs: dict[str, dict[str, Any]] | None = None
             ) -> "pd.DataFrame":
    """The contract frame for ``results`` in (call, sample) order."""
    records: list[dict[str, Any]] = []
    for result in sorted(results, key=lambda r: r.call):
        records.extend(rows(result, configs))
    return conform(records)


def conform(records: list[dict[str, Any]] | "pd.DataFrame") -> "pd.DataFrame":
    """Records (or a frame, e.g. loaded from history) with the contract's columns, order and dtypes."""
    import pandas as pd

    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(records)
    input_names = [c[len("inputs."):] for c in frame.columns if str(c).startswith("inputs.")]
    schema = columns(input_names)
    frame = frame.reindex(columns=[name for name, _ in schema])
    for name, dtype in schema:
        if dtype == "bool":
            frame[name] = frame[name].fillna(False).astype(bool)
        elif dtype.startswith("datetime"):
            frame[name] = pd.to_datetime(frame[name], utc=True).astype(dtype)
        elif dtype == "string":
            frame[name] = frame[name].astype("object").where(frame[name].notna(), None).astype("string")
        else:
            frame[name] = frame[name].astype(dtype)
    return result_frame(frame)


# shown only on request: wide or technical columns that push ``output`` out of pandas' default view
HIDDEN_IN_DISPLAY = ["request", "log_id", "call_key", "project_id", "created_at", "cached", "tool_calls"]


def result_frame(frame: "pd.DataFrame") -> "pd.DataFrame":
    """``frame`` as a ResultFrame: all columns kept, a compact view when displayed."""
    return _result_frame_class()(frame)


def _result_frame_class() -> type:
    global _ResultFrame
    if _ResultFrame is None:
        import pandas as pd

        class ResultFrame(pd.DataFrame):
            """A DataFrame whose display leaves out technical and all-empty columns, so ``output`` is
            visible. Data and every operation are plain pandas; derived frames are plain DataFrames."""

            @property
            def _constructor(self) -> type:
                return pd.DataFrame

            def display_view(self) -> "pd.DataFrame":
                hidden = [c for c in HIDDEN_IN_DISPLAY if c in self.columns]
                hidden += [c for c in self.columns if c not in hidden and c not in ("output", "error")
                           and self[c].isna().all()]
                return pd.DataFrame(self).drop(columns=hidden)

            def _repr_html_(self) -> str | None:
                view = self.display_view()
                html = view._repr_html_()
                hidden = len(self.columns) - len(view.columns)
                note = f"<p><small>{hidden} empty or technical columns not shown; all are in the frame " \
                       f"(<code>list(df.columns)</code>)</small></p>" if hidden else ""
                return (html or "") + note

            def __repr__(self) -> str:
                view = self.display_view()
                hidden = len(self.columns) - len(view.columns)
                return repr(view) + (f"\n({hidden} empty or technical columns not shown)" if hidden else "")

        _ResultFrame = ResultFrame
    return _ResultFrame


_ResultFrame: type | None = None
