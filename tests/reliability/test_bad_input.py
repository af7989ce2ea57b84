"""Property tests: any cell body and any option line either parses or gives a one-line
HLUsageError — never a traceback, never a network call — and every body planned encodes as strict
JSON (what the client sends), so nothing can fail later for a value the plan let through."""
from __future__ import annotations

import json
import socket
from contextlib import contextmanager

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hl_notebook.errors import HLUsageError
from hl_notebook.magic import magic_specs, parse_options
from hl_notebook.parse import ROLES, parse_cell
from hl_notebook.secrets import reveal
from hl_notebook.spec import build_body

ROLE_LINES = st.sampled_from([f"{r}:" for r in ROLES] + ["usr:", "sytem:", "User: hi", "\\user: x", "[", "]", "{{x}}"])
BODY = st.lists(st.one_of(st.text(max_size=40), ROLE_LINES), max_size=12).map("\n".join)
OPTION_WORDS = st.sampled_from([
    "--model", "--model=m", "m1,m2", "--temperature", "0", "0.5,1", "hot", "--max-tokens", "-1", "--top-p",
    "--stop", "--seed", "x", "--endpoint", "chat", "deployed", "bogus", "--deployed", "--project", "p",
    "--model-config-id", "{ids}", "$ids", "{missing}", "--experiment-id", "--inputs", "rows", "nope", "-n", "2",
    "--num-samples", "--stream", "--out", "df", "--modle", "--temp", "'", '"', "--concurrency", "--cache",
    "--configs", "cfgs", "--metadata", "meta", "--no-save", "--environment", "--session-id", "=", "-", "--",
    "nan", "inf", "-inf", "1e400", "7", "-5", "--presence-penalty", "{nums}", "--other", "extras", "--inputs nanrows",
    "--configs nancfgs", "--metadata nanmeta",
])
LINE = st.one_of(st.lists(OPTION_WORDS, max_size=8).map(" ".join), st.text(max_size=40))
NAMESPACE = {"ids": ["config_a", "config_b"], "rows": [{"x": 1}], "cfgs": [{"model": "a"}], "meta": {"k": 1},
             "nums": [np.float64(0.5), np.int64(1), float("nan")], "extras": {"top_k": np.int64(3)},
             "nanrows": pd.DataFrame({"x": [1.0, np.nan], "when": pd.to_datetime(["2026-01-01", None])}),
             "nancfgs": pd.DataFrame([{"model": "a", "temperature": 0.5}, {"model": "b", "seed": np.int64(2)}]),
             "nanmeta": {"score": float("nan"), "n": np.int32(4), "at": pd.Timestamp("2026-01-01")}}


@contextmanager
def no_network():
    """Any connection attempt fails the test (planning must not connect, nor start a server)."""
    original = socket.socket.connect

    def refuse(*args, **kwargs):
        raise AssertionError("planning opened a connection")
    socket.socket.connect = refuse
    try:
        yield
    finally:
        socket.socket.connect = original


def one_line(error: Exception) -> bool:
    text = str(error)
    return bool(text) and "\n" not in text and error._render_traceback_() == [f"{type(error).__name__}: {text}"]


@settings(max_examples=300, deadline=None)
@given(BODY)
def test_any_cell_body_parses_or_fails_in_one_line(body):
    try:
        messages = parse_cell(body)
    except HLUsageError as error:
        assert one_line(error)
        return
    assert messages and all(m["role"] in ROLES for m in messages)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LINE, BODY)
def test_any_option_line_and_body_build_specs_or_fail_in_one_line(line, body):
    try:
        with no_network():
            specs = magic_specs(parse_options(line), body, NAMESPACE, default_provider="mock")
    except HLUsageError as error:
        assert one_line(error)
        return
    assert specs and all(spec.num_samples >= 1 for spec in specs)
    for spec in specs:  # the client's encoding: strict JSON, keys revealed only here
        json.dumps(build_body(spec), default=reveal, allow_nan=False)
