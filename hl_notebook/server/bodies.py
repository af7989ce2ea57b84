"""Every response body the server sends: chat responses (spec §6, §7) and management bodies (§9).

Why: the wire shapes live in one place, so the chat pipeline, streaming, idempotent replays and the
management routes cannot drift apart; routes and ``chat.py`` only gather the data and call in here.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .experiments import posterior_mean, spread
from .ids import stable_id

if TYPE_CHECKING:
    from .schemas import ChatRequestBase
    from .store import Store


# -- chat responses (spec §6) ------------------------------------------------------------------
def tool_call_of(tool_calls: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The deprecated single ``tool_call`` (spec §6): the first call as ``{name, arguments}``."""
    if not tool_calls:
        return None
    function = tool_calls[0].get("function", {})
    return {"name": function.get("name"), "arguments": function.get("arguments")}


def data_entry(*, log_id: str, index: int, text: str, finish_reason: str | None, config_id: str,
               tool_calls: list[dict[str, Any]] | None, inputs: dict[str, Any],
               messages: list[dict[str, Any]] | None, echo_messages: bool = True) -> dict[str, Any]:
    """One ``data[i]`` (ChatDataResponse).

    ``messages`` is optional in spec §6 (not in ChatDataResponse's required list, and not nullable):
    with ``echo_messages=False`` the field is left out rather than sent as null, which the SDK
    schemas would refuse. ``chat.ChatRun.complete`` says which entries carry it.
    """
    entry = {
        "id": log_id, "index": index, "output": text.strip(), "raw_output": text, "inputs": inputs,
        "finish_reason": finish_reason, "model_config_id": config_id, "messages": messages,
        "tool_results": [], "tool_calls": tool_calls, "tool_call": tool_call_of(tool_calls),
        "output_message": {"role": "assistant", "content": text, "name": None, "tool_call_id": None,
                           "tool_calls": tool_calls, "tool_call": tool_call_of(tool_calls)},
    }
    if not echo_messages:
        del entry["messages"]
    return entry


def envelope(body: ChatRequestBase, project_id: str, session_id: str | None, data: list[dict[str, Any]],
             usage: dict[str, int] | None, provider_request: dict[str, Any] | None,
             provider_responses: list[Any]) -> dict[str, Any]:
    """The ChatResponse around ``data`` (also the skeleton of every streamed event, spec §7)."""
    return {"project_id": project_id, "num_samples": body.num_samples, "logprobs": None, "suffix": None,
            "user": body.user, "data": data, "usage": usage, "metadata": body.metadata,
            "provider_responses": provider_responses, "provider_request": provider_request,
            "session_id": session_id, "tool_choice": body.tool_choice}


