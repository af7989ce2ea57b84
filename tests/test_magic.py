"""%%hlchat in a real IPython shell against the real server process: endpoints, options, templates,
results, history and every error path rendering as one line."""
from __future__ import annotations

import json

import pandas as pd
import pytest

import hl_notebook
from hl_notebook import errors
from hl_notebook.config import HLSettings
from hl_notebook.frame import columns
from support import closed_port_url


def run(shell, line: str, body: str):
    """run_cell_magic: raises the real exception type (for pytest.raises)."""
    return shell.run_cell_magic("hlchat", line, body)


def rendered(shell, capsys, cell: str) -> list[str]:
    """Run a whole cell as a user would and return the non-empty lines IPython printed."""
    capsys.readouterr()
    shell.run_cell(cell)
    captured = capsys.readouterr()
    return [line for line in (captured.out + captured.err).splitlines() if line.strip()]


def project_logs(server, project: str) -> list[dict]:
    projects = server.get("/projects", params={"size": 1000}).json()["records"]
    found = [p for p in projects if p["name"] == project]
    if not found:
        return []
    return server.get("/logs", params={"project_id": found[0]["id"], "size": 1000}).json()["records"]


# -- results -----------------------------------------------------------------------------------
def test_chat_returns_one_row_per_sample_with_the_column_contract(shell):
    frame = run(shell, "--model m1 --temperature 0.5 -n 3 --project magic-basic", "user: hello")
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == [name for name, _ in columns()]
    assert frame["sample"].tolist() == [0, 1, 2]
    assert frame["endpoint"].unique().tolist() == ["chat"]
    assert frame["model"].unique().tolist() == ["m1"]
    assert frame["provider"].unique().tolist() == ["mock"]
    assert frame["prompt"].unique().tolist() == ["hello"]
    assert all(text.startswith("m1: hello ~ ") for text in frame["output"])
    assert frame["output"].nunique() == 3  # temperature > 0: samples differ
    assert frame["log_id"].str.match(r"^data_[A-Za-z0-9]{21}$").all()
    assert frame["error"].isna().all()
    assert str(frame["call_total_tokens"].dtype) == "Int64"


def test_out_assigns_the_frame_and_the_cell_value_is_the_frame(shell, capsys):
    result = shell.run_cell("%%hlchat --model m1 --temperature 0 --out answer\nuser: hi")
    assert result.success
    assert isinstance(shell.user_ns["answer"], pd.DataFrame)
    assert shell.user_ns["answer"].equals(result.result)


def test_grid_of_models_and_temperatures_in_declared_order(shell):
    frame = run(shell, "--model a,b --temperature 0,0.5 -n 2 --project magic-grid", "user: compare")
    assert frame[["call", "sample"]].values.tolist() == [[c, s] for c in range(4) for s in range(2)]
    assert frame.groupby("call")[["model", "temperature"]].first().values.tolist() == [
        ["a", 0.0], ["a", 0.5], ["b", 0.0], ["b", 0.5]]


def test_all_four_endpoints(shell, server):
    client_config = server.post("/model-configs", {"project": "magic-four", "model": "registered",
                                                   "provider": "mock", "temperature": 0}).json()
    config_id, project_id = client_config["config"]["id"], client_config["project_id"]
    other_id = server.post("/model-configs", {"project": "magic-four", "model": "other",
                                              "provider": "mock", "temperature": 0}).json()["config"]["id"]
    experiment = server.post(f"/projects/{project_id}/experiments",
                             {"name": "e", "positive_labels": [{"type": "t", "value": "v"}],
                              "config_ids": [config_id, other_id]}).json()
    shell.user_ns.update(config_id=config_id, experiment_id=experiment["id"])

    by_id = run(shell, "--model-config-id {config_id}", "user: one")
    assert by_id["endpoint"].tolist() == ["model-config"]
    assert by_id["model_config_id"].tolist() == [config_id]
    assert by_id["model"].tolist() == ["registered"]  # filled from the registered config
    assert by_id["output"].tolist() == ["registered: one"]

    sampled = run(shell, "--experiment-id $experiment_id -n 30", "user: two")
    assert set(sampled["model_config_id"]) == {config_id, other_id}

    deployed = run(shell, "--deployed --project magic-four", "user: three")
    assert deployed["endpoint"].tolist() == ["deployed"]
    assert deployed["model_config_id"].tolist() == [config_id]  # the project's first config

    server.request = None
    staging = server.post("/model-configs", {"project": "magic-four", "model": "staged", "provider": "mock",
                                             "temperature": 0}).json()["config"]["id"]
    import requests
    requests.patch(f"{server.base_url}/projects/{project_id}/deploy-config", headers=server.headers,
                   json={"config_id": staging, "environments": [{"name": "staging"}]}, timeout=30).raise_for_status()
    env = run(shell, "--deployed --project magic-four --environment staging", "user: four")
    assert env["model"].tolist() == ["staged"]
    assert env["environment"].tolist() == ["staging"]

    explicit = run(shell, "--endpoint chat --model direct --temperature 0", "user: five")
    assert explicit["endpoint"].tolist() == ["chat"]


