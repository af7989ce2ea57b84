"""A project's registered configs, experiments and deployments, for the panel (no widgets).

Why: /chat-model-config, /chat-experiment and /chat-deployed need them. The panel lists them with
readable labels, registers configs, creates experiments and deploys without code, through the same
``hl_notebook.manage`` functions a notebook user calls.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .. import manage
from ..errors import HLError, HLNotFoundError, HLUsageError
from ..plan import is_missing
from .state import distinct_labels, provider_choices


def server_providers(connection: Any) -> tuple[str, ...]:
    """The providers the server answers (``GET /server-info``); every wire provider on servers
    without that route (404) or when it cannot be asked."""
    try:
        info = connection.client.get("/server-info")
    except HLError:
        return provider_choices(None)
    return provider_choices(info if isinstance(info, Mapping) else None)


def _plain_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: None if is_missing(value) else value for key, value in row.items()}


@dataclass
class Registry:
    """What the server holds for one project; ``refresh`` reloads it."""

    project: str = ""
    configs: list[dict[str, Any]] = field(default_factory=list)  # manage.list_configs rows
    experiments: list[dict[str, Any]] = field(default_factory=list)  # {"id", "name", "config_ids"}
    deployments: list[dict[str, Any]] = field(default_factory=list)  # manage.deploy rows
    created: str = ""  # the id of the experiment created last

    def refresh(self, project: str) -> str:
        """Reload the project's configs and experiments; returns the status line."""
        self.project = project
        try:
            self.configs = [_plain_row(r) for r in manage.list_configs(project).to_dict("records")]
            rows = manage.list_experiments(project).to_dict("records")
        except HLNotFoundError:
            self.configs, self.experiments, self.deployments = [], [], []
            return f"project {project!r} has no configs yet: run /chat with Project {project!r}, or Register config"
        experiments: dict[str, dict[str, Any]] = {}
        for row in rows:
            entry = experiments.setdefault(row["experiment_id"], {"id": row["experiment_id"],
                                                                  "name": row["experiment"], "config_ids": []})
            entry["config_ids"].append(row["config_id"])
        self.experiments = list(experiments.values())
        n, m = len(self.configs), len(self.experiments)
        return f"{n} config{'s' * (n != 1)}, {m} experiment{'s' * (m != 1)} in {project}"

    # -- labels --------------------------------------------------------------------------------------
    def config_names(self) -> dict[str, str]:
        return dict(zip((c["config_id"] for c in self.configs), distinct_labels(self.configs)))

    def experiment_names(self) -> dict[str, str]:
        return {e["id"]: e["name"] for e in self.experiments}

    def config_options(self) -> list[tuple[str, str]]:
        return [(label, ident) for ident, label in self.config_names().items()]

    def experiment_options(self) -> list[tuple[str, str]]:
        """``name (2 configs: m1 · temperature 0 / m2 · temperature 0.7)``."""
        names = self.config_names()
        return [(f"{e['name']} ({len(e['config_ids'])} config{'s' * (len(e['config_ids']) != 1)}: "
                 f"{' / '.join(names.get(c, c) for c in e['config_ids'])})", e["id"]) for e in self.experiments]

    def deploy_options(self) -> list[tuple[str, str]]:
        """What can be deployed: ``config …`` and ``experiment …`` entries, valued ``kind:id``."""
        return ([(f"config {label}", f"config:{ident}") for label, ident in self.config_options()]
                + [(f"experiment {e['name']}", f"experiment:{e['id']}") for e in self.experiments])

    def deployment_lines(self) -> list[str]:
        """``production → config m1 · temperature 0`` per environment, after a deploy."""
        names = self.config_names()
        def target(d: dict[str, Any]) -> str:
            if d.get("experiment_id"):
                return f"experiment {d['experiment_name']}"
            return f"config {names.get(d['model_config_id'], d['model_config_name'])}"

        return [f"{d['environment_name']} → {target(d)}" for d in self.deployments]

    @staticmethod
    def suggested_name(labels: Sequence[str]) -> str:
        """An experiment's name when none is typed: its configs' labels (``m1 vs m2``)."""
        return " vs ".join(labels)[:80] or "experiment"

    # -- changes -----------------------------------------------------------------------------------
    def register(self, config: Mapping[str, Any]) -> str:
        """Register an inline config (the /chat controls) in the project and reload; returns the status line."""
        config = dict(config)
        model = config.pop("model", None)
        if not model:
            raise HLUsageError("Register config needs a model: fill in Model")
        config_id = manage.register_config(model, project=self.project, **config)
        self.refresh(self.project)
        return f"registered config {self.config_names().get(config_id, config_id)} in {self.project}"

    def create_experiment(self, config_ids: Sequence[str], name: str) -> str:
        """Create an experiment over ``config_ids`` and reload; its id is then ``created``. Returns the status line."""
        if len(config_ids) < 1:
            raise HLUsageError("New experiment needs configs: select one or more (Refresh lists them)")
        names = self.config_names()
        name = name.strip() or self.suggested_name([names.get(c, c) for c in config_ids])
        self.created = manage.create_experiment(list(config_ids), name=name, project=self.project)
        self.refresh(self.project)
        return f"created experiment {name} in {self.project}"

    def deploy(self, target: str, environment: str) -> str:
        """Deploy ``config:<id>`` or ``experiment:<id>`` to ``environment`` (blank: the default one)."""
        kind, _, ident = (target or "").partition(":")
        if kind not in ("config", "experiment") or not ident:
            raise HLUsageError("Deploy needs a config or an experiment: click Refresh and pick one")
        frame = manage.deploy(config_id=ident if kind == "config" else None,
                              experiment_id=ident if kind == "experiment" else None, project=self.project,
                              environments=[environment] if environment.strip() else None)
        self.deployments = [_plain_row(r) for r in frame.to_dict("records")]
        label = dict((v, k) for k, v in self.deploy_options()).get(target, target)
        where = environment.strip() or "the default environment"
        return f"deployed {label} to {where} of {self.project}"
