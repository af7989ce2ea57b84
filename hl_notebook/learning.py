"""Feedback on result rows, and the experiments that learn from it: ``feedback()`` and ``experiment()``.

Why: a v4 experiment samples its configs by how their logs were rated (``POST /feedback``, judged
against the experiment's ``positive_labels``). Scores computed in the notebook (``score``,
``judge``) become that feedback in one call, and ``experiment()`` shows what the experiment has
learned. (Not named ``feedback.py``/``experiment.py``: a submodule of that name would replace the
public function on the package.)

``feedback`` keeps the frame whatever happens to single rows: a row without a ``log_id`` (a failed
call), without a value, or whose log the server does not know gets its reason in
``feedback.<type>.error`` and the other rows are still sent.
"""
from __future__ import annotations

import math
import numbers
import re
from typing import TYPE_CHECKING, Any

from .connection import connect
from .errors import HLNotFoundError, HLUsageError, one_line
from .manage import _project_id
from .plan import is_missing
from .spec import PARAMETER

if TYPE_CHECKING:
    import pandas as pd

    from .client import HLClient

PREFIX = "feedback."
BATCH = 1000  # rows per POST /feedback: one request for most frames, well under the server's body limit
EXPERIMENT_COLUMNS = ["experiment_id", "experiment", "config_id", "name", *PARAMETER, "active", "trials_count",
                      "mean", "spread"]
_UNKNOWN_LOG = re.compile(r"log (\S+) not found")  # the server's 404 detail (docs/v4-decisions.md)


def feedback(df: "pd.DataFrame", value: Any, type: str = "rating", *, user: str | None = None,
             base_url: str | None = None) -> "pd.DataFrame":
    """Send feedback on each row's log (``POST /feedback``); returns the frame with what was sent.

    Args:
        df: a result frame with a ``log_id`` column (a run, a filter of one, ``history()``, a
            scored frame).
        value: the feedback value of each row, one of:

            * a scalar: the same value for every row (``"good"``);
            * a column name: that column's values (``"score.concise"``);
            * a list, tuple, array or Series with one value per row (a Series must have the
              frame's index);
            * a function of the row, e.g. a threshold on a score:
              ``lambda row: "good" if row["score.judge"] >= 7 else "bad"``.

            Values travel as strings: ``True``/``False`` as ``"true"``/``"false"``, whole numbers
            without ``.0``. A missing value (None, NaN) sends nothing for that row.
        type: ``rating`` (values ``good``/``bad`` count for experiments by default), ``action``,
            ``issue``, ``correction``, ``comment`` or a custom type. A new value replaces the log's
            value of that type (``action`` and ``issue`` keep one feedback per value).
        user: recorded with each feedback.
        base_url: the server the rows' logs are on (default: the current connection).

    Returns:
        A new frame: ``df`` plus ``feedback.<type>`` (the value sent, NA where none was) and
        ``feedback.<type>.error`` (why a row was not sent, else NA); older columns of that name
        are replaced. One request per 1,000 rows to send, plus one for each row whose log the
        server does not know (the server accepts a request all or nothing and names one unknown log).

    Raises:
        HLUsageError: no ``log_id`` column, an empty ``type``, or values that do not line up with
            the rows.
        HLError: the server could not be reached or refused the request as a whole.
    """
    if not isinstance(type, str) or not type.strip():
        raise HLUsageError(f"feedback type must be a non-empty string, not {type!r}")
    if "log_id" not in df.columns:
        raise HLUsageError("feedback() needs a result frame with a log_id column (from a run or history())")
    values, errors = _row_values(df, value)
    sent: list[str | None] = [None] * len(df)
    pending: list[tuple[int, dict[str, Any]]] = []
    for position, (log_id, raw, error) in enumerate(zip(df["log_id"].tolist(), values, errors)):
        if error is None and (is_missing(log_id) or not str(log_id)):
            error = "not sent: the row has no log_id (its call failed)"
        if error is None:
            text, error = _wire_value(raw)
            if text is not None:
                item = {"type": type, "value": text, "data_id": str(log_id), **({"user": user} if user else {})}
                pending.append((position, item))
                sent[position] = text
        errors[position] = error
    if pending:
        for position, error in _send(connect(base_url).client, pending).items():
            sent[position], errors[position] = None, error
    return _with_feedback(df, type, sent, errors)


