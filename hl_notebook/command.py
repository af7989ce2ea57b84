"""From user intent (magic options, Python API arguments, panel state) to ChatSpecs.

Why: the magic, ``chat()``/``sweep()`` and the panel all call ``make_specs``, so the same inputs
give the same specs (and therefore the same DataFrame). Everything here runs before any network
call, so every mistake is reported with nothing sent.
"""
from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

from .errors import HLUsageError
from .grid import expand, rows_of
from .spec import CONFIG_PARAMS, ChatSpec, choose_endpoint
from .template import variables

# options that take several values (sweep axes): inline config parameters and config selectors
AXIS_NAMES = [*[name for name in CONFIG_PARAMS if name != "stop"], "model_config_id", "experiment_id",
              "environment"]


def parse_axis(name: str, raw: str | None) -> list[Any]:
    """A comma list from an option, converted to the wire type (``0,0.7`` -> [0.0, 0.7])."""
    if raw is None:
        return []
    kind = CONFIG_PARAMS.get(name, str)
    values = []
    for text in (part.strip() for part in raw.split(",")):
        if not text:
            raise HLUsageError(f"--{name.replace('_', '-')}: empty value in {raw!r}")
        try:
            values.append(kind(text))
        except ValueError:
            raise HLUsageError(f"--{name.replace('_', '-')}: {text!r} is not a valid {kind.__name__}") from None
    return values


_VARIABLE_REFERENCE = re.compile(r"^(?:\{([A-Za-z_]\w*)\}|\$([A-Za-z_]\w*))$")


def axis_values(name: str, raw: str | None, namespace: Mapping[str, Any]) -> list[Any]:
    """An option's values: ``{var}`` or ``$var`` names a notebook variable (a value or a list),
    anything else is a comma list (the magic line itself is not variable-expanded)."""
    match = _VARIABLE_REFERENCE.match(raw.strip()) if raw else None
    if match:
        variable = match.group(1) or match.group(2)
        if variable not in namespace:
            raise HLUsageError(f"--{name.replace('_', '-')}: {variable!r} is not defined in the notebook")
        return as_axis(namespace[variable])
    return parse_axis(name, raw)


def as_axis(value: Any) -> list[Any]:
    """A Python argument as axis values: None -> [], a scalar -> [it], a list/tuple -> its items."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def make_specs(messages: Sequence[Mapping[str, Any]], *, endpoint: str | None = None,
               axes: Mapping[str, Sequence[Any]] | None = None, configs: Any = None, inputs: Any = None,
               deployed: bool = False, stop: str | list[str] | None = None, project: str | None = None,
               num_samples: int = 1, stream: bool = False, save: bool = True,
               metadata: Mapping[str, Any] | None = None, session_id: str | None = None,
               default_provider: str | None = None, namespace: Mapping[str, Any] | None = None
               ) -> list[ChatSpec]:
    """ChatSpecs for configs × inputs rows (see ``grid.expand``), validated and template-checked.

    Args:
        messages: wire chat messages (``{{name}}`` placeholders kept).
        axes: option name -> values (``{"model": ["a", "b"], "temperature": [0, 0.7]}``).
        configs: a list of config dicts or a DataFrame of configs.
        inputs: a dict (one request) or a list of dicts / DataFrame (one request per row).
        default_provider: the provider for /chat when none is given (``mock`` on the embedded server).
        namespace: notebook variables; template names missing from ``inputs`` are taken from here.
    """
    axes = {name: list(values) for name, values in (axes or {}).items() if values}
    unknown = set(axes) - set(AXIS_NAMES)
    if unknown:
        raise HLUsageError(f"unknown sweep axis {sorted(unknown)[0]!r}; use {', '.join(AXIS_NAMES)}")
    config_rows = rows_of(configs, "configs") if configs is not None else None
    chosen = choose_endpoint(endpoint, model=bool(axes.get("model") or config_rows),
                             model_config_id=bool(axes.get("model_config_id")),
                             experiment_id=bool(axes.get("experiment_id")), deployed=deployed)
    inputs_rows = rows_of(inputs, "inputs") if inputs is not None else [{}]
    if metadata is not None and not isinstance(metadata, Mapping):
        raise HLUsageError("metadata must be a dict")
    base_config: dict[str, Any] = {}
    if chosen == "chat" and default_provider and not axes.get("provider"):
        base_config["provider"] = default_provider
    if stop:
        base_config["stop"] = stop
    base = ChatSpec(endpoint=chosen, messages=tuple(dict(m) for m in messages), model_config=base_config,  # type: ignore[arg-type]
                    project=project or None, num_samples=num_samples, stream=stream, save=save,
                    metadata=json.loads(json.dumps(metadata, default=str)) if metadata is not None else None,
                    session_id=session_id, inputs=_namespace_inputs(messages, inputs_rows, namespace or {}))
    return expand(base, axes=axes, configs=config_rows, inputs_rows=inputs_rows)


def _namespace_inputs(messages: Sequence[Mapping[str, Any]], rows: list[dict[str, Any]],
                      namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Template names not given in every inputs row, taken from notebook variables of that name."""
    given = set.intersection(*(set(row) for row in rows)) if rows else set()
    return {name: namespace[name] for name in variables(messages)
            if name not in given and name in namespace and not name.startswith("_")}
