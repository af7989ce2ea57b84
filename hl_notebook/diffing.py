"""Diff against a baseline: rows of two result frames matched, outputs side by side, metric deltas.

Why: "did my change help?" is a row-by-row question — the same input and sample before and after.
Rows that find no partner are shown, never dropped: a new input or a lost config is a finding too.
(Not named ``diff.py``: that module would replace the public function ``hl_notebook.diff``.)

Rows match on the input columns (every ``inputs.*`` of either frame; ``prompt`` when neither has
any), ``sample``, and the config columns that vary within *both* frames (so a sweep matches
config to config, while a one-config run against another one-config run compares the two
configs; ``model_config_id`` only when no parameter varies). Rows with equal keys pair up in
order. The result has the key columns, ``match`` (``both``/``only old``/``only new``),
``old.config``/``new.config`` labels, ``old.output``, ``new.output``, ``changed``, ``diff`` (words,
``[-removed-]{+added+}`` as ``git diff --word-diff``; empty when unchanged), ``old.error``/
``new.error``, then for every score, cost and latency column ``old.X``, ``new.X`` and (numbers
only) ``delta.X`` = new − old. Rows come in the new frame's order, then the old rows without a
partner.
"""
from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Sequence

from .errors import HLUsageError
from .frame import printable_frame
from .scoring import score_columns

if TYPE_CHECKING:
    import pandas as pd

METRICS = ["cost_usd", "latency_s"]
_MISSING = "\x00"  # key value of an empty cell (NA matches NA)


def diff(old: "pd.DataFrame", new: "pd.DataFrame", by: str | Sequence[str] | None = None) -> "pd.DataFrame":
    """``new`` against the baseline ``old`` (matching rules and columns in the module docstring).

    Args:
        old: the baseline result frame (any: a run, ``history()``, scored frames).
        new: the frame to compare with it.
        by: config columns to match on instead of those that vary within both frames.

    Raises:
        HLUsageError: a frame without ``output``, or ``by`` naming a column missing from one frame.
    """
    import pandas as pd

    from .analysis import _wrapped_class

    for label, frame in (("old", old), ("new", new)):
        if "output" not in frame.columns:
            raise HLUsageError(f"diff(): the {label} frame has no output column (pass result frames)")
    old, new = printable_frame(old), printable_frame(new)
    keys = match_columns(old, new, by)
    left, right = _keyed(old, keys, "old"), _keyed(new, keys, "new")
    joined = right.merge(left, on=["_key", "_nth"], how="outer", indicator=True, sort=False)
    joined = joined.sort_values(["_new_position", "_old_position"], na_position="last", kind="stable")
    joined = joined.reset_index(drop=True)
    # a key column may be one frame's only (inputs of a template the other run did not have)
    out = pd.DataFrame({key: _either(joined, f"new.{key}", f"old.{key}") for key in keys})
    out["match"] = joined["_merge"].map({"both": "both", "left_only": "only new", "right_only": "only old"}) \
        .astype("string")
    for side in ("old", "new"):
        out[f"{side}.config"] = joined[f"{side}._config"].astype("string")
    out["old.output"], out["new.output"] = joined["old.output"], joined["new.output"]
    both = out["match"] == "both"
    same = (out["old.output"] == out["new.output"]).fillna(out["old.output"].isna() & out["new.output"].isna())
    out["changed"] = pd.array([(not s) if b else None for s, b in zip(same, both)], dtype="boolean")
    out["diff"] = pd.array([word_diff(o, n) if b else None for o, n, b in
                            zip(out["old.output"], out["new.output"], both)], dtype="string")
    for side in ("old", "new"):
        out[f"{side}.error"] = joined[f"{side}.error"].astype("string")
    for metric in metric_columns(old, new):
        _add_metric(out, joined, metric)
    return _wrapped_class()(out)


def _either(joined: "pd.DataFrame", first: str, second: str) -> "pd.Series":
    """``first``'s values, else ``second``'s, from whichever of the two columns ``joined`` has."""
    if first in joined.columns and second in joined.columns:
        return joined[first].combine_first(joined[second])
    return joined[first if first in joined.columns else second]


