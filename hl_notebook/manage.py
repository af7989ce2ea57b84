"""Front end for what the chat endpoints select (spec §9): register configs, create experiments,
deploy, and list them as DataFrames.

Why: ``/chat-model-config``, ``/chat-experiment`` and ``/chat-deployed`` need registered configs,
experiments and deployments; these functions make them from a notebook by project *name* (the
default project of ``/chat`` when none is given), and return ids that drop straight into options
(``%%hlchat --model-config-id {a},{b}``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from .config import HLSettings
from .connection import connect
from .errors import HLNotFoundError, HLUsageError
from .plan import plain
from .spec import PARAMETER

if TYPE_CHECKING:
    import pandas as pd

    from .client import HLClient

DEFAULT_PROJECT = "default"  # the project /chat logs under when none is given (docs/v4-decisions.md)
POSITIVE_LABELS = [{"type": "rating", "value": "good"}]


def _project_name(project: str | None) -> str:
    return project or HLSettings.instance().project or DEFAULT_PROJECT


def _project_id(client: "HLClient", project: str | None) -> str:
    name = _project_name(project)
    for record in client.projects():
        if record["name"] == name:
            return record["id"]
    raise HLNotFoundError(f"no project named {name!r} on {client.base_url}: register a config in it first",
                          status_code=404, endpoint="/projects")


def register_config(model: str, *, project: str | None = None, provider: str | None = None,
                    name: str | None = None, description: str | None = None, other: dict[str, Any] | None = None,
                    base_url: str | None = None, **parameters: Any) -> str:
    """Register a model config in a project (created on first use); returns its id.

    Configs are identified by their parameters: registering the same ones again returns the same id.
    ``provider`` defaults to ``HLSettings.provider`` (``mock`` on the embedded server).

    Example: ``a = hl_notebook.register_config("gpt-4o-mini", temperature=0, project="support")``.
    """
    unknown = sorted(set(parameters) - set(PARAMETER))
    if unknown:
        raise HLUsageError(f"unknown config parameter {unknown[0]!r}; use {', '.join(PARAMETER)}")
    connection = connect(base_url)
    config = {key: PARAMETER[key].check(plain(value, key)) for key, value in parameters.items() if value is not None}
    config["provider"] = provider or connection.default_provider or "openai"
    for key, value in (("name", name), ("description", description), ("other", plain(other, "other"))):
        if value:
            config[key] = value
    registered = connection.client.register_config(_project_name(project), model=model, **config)
    return registered["config"]["id"]


def create_experiment(config_ids: Sequence[str], *, name: str, project: str | None = None,
                      positive_labels: Sequence[dict[str, str]] | None = None, set_active: bool = False,
                      base_url: str | None = None) -> str:
    """Create an experiment over registered configs of one project; returns its id.

    ``positive_labels`` (default ``[{"type": "rating", "value": "good"}]``) name the feedback that
    counts as success; ``set_active`` also deploys it to the project's default environment.
    """
    client = connect(base_url).client
    experiment = client.create_experiment(_project_id(client, project), name, list(config_ids), set_active,
                                          positive_labels=list(positive_labels or POSITIVE_LABELS))
    return experiment["id"]


def deploy(*, config_id: str | None = None, experiment_id: str | None = None, project: str | None = None,
           environments: Sequence[str] | None = None, base_url: str | None = None) -> "pd.DataFrame":
    """Deploy one config or one experiment to environments (default: the project's default one),
    so ``%%hlchat --deployed`` uses it; returns the project's deployments."""
    if bool(config_id) == bool(experiment_id):
        raise HLUsageError("deploy() needs exactly one of config_id or experiment_id")
    client = connect(base_url).client
    rows = client.deploy(_project_id(client, project), config_id=config_id, experiment_id=experiment_id,
                         environments=list(environments) if environments else None)
    return _frame(rows, ["environment_name", "model_config_id", "model_config_name", "experiment_id",
                         "experiment_name", "environment_id", "project_name"])


def list_configs(project: str | None = None, *, base_url: str | None = None) -> "pd.DataFrame":
    """The project's registered configs: id, name and every parameter (one row each, oldest first)."""
    client = connect(base_url).client
    rows = [{"config_id": entry["config"]["id"], "name": entry["config"].get("name"),
             **{key: entry["config"].get(key) for key in PARAMETER}, "logs": entry.get("num_datapoints"),
             "created_at": entry.get("created_at")}
            for entry in client.project_configs(_project_id(client, project))]
    return _frame(rows, ["config_id", "name", *PARAMETER, "logs", "created_at"])


def list_experiments(project: str | None = None, *, base_url: str | None = None) -> "pd.DataFrame":
    """The project's experiments: one row per (experiment, config), with the config's parameters."""
    client = connect(base_url).client
    rows = [{"experiment_id": experiment["id"], "experiment": experiment["name"], "status": experiment.get("status"),
             "config_id": entry["id"], **{key: entry["config"].get(key) for key in PARAMETER},
             "active": entry.get("active"), "trials_count": entry.get("trials_count")}
            for experiment in client.project_experiments(_project_id(client, project))
            for entry in experiment.get("configs", [])]
    return _frame(rows, ["experiment_id", "experiment", "status", "config_id", *PARAMETER, "active", "trials_count"])


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame.from_records(rows, columns=columns)
