"""HTML for the panel's read-only parts (status line, results table, streams, compare/summary), as pure functions.

Why: the view only assigns these strings to ``HTML`` widgets. The style sheet travels once, with the
title (a ``<style>`` applies to the whole page), not with every progress update. Every colour is one of JupyterLab's
CSS variables (``--jp-*``), never a literal, so the panel follows the light and dark themes (pitfall 20);
text sits on the theme's own background and font colours, which JupyterLab keeps readable.
"""
from __future__ import annotations

import html
from typing import TYPE_CHECKING, Sequence

from ..frame import printable, printable_frame

if TYPE_CHECKING:
    import pandas as pd

# the table's columns in order: what was asked and answered first (on a laptop the rest scrolls
# sideways), the error next to the output; one of the token columns is shown
TABLE_COLUMNS = ["run", "call", "sample", "model", "inputs", "output", "error", "rating", "endpoint", "temperature",
                 "finish_reason", "tokens", "latency_s"]
OPTIONAL = {"rating"}  # shown only when the frame has it (``PanelState.table_rows``, once a row is rated)
TOKEN_SOURCES = ("call_total_tokens", "total_tokens")  # the frame's per-call total, by whichever name it has
NUMERIC = {"run", "call", "sample", "temperature", "tokens", "latency_s"}
TEXT = {"output", "error"}  # long text wraps; the other columns stay on one line

STYLE = """<style>
.hl-panel-text{color:var(--jp-ui-font-color1);font-family:var(--jp-ui-font-family);font-size:var(--jp-ui-font-size1)}
.hl-title{color:var(--jp-ui-font-color0);font-size:var(--jp-ui-font-size3);font-weight:600;margin:2px 0}
.hl-subtitle{color:var(--jp-ui-font-color1);font-size:var(--jp-ui-font-size1)}
.hl-status{color:var(--jp-ui-font-color1);padding:2px 6px;border-left:3px solid transparent;white-space:pre-wrap}
.hl-status.hl-error{border-left-color:var(--jp-error-color1)}
.hl-status.hl-ok{border-left-color:var(--jp-success-color1)}
.hl-hint{color:var(--jp-ui-font-color1);border-left:3px solid var(--jp-warn-color1);padding:0 6px;
 font-size:var(--jp-ui-font-size0)}
.hl-results{border-collapse:collapse;font-size:var(--jp-ui-font-size1);width:100%;color:var(--jp-ui-font-color1)}
.hl-results th,.hl-results td{border-bottom:1px solid var(--jp-border-color2);padding:3px 6px;vertical-align:top;
 text-align:left;white-space:nowrap;line-height:1.4}
.hl-results td.hl-text{white-space:pre-wrap;min-width:16em;max-width:40em}
.hl-results th{background:var(--jp-layout-color2);color:var(--jp-ui-font-color1);position:sticky;top:0;font-weight:600}
.hl-results .hl-num{text-align:right;white-space:nowrap}
.hl-results tr.hl-failed td{background:var(--jp-layout-color1)}
.hl-scroll{max-height:420px;max-width:100%;overflow:auto}
.hl-wide,.hl-wide>.widget-html-content{min-width:0;max-width:100%}
.hl-stream{border:1px solid var(--jp-border-color2);margin:2px 0;padding:2px 6px;color:var(--jp-ui-font-color1)}
.hl-stream b{color:var(--jp-ui-font-color2);font-weight:600}
.hl-stream pre{margin:0;white-space:pre-wrap;color:var(--jp-ui-font-color1);font-family:var(--jp-code-font-family)}
</style>"""


def title_html(title: str, subtitle: str) -> str:
    return (f'{STYLE}<div class="hl-title">{html.escape(title)}</div>'
            f'<div class="hl-subtitle">{html.escape(subtitle)}</div>')


