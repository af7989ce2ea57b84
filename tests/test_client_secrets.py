"""Keys stay wrapped until the moment of sending (issue 10, item 2), and the client encodes bodies
itself: ``Secret`` values are revealed only inside ``HLClient._send``, so ``%xmode Verbose`` (which
prints every frame's variables into the saved notebook) shows no key; a value JSON cannot carry is
an ``HLUsageError`` naming its field, raised before anything is sent (pitfalls 14, 16, 17)."""
from __future__ import annotations

import _thread
import collections
import datetime
import re
import types
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hl_notebook
from hl_notebook.client import HLClient, RetryPolicy
from hl_notebook.errors import HLConnectionError, HLError, HLUsageError, HLValidationError
from hl_notebook.parse import parse_cell
from hl_notebook.secrets import Secret
from rawserver import Connection, RawServer, reply
from support import closed_port_url

FAST = RetryPolicy(max_retries=1, backoff_base=0.01)
RESPONSE = {"data": [{"id": "data_raw0", "index": 0, "output": "hi", "finish_reason": "stop"}], "provider_responses": []}
PACKAGE = str(Path(hl_notebook.__file__).parent)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def canary(kind: str) -> str:
    return f"{kind}-canary-{uuid.uuid4().hex}"


def body_with(provider_key: str, **fields) -> dict:
    return {"messages": [{"role": "user", "content": "hello"}], "model_config": {"model": "m", "provider": "mock"},
            "provider_api_keys": {"openai": Secret(provider_key)}, **fields}


# -- what reaches the server ----------------------------------------------------------------------
def test_secret_values_are_revealed_on_the_wire_only():
    provider_key, hl_key = canary("sk"), canary("hl")
    body = body_with(provider_key, inputs={"city": "Zürich ✓"})
    with RawServer(reply(200, RESPONSE)) as server:
        HLClient(server.base_url, Secret(hl_key), retry=FAST).chat("/chat", body)
    [request] = server.requests
    assert request.json()["provider_api_keys"] == {"openai": provider_key}
    assert request.json()["inputs"] == {"city": "Zürich ✓"}
    assert request.headers["x-api-key"] == hl_key
    assert request.headers["content-type"] == "application/json"
    assert isinstance(body["provider_api_keys"]["openai"], Secret)  # the caller's body is not changed


# -- values JSON cannot carry ---------------------------------------------------------------------
circular: dict = {"a": 1}
circular["self"] = circular


@pytest.mark.parametrize(("fields", "message"), [
    ({"inputs": {"score": float("nan")}}, "inputs.score: NaN is not valid JSON; use None"),
    ({"inputs": {"score": float("inf")}}, "inputs.score: inf is not valid JSON; use None"),
    ({"metadata": {"tags": ["a", float("-inf")]}}, "metadata.tags[1]: -inf is not valid JSON; use None"),
    ({"inputs": {"n": np.int64(3)}},
     "inputs.n: numpy.int64 is not JSON; convert it to str, int, float, bool, None, a list or a dict"),
    ({"inputs": {"when": pd.Timestamp("2024-01-02")}},
     "inputs.when: pandas.Timestamp is not JSON; convert it to str, int, float, bool, None, a list or a dict"),
    ({"inputs": {"when": datetime.date(2024, 1, 2)}},
     "inputs.when: datetime.date is not JSON; convert it to str, int, float, bool, None, a list or a dict"),
    ({"inputs": {(1, 2): "x"}}, "inputs: the key (1, 2) is not a string"),
    ({"messages": [{"role": "user", "content": "a\ud800b"}]},
     "messages[0].content: '\\ud800' is a lone surrogate, not valid UTF-8; remove it"),
    ({"metadata": circular}, "the body has a circular reference or is nested too deeply to encode as JSON"),
])
def test_a_value_json_cannot_carry_is_a_usage_error_naming_its_field(fields, message):
    with RawServer(reply(200, RESPONSE)) as server:
        with pytest.raises(HLUsageError) as info:
            HLClient(server.base_url, Secret(canary("hl")), retry=FAST).chat("/chat", body_with(canary("sk"), **fields))
    assert str(info.value) == message
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert server.requests == []  # nothing was sent


def test_an_escaped_lone_surrogate_in_a_json_cell_is_a_usage_error_before_sending():
    messages = parse_cell('[{"role": "user", "content": "fine"}, {"role": "user", "content": "bad \\ud800"}]')
    with RawServer(reply(200, RESPONSE)) as server:
        with pytest.raises(HLUsageError) as info:
            HLClient(server.base_url, Secret(canary("hl")), retry=FAST).chat("/chat", {"messages": messages})
    assert str(info.value) == "messages[1].content: '\\ud800' is a lone surrogate, not valid UTF-8; remove it"
    assert server.requests == []


