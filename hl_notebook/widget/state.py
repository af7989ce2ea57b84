"""The panel's state as a plain object, and its translation into ChatSpecs.

Why: the widget panel is only a view; what it will send is decided here, through the same
``make_specs`` as the magic, so equal inputs give equal specs and equal DataFrames — and the logic
can be tested without widgets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import HLUsageError
from ..parse import parse_cell
from ..plan import make_specs
from ..spec import PARAMETER, PARAMETERS, ChatSpec

ENDPOINT_LABELS = {"chat": "/chat (inline config)", "model-config": "/chat-model-config",
                   "experiment": "/chat-experiment", "deployed": "/chat-deployed"}
# the controls' starting values; parameters not named here start unset
DEFAULT_PARAMETERS = {"model": "demo-model", "provider": "mock", "temperature": 0.7, "top_p": 1.0,
                      "presence_penalty": 0.0, "frequency_penalty": 0.0}


@dataclass
class PanelState:
    """Everything the controls describe. Unset optional values are None (or "" for text).

    ``parameters`` holds one value per ``spec.PARAMETERS`` entry (the /chat inline config).
    """

    endpoint: str = "chat"
    project: str = ""
    messages_text: str = "system: You are a helpful assistant.\nuser: Hello!"
    parameters: dict[str, Any] = field(default_factory=lambda: {p.name: DEFAULT_PARAMETERS.get(p.name)
                                                                for p in PARAMETERS})
    model_config_id: str = ""
    experiment_id: str = ""
    environment: str = ""
    inputs_variable: str = ""
    num_samples: int = 1
    stream: bool = False
    concurrency: int = 8
    comparison: list[dict[str, Any]] = field(default_factory=list)

    def current_config(self) -> dict[str, Any]:
        """The inline config the controls show: set values only, checked against the parameter
        table (None, "" and max_tokens -1 — the wire's "no limit" — mean "not set")."""
        config: dict[str, Any] = {}
        for name, value in self.parameters.items():
            if name == "stop" or value is None or (isinstance(value, str) and not value.strip()):
                continue
            checked = PARAMETER[name].check(value.strip() if isinstance(value, str) else value)
            if not (name == "max_tokens" and checked == -1):
                config[name] = checked
        return config

    def current_selector(self) -> dict[str, Any]:
        """What picks the config on the chosen endpoint, as one comparison entry."""
        if self.endpoint == "chat":
            if not str(self.parameters.get("model") or "").strip():
                raise HLUsageError("/chat needs a model: fill in the model field")
            return self.current_config()
        if self.endpoint == "model-config":
            if not self.model_config_id:
                raise HLUsageError("/chat-model-config needs a config: pick one (Refresh lists the project's)")
            return {"model_config_id": self.model_config_id}
        if self.endpoint == "experiment":
            if not self.experiment_id:
                raise HLUsageError("/chat-experiment needs an experiment: pick one (Refresh lists them)")
            return {"experiment_id": self.experiment_id}
        return {"environment": self.environment} if self.environment else {}

    def add_to_comparison(self) -> dict[str, Any]:
        entry = {"endpoint": self.endpoint, **self.current_selector()}
        if entry not in self.comparison:
            self.comparison.append(entry)
        return entry

    def specs(self, namespace: Mapping[str, Any], default_provider: str | None = None) -> list[ChatSpec]:
        """The calls Run makes: the comparison list (or the current controls) × inputs × samples."""
        messages = parse_cell(self.messages_text)
        inputs = None
        if self.inputs_variable.strip():
            name = self.inputs_variable.strip()
            if name not in namespace:
                raise HLUsageError(f"inputs variable {name!r} is not defined in the notebook")
            inputs = namespace[name]
        entries = self.comparison or [{"endpoint": self.endpoint, **self.current_selector()}]
        stop = self.parameters.get("stop") or None
        specs: list[ChatSpec] = []
        for entry in entries:
            entry = dict(entry)
            endpoint = entry.pop("endpoint")
            axes = {name: [value] for name, value in entry.items()}
            specs.extend(make_specs(messages, endpoint=endpoint, axes=axes, inputs=inputs,
                                    deployed=endpoint == "deployed", stop=stop if endpoint == "chat" else None,
                                    project=self.project.strip() or None, num_samples=int(self.num_samples),
                                    stream=self.stream, default_provider=default_provider, namespace=namespace))
        return specs