def test_config_options_reach_the_server(shell):
    frame = run(shell, "--model m --temperature 0 --max-tokens 2 --top-p 0.5 --presence-penalty 0.1 "
                       "--frequency-penalty 0.2 --seed 7", "user: a b c d e f")
    row = frame.iloc[0]
    assert row["finish_reason"] == "length"
    assert row["output"] == "m: a"
    assert (row["max_tokens"], row["top_p"], row["seed"]) == (2, 0.5, 7)
    assert (row["presence_penalty"], row["frequency_penalty"]) == (0.1, 0.2)
    stopped = run(shell, "--model m --temperature 0 --stop STOP", "user: before STOP after")
    assert stopped["output"].tolist() == ["m: before"]
    assert stopped["stop"].tolist() == ["STOP"]



def test_a_quoted_option_value_is_the_text_inside_the_quotes(shell, server):
    """IPython hands the magic line's tokens over with their quotes: ``--project "my project"``
    made a project whose name had quote marks, ``--stop "###"`` a stop sequence nothing matched.
    A value in matching quotes is a Python string literal: quotes gone, escapes decoded."""
    frame = run(shell, "--model 'm' --temperature 0 --project \"quoted project\" --stop 'STOP'",
                "user: before STOP after")
    assert frame["model"].tolist() == ["m"] and frame["project"].tolist() == ["quoted project"]
    assert frame["stop"].tolist() == ["STOP"] and frame["output"].tolist() == ["m: before"]
    assert project_logs(server, "quoted project")
    newline = run(shell, "--model m --temperature 0 --stop '\\n' --stop 'a,b'", "user: one")
    assert newline["stop"].tolist() == ['["\\n", "a,b"]']  # a newline, and a comma kept inside quotes
    numbers = run(shell, "--model \"m\" --temperature '0' --max-tokens '2'", "user: x y z")
    assert numbers["max_tokens"].tolist() == [2] and numbers["output"].tolist() == ["m: x"]
    shell.user_ns["x"] = "from the notebook"
    literal = run(shell, "--model '{x}' --temperature 0", "user: hi")
    assert literal["model"].tolist() == ["{x}"]  # quoted: text, not a notebook reference
    blank = run(shell, "--model m --temperature 0 --session-id ''", "user: hi")
    assert json.loads(blank["request"].iloc[0])["session_id"] is None  # empty is no session, not the id ""


@pytest.mark.parametrize("line, expected", [
    ("--model m --stop '\\x'", "HLUsageError: --stop: '\\x' is not a valid quoted string (truncated \\xXX escape)"),
    ("--model ''", "HLUsageError: --model: empty value in \"''\""),
])
def test_a_bad_quoted_value_is_one_line(shell, capsys, line, expected):
    assert rendered(shell, capsys, f"%%hlchat {line}\nuser: hi") == [expected]


def test_metadata_session_and_no_save_are_sent(shell, server):
    shell.user_ns["meta"] = {"run": "m1", "n": 2}
    run(shell, "--model m --temperature 0 --project magic-meta --metadata meta --session-id sesh_x", "user: keep")
    run(shell, "--model m --temperature 0 --project magic-meta --no-save", "user: secret text")
    logs = project_logs(server, "magic-meta")
    assert logs[0]["metadata"] == {"run": "m1", "n": 2}
    assert logs[0]["session_id"] == "sesh_x"
    assert logs[0]["output"] == "m: keep"
    assert logs[1]["output"] is None and logs[1]["messages"] is None


