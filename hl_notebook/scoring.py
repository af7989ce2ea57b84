"""Scores: a Python function over the rows of a result frame -> ``score.<name>`` columns.

Why: choosing between configs needs a number per row. A score function that fails on one row must
cost that row's score, never the frame; the error is kept next to the score, as a sweep keeps a
failed call's error next to its row. (Not named ``score.py``: that module would replace the public
function ``hl_notebook.score``.)

Columns, appended at the end (a score of the same name is replaced, so re-running a cell is safe):

* ``score.<name>``: ``boolean`` when every value is a bool, ``Int64`` when every value is an int,
  ``Float64`` for numbers (bools count as 1/0 among numbers), ``string`` as soon as one value is
  a string. ``None``/NaN is NA.
* ``score.<name>.error``: the one-line ``ExceptionType: message`` of a row whose function raised
  (its score is NA), else NA.
"""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .errors import HLUsageError, one_line
from .plan import is_missing

if TYPE_CHECKING:
    import pandas as pd

PREFIX = "score."


def score(df: "pd.DataFrame", fn: Callable[[Any], Any], name: str | None = None, *,
          vectorized: bool = False) -> "pd.DataFrame":
    """A new frame: ``df`` plus ``score.<name>`` (and ``score.<name>.error``) from ``fn``.

    Args:
        df: any result frame (from a run, ``history()``, or an earlier ``score``/``judge``).
        fn: by default called once per row with the row (a Series: ``row["output"]``,
            ``row["inputs.topic"]``); returns a number, a bool or a string.
        name: the score's name; default ``fn.__name__`` (a lambda's is ``score``).
        vectorized: ``fn`` takes the whole frame and returns a Series with the frame's index (or a
            list of one value per row). Told apart by this flag only, never by trying: calling a
            row function with a frame could run it with the wrong argument. An exception in a
            vectorized ``fn`` is recorded on every row.

    Returns:
        A result frame (compact display) with the score columns appended; ``df`` is unchanged.

    Raises:
        HLUsageError: ``fn`` is not callable, a bad name, or a vectorized result that does not
            line up with the frame's rows.
    """
    if not callable(fn):
        raise HLUsageError(f"score() needs a function, not {type(fn).__name__}")
    name = score_name(fn, name)
    if vectorized:
        values, errors = _vectorized(df, fn, name)
    else:
        values, errors = _per_row(df, fn)
    return with_score(df, name, values, errors)


def score_name(fn: Any, name: str | None) -> str:
    """``name``, else the function's ``__name__`` (``score`` for a lambda or a nameless callable)."""
    if name is None:
        name = getattr(fn, "__name__", "score")
        name = "score" if not name or name.startswith("<") else name
    if not isinstance(name, str) or not name.strip():
        raise HLUsageError(f"a score name must be a non-empty string, not {name!r}")
    return name


def _per_row(df: "pd.DataFrame", fn: Callable[[Any], Any]) -> tuple[list[Any], list[str | None]]:
    values: list[Any] = []
    errors: list[str | None] = []
    for _, row in df.iterrows():
        try:
            value, error = _checked(fn(row))
        except Exception as exc:  # noqa: BLE001 - a failing score costs its row, not the frame
            value, error = None, error_text(exc)
        values.append(value)
        errors.append(error)
    return values, errors


def _vectorized(df: "pd.DataFrame", fn: Callable[[Any], Any], name: str) -> tuple[list[Any], list[str | None]]:
    try:
        result = fn(df)
    except Exception as exc:  # noqa: BLE001 - recorded on every row, as a per-row failure would be
        return [None] * len(df), [error_text(exc)] * len(df)
    if hasattr(result, "index") and hasattr(result, "tolist"):
        if len(result) != len(df) or not result.index.equals(df.index):
            raise HLUsageError(f"score {name!r}: the vectorized function returned a Series whose index is not "
                               "the frame's (return df[...] arithmetic, or a list with one value per row)")
        result = result.tolist()
    elif isinstance(result, (str, bytes)) or not hasattr(result, "__len__"):
        raise HLUsageError(f"score {name!r}: the vectorized function returned {type(result).__name__}; "
                           "return a Series aligned to the frame (or pass a row function without vectorized=True)")
    result = list(result)
    if len(result) != len(df):
        raise HLUsageError(f"score {name!r}: the vectorized function returned {len(result)} values "
                           f"for {len(df)} rows")
    checked = [_checked_or_error(value) for value in result]
    return [value for value, _ in checked], [error for _, error in checked]


def _checked_or_error(value: Any) -> tuple[Any, str | None]:
    try:
        return _checked(value)
    except TypeError as exc:
        return None, error_text(exc)


def _checked(value: Any) -> tuple[Any, str | None]:
    """A score value made plain: bool, int, float, str or None (NA)."""
    if is_missing(value):
        return None, None
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalars
        value = value.item()
    if isinstance(value, (bool, str)):
        return value, None
    if isinstance(value, numbers.Integral):
        return int(value), None
    if isinstance(value, numbers.Real):
        return (None if value != value else float(value)), None
    raise TypeError(f"the score function returned {type(value).__name__}; return a number, a bool or a string")


def error_text(exc: BaseException) -> str:
    """``ExceptionType: message`` on one line (capped, secrets masked), as the frame's error column."""
    return one_line(f"{type(exc).__name__}: {exc}")


def typed(values: Sequence[Any], index: Any = None) -> "pd.Series":
    """Score values as one nullable column (the dtype rules are in the module docstring)."""
    import pandas as pd

    from .frame import string_array

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        dtype = "boolean"
    elif any(isinstance(v, str) for v in present):
        return pd.Series(string_array([None if v is None else str(v) for v in values]), index=index)
    elif present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        dtype = "Int64"
    else:
        values = [None if v is None else float(v) for v in values]
        dtype = "Float64"
    return pd.Series(list(values), index=index, dtype=dtype)


def with_score(df: "pd.DataFrame", name: str, values: Sequence[Any], errors: Sequence[str | None],
               extra: dict[str, Sequence[Any]] | None = None) -> "pd.DataFrame":
    """``df`` plus ``score.<name>``, ``score.<name>.<extra…>`` (string) and ``score.<name>.error``,
    replacing columns of that score; a result frame."""
    import pandas as pd

    from .frame import result_frame, string_array

    column = PREFIX + name
    kept = [c for c in df.columns if c != column and not str(c).startswith(column + ".")]
    added = {column: typed(values, df.index)}
    for suffix, texts in (extra or {}).items():
        added[f"{column}.{suffix}"] = pd.Series(string_array(list(texts)), index=df.index)
    added[f"{column}.error"] = pd.Series(string_array(list(errors)), index=df.index)
    return result_frame(pd.concat([pd.DataFrame(df)[kept], pd.DataFrame(added)], axis=1))


def score_columns(df: "pd.DataFrame") -> list[str]:
    """The score value columns of a frame (``score.<name>``, not their ``.error``/``.reason``)."""
    names = [str(c) for c in df.columns if str(c).startswith(PREFIX)]
    return [c for c in names if not any(c.startswith(other + ".") for other in names if other != c)]
