"""Management endpoints the chat endpoints depend on (spec §9): projects, configs, experiments,
deployments and logs.

Why: `/chat-model-config`, `/chat-experiment` and `/chat-deployed` need registered configs,
experiments and deployments; the shapes follow the v4 SDK's response models so it can read them.
"""
from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from .auth import require_api_key
from .errors import BadRequest
from .schemas import (DeployRequest, ExperimentCreateRequest, HTTPValidationError, ModelConfigRegisterRequest,
                      ProjectCreateRequest)
from .ids import stable_id
from .store import NotFound, Store

# declaring our 422 keeps FastAPI from publishing its own HTTPValidationError over ours (schemas.py)
router = APIRouter(dependencies=[Depends(require_api_key)], responses={422: {"model": HTTPValidationError}})


def _store(request: Request) -> Store:
    return request.app.state.store


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
    count = store.read().execute("SELECT COUNT(*) FROM logs WHERE project_id = ?", (project["id"],)).fetchone()[0]
    return present(
        id=project["id"], name=project["name"], team_id="tm_local", users=[], feedback_types=[],
        data_count=count, config_type="model",
        active_config=project_config_body(store, active_config) if active_config else None,
        active_experiment=experiment_body(store, store.experiment(experiment_id)) if experiment_id else None,
        created_at=iso(project["created_at"]), updated_at=iso(project["created_at"]))


def project_config_body(store: Store, config: dict[str, Any]) -> dict[str, Any]:
    """The SDK's ProjectConfigResponse / GetModelConfigResponse shape."""
    project = store.project_by_id(config["project_id"])
    count = store.read().execute("SELECT COUNT(*) FROM logs WHERE config_id = ?", (config["id"],)).fetchone()[0]
    return {"project_id": project["id"], "project_name": project["name"], "config": config_body(config),
            "created_at": iso(config["created_at"]), "updated_at": iso(config["created_at"]),
            "last_used": iso(config["created_at"]), "num_datapoints": count}


def experiment_metric(experiment: dict[str, Any]) -> dict[str, Any]:
    """The SDK's required ``metric`` (BaseMetricResponse): the positive-feedback objective.

    It is described, not computed: this server samples active configs uniformly (spec §9)."""
    return {"id": stable_id("metric", "positive-feedback"), "name": "Positive feedback rate",
            "description": "Share of logs whose feedback matches the experiment's positive_labels; "
                           "not computed by this server, which samples active configs uniformly.",
            "code": "", "default": True, "active": False,
            "created_at": iso(experiment["created_at"]), "updated_at": iso(experiment["created_at"])}


def experiment_body(store: Store, experiment: dict[str, Any]) -> dict[str, Any]:
    """The SDK's ExperimentResponse. ``status`` is its enum: ``In progress`` while some config can be
    sampled, else ``Initialized``; no feedback statistics are kept, so ``mean``/``spread`` are absent."""
    configs = [store.config(c) for c in experiment["config_ids"]]
    return {"id": experiment["id"], "project_id": experiment["project_id"], "name": experiment["name"],
            "status": "In progress" if configs else "Initialized", "metric": experiment_metric(experiment),
            "positive_labels": experiment["positive_labels"],
            "created_at": iso(experiment["created_at"]), "updated_at": iso(experiment["created_at"]),
            "configs": [{"id": c["id"], "display_name": c["name"], "active": True, "trials_count": 0,
                         "config": config_body(c),
                         "created_at": iso(c["created_at"]), "updated_at": iso(c["created_at"])}
                        for c in configs]}


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


# -- model configs -------------------------------------------------------------------------------
@router.post("/model-configs", tags=["Model Configs"])
def register_model_config(request: Request, body: ModelConfigRegisterRequest) -> dict[str, Any]:
    """Register a config (deduplicated by its parameters); an unknown project name creates it."""
    store = _store(request)
    if body.project_id:
        project_id = store.project_by_id(body.project_id)["id"]
    elif body.project:
        project_id = ""
    else:
        raise BadRequest(["body", "project"], "one of project or project_id is required")
    params = body.params()
    with store.write() as db:
        if not project_id:
            project_id = store.ensure_project(db, body.project or "")
        config_id = store.ensure_config(db, project_id, params, body.name, body.description)
    result = project_config_body(store, store.config(config_id))
    if body.experiment:
        experiments = [e for e in store.project_experiments(project_id) if e["name"] == body.experiment]
        if not experiments:
            raise NotFound(f"experiment {body.experiment} not found in project {project_id}")
        with store.write() as db:
            db.execute("INSERT OR IGNORE INTO experiment_configs VALUES (?, ?, 1)", (experiments[0]["id"], config_id))
        result["experiment_id"] = experiments[0]["id"]
    return result


@router.get("/model-configs/{config_id}", tags=["Model Configs"])
def get_model_config(request: Request, config_id: str) -> dict[str, Any]:
    return config_body(_store(request).config(config_id))