def match_columns(old: "pd.DataFrame", new: "pd.DataFrame", by: str | Sequence[str] | None = None) -> list[str]:
    """The columns rows are matched on: inputs (or prompt), sample, and the config columns."""
    from .analysis import CONFIG_CANDIDATES

    inputs = list(dict.fromkeys(c for frame in (old, new) for c in frame.columns if str(c).startswith("inputs.")))
    if not inputs:
        inputs = ["prompt"] if "prompt" in old.columns and "prompt" in new.columns else []
    if by is not None:
        configs = [by] if isinstance(by, str) else list(by)
        for name in configs:
            if name not in old.columns or name not in new.columns:
                raise HLUsageError(f"diff(): no column {name!r} in both frames")
    else:
        configs = [c for c in CONFIG_CANDIDATES if c in old.columns and c in new.columns
                   and old[c].nunique(dropna=False) > 1 and new[c].nunique(dropna=False) > 1]
        if "model_config_id" in configs and len(configs) > 1:
            configs.remove("model_config_id")  # implied by the parameters that vary (as in compare)
    sample = ["sample"] if "sample" in old.columns and "sample" in new.columns else []
    return [*configs, *inputs, *sample]


def metric_columns(old: "pd.DataFrame", new: "pd.DataFrame") -> list[str]:
    """Score, cost and latency columns of either frame, in that order."""
    scores = list(dict.fromkeys([*score_columns(old), *score_columns(new)]))
    return [*scores, *(m for m in METRICS if m in old.columns or m in new.columns)]


def _keyed(frame: "pd.DataFrame", keys: list[str], side: str) -> "pd.DataFrame":
    """The frame's columns prefixed with ``side.``, a string match key, the pair number and position."""
    import pandas as pd

    from .analysis import _labels, config_columns

    data = pd.DataFrame(frame).reset_index(drop=True)
    parts = [data[k].astype("string").fillna(_MISSING) if k in data.columns
             else pd.Series(_MISSING, index=data.index, dtype="string") for k in keys]
    key = parts[0].str.cat(parts[1:], sep="\x1f") if parts else pd.Series("", index=data.index, dtype="string")
    out = data.add_prefix(f"{side}.")
    for column in ("output", "error"):
        if f"{side}.{column}" not in out.columns:
            out[f"{side}.{column}"] = pd.Series(pd.NA, index=data.index, dtype="string")
    out[f"{side}._config"] = _labels(data, config_columns(data)) if "model" in data.columns \
        else pd.Series(pd.NA, index=data.index, dtype="string")
    out["_key"] = key.astype(str)
    out["_nth"] = out.groupby("_key").cumcount()
    out[f"_{side}_position"] = range(len(out))
    return out


def _add_metric(out: "pd.DataFrame", joined: "pd.DataFrame", metric: str) -> None:
    import pandas as pd

    sides = {side: joined[f"{side}.{metric}"] if f"{side}.{metric}" in joined.columns
             else pd.Series(pd.NA, index=joined.index, dtype="Float64") for side in ("old", "new")}
    out[f"old.{metric}"], out[f"new.{metric}"] = sides["old"], sides["new"]
    old, new = _numbers(sides["old"]), _numbers(sides["new"])
    if old is not None and new is not None:
        out[f"delta.{metric}"] = new - old


def _numbers(series: "pd.Series") -> "pd.Series | None":
    """The column as Float64 (bools as 1/0), or None for text (a string score has no delta)."""
    import pandas as pd

    if pd.api.types.is_string_dtype(series.dtype) and series.notna().any():
        return None
    try:
        return series.astype("Float64")
    except (TypeError, ValueError):
        return None


def word_diff(old: Any, new: Any) -> str:
    """Word-level difference of two texts, ``[-removed-]{+added+}``; "" when they are equal."""
    old_words = [] if _absent(old) else str(old).split()
    new_words = [] if _absent(new) else str(new).split()
    if old_words == new_words and _absent(old) == _absent(new):
        return ""
    parts: list[str] = []
    matcher = difflib.SequenceMatcher(None, old_words, new_words, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            parts.append(" ".join(old_words[i1:i2]))
            continue
        removed = "[-" + " ".join(old_words[i1:i2]) + "-]" if i2 > i1 else ""
        added = "{+" + " ".join(new_words[j1:j2]) + "+}" if j2 > j1 else ""
        parts.append(removed + added)
    return " ".join(parts)


def _absent(value: Any) -> bool:
    from .plan import is_missing

    return is_missing(value)


def diff_summary(table: "pd.DataFrame") -> str:
    """One line about a ``diff`` result, e.g. ``12 rows: 10 matched (3 changed), 1 only old, 1 only new``."""
    counts = table["match"].value_counts()
    changed = int(table["changed"].fillna(False).sum())
    return (f"{len(table)} rows: {int(counts.get('both', 0))} matched ({changed} changed), "
            f"{int(counts.get('only old', 0))} only old, {int(counts.get('only new', 0))} only new")
