"""Conformance with the official v4 TypeScript SDK, npm ``humanloop@0.5.36``, over real HTTP.

Why: the server claims wire compatibility with both Konfig-generated v4 SDKs; this is the second.
0.5.36 is the only non-alpha 0.5.x/0.6.x release the registry has (``npm view humanloop versions``:
0.5.0-alpha.21, 0.5.0-alpha.28, 0.5.36, then 0.8.20, a v5 Fern SDK). It is installed once per
machine with npm into ``HL_TS_SDK_DIR`` (default ``~/.cache/hl_notebook/ts-sdk``), under a file
lock, with its dependencies pinned (see ``PACKAGE``); ``sdk_script.mjs`` runs in Node against a
fresh server process and prints a JSON report that this test asserts on. Provider failures (a 429,
an error mid-stream) come from the tests' fake OpenAI (``fake_openai``) through the pass-through.
An install that fails or takes over ``INSTALL_TIMEOUT`` fails the tests with npm's message.

Pinning: 0.5.36 pins axios 0.27.2 but asks for ``konfig-axios-fetch-adapter@^1.0.9``, which today
resolves to 1.6.4, an adapter for axios >= 1.6.4 only: a plain ``npm install humanloop@0.5.36``
fails every call with ``config.headers.getContentType is not a function`` (docs/v4-decisions.md).
The adapter is therefore pinned to 1.0.9 (the version the SDK names; peer axios >= 0.26), axios to
the SDK's 0.27.2 and eventsource-parser (which parses the stream) to 1.1.2.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.server.helpers import FAKE_PROVIDER_KEY, check_sdk_deployments, check_sdk_feedback, sdk_report

SDK_VERSION = "0.5.36"
PACKAGE = {"private": True, "description": "hl_notebook test cache: the v4 TypeScript SDK",
           "dependencies": {"humanloop": SDK_VERSION, "axios": "0.27.2", "konfig-axios-fetch-adapter": "1.0.9",
                            "eventsource-parser": "1.1.2"},
           "overrides": {"axios": "0.27.2", "konfig-axios-fetch-adapter": "1.0.9", "eventsource-parser": "1.1.2"}}
SDK_DIR = Path(os.environ.get("HL_TS_SDK_DIR") or
               Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hl_notebook" / "ts-sdk")
INSTALL_TIMEOUT = 300  # seconds; npm's own fetch timeout and retries are bounded below it
SCRIPT = Path(__file__).with_name("sdk_script.mjs")
PROJECT = "sdk-ts-conformance"
ANSWER = "{model}: hello testers"  # mock provider at temperature 0: "<model>: <last user text>"
CHATS = ("chat", "chatDeployed", "chatExperiment", "chatModelConfiguration")
STREAM_OF = {"chat": "chatStream", "chatDeployed": "chatDeployedStream", "chatExperiment": "chatExperimentStream",
             "chatModelConfiguration": "chatModelConfigurationStream"}


def id_of(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"{prefix}_[A-Za-z0-9]{{21}}")  # spec §9: prefix + 21 alphanumerics


pytestmark = pytest.mark.sdk


def _installed() -> bool:
    marker = SDK_DIR / "installed.json"
    return marker.exists() and json.loads(marker.read_text()) == PACKAGE and \
        (SDK_DIR / "node_modules" / "humanloop" / "package.json").exists()


def node() -> str:
    """Node >= 18 (global fetch and web streams, which the SDK's fetch adapter uses), else a clear failure."""
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not installed: the TypeScript SDK suite needs Node >= 18 and npm (Debian: apt-get "
                    "install nodejs npm)")
    version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 18:
        pytest.fail(f"node {version} is too old: the TypeScript SDK suite needs Node >= 18")
    return found


_install_failure: list[str] = []  # pytest runs a failed module fixture again for every test: fail once


def _fail_install(message: str) -> None:
    _install_failure.append(message)
    pytest.fail(message)


def sdk_dir() -> Path:
    """The SDK's install directory, installed (under a lock, pinned) on first use."""
    if _install_failure:
        pytest.fail(_install_failure[0])
    SDK_DIR.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{SDK_DIR}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed():
            npm = shutil.which("npm")
            if npm is None:
                pytest.fail("npm is not installed: the TypeScript SDK suite installs npm humanloop@" + SDK_VERSION)
            shutil.rmtree(SDK_DIR, ignore_errors=True)
            SDK_DIR.mkdir(parents=True)
            (SDK_DIR / "package.json").write_text(json.dumps(PACKAGE, indent=1))
            command = [npm, "install", "--no-audit", "--no-fund", "--no-update-notifier", "--fetch-timeout=30000",
                       "--fetch-retries=2", "--fetch-retry-mintimeout=2000", "--fetch-retry-maxtimeout=10000"]
            started = time.monotonic()
            try:
                done = subprocess.run(command, cwd=SDK_DIR, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                                      stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                _fail_install(f"npm install of humanloop@{SDK_VERSION} into {SDK_DIR} took over {INSTALL_TIMEOUT} s")
            if done.returncode != 0:
                _fail_install(f"npm install of humanloop@{SDK_VERSION} into {SDK_DIR} failed ({done.returncode}):\n"
                              f"{done.stderr[-3000:]}")
            (SDK_DIR / "installed.json").write_text(json.dumps(PACKAGE))
            print(f"installed humanloop@{SDK_VERSION} (npm) in {time.monotonic() - started:.1f} s")
    return SDK_DIR


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, fake_openai: str) -> dict[str, Any]:
    """The script's report, from a server of its own."""
    node_path, directory = node(), sdk_dir()
    return sdk_report([node_path, str(SCRIPT)], tmp_path_factory.mktemp("sdk-ts") / "hl.sqlite", PROJECT,
                      {"HL_TS_SDK_DIR": str(directory), "HL_FAKE_OPENAI": fake_openai,
                       "HL_FAKE_OPENAI_KEY": FAKE_PROVIDER_KEY}, timeout=120)


def test_the_script_ran_every_step(report):
    assert report["sdk_version"] == SDK_VERSION
    assert report["failures"] == {}, "\n".join(f"{k}:\n{v}" for k, v in report["failures"].items())


def test_every_response_satisfies_the_sdk_types(report):
    """Each 2xx body against the SDK's declared response type (``conforms`` in the script)."""
    calls = report["calls"]
    assert set(calls) == {
        "projects.create", "projects.list", "modelConfigs.register", "modelConfigs.register (project_id)",
        "modelConfigs.get", "projects.listConfigs", "experiments.create", "experiments.list",
        "projects.listDeployedConfigs", "projects.deployConfig", "projects.getActiveConfig", "projects.get",
        *CHATS, "logs.list", "feedback", "feedback (list)", "experiments.list (after feedback)",
        "experiments.sample", "feedback (unset)", "logs.list (failed calls)"}
    # one known disagreement: a failed call's log carries the spec §8 error object (as the stream's
    # error event does), where the SDK's LogResponse types ``error`` as a string (docs/v4-decisions.md)
    assert {name: call["validation"] for name, call in calls.items() if call["validation"] != "ok"} == {
        "logs.list (failed calls)": [
            'body.records[0].error: expected a string, got {"type":"rate_limit_error","message":"Rate limit reached '
            'for requests","code":429,"origin":"OpenAI"}',
            'body.records[1].error: expected a string, got {"type":"bad_gateway","message":"upstream fell over",'
            '"code":502,"origin":"OpenAI"}']}
    assert {name: call["status"] for name, call in calls.items()} == {
        name: 201 if name == "projects.create" else 200 for name in calls}
    for name in CHATS:  # spec §4/§6: optional fields travel as null; the SDK types them without null
        assert calls[name]["nulls"] == ["logprobs", "metadata", "session_id", "suffix", "tool_call", "tool_calls",
                                        "tool_choice", "user"], name
    assert all(call["nulls"] == [] for name, call in calls.items() if name not in CHATS and "logs" not in name)
    assert calls["logs.list"]["nulls"] == ["error", "metadata", "parent_id", "session_id", "source"]


def test_management_calls(report):
    ids = report["ids"]
    assert id_of("pr").fullmatch(ids["project"]) and id_of("exp").fullmatch(ids["experiment"])
    assert id_of("config").fullmatch(ids["config_a"]) and id_of("config").fullmatch(ids["config_b"])
    assert id_of("env").fullmatch(ids["environment"])
    assert report["project_names"] == [PROJECT]
    # pages count from 0 here; the SDK's Page.hasNext() (page * size < total) counts them from 1
    assert report["projects_page"] == {"page": 0, "size": 100, "total": 1, "has_next": True}
    assert report["project_config_ids"] == report["custom_list_config_ids"] == [ids["config_a"], ids["config_b"]]
    assert report["config_a"] == {
        "id": ids["config_a"], "type": "model", "name": "sdk-a", "model": "sdk-a", "provider": "mock",
        "chat_template": [{"role": "system", "content": "You help {{audience}}."}], "endpoint": "chat",
        "temperature": 0, "top_p": 1, "max_tokens": -1, "presence_penalty": 0, "frequency_penalty": 0, "other": {}}
    check_sdk_deployments(report, ids)


def test_the_four_chat_endpoints_return_two_samples(report):
    ids, chats = report["ids"], report["chat"]
    assert set(chats) == set(CHATS)
    for name, summary in chats.items():
        assert summary["num_samples"] == 2 and summary["indices"] == [0, 1], name
        assert len(set(summary["ids"])) == 2 and all(id_of("data").fullmatch(i) for i in summary["ids"]), name
        assert summary["project_id"] == ids["project"], name
        assert summary["finish_reasons"] == ["stop", "stop"], name
        assert summary["raw_outputs"] == summary["outputs"], name
        assert summary["output_messages"] == [
            {"role": "assistant", "content": output, "name": None, "tool_call_id": None, "tool_calls": None,
             "tool_call": None} for output in summary["outputs"]], name
        # one provider call per config used (an experiment's two samples may use two)
        assert summary["provider_responses"] == len(set(summary["model_config_ids"])), name
        usage = summary["usage"]
        assert usage["generation_tokens"] == 6 and usage["total_tokens"] == usage["prompt_tokens"] + 6, name
    inline = chats["chat"]["model_config_ids"]
    assert inline[0] == inline[1] and id_of("config").fullmatch(inline[0])
    assert inline[0] not in (ids["config_a"], ids["config_b"])
    assert chats["chat"]["outputs"] == [ANSWER.format(model="sdk-inline")] * 2
    # template system message, then the role-only system message, then the user message
    assert chats["chat"]["roles_sent"] == ["system", "system", "user"]
    assert chats["chat"]["usage"]["prompt_tokens"] == 5  # "You help testers." + "hello testers"
    assert chats["chatDeployed"]["model_config_ids"] == [ids["config_b"]] * 2
    assert chats["chatDeployed"]["outputs"] == [ANSWER.format(model="sdk-b")] * 2
    assert chats["chatDeployed"]["roles_sent"] == ["system", "user"]  # config b has no template
    assert chats["chatModelConfiguration"]["model_config_ids"] == [ids["config_a"]] * 2
    assert chats["chatModelConfiguration"]["outputs"] == [ANSWER.format(model="sdk-a")] * 2
    experiment = chats["chatExperiment"]
    for config_id, output in zip(experiment["model_config_ids"], experiment["outputs"], strict=True):
        model = {ids["config_a"]: "sdk-a", ids["config_b"]: "sdk-b"}[config_id]
        assert output == ANSWER.format(model=model)


def test_what_the_sdk_sends(report):
    """spec §1: ``X-API-KEY``, the Konfig user agent, JSON answers; provider keys only in the body,
    client-level ones merged in by the SDK without replacing a per-call key."""
    assert report["requests"] == {
        name: {"path": path, "content_type": "application/json", "user_agent": f"Konfig/{SDK_VERSION}/typescript",
               "api_key_sent": True}
        for name, path in zip(CHATS, ("/chat", "/chat-deployed", "/chat-experiment", "/chat-model-config"))}
    assert report["sent_provider_api_keys"] == {
        "chat": {"openai": "client-level", "mock": "per-call"},
        **{name: {"openai": "client-level", "mock": "client-level"} for name in CHATS[1:]}}


def test_streaming_through_the_sdk(report):
    """spec §7 through ``HumanloopCustom.chat*Stream``: the SDK parses the SSE with eventsource-parser
    and yields ``{output, id, index, finish_reason, ...}`` per event; the concatenated deltas of each
    sample equal what the same call answers without streaming."""
    ids, chats, streams = report["ids"], report["chat"], report["stream"]
    assert set(streams) == {*STREAM_OF.values(), "chatStream (error mid-stream)"}
    config_model = {ids["config_a"]: "sdk-a", ids["config_b"]: "sdk-b", chats["chat"]["model_config_ids"][0]: "sdk-inline"}
    for name, stream_name in STREAM_OF.items():
        stream = streams[stream_name]
        assert stream["status"] == 200 and stream["content_type"] == "text/event-stream; charset=utf-8", name
        # the SDK asks for JSON and says "stream" in the body only: the server decides from the body
        assert stream["accept_sent"] == "application/json, text/plain, */*" and stream["stream_flag_sent"] is True
        assert stream["event_keys"] == ["finish_reason", "id", "index", "model_config_id", "output", "output_message",
                                        "project_id", "tool_calls", "tool_results"], name
        texts = stream["texts_by_id"]
        assert len(texts) == 2 and all(id_of("data").fullmatch(i) for i in texts), name  # num_samples=2
        assert not set(texts) & set(chats[name]["ids"]), name  # new logs
        assert sorted(stream["indices_by_id"].values()) == [0, 1], name
        assert stream["project_ids"] == [ids["project"]], name
        assert stream["events"] == 8, name  # the mock streams "<model>:", " hello", " testers", then the end
        assert stream["finals_per_id"] == {i: 1 for i in texts}, name
        assert stream["finish_reasons_by_id"] == {i: "stop" for i in texts}, name
        for log_id, text in texts.items():
            assert text == ANSWER.format(model=config_model[stream["config_by_id"][log_id]]), name
            assert stream["final_message_by_id"][log_id] == {
                "role": "assistant", "content": text, "name": None, "tool_call_id": None, "tool_calls": None,
                "tool_call": None}, name
        if name != "chatExperiment":  # the same config as the non-streamed call: the same texts
            assert sorted(texts.values()) == chats[name]["outputs"], name
            assert set(stream["config_by_id"].values()) == set(chats[name]["model_config_ids"]), name
        else:
            assert set(stream["config_by_id"].values()) <= {ids["config_a"], ids["config_b"]}


def test_every_sample_is_logged(report):
    """``logs.list`` of the project: 4 calls x 2 samples, streamed and not."""
    expected = [i for name in CHATS for i in report["chat"][name]["ids"]]
    expected += [i for name in CHATS for i in report["stream"][STREAM_OF[name]]["texts_by_id"]]
    assert report["logs_total"] == 16 and sorted(report["log_ids"]) == sorted(expected)


def test_errors_reach_the_sdk_as_humanloop_errors(report):
    """Every non-2xx becomes the SDK's ``HumanloopError`` with the status and the JSON body, on the
    plain calls and on the stream helpers alike (decisions table)."""
    errors = report["errors"]

    def error(status: int, detail: Any, method: str = "POST") -> dict[str, Any]:
        return {"exception": "HumanloopError", "is_humanloop_error": True, "status": status,
                "body": {"detail": detail}, "method": method}

    missing_input = [{"loc": ["body", "inputs", "audience"], "msg": "missing template variable 'audience'",
                      "type": "missing"}]
    assert errors == {
        "wrong_key": error(401, "invalid or missing X-API-KEY"),
        "wrong_key_stream": error(401, "invalid or missing X-API-KEY"),
        "wrong_key_projects": error(401, "invalid or missing X-API-KEY", "GET"),
        "unknown_config": error(404, "model config config_doesnotexist000000000 not found"),
        "unknown_config_stream": error(404, "model config config_doesnotexist000000000 not found"),
        "unknown_experiment": error(404, "experiment exp_doesnotexist000000000000 not found"),
        "unknown_log": error(404, "log data_doesnotexist00000000 not found"),
        "invalid_message": error(422, [{"loc": ["body", "messages", 0, "role"], "msg": "Field required",
                                        "type": "missing"}]),
        "missing_input": error(422, missing_input),
        "missing_input_stream": error(422, missing_input),
        # spec §8 object for a provider failure; the Retry-After the server sends is on the wire, but
        # HumanloopError keeps no headers (docs/v4-decisions.md)
        "provider_429": {**error(429, {"type": "rate_limit_error", "message": "Rate limit reached for requests",
                                       "code": 429, "origin": "OpenAI"}),
                         "retry_after_on_the_wire": "2",
                         "error_fields": ["code", "method", "name", "responseBody", "status", "statusText", "url"]},
    }


def test_an_error_mid_stream_is_dropped_by_the_sdk(report):
    """The server ends a failing stream with one ``{"detail": {...}}`` event (decisions table); the
    SDK's stream helper reads only ``data[0]`` and silently skips that event, so a TypeScript user
    sees the deltas so far and a stream that ends without a ``finish_reason`` (docs/v4-decisions.md)."""
    stream = report["stream"]["chatStream (error mid-stream)"]
    assert stream["status"] == 200 and stream["content_type"] == "text/event-stream; charset=utf-8"
    assert stream["error_event_on_the_wire"] == {"detail": {"type": "bad_gateway", "message": "upstream fell over",
                                                            "code": 502, "origin": "OpenAI"}}
    (log_id,) = stream["texts_by_id"]
    assert id_of("data").fullmatch(log_id)
    assert stream["texts_by_id"] == {log_id: "echo: "} and stream["events"] == 1  # the fake's first delta
    assert stream["finish_reasons_by_id"] == {} and stream["finals_per_id"] == {log_id: 0}


def test_feedback_through_the_sdk_teaches_the_experiment(report):
    """issue 13: ``humanloop.feedback`` (one item and a list) is stored and judged against the
    experiment's positive label (action/copy); the SDK reads the statistics back."""
    feedback = report["feedback"]
    assert id_of("fbk").fullmatch(feedback["one"]["id"])
    check_sdk_feedback(feedback, report["ids"], report["chat"]["chatExperiment"])
    assert all(s["active"] is True for s in feedback["stats"].values())
