"""Drive a running hl_notebook server through the official v4 Python SDK (``humanloop==0.5.18``).

Why: the SDK needs urllib3<2, which conflicts with the project's environment, so this script runs
under the SDK's own interpreter (see ``test_sdk_conformance.py``) and prints one JSON report on
stdout; the pytest side only asserts on that report. It uses the SDK's public API only, plus two
read-only observations: the request bodies the SDK serialised (to see the provider keys it
injects) and the SDK's own response schemas (to validate each 2xx body, see ``check``).

Environment: ``HL_BASE_URL`` (ends in ``/v4``), ``HL_API_KEY``, optional ``HL_SDK_PROJECT``.

Response validation. 0.5.18 calls every operation with ``skip_deserialization=True``, so on its
own it never checks a body (and its sync ``deserialize`` with validation on raises NameError).
``check`` therefore runs the validation the SDK would run, ``Schema.from_openapi_data_oapg``,
with the schema the operation declares for the status received; a status the operation does not
declare is a failure. One documented allowance, for the four chat responses only: spec §4/§6 say
optional fields are sent as explicit ``null`` (as the hosted API did), while the SDK's OpenAPI 3.0
schemas have no ``nullable``. A ``null`` under one of the field names in ``NULLABLE_CHAT_FIELDS``
is dropped before validating and reported under ``nulls_dropped``; a ``null`` anywhere else
(``output``, ``id``, ``index``, ...) still fails, as does every wrong type, enum or missing field.

One SDK defect is corrected before validating (``fix_oneof``): for a ``oneOf`` such as
ConfigResponse (model | tool | agent | generic config), 0.5.18 skips a non-matching branch only
when it raises ApiValueError/ApiTypeError, but a branch failing on two or more checks raises
SchemaValidationError, which escapes. Any model config carrying a ``name`` (which the hosted API
always sent) then fails, because the ToolConfigResponse branch also requires ``name`` and then
rejects ``type: "model"``. The fix only lets such a branch count as not matching; exactly one
branch must still match, and the discriminated branch's own errors are still raised.
"""
from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import traceback
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

import humanloop
from humanloop import ApiException, Humanloop, schemas
from humanloop.exceptions import ApiTypeError, ApiValueError, SchemaValidationError

BASE_URL = os.environ["HL_BASE_URL"]
API_KEY = os.environ["HL_API_KEY"]
PROJECT = os.environ.get("HL_SDK_PROJECT", "sdk-conformance")
CLIENT_OPENAI_KEY = "sk-client-level-canary"  # injected by the SDK into every body (spec §1)

# spec §4/§6: optional response fields the hosted API serialised as explicit null
NULLABLE_CHAT_FIELDS = frozenset({
    "project_id", "logprobs", "suffix", "user", "usage", "metadata", "provider_request", "session_id",
    "tool_choice", "finish_reason", "tool_calls", "tool_call", "inputs", "messages", "content", "name",
    "tool_call_id", "tool_results",
})

report: dict[str, Any] = {"sdk_version": humanloop.__version__, "calls": {}, "chat": {}, "stream": {},
                          "errors": {}, "ids": {}, "sent_provider_api_keys": {}, "failures": {}}


def fix_oneof() -> None:
    """``ComposedBase.__get_oneof_class`` of 0.5.18, with SchemaValidationError counted as a
    non-matching branch like ApiValueError/ApiTypeError (see the module docstring)."""
    from collections import defaultdict

    @classmethod  # type: ignore[misc]
    def get_oneof_class(cls: Any, arg: Any, discriminated_cls: Any, validation_metadata: Any) -> Any:
        oneof_classes = []
        path_to_schemas: Any = defaultdict(set)
        for oneof_cls in cls.MetaOapg.one_of():
            if oneof_cls in path_to_schemas[validation_metadata.path_to_item]:
                oneof_classes.append(oneof_cls)
                continue
            if validation_metadata.validation_ran_earlier(oneof_cls):
                oneof_classes.append(oneof_cls)
                continue
            try:
                path_to_schemas = oneof_cls._validate_oapg(arg, validation_metadata=validation_metadata)
            except (ApiValueError, ApiTypeError, SchemaValidationError):
                if discriminated_cls is not None and oneof_cls is discriminated_cls:
                    raise
                continue
            oneof_classes.append(oneof_cls)
        if len(oneof_classes) != 1:
            raise ApiValueError(f"{len(oneof_classes)} oneOf schemas of {cls} matched the input; exactly one must")
        return path_to_schemas

    schemas.ComposedBase._ComposedBase__get_oneof_class = get_oneof_class


