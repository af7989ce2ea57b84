"""Conformance with the official v4 Python SDK, ``humanloop==0.5.18``, over real HTTP.

Why: the server claims wire compatibility with the v4 API; the Konfig-generated SDK is the
strictest real client of that era. It pins urllib3<2 (the project needs 2.x), so it lives in its
own virtualenv: ``HL_SDK_PYTHON`` names its interpreter, else one is built once under
``/tmp/hl-sdk-venv``. ``sdk_script.py`` runs there against a fresh server process and prints a
JSON report (every call, its status and SDK schema validation, outputs, streamed texts, errors);
this test asserts on that report.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.server.helpers import check_sdk_deployments, check_sdk_feedback, sdk_report

SDK_VERSION = "0.5.18"
SDK_VENV = Path("/tmp/hl-sdk-venv")
SCRIPT = Path(__file__).with_name("sdk_script.py")
PROJECT = "sdk-conformance"
ANSWER = "{model}: hello testers"  # mock provider at temperature 0: "<model>: <last user text>"

pytestmark = pytest.mark.sdk


def _has_sdk(python: Path) -> bool:
    check = f"import humanloop, sys; sys.exit(humanloop.__version__ != {SDK_VERSION!r})"
    return python.exists() and subprocess.run([str(python), "-c", check], capture_output=True).returncode == 0


def sdk_python() -> str:
    """``HL_SDK_PYTHON``, else the cached venv, built (under a lock) on first use."""
    if os.environ.get("HL_SDK_PYTHON"):
        return os.environ["HL_SDK_PYTHON"]
    python = SDK_VENV / "bin" / "python"
    with open(f"{SDK_VENV}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _has_sdk(python):
            shutil.rmtree(SDK_VENV, ignore_errors=True)
            for command in ([sys.executable, "-m", "venv", str(SDK_VENV)],
                            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                             f"humanloop=={SDK_VERSION}"]):
                done = subprocess.run(command, capture_output=True, text=True, timeout=600)
                if done.returncode != 0:
                    pytest.fail(f"building the SDK venv failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    return str(python)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The script's report, from a server of its own."""
    return sdk_report([sdk_python(), str(SCRIPT)], tmp_path_factory.mktemp("sdk") / "hl.sqlite", PROJECT)


def test_the_script_ran_every_step(report):
    assert report["sdk_version"] == SDK_VERSION
    assert report["failures"] == {}, "\n".join(f"{k}:\n{v}" for k, v in report["failures"].items())


def test_every_response_satisfies_the_sdk_schema(report):
    calls = report["calls"]
    assert set(calls) >= {"projects.create", "projects.list", "model_configs.register", "model_configs.get",
                          "projects.list_configs", "experiments.create", "experiments.list",
                          "projects.list_deployed_configs", "projects.deploy_config", "projects.get_active_config",
                          "projects.get", "chat", "chat_deployed", "chat_experiment", "chat_model_configuration",
                          "feedback", "feedback (list)", "feedback (unset)", "experiments.list (after feedback)",
                          "experiments.sample"}
    invalid = {name: call["validation"] for name, call in calls.items() if call["validation"] != "ok"}
    assert invalid == {}
    assert calls["projects.create"]["status"] == 201  # the only 2xx the SDK declares for POST /projects
    assert all(call["response_type"].startswith("ApiResponseFor") for call in calls.values())


def test_chat_responses_use_nulls_only_where_the_spec_allows_them(report):
    """The SDK schemas have no ``nullable``; spec §4/§6 send optional fields as null (see the script)."""
    for name in ("chat", "chat_deployed", "chat_experiment", "chat_model_configuration"):
        dropped = set(report["calls"][name]["nulls_dropped"])
        assert dropped <= {"logprobs", "suffix", "user", "metadata", "session_id", "tool_choice", "tool_calls",
                           "tool_call", "name", "tool_call_id", "content"}, name


def test_management_calls(report):
    ids = report["ids"]
    assert PROJECT in report["project_names"]
    assert report["project_config_ids"] == [ids["config_a"], ids["config_b"]]
    assert report["config_a"]["id"] == ids["config_a"] and report["config_a"]["provider"] == "mock"
    check_sdk_deployments(report, ids)