def replay_events(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A stored ChatResponse as the SSE events a stream of it sends (spec §7): per sample, one delta
    with its whole text (when it has text), then its final event with ``finish_reason``, the full
    ``output_message`` and the call's ``usage``."""
    top = {name: value for name, value in response.items() if name != "data"}
    events = []
    for entry in response["data"]:
        base = {**entry, "messages": None}
        if entry["raw_output"]:
            delta = {**base, "output": entry["raw_output"], "finish_reason": None, "tool_calls": None,
                     "tool_call": None, "output_message": {**entry["output_message"], "content": None,
                                                           "tool_calls": None, "tool_call": None}}
            events.append({**top, "data": [delta], "usage": None, "provider_request": None, "provider_responses": []})
        final = {**base, "output": "", "raw_output": ""}
        events.append({**top, "data": [final], "provider_responses": []})
    return events


def usage_dict(prompt_tokens: int, generation_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "generation_tokens": generation_tokens,
            "total_tokens": prompt_tokens + generation_tokens}


# -- management bodies (spec §9, shaped as the v4 SDK's response models) ------------------------
def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat()


def present(**fields: Any) -> dict[str, Any]:
    """The fields that have a value. The v4 SDK schemas mark optional fields non-nullable (0.5.18
    validates ``null`` against ``str``/``int`` and fails), so management bodies omit absent ones."""
    return {name: value for name, value in fields.items() if value is not None}


def config_body(config: dict[str, Any]) -> dict[str, Any]:
    """A registered config as the SDK's ModelConfigResponse (``type: "model"`` + every set field).

    0.5.18's ModelConfigResponse forbids unknown keys and has no ``seed``/``response_format``/
    ``tools``; they appear only when set (later SDKs know them)."""
    params = dict(config["params"])
    if params.get("chat_template"):
        params["chat_template"] = [present(**message) for message in params["chat_template"]]
    return present(id=config["id"], type="model", name=config["name"], description=config["description"],
                   **params)


def project_body(store: Store, project: dict[str, Any]) -> dict[str, Any]:
    """The SDK's ProjectResponse; ``config_type`` is the ConfigType enum, and ours are model configs."""
    deployments = store.deployments(project["id"])
    default = next((d for d in deployments if d["is_default"]), None)
    active_config = store.config(default["config_id"]) if default and default["config_id"] else None
    experiment_id = default["experiment_id"] if default else None
    return present(
        id=project["id"], name=project["name"], team_id="tm_local", users=[], feedback_types=[],
        data_count=store.count_logs(project_id=project["id"]), config_type="model",
        active_config=project_config_body(store, active_config) if active_config else None,
        active_experiment=experiment_body(store, store.experiment(experiment_id)) if experiment_id else None,
        created_at=iso(project["created_at"]), updated_at=iso(project["created_at"]))


def project_config_body(store: Store, config: dict[str, Any]) -> dict[str, Any]:
    """The SDK's ProjectConfigResponse / GetModelConfigResponse shape."""
    project = store.project_by_id(config["project_id"])
    return {"project_id": project["id"], "project_name": project["name"], "config": config_body(config),
            "created_at": iso(config["created_at"]), "updated_at": iso(config["created_at"]),
            "last_used": iso(config["created_at"]), "num_datapoints": store.count_logs(config_id=config["id"])}


def experiment_metric(experiment: dict[str, Any]) -> dict[str, Any]:
    """The SDK's required ``metric`` (BaseMetricResponse): the positive-feedback objective, which
    the configs' ``mean``/``spread`` estimate and sampling follows (``experiments.py``)."""
    return {"id": stable_id("metric", "positive-feedback"), "name": "Positive feedback rate",
            "description": "Share of a config's logs with feedback of the positive_labels' types whose feedback "
                           "matches a positive label; configs are sampled by Thompson sampling on its "
                           "Beta(1 + successes, 1 + failures) posterior.",
            "code": "", "default": True, "active": True,
            "created_at": iso(experiment["created_at"]), "updated_at": iso(experiment["created_at"])}


def experiment_body(store: Store, experiment: dict[str, Any]) -> dict[str, Any]:
    """The SDK's ExperimentResponse. ``status`` is its enum: ``In progress`` while some config can be
    sampled, else ``Initialized``. Per config (active or not): ``trials_count``, and the posterior
    ``mean`` and ``spread`` (90 % credible-interval width) of its positive-feedback rate."""
    arms = store.experiment_arms(experiment)
    configs = [(store.config(config_id), active) for config_id, active in experiment["configs"]]
    return {"id": experiment["id"], "project_id": experiment["project_id"], "name": experiment["name"],
            "status": "In progress" if experiment["config_ids"] else "Initialized",
            "metric": experiment_metric(experiment), "positive_labels": experiment["positive_labels"],
            "created_at": iso(experiment["created_at"]), "updated_at": iso(experiment["created_at"]),
            "configs": [{"id": c["id"], "display_name": c["name"], "active": active,
                         "trials_count": arms[c["id"]].trials, "mean": posterior_mean(arms[c["id"]]),
                         "spread": spread(arms[c["id"]]), "config": config_body(c),
                         "created_at": iso(c["created_at"]), "updated_at": iso(c["created_at"])}
                        for c, active in configs]}


def feedback_body(row: dict[str, Any]) -> dict[str, Any]:
    """A stored feedback as the SDK's FeedbackResponse (``POST /feedback``, ``feedback`` of a log)."""
    return present(id=row["id"], type=row["type"], value=row["value"], data_id=row["log_id"], user=row["user"],
                   created_at=iso(row["created_at"]))


def deployment_body(store: Store, project: dict[str, Any], deployment: dict[str, Any]) -> dict[str, Any]:
    """The SDK's EnvironmentProjectConfigResponse: a config's or an experiment's fields, never both."""
    config = store.config(deployment["config_id"]) if deployment.get("config_id") else None
    experiment = store.experiment(deployment["experiment_id"]) if deployment.get("experiment_id") else None
    return present(project_id=project["id"], project_name=project["name"],
                   environment_id=deployment["environment_id"], environment_name=deployment["environment_name"],
                   environment_tag="default" if deployment.get("is_default") else "other",
                   model_config_id=config["id"] if config else None,
                   model_config_name=config["name"] if config else None,
                   experiment_id=experiment["id"] if experiment else None,
                   experiment_name=experiment["name"] if experiment else None)


def log_body(row: dict[str, Any]) -> dict[str, Any]:
    """A stored log (one sample of one chat call) as ``GET /logs`` returns it, with its ``feedback``
    (oldest first) and the ``experiment_id`` it was sampled for (None: none)."""
    def load(value: str | None) -> Any:
        return json.loads(value) if value else None

    return {"id": row["id"], "project_id": row["project_id"], "model_config_id": row["config_id"],
            "session_id": row["session_id"], "parent_id": row["parent_id"], "index": row["sample_index"],
            "endpoint": row["endpoint"], "created_at": iso(row["created_at"]), "inputs": load(row["inputs"]),
            "messages": load(row["messages"]), "output": row["output"], "finish_reason": row["finish_reason"],
            "error": load(row["error"]), "metadata": load(row["metadata"]), "source": row["source"],
            "usage": load(row["usage"]), "experiment_id": row.get("experiment_id"),
            "feedback": [feedback_body(item) for item in row.get("feedback", [])]}
