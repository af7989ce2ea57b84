"""ChatSpec, the one description of a chat call, and ``build_body``, the one path to a wire body.

Why: the magic, the panel and the Python API each turn user intent into ChatSpecs and hand them to
the same ``build_body`` -> client -> frame path, so the same inputs give the same DataFrame.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .errors import HLUsageError, did_you_mean

EndpointName = Literal["chat", "deployed", "experiment", "model-config"]

# endpoint name -> (path, the field that selects the config) — spec §3
ENDPOINTS: dict[str, tuple[str, str | None]] = {
    "chat": ("/chat", "model_config"),
    "deployed": ("/chat-deployed", None),
    "experiment": ("/chat-experiment", "experiment_id"),
    "model-config": ("/chat-model-config", "model_config_id"),
}

# inline model-config parameters (spec §5) the options and panel can set, with their wire types
CONFIG_PARAMS: dict[str, type] = {
    "model": str, "provider": str, "temperature": float, "max_tokens": int, "top_p": float,
    "stop": str, "presence_penalty": float, "frequency_penalty": float, "seed": int,
}


@dataclass(frozen=True)
class ChatSpec:
    """One chat call: endpoint, messages, config selection, inputs and call options.

    ``model_config`` holds inline parameters for ``/chat`` only; ``inputs`` are the template values.
    Instances are compared in tests: equal specs must give equal frames (volatile columns aside).
    """

    endpoint: EndpointName
    messages: tuple[dict[str, Any], ...]
    model_config: dict[str, Any] = field(default_factory=dict)
    model_config_id: str | None = None
    experiment_id: str | None = None
    environment: str | None = None
    project: str | None = None
    project_id: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 1
    stream: bool = False
    save: bool = True
    metadata: dict[str, Any] | None = None
    session_id: str | None = None
    source: str = "hl_notebook"

    @property
    def path(self) -> str:
        return ENDPOINTS[self.endpoint][0]

    def with_inputs(self, inputs: dict[str, Any]) -> "ChatSpec":
        return replace(self, inputs=inputs)


def choose_endpoint(explicit: str | None, *, model: bool, model_config_id: bool, experiment_id: bool,
                    deployed: bool) -> EndpointName:
    """The endpoint named, or the one implied by the options given (``--model`` -> /chat, …)."""
    implied = [name for name, given in (("chat", model), ("model-config", model_config_id),
                                        ("experiment", experiment_id), ("deployed", deployed)) if given]
    if explicit:
        if explicit not in ENDPOINTS:
            raise HLUsageError(f"unknown endpoint {explicit!r}{did_you_mean(explicit, ENDPOINTS)}; "
                               f"choose one of {', '.join(ENDPOINTS)}")
        return explicit  # type: ignore[return-value]
    if len(implied) > 1:
        raise HLUsageError(f"options imply several endpoints ({', '.join(implied)}): pass --endpoint")
    if not implied:
        raise HLUsageError("no endpoint: pass --model (for /chat), --model-config-id, --experiment-id, "
                           "--deployed, or --endpoint")
    return implied[0]  # type: ignore[return-value]


def validate_spec(spec: ChatSpec) -> None:
    """Check what the endpoint needs before sending (the server would answer 422 otherwise)."""
    if spec.endpoint == "chat" and not spec.model_config.get("model"):
        raise HLUsageError("/chat needs a model: pass --model NAME")
    if spec.endpoint == "model-config" and not spec.model_config_id:
        raise HLUsageError("/chat-model-config needs --model-config-id")
    if spec.endpoint == "experiment" and not spec.experiment_id:
        raise HLUsageError("/chat-experiment needs --experiment-id")
    if spec.endpoint == "deployed" and not (spec.project or spec.project_id):
        raise HLUsageError("/chat-deployed needs a project: pass --project NAME or set HLSettings.project")
    if spec.num_samples < 1:
        raise HLUsageError("--num-samples must be at least 1")


def build_body(spec: ChatSpec, provider_api_keys: dict[str, str] | None = None) -> dict[str, Any]:
    """The wire body for ``spec`` (spec §2–§5). Keys go only into ``provider_api_keys``."""
    body: dict[str, Any] = {"messages": list(spec.messages), "num_samples": spec.num_samples,
                            "stream": spec.stream, "inputs": dict(spec.inputs), "save": spec.save,
                            "source": spec.source}
    for name in ("project", "project_id", "session_id", "metadata", "environment",
                 "model_config_id", "experiment_id"):
        value = getattr(spec, name)
        if value is not None:
            body[name] = value
    if spec.endpoint == "chat":
        body["model_config"] = {k: v for k, v in spec.model_config.items() if v is not None}
    if spec.endpoint != "deployed":
        body.pop("environment", None)  # only ChatDeployedRequest has it (spec §3)
    if provider_api_keys:
        body["provider_api_keys"] = dict(provider_api_keys)
    return body


SPEC_FIELDS = ("endpoint", "messages", "model_config", "model_config_id", "experiment_id", "environment",
               "project", "project_id", "inputs", "num_samples", "stream", "save", "metadata", "session_id", "source")


def spec_to_json(spec: ChatSpec) -> str:
    """The spec as JSON (the frame's ``request`` column), so failed rows can be re-run."""
    return json.dumps({name: getattr(spec, name) for name in SPEC_FIELDS}, default=str, sort_keys=True)


def spec_from_json(text: str) -> ChatSpec:
    data = json.loads(text)
    data["messages"] = tuple(data["messages"])
    return ChatSpec(**{name: data[name] for name in SPEC_FIELDS if name in data})


def request_key(spec: ChatSpec) -> str:
    """A stable identity of the request (for the response cache): the body without keys."""
    return json.dumps(build_body(spec), sort_keys=True, separators=(",", ":"), default=str)