def test_cells_are_stateless_and_sent_as_written(shell, server):
    run(shell, "--model m --temperature 0 --project magic-stateless", "system: s\nuser: first")
    run(shell, "--model m --temperature 0 --project magic-stateless", "user: second\n\n  indented")
    logs = project_logs(server, "magic-stateless")
    assert [m["content"] for m in logs[1]["messages"]] == ["second\n\n  indented"]


# -- cell formats and templates ----------------------------------------------------------------
def test_json_body_and_text_before_the_first_role(shell):
    frame = run(shell, "--model m --temperature 0", '[{"role": "system", "content": "s"}, {"role": "user", "content": "j"}]')
    assert frame["output"].tolist() == ["m: j"]
    frame = run(shell, "--model m --temperature 0", "plain text\nassistant: ok\nuser: last")
    assert frame["prompt"].tolist() == ["last"]


def test_templates_from_notebook_variables_and_inputs(shell):
    shell.user_ns["topic"] = "pandas"
    frame = run(shell, "--model m --temperature 0", "user: explain {{topic}}")
    assert frame["output"].tolist() == ["m: explain pandas"]
    assert frame["inputs.topic"].tolist() == ["pandas"]
    assert frame["prompt"].tolist() == ["explain pandas"]
    shell.user_ns["rows"] = pd.DataFrame({"topic": ["a", "b", "c"], "style": ["x", "y", "z"]})
    frame = run(shell, "--model m --temperature 0 --inputs rows", "user: {{topic}} in {{style}}")
    assert frame["output"].tolist() == ["m: a in x", "m: b in y", "m: c in z"]
    assert list(frame.columns).index("inputs.topic") < list(frame.columns).index("output")
    shell.user_ns["one"] = {"topic": "dict"}
    assert run(shell, "--model m --temperature 0 --inputs one", "user: {{topic}}")["output"].tolist() == ["m: dict"]


@pytest.mark.parametrize("value", [[], pd.DataFrame({"topic": []})], ids=["empty list", "empty DataFrame"])
def test_inputs_without_rows_give_an_empty_frame_and_one_line(shell, capsys, value):
    """No rows is no calls (a filter that matched nothing), not a missing template variable (the
    empty DataFrame) or a wrong type (the empty list); a notebook variable of the same name is not
    used instead."""
    shell.user_ns.update(rows=value, topic="from the notebook")
    lines = rendered(shell, capsys, "%%hlchat --model m --inputs rows --out empty\nuser: about {{topic}}")
    assert lines[-1] == "no calls: --inputs has no rows; nothing was sent", lines
    frame = shell.user_ns["empty"]
    assert len(frame) == 0 and list(frame.columns)[:4] == ["call", "sample", "log_id", "call_key"]
    assert len(hl_notebook.sweep("user: {{topic}}", model="m", inputs=[])) == 0  # the API: quietly


def test_missing_input_is_one_line_and_sends_nothing(shell, server, capsys):
    before = len(project_logs(server, "magic-missing"))
    lines = rendered(shell, capsys, "%%hlchat --model m --project magic-missing\nuser: {{nowhere}} {{gone}}")
    assert lines == ["MissingInputError: no value for template variables nowhere, gone: pass --inputs VAR "
                     "or define them in the notebook"]
    assert len(project_logs(server, "magic-missing")) == before
    with pytest.raises(errors.MissingInputError):
        run(shell, "--model m", "user: {{nowhere}}")