def status_html(text: str, tone: str = "") -> str:
    """The status line: theme colours, a coloured edge for "ok"/"error" (the text stays readable)."""
    if not text:
        return ""
    return f'<div class="hl-status hl-{html.escape(tone or "info")}">{html.escape(text)}</div>'


def hint_html(text: str) -> str:
    """A control's problem, shown next to it ("" hides it)."""
    return f'<div class="hl-hint">{html.escape(text)}</div>' if text else ""


def stream_html(sections: Sequence[tuple[str, str]]) -> str:
    """One box per streamed sample, captioned when there are several."""
    boxes = "".join(f'<div class="hl-stream">{f"<b>{html.escape(caption)}</b>" if caption else ""}'
                    f"<pre>{html.escape(printable(text))}</pre></div>" for caption, text in sections)
    return f'<div class="hl-scroll" style="max-height:260px">{boxes}</div>' if boxes else ""


def _cell(value: object) -> str:
    if value is None:
        return ""
    try:
        import pandas as pd

        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def table_columns(frame: "pd.DataFrame") -> list[str]:
    return [c for c in TABLE_COLUMNS if c not in OPTIONAL or c in frame.columns]


def table_frame(frame: "pd.DataFrame") -> "pd.DataFrame":
    """The columns the table shows (inputs joined as ``a, b``; latency rounded)."""
    import pandas as pd

    frame = printable_frame(frame)
    inputs = [c for c in frame.columns if str(c).startswith("inputs.")]
    shown = pd.DataFrame(index=frame.index)
    for column in table_columns(frame):
        if column == "inputs":
            shown[column] = (frame[inputs].astype("string").fillna("").agg(", ".join, axis=1) if inputs else "")
        elif column == "tokens":
            source = next((c for c in TOKEN_SOURCES if c in frame.columns), None)
            shown[column] = frame[source] if source else None
        elif column == "latency_s":
            shown[column] = frame[column].round(3) if column in frame.columns else None
        else:
            shown[column] = frame[column] if column in frame.columns else None
    return shown


def _table(columns: Sequence[str], rows: Sequence[Sequence[object]], numeric: set[str] = frozenset(),
           failed: Sequence[bool] = (), text: set[str] = frozenset()) -> str:
    """A table in the panel's style; a numeric column is right-aligned in its header and its cells
    alike; ``text`` columns wrap (the box scrolls sideways rather than squeeze them)."""
    align = {c: ' class="hl-num"' if c in numeric else "" for c in columns}
    kind = {c: ' class="hl-text"' if c in text else align[c] for c in columns}
    head = "".join(f"<th{align[c]}>{html.escape(c)}</th>" for c in columns)
    marks = list(failed) or [False] * len(rows)
    body = "".join(f'<tr{" class=hl-failed" if bad else ""}>'
                   + "".join(f"<td{kind[c]}>{html.escape(_cell(v))}</td>" for c, v in zip(columns, row)) + "</tr>"
                   for row, bad in zip(rows, marks))
    return (f'<div class="hl-scroll"><table class="hl-results"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def table_html(frame: "pd.DataFrame | None") -> str:
    """The results table: escaped text, missing values blank, numbers right and text left (headers
    too), failed rows marked."""
    if frame is None or not len(frame):
        return ""
    rows = list(table_frame(frame).itertuples(index=False, name=None))
    failed = frame["error"].notna().tolist() if "error" in frame.columns else []
    return _table(table_columns(frame), rows, NUMERIC, failed, TEXT)


def frame_html(frame: "pd.DataFrame | None", note: str = "") -> str:
    """Any small frame (compare, summary) in the table's style, index included; ``note`` instead
    when there is nothing to show."""
    if frame is None or not len(frame):
        return status_html(note) if note else ""
    import pandas as pd

    flat = pd.DataFrame(frame).reset_index()
    columns = [" | ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in flat.columns]
    values = columns[len(flat.columns) - len(frame.columns):]  # after the index: the text wraps
    return _table(columns, list(flat.itertuples(index=False, name=None)), text=set(values))
