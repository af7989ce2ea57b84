"""Management endpoints the chat endpoints depend on (spec §9): projects, configs, experiments,
deployments and logs.

Why: `/chat-model-config`, `/chat-experiment` and `/chat-deployed` need registered configs,
experiments and deployments; the shapes follow the v4 SDK's response models so it can read them.
"""
from __future__ import annotations

import random
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from .auth import require_api_key
from .bodycheck import check_body
from .bodies import config_body, deployment_body, experiment_body, log_body, project_body, project_config_body
from .errors import BadRequest
from .schemas import (DeployRequest, ExperimentCreateRequest, HTTPValidationError, ModelConfigRegisterRequest,
                      ProjectCreateRequest)
from .store import AlreadyExists, NotFound, Store

# declaring our 422 keeps FastAPI from publishing its own HTTPValidationError over ours (schemas.py)
router = APIRouter(dependencies=[Depends(require_api_key), Depends(check_body)],
                   responses={422: {"model": HTTPValidationError}})
MAX_PAGE = 1_000_000_000  # page * size must fit SQLite's 64-bit OFFSET


def _store(request: Request) -> Store:
    return request.app.state.store


# -- model configs -------------------------------------------------------------------------------
@router.post("/model-configs", tags=["Model Configs"])
def register_model_config(request: Request, body: ModelConfigRegisterRequest) -> dict[str, Any]:
    """Register a config (deduplicated by its parameters); an unknown project name creates it."""
    store = _store(request)
    if body.project_id:
        config_id = store.register_config(body.params(), project_id=store.project_by_id(body.project_id)["id"],
                                          name=body.name, description=body.description)
    elif body.project:
        config_id = store.register_config(body.params(), project_name=body.project, name=body.name,
                                          description=body.description)
    else:
        raise BadRequest(["body", "project"], "one of project or project_id is required")
    config = store.config(config_id)
    project_id = config["project_id"]
    result = project_config_body(store, config)
    if body.experiment:
        experiments = [e for e in store.project_experiments(project_id) if e["name"] == body.experiment]
        if not experiments:
            raise NotFound(f"experiment {body.experiment} not found in project {project_id}")
        store.add_experiment_config(experiments[0]["id"], config_id)
        result["experiment_id"] = experiments[0]["id"]
    return result


@router.get("/model-configs/{config_id}", tags=["Model Configs"])
def get_model_config(request: Request, config_id: str) -> dict[str, Any]:
    return config_body(_store(request).config(config_id))


# -- projects ------------------------------------------------------------------------------------
@router.get("/projects", tags=["Projects"])
def list_projects(request: Request, page: int = Query(0, ge=0, le=MAX_PAGE), size: int = Query(50, ge=1, le=1000)
                  ) -> dict[str, Any]:
    store = _store(request)
    projects = store.list_projects()
    chunk = projects[page * size:(page + 1) * size]
    return {"records": [project_body(store, p) for p in chunk], "page": page, "size": size,
            "total": len(projects)}


@router.post("/projects", tags=["Projects"], status_code=201)  # the SDK declares 201 only
def create_project(request: Request, body: ProjectCreateRequest) -> dict[str, Any]:
    store = _store(request)
    try:
        project_id = store.create_project(body.name)
    except AlreadyExists as exc:
        raise BadRequest(["body", "name"], str(exc)) from None
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
def _log_record(store: Store, row: dict[str, Any], configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``log_body`` plus what the v4 SDKs' LogResponse requires: ``config`` (its ModelConfigResponse,
    read once per config and request), ``config_id``, ``evaluation_results`` (we run no evaluators),
    ``observability_status`` and ``updated_at`` (a log is complete once stored: its ``created_at``).
    The TypeScript SDK's types found them missing (test_sdk_ts_conformance.py)."""
    body = log_body(row)
    config_id = row["config_id"]
    if config_id and config_id not in configs:
        configs[config_id] = config_body(store.config(config_id))
    return {**body, "config_id": config_id, "config": configs.get(config_id), "evaluation_results": [],
            "observability_status": "completed", "updated_at": body["created_at"]}


@router.get("/logs", tags=["Logs"])
def list_logs(request: Request, project_id: str, page: int = Query(0, ge=0, le=MAX_PAGE),
              size: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
    store = _store(request)
    rows, total = store.logs(project_id, page, size)
    configs: dict[str, dict[str, Any]] = {}
    return {"records": [_log_record(store, r, configs) for r in rows], "page": page, "size": size, "total": total}


@router.get("/logs/{log_id}", tags=["Logs"])
def get_log(request: Request, log_id: str) -> dict[str, Any]:
    store = _store(request)
    return _log_record(store, store.log(log_id), {})