# -- errors as one line ------------------------------------------------------------------------
@pytest.mark.parametrize(("cell", "expected"), [
    ("%%hlchat --modle m\nuser: hi", "HLUsageError: unknown option --modle; did you mean --model?"),
    ("%%hlchat --temp 1 --model m\nuser: hi", "HLUsageError: unknown option --temp; did you mean --temperature?"),
    ("%%hlchat --model m\nusr:\nhi", "CellSyntaxError: line 1: unknown role 'usr'; did you mean user?"),
    ("%%hlchat --model m\nuser:\n\nassistant: x", "CellSyntaxError: line 1: the user message is empty"),
    ("%%hlchat --model m\n[{\"role\": \"user\" \"content\": 1}]",
     "CellSyntaxError: line 1: invalid JSON: Expecting ',' delimiter"),
    ("%%hlchat --model m --temperature hot\nuser: hi", "HLUsageError: --temperature: 'hot' is not a valid float"),
    ("%%hlchat --inputs nothing_here --model m\nuser: hi",
     "HLUsageError: --inputs 'nothing_here' is not defined in the notebook"),
    ("%%hlchat\nuser: hi", "HLUsageError: no endpoint: pass --model (for /chat), --model-config-id, "
                           "--experiment-id, --deployed, or --endpoint"),
    ("%%hlchat --model-config-id config_missing\nuser: hi",
     "HLNotFoundError: POST /chat-model-config returned 404: model config config_missing not found"),
    ("%%hlchat --model m -n 101\nuser: hi",
     "HLValidationError: POST /chat returned 422: body.num_samples: Input should be less than or equal to 100"),
    ("%%hlchat --deployed --project never-made\nuser: hi",
     "HLNotFoundError: POST /chat-deployed returned 404: project never-made not found"),
])
def test_errors_render_as_one_line(shell, capsys, cell, expected):
    assert rendered(shell, capsys, cell) == [expected]


def test_wrong_key_is_one_line_without_the_key(shell, capsys, monkeypatch):
    monkeypatch.setenv("HUMANLOOP_API_KEY", "hl-CANARY-wrong-key-42")
    lines = rendered(shell, capsys, "%%hlchat --model m\nuser: hi")
    assert lines == ["HLAuthError: POST /chat returned 401: invalid or missing X-API-KEY"]


def test_server_down_is_one_line(shell, capsys, monkeypatch):
    base = closed_port_url() + "/v4"
    monkeypatch.setenv("HUMANLOOP_BASE_URL", base)
    HLSettings.instance().max_retries = 0
    lines = rendered(shell, capsys, "%%hlchat --model m\nuser: hi")
    assert lines == [f"HLConnectionError: cannot reach {base} (connection refused); is the "
                     "server running? set HLSettings.base_url or HUMANLOOP_BASE_URL"]


def test_timeout_is_one_line_and_out_still_assigned(shell, capsys, tmp_path, monkeypatch):
    from support import ServerProcess

    slow = ServerProcess(tmp_path / "slow.sqlite", extra_args=["--mock-latency-ms", "3000"]).start()
    try:
        monkeypatch.setenv("HUMANLOOP_BASE_URL", slow.base_url)
        monkeypatch.setenv("HUMANLOOP_API_KEY", slow.api_key)
        HLSettings.instance().read_timeout = 0.3
        lines = rendered(shell, capsys, "%%hlchat --model m --out partial\nuser: hi")
    finally:
        slow.stop()
    assert lines == [f"HLTimeoutError: POST /chat: no answer from {slow.base_url} within 0.3 s "
                     "(HLSettings.read_timeout)"]
    assert shell.user_ns["partial"]["error_type"].tolist() == ["HLTimeoutError"]


def test_base_url_option_picks_the_server_for_one_cell(shell, server, monkeypatch):
    monkeypatch.setenv("HUMANLOOP_BASE_URL", closed_port_url() + "/v4")  # the environment points nowhere
    frame = run(shell, f"--model m --temperature 0 --base-url {server.base_url}", "user: routed")
    assert frame["output"].tolist() == ["m: routed"]


def test_show_traceback_switch(shell, capsys):
    shell.run_line_magic("config", "HLSettings.show_traceback = True")
    lines = rendered(shell, capsys, "%%hlchat --model m\nusr:\nhi")
    assert len(lines) > 3 and "Traceback" in lines[0]
    assert lines[-1].endswith("CellSyntaxError: line 1: unknown role 'usr'; did you mean user?")


def test_sweep_with_a_failing_call_keeps_rows_and_prints_a_summary(shell, capsys):
    capsys.readouterr()
    frame = run(shell, "--model ok-model,m2 --provider mock,nope-provider --temperature 0", "user: hi")
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["2 ok, 2 failed (HLValidationError ×2); see the error column"]
    assert frame["error_type"].fillna("").tolist() == ["", "HLValidationError", "", "HLValidationError"]
    assert frame["sample"].isna().tolist() == [False, True, False, True]


