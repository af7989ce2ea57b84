"""The displayed frame is readable (issue 11.3): ``output`` first, wrapped, up to ~500 characters;
ids and configs compact; the data itself never changes."""
from __future__ import annotations

import re

import pandas as pd

from hl_notebook.call import CallResult
from hl_notebook.frame import to_frame
from hl_notebook.spec import ChatSpec

LONG_ID = "config_" + "A1b2C3d4E5f6G7h8I9j0K"


def frame_with(outputs: list[str], **spec_fields) -> pd.DataFrame:
    spec = ChatSpec(endpoint="chat", messages=({"role": "user", "content": "tell me about {{topic}}"},),
                    model_config={"model": "m", "provider": "mock", "temperature": 0.7},
                    inputs={"topic": "a topic " * 20}, num_samples=len(outputs), **spec_fields)
    data = [{"id": f"data_{i}", "index": i, "output": text, "finish_reason": "stop", "model_config_id": LONG_ID}
            for i, text in enumerate(outputs)]
    return to_frame([CallResult(0, spec, {"data": data, "usage": {"total_tokens": 5}}, latency_s=0.123456)])


def header(html: str) -> list[str]:
    head = html[html.index("<thead>"):html.index("</thead>")]
    return [re.sub(r"<.*?>", "", cell) for cell in re.findall(r"<th[^>]*>(.*?)</th>", head)]


def test_output_comes_right_after_the_short_id_columns():
    frame = frame_with(["short"])
    assert list(frame.display_view().columns)[:4] == ["call", "sample", "output", "endpoint"]
    assert header(frame._repr_html_())[1:4] == ["call", "sample", "output"]
    assert repr(frame).splitlines()[0].split()[:3] == ["call", "sample", "output"]


def test_a_400_character_output_is_shown_whole_and_2000_are_elided():
    medium, huge = "word " * 79 + "end!", "x" * 1990 + "0123456789"
    frame = frame_with([medium, huge])
    before = frame.copy()
    html, text = frame._repr_html_(), repr(frame)
    assert len(medium) == 399 and medium in html and medium in text
    assert huge not in html and "0123456789" not in html and "x" * 400 in html
    assert huge not in text and "x" * 400 in text
    pd.testing.assert_frame_equal(pd.DataFrame(frame), pd.DataFrame(before))  # data untouched
    assert frame["output"].tolist() == [medium, huge]


def test_output_is_wrapped_in_the_html_and_the_hidden_column_note_stays():
    html = frame_with(["a\nb"])._repr_html_()
    assert "white-space: pre-wrap" in html and "max-width: 80ch" in html
    name = re.search(r'<div class="(hl-frame-[^"]+)">', html).group(1)
    assert re.search(rf"\.{name} td:nth-child\(4\)[^{{]*\{{white-space: pre-wrap", html)  # index, call, sample, output
    assert "columns not shown; all are in the frame" in html


def test_ids_inputs_and_latency_are_compact_in_the_view_only():
    frame = frame_with(["ok"])
    view = frame.display_view()
    assert view.loc[0, "model_config_id"] == "config_A1b2…"
    assert len(view.loc[0, "inputs.topic"]) == 40 and view.loc[0, "inputs.topic"].endswith("…")
    assert view.loc[0, "latency_s"] == 0.123
    assert frame.loc[0, "model_config_id"] == LONG_ID and frame.loc[0, "latency_s"] == 0.123456
    assert frame.loc[0, "inputs.topic"] == "a topic " * 20


def test_a_long_frame_shortens_only_the_rows_pandas_shows_and_keeps_its_length():
    frame = frame_with([f"out {i}" for i in range(200)])
    view = frame.display_view()
    assert len(view) == 200
    text = repr(frame)
    assert "[200 rows x" in text and "out 199" in text and "config_A1b2…" in text


def test_derived_frames_are_plain_pandas():
    frame = frame_with(["ok"])
    assert type(frame).__name__ == "ResultFrame"
    assert type(frame[["output"]]) is pd.DataFrame