def _row_values(df: "pd.DataFrame", value: Any) -> tuple[list[Any], list[str | None]]:
    """One value per row (position order) and the error of rows whose value could not be had."""
    import pandas as pd

    rows = len(df)
    if callable(value):
        values: list[Any] = []
        errors: list[str | None] = []
        for _, row in df.iterrows():
            try:
                values.append(value(row))
                errors.append(None)
            except Exception as exc:  # noqa: BLE001 - a failing value function costs its row only
                values.append(None)
                errors.append(one_line(f"not sent: the value function raised {type(exc).__name__}: {exc}"))
        return values, errors
    if isinstance(value, str) and value in df.columns:
        return df[value].tolist(), [None] * rows
    if isinstance(value, pd.Series):
        if not value.index.equals(df.index):
            raise HLUsageError("feedback value: the Series' index is not the frame's (compute it from this frame, "
                               "or pass a list with one value per row)")
        return value.tolist(), [None] * rows
    if isinstance(value, (dict, set, pd.DataFrame)) or getattr(value, "ndim", 0) > 1:
        raise HLUsageError(f"feedback value: a {type(value).__name__} is not a value, a column name, one value per "
                           "row, or a function of the row")
    if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0) == 1:
        values = list(value)
        if len(values) != rows:
            raise HLUsageError(f"feedback value: {len(values)} values for {rows} rows")
        return values, [None] * rows
    return [value] * rows, [None] * rows


def _wire_value(value: Any) -> tuple[str | None, str | None]:
    """(the value as the wire's string, None), or (None, why it cannot be sent)."""
    if is_missing(value):
        return None, "not sent: no value for this row"
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalars
        value = value.item()
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, numbers.Integral):
        text = str(int(value))
    elif isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            return None, f"not sent: {number} is not a feedback value"
        text = str(int(number)) if number.is_integer() else repr(number)
    elif isinstance(value, str):
        text = value
    else:
        return None, f"not sent: the value is a {type(value).__name__}; give a string, a number or a bool"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None, "not sent: the value has a lone surrogate, which is not valid UTF-8"
    return text, None


def _send(client: "HLClient", pending: list[tuple[int, dict[str, Any]]]) -> dict[int, str]:
    """POST the items in batches; the error of each row whose log the server does not know.

    The server stores a batch all or nothing and its 404 names the first unknown log: that log's
    rows are set aside and the batch is sent again without them.
    """
    errors: dict[int, str] = {}
    while pending:
        batch = pending[:BATCH]
        try:
            client.feedback([item for _, item in batch])
        except HLNotFoundError as exc:
            detail = exc.body.get("detail") if isinstance(exc.body, dict) else None
            found = _UNKNOWN_LOG.fullmatch(detail) if isinstance(detail, str) else None
            unknown = found.group(1) if found else None
            if not any(item["data_id"] == unknown for _, item in batch):
                raise
            for position, item in batch:
                if item["data_id"] == unknown:
                    errors[position] = f"not sent: log {unknown} not found on {client.base_url}"
            pending = [(position, item) for position, item in pending if item["data_id"] != unknown]
            continue
        pending = pending[BATCH:]
    return errors


def _with_feedback(df: "pd.DataFrame", type: str, sent: list[str | None],
                   errors: list[str | None]) -> "pd.DataFrame":
    import pandas as pd

    from .frame import result_frame, string_array

    column = PREFIX + type
    kept = [c for c in df.columns if c not in (column, column + ".error")]
    added = pd.DataFrame({column: pd.Series(string_array(sent), index=df.index),
                          column + ".error": pd.Series(string_array(errors), index=df.index)})
    return result_frame(pd.concat([pd.DataFrame(df)[kept], added], axis=1))


def experiment(experiment_id: str, *, project: str | None = None, base_url: str | None = None) -> "pd.DataFrame":
    """An experiment's configs and what it has learned: one row per config, in the experiment's order.

    Columns: ``experiment_id``, ``experiment`` (its name), ``config_id``, ``name``, the config's
    parameters, ``active``, ``trials_count`` (logs with feedback of the positive labels' types),
    ``mean`` (the posterior mean rate of positive feedback) and ``spread`` (the width of its 90 %
    credible interval). ``project`` reads it through the project's experiment list, which every v4
    server has; without it, ``GET /experiments/{id}`` of the local server is used.

    Raises:
        HLNotFoundError: no such experiment (in that project).
    """
    client = connect(base_url).client
    if project is None:
        body = client.experiment(experiment_id)
    else:
        found = [e for e in client.project_experiments(_project_id(client, project)) if e["id"] == experiment_id]
        if not found:
            raise HLNotFoundError(f"experiment {experiment_id} not found in project {project!r}", status_code=404,
                                  endpoint="/projects/{id}/experiments")
        body = found[0]
    rows = [{"experiment_id": body["id"], "experiment": body.get("name"), "config_id": entry["id"],
             "name": entry.get("display_name"), **{key: entry.get("config", {}).get(key) for key in PARAMETER},
             "active": entry.get("active"), "trials_count": entry.get("trials_count"), "mean": entry.get("mean"),
             "spread": entry.get("spread")}
            for entry in body.get("configs", [])]
    return _experiment_frame(rows)


def _experiment_frame(rows: list[dict[str, Any]]) -> "pd.DataFrame":
    import pandas as pd

    frame = pd.DataFrame.from_records(rows, columns=EXPERIMENT_COLUMNS)
    types: dict[str, str] = {"active": "boolean", "trials_count": "Int64", "mean": "Float64", "spread": "Float64"}
    return frame.astype(types)


__all__ = ["experiment", "feedback"]