# -- streaming, history, help --------------------------------------------------------------------
def test_stream_prints_tokens_then_returns_the_frame(shell, capsys):
    capsys.readouterr()
    frame = run(shell, "--model m --temperature 0 --stream -n 2", "user: stream me")
    out = capsys.readouterr().out
    assert "[call 0 sample 0] m: stream me" in out and "[call 0 sample 1] m: stream me" in out
    assert frame["output"].tolist() == ["m: stream me", "m: stream me"]
    assert frame["finish_reason"].tolist() == ["stop", "stop"]


def test_history_in_memory_magic_and_on_disk(shell):
    import hl_notebook
    from hl_notebook import archive

    before = len(hl_notebook.history())
    run(shell, "--model m --temperature 0 -n 2", "user: remember me")
    now = hl_notebook.history()
    assert len(now) == before + 2
    assert now["output"].tolist()[-2:] == ["m: remember me"] * 2
    assert shell.run_line_magic("hlchat_history", "").shape == now.shape
    with pytest.raises(errors.HLUsageError, match=r"^unknown option --al; did you mean --all\?$"):
        shell.run_line_magic("hlchat_history", "--al")  # was ignored: this session's history, not all
    on_disk = hl_notebook.history(all_sessions=True)
    last = on_disk[(on_disk["session"] == archive.SESSION) & (on_disk["run"] == now["run"].max())]
    assert last["output"].tolist() == ["m: remember me"] * 2  # (earlier tests may use other history files)
    assert on_disk["output"].tolist()[-1] == "m: remember me"
    assert str(on_disk["created_at"].dtype) == "datetime64[ns, UTC]"


def test_help_has_examples(shell):
    doc = shell.find_cell_magic("hlchat").__doc__
    assert "Examples" in doc and "%%hlchat --model" in doc
    assert "--num-samples" in shell.find_cell_magic("hlchat").parser.format_help()


def test_call_deadline_setting_ends_a_call_that_never_completes(shell, capsys, tmp_path, monkeypatch):
    """The slow server answers within every read timeout's reach but not within the deadline."""
    from support import ServerProcess

    slow = ServerProcess(tmp_path / "slow.sqlite", extra_args=["--mock-latency-ms", "3000"]).start()
    try:
        monkeypatch.setenv("HUMANLOOP_BASE_URL", slow.base_url)
        monkeypatch.setenv("HUMANLOOP_API_KEY", slow.api_key)
        shell.run_line_magic("config", "HLSettings.call_deadline = 0.5")
        lines = rendered(shell, capsys, "%%hlchat --model m --out partial\nuser: hi")
    finally:
        slow.stop()
    assert lines == ["HLTimeoutError: POST /chat: no complete answer within 0.5 s (HLSettings.call_deadline)"]
    assert shell.user_ns["partial"]["error_type"].tolist() == ["HLTimeoutError"]


def test_a_base_url_without_v4_says_where_the_api_lives(shell, server, capsys):
    root = server.base_url.removesuffix("/v4")
    lines = rendered(shell, capsys, f"%%hlchat --model m --base-url {root}\nuser: hi")
    assert lines == [f"HLNotFoundError: POST /chat returned 404: Not Found; the v4 API lives under /v4 — "
                     f"did you mean {root}/v4?"]


def test_a_missing_provider_key_says_how_to_fix_it(shell, capsys, tmp_path, monkeypatch):
    from support import ServerProcess

    # OpenAI's own URL and no key anywhere: the server refuses before sending anything
    keyless = ServerProcess(tmp_path / "k.sqlite", env={"OPENAI_BASE_URL": "", "OPENAI_API_KEY": ""}).start()
    try:
        monkeypatch.setenv("HUMANLOOP_BASE_URL", keyless.base_url)
        monkeypatch.setenv("HUMANLOOP_API_KEY", keyless.api_key)
        lines = rendered(shell, capsys, "%%hlchat --model demo --provider openai\nuser: hi")
    finally:
        keyless.stop()
    assert lines == ["HLAuthError: POST /chat returned 401: OpenAI: no OpenAI API key; set OPENAI_API_KEY in the "
                     "notebook's environment (%env OPENAI_API_KEY=…) or use --provider mock for offline answers"]