def test_the_four_chat_endpoints_return_two_samples(report):
    ids, chats = report["ids"], report["chat"]
    for name, summary in chats.items():
        assert summary["num_samples"] == 2 and summary["indices"] == [0, 1], name
        assert len(set(summary["ids"])) == 2 and all(i.startswith("data_") for i in summary["ids"]), name
        assert summary["project_id"] == ids["project"], name
        assert summary["finish_reasons"] == ["stop", "stop"], name
        assert summary["usage"]["total_tokens"] == summary["usage"]["prompt_tokens"] + summary["usage"]["generation_tokens"]
    inline = chats["chat"]["model_config_ids"]
    assert inline[0] == inline[1] and inline[0] not in (ids["config_a"], ids["config_b"])
    assert chats["chat"]["outputs"] == [ANSWER.format(model="sdk-inline")] * 2
    # template system message, then the role-only system message, then the user message
    assert chats["chat"]["roles_sent"] == ["system", "system", "user"]
    assert chats["chat_deployed"]["model_config_ids"] == [ids["config_b"]] * 2
    assert chats["chat_deployed"]["outputs"] == [ANSWER.format(model="sdk-b")] * 2
    assert chats["chat_model_configuration"]["model_config_ids"] == [ids["config_a"]] * 2
    assert chats["chat_model_configuration"]["outputs"] == [ANSWER.format(model="sdk-a")] * 2
    experiment = chats["chat_experiment"]
    for config_id, output in zip(experiment["model_config_ids"], experiment["outputs"]):
        model = {ids["config_a"]: "sdk-a", ids["config_b"]: "sdk-b"}[config_id]
        assert output == ANSWER.format(model=model)


def test_provider_keys_travel_in_the_body(report):
    """spec §1: client-level keys are merged into ``provider_api_keys`` by the SDK; the server accepts them."""
    sent = report["sent_provider_api_keys"]
    assert set(sent) == {"chat", "chat-deployed", "chat-experiment", "chat-model-config"}
    assert all(keys.get("openai") == "client-level" for keys in sent.values())
    assert sent["chat"]["mock"] == "per-call"


def test_streaming_through_the_sdk(report):
    expected = {"chat_stream": {ANSWER.format(model="sdk-inline")},
                "chat_deployed_stream": {ANSWER.format(model="sdk-b")},
                "chat_model_config_stream": {ANSWER.format(model="sdk-a")},
                "chat_experiment_stream": {ANSWER.format(model="sdk-a"), ANSWER.format(model="sdk-b")}}
    assert set(report["stream"]) == set(expected)
    for name, stream in report["stream"].items():
        assert stream["status"] == 200 and stream["content_type"].startswith("text/event-stream"), name
        assert stream["event_keys"] == ["id", "output"], name  # what the 0.5.x client yields
        texts = stream["texts_by_id"]
        assert len(texts) == 2 and all(i.startswith("data_") for i in texts), name  # num_samples=2
        assert set(texts.values()) <= expected[name], name


def test_errors_reach_the_sdk_as_api_exceptions(report):
    errors = report["errors"]
    assert errors["wrong_key"] == {"exception": "ApiException", "status": 401,
                                   "body": {"detail": "invalid or missing X-API-KEY"}}
    assert errors["unknown_config"] == {"exception": "ApiException", "status": 404,
                                        "body": {"detail": "model config config_doesnotexist000000000 not found"}}


def test_feedback_through_the_sdk_teaches_the_experiment(report):
    """issue 13: ``humanloop.feedback`` (one item and a list) is stored and judged against the
    experiment's positive label (action/copy); the SDK reads the statistics back."""
    check_sdk_feedback(report["feedback"], report["ids"], report["chat"]["chat_experiment"])
    assert report["errors"]["unknown_log"] == {"exception": "ApiException", "status": 404,
                                               "body": {"detail": "log data_doesnotexist00000000 not found"}}
