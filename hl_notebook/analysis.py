"""Comparison helpers over result frames: ``compare`` (wide table), ``summary`` (per-config stats),
``plot`` (latency and tokens per config).

Why: the point of a sweep is the comparison; these turn the tidy frame into what a person reads,
using only its documented columns, so they also work on frames loaded from history.
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

from .errors import HLConfigError, HLUsageError
from .frame import TOKEN_COLUMNS, printable, printable_frame
from .spec import PARAMETERS

if TYPE_CHECKING:
    import pandas as pd

# columns that tell configs apart, in frame order
CONFIG_CANDIDATES = ["endpoint", *(parameter.name for parameter in PARAMETERS), "environment", "experiment_id",
                     "model_config_id"]


def config_columns(df: "pd.DataFrame", by: str | Sequence[str] | None = None) -> list[str]:
    """``by`` (a column name or a list) checked against the frame, or the config columns that vary in
    it (else ``model``)."""
    if isinstance(by, str):
        by = [by]
    if by is not None:
        missing = [name for name in by if name not in df.columns]
        if missing:
            raise HLUsageError(f"no column {missing[0]!r} in the frame")
        return list(by)
    varying = [c for c in CONFIG_CANDIDATES if c in df.columns and df[c].nunique(dropna=False) > 1]
    if "model_config_id" in varying and len(varying) > 1:
        varying.remove("model_config_id")  # implied by the parameters that vary
    return varying or ["model"]


def _labels(df: "pd.DataFrame", columns: list[str]) -> "pd.Series":
    parts = [df[c].astype("string").fillna("–") for c in columns]
    label = parts[0] if len(columns) == 1 else parts[0].str.cat(parts[1:], sep=" | ")
    return label.rename(" | ".join(columns))


def _input_columns(df: "pd.DataFrame") -> list[str]:
    return [c for c in df.columns if str(c).startswith("inputs.")] or ["prompt"]


def compare(df: "pd.DataFrame", by: str | Sequence[str] | None = None, values: str = "output", *,
            baseline: "pd.DataFrame | None" = None, collapse: bool = False) -> "pd.DataFrame":
    """A wide table: one row per input (or prompt), one column per config, samples stacked in a cell.

    Returns a DataFrame (``.shape``, ``.to_csv``, indexing work) that displays with wrapped,
    left-aligned text. ``collapse=True`` shows each distinct value of a cell once, with its count
    (``text ×3``). ``baseline=old_df`` instead returns ``diff(old_df, df, by=by)``: rows matched
    with the baseline's, outputs side by side and metric deltas (see ``hl_notebook.diff``).
    """
    if baseline is not None:
        if collapse:
            raise HLUsageError("compare(): collapse applies to the wide table, not to a diff against a baseline")
        from .diffing import diff

        return diff(baseline, df, by=by)
    df = printable_frame(df)
    columns = config_columns(df, by)
    rows = _input_columns(df)
    text = _cell_text(df, values, numbered=not collapse)
    data = df.assign(_config=_labels(df, columns), _value=text)
    wide = data.pivot_table(index=rows, columns="_config", values="_value", sort=False,
                            aggfunc=_collapsed if collapse else "\n".join)
    wide.columns.name = " | ".join(columns)
    return _wrapped_class()(wide)


def _collapsed(texts: "pd.Series") -> str:
    """Each distinct text once, in first-seen order, with ``×n`` when it occurs n > 1 times."""
    counts = Counter(texts)
    return "\n".join(text if counts[text] == 1 else f"{text} ×{counts[text]}" for text in dict.fromkeys(texts))


_Wrapped: type | None = None


def _wrapped_class() -> type:
    """A DataFrame whose notebook display wraps long text; every operation gives a plain DataFrame."""
    global _Wrapped
    if _Wrapped is None:
        import pandas as pd

        class WrappedFrame(pd.DataFrame):
            @property
            def _constructor(self) -> type:
                return pd.DataFrame

            def _repr_html_(self) -> str | None:
                style = {"white-space": "pre-wrap", "text-align": "left", "vertical-align": "top"}
                return printable(pd.DataFrame(self).style.set_properties(**style)._repr_html_())

            def __repr__(self) -> str:  # sent with the HTML: both must be UTF-8
                return printable(super().__repr__())

        _Wrapped = WrappedFrame
    return _Wrapped


def _cell_text(df: "pd.DataFrame", values: str, numbered: bool = True) -> "pd.Series":
    text = df[values].astype("string").fillna("")
    failed = df["error"].notna() if "error" in df.columns else False
    text = text.where(~failed, "⚠ " + df.get("error_type", "error").astype("string").fillna("error"))
    if not numbered:
        return text.fillna("")
    many = df.groupby("call")["sample"].transform("count") > 1 if "call" in df.columns else False
    prefix = "[" + df["sample"].astype("string").fillna("–") + "] "
    return text.where(~many, prefix + text).fillna("")


def summary(df: "pd.DataFrame", by: str | Sequence[str] | None = None) -> "pd.DataFrame":
    """Per config: calls, samples, failed calls, error rate, latency p50/p95 (per call), mean tokens,
    and cost in USD: total, and mean per call (``cost_usd``, computed with ``add_cost`` when the frame
    has none; calls without a known cost are left out of both, and a config with none shows NA)."""
    import pandas as pd

    df = printable_frame(df)  # its labels are shown
    columns = config_columns(df, by)
    calls = df.drop_duplicates("call").assign(_failed=lambda d: d["error"].notna())
    grouped = calls.groupby(columns, dropna=False, sort=False)
    table = pd.DataFrame({
        "calls": grouped["call"].count(),
        "samples": df.groupby(columns, dropna=False, sort=False)["sample"].count(),
        "failed": grouped["_failed"].sum().astype("int64"),
    })
    table["error_rate"] = table["failed"] / table["calls"]
    table["latency_p50_s"] = grouped["latency_s"].quantile(0.5)
    table["latency_p95_s"] = grouped["latency_s"].quantile(0.95)
    for name in TOKEN_COLUMNS:  # per call: on each call's first row (frame.py)
        table[f"mean_{name}"] = grouped[name].mean()
    table["total_cost_usd"], table["mean_cost_usd"] = _costs(df, columns)
    return table


def _costs(df: "pd.DataFrame", columns: list[str]) -> tuple["pd.Series", "pd.Series"]:
    """Per config: the sum of ``cost_usd`` and its mean per call (a call's rows summed first)."""
    from .pricing import add_cost

    costed = df if "cost_usd" in df.columns else add_cost(df)
    ids = ["call_key"] if "call_key" in costed.columns and costed["call_key"].notna().all() \
        else [c for c in ("session", "run", "call") if c in costed.columns]
    per_call = costed.groupby([*columns, *ids], dropna=False, sort=False)["cost_usd"].sum(min_count=1)
    grouped = per_call.groupby(level=list(range(len(columns))), dropna=False, sort=False)
    return grouped.sum(min_count=1), grouped.mean()


def plot(df: "pd.DataFrame", by: str | Sequence[str] | None = None) -> Any:
    """A matplotlib figure: latency per call (box plot) and mean tokens per config (bars)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise HLConfigError("plot() needs matplotlib: pip install matplotlib") from None
    columns = config_columns(df, by)
    calls = df.drop_duplicates("call").assign(_config=lambda d: _labels(d, columns))
    labels = list(dict.fromkeys(calls["_config"]))
    figure, (latency_ax, tokens_ax) = plt.subplots(1, 2, figsize=(11, 0.6 * len(labels) + 2.5))
    latency_ax.boxplot([calls.loc[calls["_config"] == lab, "latency_s"].dropna() for lab in labels],
                       orientation="horizontal", tick_labels=labels)
    latency_ax.set_xlabel("latency per call (s)")
    means = calls.groupby("_config", sort=False)[TOKEN_COLUMNS[:2]].mean().reindex(labels)
    means.plot.barh(ax=tokens_ax, stacked=True)
    tokens_ax.set_yticklabels([])
    tokens_ax.set_ylabel("")
    tokens_ax.set_xlabel("mean tokens per call")
    latency_ax.invert_yaxis()
    tokens_ax.invert_yaxis()
    figure.suptitle(" | ".join(columns))
    figure.tight_layout()
    plt.close(figure)  # returned, shown once by the notebook's display of the value
    return figure
