"""ChatSpec, the one description of a chat call, and ``build_body``, the one path to a wire body.

Why: the magic, the panel and the Python API each turn user intent into ChatSpecs and hand them to
the same ``build_body`` -> client -> frame path, so the same inputs give the same DataFrame.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from .errors import HLUsageError, did_you_mean

EndpointName = Literal["chat", "deployed", "experiment", "model-config"]

# endpoint name -> (path, the field that selects the config) — spec §3
ENDPOINTS: dict[str, tuple[str, str | None]] = {
    "chat": ("/chat", "model_config"),
    "deployed": ("/chat-deployed", None),
    "experiment": ("/chat-experiment", "experiment_id"),
    "model-config": ("/chat-model-config", "model_config_id"),
}

@dataclass(frozen=True)
class Parameter:
    """One inline model-config parameter (spec §5): the single declaration every front end derives from.

    The magic's option, the panel's control, the frame's column and the comparison axes are all
    built from ``PARAMETERS``, so adding a parameter is one line here.
    """

    name: str  # wire field of model_config, frame column, ``--name-with-dashes`` option
    kind: type  # wire type: str, float or int
    help: str  # the option's help and the control's tooltip
    low: float | None = None  # inclusive range (None: unbounded)
    high: float | None = None
    sweep: bool = True  # takes a comma list / several values (a comparison axis)
    default: Any = None  # what the server uses when the config leaves it out (spec §5); None: nothing
    choices: tuple[str, ...] = ()  # the values the wire accepts (spec §5), where it lists them

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def dtype(self) -> str:
        """The frame column's dtype (nullable integers; lists such as ``stop`` as JSON strings)."""
        return {str: "string", float: "float64", int: "Int64"}[self.kind]

    def check(self, value: Any, label: str | None = None) -> Any:
        """``value`` converted to the wire type and range-checked; HLUsageError (naming ``label``,
        default the option) says what is allowed."""
        label = label or self.option
        if self.kind is str:
            return value if isinstance(value, (str, list)) else str(value)
        if isinstance(value, bool):
            raise HLUsageError(f"{label}: {value!r} is not a number")
        try:
            number = self.kind(value)
        except (TypeError, ValueError, OverflowError):
            raise HLUsageError(f"{label}: {value!r} is not a valid {self.kind.__name__}") from None
        if self.kind is int and number != value and not isinstance(value, str):
            raise HLUsageError(f"{label}: {value!r} is not a whole number")
        if not math.isfinite(number):
            raise HLUsageError(f"{label}: {value!r} is not a finite number")
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            raise HLUsageError(f"{label}: {value!r} is out of range ({self.range_text})")
        return number

    @property
    def range_text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:g} to {self.high:g}"
        return f"at least {self.low:g}" if self.low is not None else f"at most {self.high:g}"


PARAMETERS: tuple[Parameter, ...] = (
    Parameter("model", str, "Model name for /chat; a comma list sweeps several models."),
    Parameter("provider", str, "Provider of the inline config (mock, openai, anthropic, …); a comma list sweeps.",
              default="openai", choices=("mock", "openai", "anthropic", "openai_azure", "cohere", "google", "groq", "replicate",
                       "ai21")),
    Parameter("temperature", float, "Sampling temperature, 0 to 2; a comma list such as 0,0.7 sweeps.", 0, 2,
              default=1.0),
    Parameter("max_tokens", int, "Largest number of tokens to generate (-1: no limit); a comma list sweeps.", -1,
              default=-1),
    Parameter("top_p", float, "Nucleus sampling probability, 0 to 1; a comma list sweeps.", 0, 1, default=1.0),
    Parameter("presence_penalty", float, "Presence penalty, -2 to 2; a comma list sweeps.", -2, 2, default=0.0),
    Parameter("frequency_penalty", float, "Frequency penalty, -2 to 2; a comma list sweeps.", -2, 2, default=0.0),
    Parameter("stop", str, "A stop sequence; repeat the option for several.", sweep=False),
    Parameter("seed", int, "Seed for best-effort determinism; a comma list sweeps."),
)
PARAMETER = {parameter.name: parameter for parameter in PARAMETERS}

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
    # the call's Idempotency-Key, set when it is first sent; not part of what the call *is*
    call_key: str | None = field(default=None, compare=False)

    @property
    def path(self) -> str:
        return ENDPOINTS[self.endpoint][0]

    def with_inputs(self, inputs: dict[str, Any]) -> "ChatSpec":
        return self._copy(inputs=inputs)

    def with_key(self, call_key: str) -> "ChatSpec":
        """This call with its Idempotency-Key (the key is not part of what the call is: equal specs)."""
        return self._copy(call_key=call_key)

    def _copy(self, **changes: Any) -> "ChatSpec":
        """``dataclasses.replace(self, **changes)`` for the copies made once per call of a sweep, at a
        fraction of its cost (replace calls ``__init__`` through ``getattr`` of every field). Equal as
        long as ChatSpec has no ``__post_init__`` and no ``init=False`` field (tests/test_spec.py)."""
        copy = object.__new__(type(self))
        fields = copy.__dict__  # frozen: __setattr__ refuses, __dict__ does not
        fields.update(self.__dict__)
        for name, value in changes.items():
            if name not in fields:
                raise TypeError(f"ChatSpec has no field {name!r}")
            fields[name] = value
        return copy


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


def build_body(spec: ChatSpec, provider_api_keys: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The wire body for ``spec`` (spec §2–§5). Keys go only into ``provider_api_keys``, as the
    ``Secret`` objects they arrive as: the client reveals them while encoding, nowhere else."""
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


def spec_from_json(text: str, call_key: str | None = None) -> ChatSpec:
    """The spec of a frame's ``request`` column; ``call_key`` (its own column) makes a re-run the
    same call for the server's idempotency record."""
    data = json.loads(text)
    data["messages"] = tuple(data["messages"])
    return ChatSpec(**{name: data[name] for name in SPEC_FIELDS if name in data}, call_key=call_key)


def request_key(spec: ChatSpec) -> str:
    """A stable identity of the request (for the response cache): the body without keys."""
    return json.dumps(build_body(spec), sort_keys=True, separators=(",", ":"), default=str)