fix_oneof()


@contextmanager
def step(name: str) -> Iterator[None]:
    """Record an exception under ``failures`` and go on, so one report always comes out."""
    try:
        yield
    except Exception:  # noqa: BLE001 - every failure must reach the report
        report["failures"][name] = traceback.format_exc(limit=8)


def drop_nulls(value: Any, path: str, dropped: list[str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if item is None and key in NULLABLE_CHAT_FIELDS:
                dropped.append(f"{path}.{key}")
                continue
            out[key] = drop_nulls(item, f"{path}.{key}", dropped)
        return out
    if isinstance(value, list):
        return [drop_nulls(item, f"{path}[{i}]", dropped) for i, item in enumerate(value)]
    return value


def describe(exc: BaseException) -> str:
    """The SDK's validation failure as text. 0.5.18's SchemaValidationError itself can crash while
    formatting some errors (TypeError on ``valid_classes``), so the collected errors are read from
    the failing frame when that happens."""
    found = exc.__traceback__
    while found is not None:
        errors = found.tb_frame.f_locals.get("validation_errors")
        if isinstance(errors, list) and errors:
            return "; ".join(f"{type(e).__name__} at {getattr(e, 'path_to_item', '?')}: {e}" for e in errors)
        found = found.tb_next
    return f"{type(exc).__name__}: {exc}"


def check(name: str, operation: str, response: Any, *, chat: bool = False) -> Any:
    """Validate a 2xx body against the schema ``humanloop.paths.<operation>`` declares for its status."""
    module = importlib.import_module(f"humanloop.paths.{operation}")
    body = response.body
    entry: dict[str, Any] = {"status": response.status, "response_type": type(response).__name__}
    declared = module._status_code_to_response.get(str(response.status))
    if declared is None:
        entry["validation"] = f"status {response.status} is not declared by the SDK for {operation}"
    else:
        schema = declared.content["application/json"].schema
        entry["schema"] = schema.__name__
        dropped: list[str] = []
        candidate = drop_nulls(body, "body", dropped) if chat else body
        entry["nulls_dropped"] = sorted({p.split(".")[-1] for p in dropped})
        try:
            schema.from_openapi_data_oapg(candidate, _configuration=response_configuration)
            entry["validation"] = "ok"
        except Exception as exc:  # noqa: BLE001 - the SDK raises several exception types here
            entry["validation"] = describe(exc)
    report["calls"][name] = entry
    return body


def chat_summary(body: dict[str, Any]) -> dict[str, Any]:
    data = body["data"]
    return {"num_samples": body.get("num_samples"), "project_id": body.get("project_id"),
            "indices": [d["index"] for d in data], "ids": [d["id"] for d in data],
            "model_config_ids": [d["model_config_id"] for d in data], "outputs": [d["output"] for d in data],
            "finish_reasons": [d.get("finish_reason") for d in data], "usage": body.get("usage"),
            "roles_sent": [m["role"] for m in data[0].get("messages") or []]}


def observe_bodies(client: Humanloop) -> list[dict[str, Any]]:
    """Record the JSON bodies the SDK serialises (after its request hook), without changing them."""
    sent: list[dict[str, Any]] = []
    api_client = client.chats.api_client
    original = api_client.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        body = kwargs.get("body")
        if body:
            sent.append({"url": url, "body": json.loads(body)})
        return original(method, url, *args, **kwargs)

    api_client.request = request
    return sent


hl = Humanloop(api_key=API_KEY, host=BASE_URL, openai_api_key=CLIENT_OPENAI_KEY)
response_configuration = hl.chats.api_client.configuration
sent_bodies = observe_bodies(hl)

TEMPLATE = [{"role": "system", "content": "You help {{audience}}."}]
INPUTS = {"audience": "testers"}
# spec §4: a role without content is valid
MESSAGES = [{"role": "system"}, {"role": "user", "content": "hello {{audience}}"}]
ids = report["ids"]

# -- management ------------------------------------------------------------------------------------
with step("projects.create"):
    created = check("projects.create", "projects.post", hl.projects.create(name=PROJECT))
    ids["project"] = created["id"]
with step("projects.list"):
    listed = check("projects.list", "projects.get", hl.projects.list(size=100))
    report["project_names"] = [p["name"] for p in listed["records"]]
with step("model_configs.register"):
    first = hl.model_configs.register(project=PROJECT, model="sdk-a", name="sdk-a", provider="mock",
                                      temperature=0, chat_template=TEMPLATE)
    second = hl.model_configs.register(project_id=ids["project"], model="sdk-b", name="sdk-b",
                                       provider="mock", temperature=0, max_tokens=-1, stop=["\n\n"])
    ids["config_a"] = check("model_configs.register", "model_configs.post", first)["config"]["id"]
    ids["config_b"] = check("model_configs.register (project_id)", "model_configs.post", second)["config"]["id"]
with step("model_configs.get"):
    config = check("model_configs.get", "model_configs_id.get", hl.model_configs.get(id=ids["config_a"]))
    report["config_a"] = config
with step("projects.list_configs"):
    configs = check("projects.list_configs", "projects_id_configs.get", hl.projects.list_configs(id=ids["project"]))
    report["project_config_ids"] = [c["config"]["id"] for c in configs]
with step("experiments.create"):
    experiment = check("experiments.create", "projects_project_id_experiments.post", hl.experiments.create(
        project_id=ids["project"], name="a-vs-b", positive_labels=[{"type": "action", "value": "copy"}],
        config_ids=[ids["config_a"], ids["config_b"]]))
    ids["experiment"] = experiment["id"]
    report["experiment_config_ids"] = [c["id"] for c in experiment.get("configs", [])]
with step("experiments.list"):
    check("experiments.list", "projects_project_id_experiments.get", hl.experiments.list(project_id=ids["project"]))
with step("projects.list_deployed_configs"):
    deployed = check("projects.list_deployed_configs", "projects_id_deployed_configs.get",
                     hl.projects.list_deployed_configs(id=ids["project"]))
    report["deployed_before"] = {d["environment_name"]: d.get("model_config_id") for d in deployed}
    ids["environment"] = next(d["environment_id"] for d in deployed if d["environment_name"] == "production")
with step("projects.deploy_config"):
    after = check("projects.deploy_config", "projects_project_id_deploy_config.patch", hl.projects.deploy_config(
        project_id=ids["project"], config_id=ids["config_b"], environments=[{"id": ids["environment"]}]))
    report["deployed_after"] = {d["environment_name"]: d.get("model_config_id") for d in after}
with step("projects.get_active_config"):
    active = check("projects.get_active_config", "projects_id_active_config.get",
                   hl.projects.get_active_config(id=ids["project"], environment="production"))
    report["active_config_id"] = active["config"]["id"]
with step("projects.get"):
    project = check("projects.get", "projects_id.get", hl.projects.get(id=ids["project"]))
    report["project_active_config_id"] = (project.get("active_config") or {}).get("config", {}).get("id")

# -- the four chat endpoints, non-streaming (spec §3) ---------------------------------------------
common = {"messages": MESSAGES, "inputs": INPUTS, "num_samples": 2}
with step("chat"):
    body = check("chat", "chat.post", hl.chat(
        project=PROJECT, model_config={"model": "sdk-inline", "provider": "mock", "temperature": 0,
                                       "chat_template": TEMPLATE},
        provider_api_keys={"mock": "per-call-mock-key"}, **common), chat=True)
    report["chat"]["chat"] = chat_summary(body)
with step("chat_deployed"):
    body = check("chat_deployed", "chat_deployed.post", hl.chat_deployed(
        project_id=ids["project"], environment="production", **common), chat=True)
    report["chat"]["chat_deployed"] = chat_summary(body)
with step("chat_experiment"):
    body = check("chat_experiment", "chat_experiment.post", hl.chat_experiment(
        experiment_id=ids["experiment"], **common), chat=True)
    report["chat"]["chat_experiment"] = chat_summary(body)
with step("chat_model_configuration"):
    body = check("chat_model_configuration", "chat_model_config.post", hl.chat_model_configuration(
        model_config_id=ids["config_a"], **common), chat=True)
    report["chat"]["chat_model_configuration"] = chat_summary(body)

for sent in sent_bodies:
    if sent["url"].endswith(("/chat", "/chat-deployed", "/chat-experiment", "/chat-model-config")):
        keys = sent["body"].get("provider_api_keys") or {}
        report["sent_provider_api_keys"][sent["url"].rsplit("/", 1)[-1]] = {
            name: ("client-level" if value == CLIENT_OPENAI_KEY else "per-call") for name, value in keys.items()}


# -- streaming (0.5.x client: async, yields {output, id} per event) ------------------------------
async def collect(method: str, **kwargs: Any) -> dict[str, Any]:
    response = await getattr(hl, method)(**kwargs)
    events = [event async for event in response.content]
    texts: dict[str, str] = {}
    for event in events:
        texts[event["id"]] = texts.get(event["id"], "") + event["output"]
    return {"status": response.status, "content_type": response.headers.get("Content-Type"),
            "events": len(events), "event_keys": sorted({k for e in events for k in e}), "texts_by_id": texts}


STREAMS = {
    "chat_stream": {"project": PROJECT, "model_config": {"model": "sdk-inline", "provider": "mock",
                                                          "temperature": 0, "chat_template": TEMPLATE}},
    "chat_deployed_stream": {"project_id": ids.get("project"), "environment": "production"},
    "chat_experiment_stream": {"experiment_id": ids.get("experiment")},
    "chat_model_config_stream": {"model_config_id": ids.get("config_a")},
}
for method, kwargs in STREAMS.items():
    with step(method):
        report["stream"][method] = asyncio.run(collect(method, **kwargs, **common))

# -- feedback, and the experiment learning from it (issue 13) ------------------------------------
def experiment_stats() -> dict[str, dict[str, Any]]:
    listed = hl.experiments.list(project_id=ids["project"]).body
    found = next(e for e in listed if e["id"] == ids["experiment"])
    return {c["id"]: {"trials_count": c["trials_count"], "mean": c.get("mean"), "spread": c.get("spread"),
                      "active": c["active"]} for c in found["configs"]}


with step("feedback"):
    # the experiment's positive label is action/copy: the first log succeeds, the second fails
    first_log, second_log = report["chat"]["chat_experiment"]["ids"]
    one = check("feedback", "feedback.post", hl.feedback(
        type="action", value="copy", data_id=first_log, user="sdk@example.com",
        created_at=datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)))
    many = check("feedback (list)", "feedback.post", hl.feedback(body=[
        {"type": "rating", "value": "good", "data_id": second_log},
        {"type": "action", "value": "share", "data_id": second_log}]))
    report["feedback"] = {"one": one, "many": many, "logs": [first_log, second_log]}
with step("experiments.list (after feedback)"):
    check("experiments.list (after feedback)", "projects_project_id_experiments.get",
          hl.experiments.list(project_id=ids["project"]))
    report["feedback"]["stats"] = experiment_stats()
with step("experiments.sample"):
    sampled = check("experiments.sample", "experiments_experiment_id_model_config.get",
                    hl.experiments.sample(experiment_id=ids["experiment"]))
    report["feedback"]["sampled"] = {"config_id": sampled["config"]["id"], "experiment_id": sampled.get("experiment_id")}
with step("feedback unset"):
    check("feedback (unset)", "feedback.post", hl.feedback(
        type="action", value="share", data_id=report["feedback"]["logs"][1], unset=True))
    report["feedback"]["stats_after_unset"] = experiment_stats()
with step("feedback on an unknown log"):
    try:
        hl.feedback(type="rating", value="good", data_id="data_doesnotexist00000000")
        report["errors"]["unknown_log"] = {"exception": None}
    except ApiException as exc:
        report["errors"]["unknown_log"] = {"exception": type(exc).__name__, "status": exc.status, "body": exc.body}

# -- errors (decisions table) --------------------------------------------------------------------
with step("wrong key"):
    try:
        Humanloop(api_key="wrong-key", host=BASE_URL).chat_model_configuration(
            model_config_id=ids["config_a"], messages=MESSAGES, inputs=INPUTS)
        report["errors"]["wrong_key"] = {"exception": None}
    except ApiException as exc:
        report["errors"]["wrong_key"] = {"exception": type(exc).__name__, "status": exc.status,
                                         "body": exc.body}
with step("unknown config"):
    try:
        hl.chat_model_configuration(model_config_id="config_doesnotexist000000000", messages=MESSAGES)
        report["errors"]["unknown_config"] = {"exception": None}
    except ApiException as exc:
        report["errors"]["unknown_config"] = {"exception": type(exc).__name__, "status": exc.status,
                                              "body": exc.body}

json.dump(report, sys.stdout, default=str)