# -- %xmode Verbose -------------------------------------------------------------------------------
def reachable_text(root: object, depth: int = 7) -> list[str]:
    """Every string reachable from ``root`` through containers and attributes (``Secret`` excepted:
    it is the one sanctioned holder of a key)."""
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, Secret)
    found, seen, todo = [], set(), [(root, 0)]
    while todo:
        value, level = todo.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, (str, bytes, bytearray)):
            found.append(value if isinstance(value, str) else bytes(value).decode("utf-8", "replace"))
            continue
        if level >= depth or isinstance(value, skip):
            continue
        if isinstance(value, dict):
            children = [*value.keys(), *value.values()]
        elif isinstance(value, (list, tuple, set, frozenset, collections.deque)):
            children = list(value)
        else:
            try:
                children = list(vars(value).values())
            except TypeError:
                children = []
            children += [getattr(value, slot, None) for cls in type(value).__mro__
                         for slot in getattr(cls, "__slots__", ()) if isinstance(slot, str)]
        todo.extend((child, level + 1) for child in children)
    return found


def library_frames(error: BaseException) -> list[types.FrameType]:
    """The frames of hl_notebook and below (requests, urllib3) in ``error``'s traceback and chain."""
    frames, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        tb, inside = error.__traceback__, False
        while tb is not None:
            inside = inside or tb.tb_frame.f_code.co_filename.startswith(PACKAGE)
            if inside:
                frames.append(tb.tb_frame)
            tb = tb.tb_next
        error = error.__cause__ or error.__context__
    return frames


def assert_no_key_anywhere(shell, error: BaseException, *keys: str) -> None:
    """Neither the Verbose rendering nor any variable of a library frame holds a key."""
    text = ANSI.sub("", "\n".join(shell.InteractiveTB.structured_traceback(type(error), error, error.__traceback__)))
    assert "Traceback (most recent call last)" in text and "chat" in text  # really rendered, with frames
    frames = library_frames(error)
    assert frames, "the traceback holds no library frame"
    for key in keys:
        assert key not in text
        for frame in frames:
            leaks = [name for name, value in frame.f_locals.items() if any(key in t for t in reachable_text(value))]
            assert not leaks, f"{frame.f_code.co_qualname} holds the key in {leaks}"


@pytest.fixture
def verbose(shell):
    mode = shell.InteractiveTB.mode
    shell.run_line_magic("xmode", "Verbose")
    yield shell
    shell.run_line_magic("xmode", mode)


def run_failing_cell(shell, client: HLClient, body: dict) -> BaseException:
    shell.user_ns.update(client=client, body=body)
    result = shell.run_cell("client.chat('/chat', body)")
    assert result.error_in_exec is not None
    return result.error_in_exec


def test_422_in_verbose_mode_shows_no_key(verbose, server):
    provider_key = canary("sk")
    client = HLClient(server.base_url, Secret(server.api_key), retry=FAST)
    error = run_failing_cell(verbose, client, body_with(provider_key, messages="not a list"))
    assert isinstance(error, HLValidationError)
    assert_no_key_anywhere(verbose, error, provider_key, server.api_key)


def test_server_down_in_verbose_mode_shows_no_key(verbose):
    provider_key, hl_key = canary("sk"), canary("hl")
    client = HLClient(closed_port_url() + "/v4", Secret(hl_key), retry=FAST)
    error = run_failing_cell(verbose, client, body_with(provider_key))
    assert type(error) is HLConnectionError
    assert_no_key_anywhere(verbose, error, provider_key, hl_key)


def test_show_traceback_output_shows_no_key(verbose, server, capsys):
    provider_key = canary("sk")
    verbose.run_line_magic("config", "HLSettings.show_traceback = True")
    client = HLClient(server.base_url, Secret(server.api_key), retry=FAST)
    capsys.readouterr()
    error = run_failing_cell(verbose, client, body_with(provider_key, messages="not a list"))
    printed = capsys.readouterr()
    output = ANSI.sub("", printed.out + printed.err)
    assert isinstance(error, HLError) and "Traceback (most recent call last)" in output
    assert provider_key not in output and server.api_key not in output


def test_ctrl_c_while_waiting_for_the_answer_leaves_no_key_in_the_traceback(verbose):
    """Ctrl-C lands wherever requests/urllib3 happen to be; their frames hold the clear headers and
    body, so the traceback stops at the client's send function."""
    provider_key, hl_key = canary("sk"), canary("hl")

    def interrupt_then_answer(connection: Connection) -> None:
        _thread.interrupt_main()  # as a Ctrl-C would, while the client waits for this answer
        reply(200, RESPONSE)(connection)

    with RawServer(interrupt_then_answer) as server:
        error = run_failing_cell(verbose, HLClient(server.base_url, Secret(hl_key), retry=FAST), body_with(provider_key))
    assert type(error) is KeyboardInterrupt
    assert_no_key_anywhere(verbose, error, provider_key, hl_key)
