"""Reports: one self-contained HTML file with the summary, the comparison, charts and every row.

Why: a decision is shared with people who do not run the notebook. The file must open anywhere,
offline and years later: no network, no external CSS or JavaScript, charts as PNG data URIs.
(Not named ``report.py``: that module would replace the public function ``hl_notebook.report``.)
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .errors import HLConfigError, HLUsageError
from .frame import printable, printable_frame
from .scoring import score_columns

if TYPE_CHECKING:
    import pandas as pd

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #222; background: #fff; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
.meta { color: #555; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; text-align: left; vertical-align: top;
         white-space: pre-wrap; overflow-wrap: break-word; }
th { background: #f2f2f2; }
table.rows { table-layout: fixed; }
table.rows td, table.rows th { overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def report(df: "pd.DataFrame", path: str | Path, by: str | Sequence[str] | None = None, *,
           baseline: "pd.DataFrame | None" = None, title: str | None = None, charts: bool = True) -> Path:
    """Write ``df`` as one self-contained HTML file; returns its path.

    Sections: summary per config (``summary`` with mean scores), score and cost charts
    (matplotlib, PNG embedded as data URIs), the comparison (``compare(df, collapse=True)``), the
    diff against ``baseline`` when given, and every row with every column.

    Args:
        df: any result frame (scored, costed, from ``history()``…). ``cost_usd`` is added with
            ``add_cost`` when missing.
        path: the HTML file to write (its folder must exist).
        by: config columns, as in ``summary``/``compare``.
        baseline: an earlier result frame to diff against (``hl_notebook.diff``).
        title: the page's title (default: "hl_notebook report").
        charts: False writes the report without charts (and without matplotlib).

    Raises:
        HLConfigError: ``charts`` and matplotlib is not installed.
        HLUsageError: not a result frame, or a folder that does not exist.
    """
    from .analysis import compare
    from .pricing import add_cost

    if "output" not in df.columns:
        raise HLUsageError("report() needs a result frame (a DataFrame with an output column)")
    target = Path(path)
    if not target.parent.is_dir():
        raise HLUsageError(f"report(): the folder {str(target.parent)!r} does not exist")
    frame = printable_frame(df if "cost_usd" in df.columns else add_cost(df))
    table = summary_table(frame, by)
    title = title or "hl_notebook report"
    sections = [("summary", "Summary per config", _table_html(table))]
    if charts:
        sections.append(("charts", "Scores and cost per config", _charts_html(table)))
    sections.append(("comparison", "Outputs per input and config (each distinct output once, ×count)",
                     _table_html(compare(frame, by, collapse=True))))
    if baseline is not None:
        from .diffing import diff, diff_summary

        changes = diff(baseline, frame)
        sections.append(("baseline", f"Against the baseline: {diff_summary(changes)}", _table_html(changes)))
    sections.append(("rows", f"All rows ({len(frame)})", _rows_html(frame)))
    target.write_text(printable(_page(title, frame, sections)), encoding="utf-8")
    return target


def summary_table(df: "pd.DataFrame", by: str | Sequence[str] | None = None) -> "pd.DataFrame":
    """``summary`` plus the mean of every numeric (or pass/fail) score per config."""
    import pandas as pd

    from .analysis import config_columns, summary

    table = summary(df, by)
    columns = config_columns(df, by)
    for name in score_columns(df):
        try:
            values = df[name].astype("Float64")
        except (TypeError, ValueError):
            continue  # a text score has no mean
        means = values.groupby([df[c] for c in columns], dropna=False, sort=False).mean()
        table[f"mean_{name}"] = pd.Series(means, dtype="Float64").reindex(table.index)
    return table


def _page(title: str, frame: "pd.DataFrame", sections: list[tuple[str, str, str]]) -> str:
    calls = frame["call"].nunique() if "call" in frame.columns else len(frame)
    failed = int(frame["error"].notna().sum()) if "error" in frame.columns else 0
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(f'<section id="{anchor}"><h2>{html.escape(heading)}</h2>\n{content}\n</section>'
                     for anchor, heading, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
            f'<p class="meta">Written {stamp} by hl_notebook: {len(frame)} rows, {calls} calls, '
            f"{failed} rows with an error.</p>\n{body}\n</body></html>\n")


def _table_html(frame: "pd.DataFrame", index: bool = True) -> str:
    return '<div class="scroll">' + _blank_na(frame).to_html(index=index, border=0, escape=True) + "</div>"


def _blank_na(frame: "pd.DataFrame") -> "pd.DataFrame":
    """The frame with every missing value (None, NaN, <NA>) shown as an empty cell."""
    import pandas as pd

    plain = pd.DataFrame(frame).astype(object)
    return plain.where(plain.notna(), "")


def _rows_html(frame: "pd.DataFrame") -> str:
    """Every row and column, each column as wide as its typical text (at most 24em): fixed layout,
    so a long value wraps in its cell instead of squeezing the other columns to a letter each."""
    plain = _blank_na(frame)
    widths = []
    for column in plain.columns:
        lengths = plain[column].astype("string").fillna("").str.len()
        typical = max(len(str(column)), int(lengths.quantile(0.9)) if len(lengths) else 0)
        widths.append(min(max(typical * 0.62 + 1.5, 4.0), 24.0))
    colgroup = "<colgroup>" + "".join(f'<col style="width: {w:.1f}em">' for w in widths) + "</colgroup>"
    table = plain.to_html(index=False, border=0, escape=True, classes="rows")
    opening = table.index(">") + 1
    table = table[:opening].replace("<table", f'<table style="width: {sum(widths):.1f}em"', 1) + colgroup \
        + table[opening:]
    return '<div class="scroll">' + table + "</div>"


def _charts_html(table: "pd.DataFrame") -> str:
    """One horizontal bar chart per mean score, and one of total cost, per config (PNG data URIs)."""
    panels = [(c, f"mean {c[len('mean_'):]}") for c in table.columns if c.startswith("mean_score.")]
    if "total_cost_usd" in table.columns and table["total_cost_usd"].notna().any():
        panels.append(("total_cost_usd", "total cost (USD)"))
    panels = [(c, label) for c, label in panels if table[c].notna().any()]
    if not panels:
        return "<p>No scores or known costs to chart (add them with score(), judge() and set_price()).</p>"
    return "\n".join(f'<figure><img alt="{html.escape(label)} per config" src="{_png(table, column, label)}">'
                     f"<figcaption>{html.escape(label)} per config</figcaption></figure>"
                     for column, label in panels)


def _png(table: "pd.DataFrame", column: str, label: str) -> str:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise HLConfigError("report() draws its charts with matplotlib: pip install matplotlib "
                            "(or report(..., charts=False))") from None
    labels = [" | ".join(map(str, key)) if isinstance(key, tuple) else str(key) for key in table.index]
    values = table[column].astype("Float64").to_numpy(dtype=float, na_value=float("nan"))  # NA: no bar
    figure = Figure(figsize=(7, 0.45 * len(labels) + 1.4), dpi=100)
    axes = figure.subplots()
    axes.barh(range(len(labels)), values, color="#4c78a8")
    axes.set_yticks(range(len(labels)), labels)
    axes.invert_yaxis()
    axes.set_xlabel(label)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