# -- projects ------------------------------------------------------------------------------------
@router.get("/projects", tags=["Projects"])
def list_projects(request: Request, page: int = Query(0, ge=0), size: int = Query(50, ge=1, le=1000)
                  ) -> dict[str, Any]:
    store = _store(request)
    projects = store.list_projects()
    chunk = projects[page * size:(page + 1) * size]
    return {"records": [project_body(store, p) for p in chunk], "page": page, "size": size,
            "total": len(projects)}


@router.post("/projects", tags=["Projects"], status_code=201)  # the SDK declares 201 only
def create_project(request: Request, body: ProjectCreateRequest) -> dict[str, Any]:
    store = _store(request)
    if store.project_by_name(body.name):
        raise BadRequest(["body", "name"], f"a project named {body.name!r} already exists")
    with store.write() as db:
        project_id = store.ensure_project(db, body.name)
    return project_body(store, store.project_by_id(project_id))


@router.get("/projects/{project_id}", tags=["Projects"])
def get_project(request: Request, project_id: str) -> dict[str, Any]:
    store = _store(request)
    return project_body(store, store.project_by_id(project_id))


@router.get("/projects/{project_id}/configs", tags=["Projects"])
def list_configs(request: Request, project_id: str) -> list[dict[str, Any]]:
    store = _store(request)
    return [project_config_body(store, c) for c in store.project_configs(project_id)]


@router.get("/projects/{project_id}/deployed-configs", tags=["Projects"])
def list_deployed(request: Request, project_id: str) -> list[dict[str, Any]]:
    store = _store(request)
    project = store.project_by_id(project_id)
    return [deployment_body(store, project, d) for d in store.deployments(project_id)]


@router.patch("/projects/{project_id}/deploy-config", tags=["Projects"])
def deploy_config(request: Request, project_id: str, body: DeployRequest) -> list[dict[str, Any]]:
    """Deploy a config or an experiment (exactly one) to environments (default: the default one)."""
    store = _store(request)
    if bool(body.config_id) == bool(body.experiment_id):
        raise BadRequest(["body", "config_id"], "give exactly one of config_id or experiment_id")
    envs = []
    for env in body.environments or []:
        if env.id:
            envs.append(store.environment(env_id=env.id))
        elif env.name:
            envs.append(store.ensure_environment(env.name))
        else:
            raise BadRequest(["body", "environments"], "each environment needs an id or a name")
    env_ids = [e["id"] for e in envs] or [store.default_environment()["id"]]
    store.deploy(project_id, env_ids, body.config_id, body.experiment_id)
    return list_deployed(request, project_id)


@router.get("/projects/{project_id}/active-config", tags=["Projects"])
def active_config(request: Request, project_id: str, environment: str | None = None) -> dict[str, Any]:
    store = _store(request)
    deployment = store.deployment(store.project_by_id(project_id)["id"], environment)
    if deployment["experiment_id"]:
        experiment = store.experiment(deployment["experiment_id"])
        config = store.config(store.sample_experiment_config(experiment["id"], random.Random()))
        return {**project_config_body(store, config), "experiment_id": experiment["id"]}
    return project_config_body(store, store.config(deployment["config_id"]))


# -- experiments ---------------------------------------------------------------------------------
@router.post("/projects/{project_id}/experiments", tags=["Experiments"])
def create_experiment(request: Request, project_id: str, body: ExperimentCreateRequest) -> dict[str, Any]:
    store = _store(request)
    experiment_id = store.create_experiment(project_id, body.name, [l.model_dump() for l in body.positive_labels],
                                            body.config_ids, body.set_active)
    return experiment_body(store, store.experiment(experiment_id))


@router.get("/projects/{project_id}/experiments", tags=["Experiments"])
def list_experiments(request: Request, project_id: str) -> list[dict[str, Any]]:
    store = _store(request)
    return [experiment_body(store, e) for e in store.project_experiments(project_id)]


# -- logs ----------------------------------------------------------------------------------------
def log_body(row: dict[str, Any]) -> dict[str, Any]:
    def load(value: str | None) -> Any:
        return json.loads(value) if value else None

    return {"id": row["id"], "project_id": row["project_id"], "model_config_id": row["config_id"],
            "session_id": row["session_id"], "parent_id": row["parent_id"], "index": row["sample_index"],
            "endpoint": row["endpoint"], "created_at": iso(row["created_at"]), "inputs": load(row["inputs"]),
            "messages": load(row["messages"]), "output": row["output"], "finish_reason": row["finish_reason"],
            "error": load(row["error"]), "metadata": load(row["metadata"]), "source": row["source"],
            "usage": load(row["usage"])}


@router.get("/logs", tags=["Logs"])
def list_logs(request: Request, project_id: str, page: int = Query(0, ge=0),
              size: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
    rows, total = _store(request).logs(project_id, page, size)
    return {"records": [log_body(r) for r in rows], "page": page, "size": size, "total": total}


@router.get("/logs/{log_id}", tags=["Logs"])
def get_log(request: Request, log_id: str) -> dict[str, Any]:
    return log_body(_store(request).log(log_id))
