"""Feedback on logs (``POST /feedback``) and the experiments that learn from it.

Why: v4 experiments favoured the configs whose logs got positive feedback (spec §9). Feedback is
stored with its log (``GET /logs`` shows it); an experiment's statistics and sampling are read from
the store on every request (``experiments.py``). ``GET /experiments/{id}`` (ours: the 0.5.18 SDK
reads experiments through the project's list) and ``GET /experiments/{id}/model-config`` (the
SDK's ``experiments.sample``) show and use what was learned.

``POST /feedback`` takes one FeedbackRequest or a list, and answers one FeedbackResponse or a list
(the SDK's FeedbackSubmitRequest/Response). It is all or nothing: a body with any bad item is a 422
(every item's problems, at ``["body", index, field]`` for a list), a list naming an unknown log a
404 naming the first one; in both cases nothing is stored.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from .auth import require_api_key
from .bodies import experiment_body, feedback_body, project_config_body
from .bodycheck import MAX_ITEMS, check_body
from .schemas import ErrorBody, FeedbackRequest, FeedbackResponse, HTTPValidationError
from .store import FeedbackChange, Store

router = APIRouter(dependencies=[Depends(require_api_key), Depends(check_body)],
                   responses={422: {"model": HTTPValidationError}})


def _one_or_list(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "array", "items": schema}]}


# the body is parsed by ``submitted_feedback`` (one item or a list, with plain 422 locations), so
# the OpenAPI document is given its schema here
REQUEST_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": _one_or_list(FeedbackRequest.model_json_schema())}}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "One FeedbackResponse, or a list for a list",
          "content": {"application/json": {"schema": _one_or_list(FeedbackResponse.model_json_schema())}}},
    404: {"model": ErrorBody, "description": "an item's data_id names no log; nothing was stored"}}


def _store(request: Request) -> Store:
    return request.app.state.store


async def submitted_feedback(request: Request) -> tuple[list[FeedbackRequest], bool]:
    """The body's items and whether it was a list.

    Raises:
        RequestValidationError: not JSON, or any item invalid (loc/msg/type only, at most
            ``MAX_ITEMS`` of them).
    """
    if not await request.body():
        raise RequestValidationError([{"loc": ["body"], "msg": "Field required", "type": "missing"}])
    try:
        body = await request.json()
    except ValueError:
        raise RequestValidationError([{"loc": ["body"], "msg": "Input should be valid JSON",
                                       "type": "json_invalid"}]) from None
    many = isinstance(body, list)
    items, errors = [], []
    for index, item in enumerate(body if many else [body]):
        where = ["body", index] if many else ["body"]
        try:
            parsed = FeedbackRequest.model_validate(item)
        except ValidationError as exc:
            errors += [{"loc": [*where, *error["loc"]], "msg": error["msg"], "type": error["type"]}
                       for error in exc.errors(include_url=False)]
            continue
        problem = parsed.missing_value()
        if problem:
            errors.append({"loc": [*where, "value"], "msg": problem, "type": "missing"})
        items.append(parsed)
    if errors:
        raise RequestValidationError(errors[:MAX_ITEMS])
    return items, many


@router.post("/feedback", tags=["Feedback"], operation_id="Feedback", openapi_extra=REQUEST_BODY,
             responses=RESPONSES)
def submit_feedback(request: Request, submitted: tuple[list[FeedbackRequest], bool] = Depends(submitted_feedback)
                    ) -> JSONResponse:
    """Set (or ``unset``) feedback on logs: ``rating``, ``action``, ``issue``, ``correction``,
    ``comment`` or a custom type. A value replaces the log's value of that type, except for
    ``action`` and ``issue``, which keep one feedback per value."""
    items, many = submitted
    rows = _store(request).submit_feedback([
        FeedbackChange(item.data_id, item.type, item.value, item.user, item.timestamp(), bool(item.unset))
        for item in items])
    bodies = [feedback_body(row) for row in rows]
    return JSONResponse(bodies if many else bodies[0])


@router.get("/experiments/{experiment_id}", tags=["Experiments"])
def get_experiment(request: Request, experiment_id: str) -> dict[str, Any]:
    """An experiment with each config's ``trials_count``, posterior ``mean`` and ``spread``."""
    store = _store(request)
    return experiment_body(store, store.experiment(experiment_id))


@router.get("/experiments/{experiment_id}/model-config", tags=["Experiments"])
def sample_experiment(request: Request, experiment_id: str) -> dict[str, Any]:
    """One config drawn from the experiment as ``/chat-experiment`` draws each sample's."""
    store = _store(request)
    experiment = store.experiment(experiment_id)
    config = store.config(store.sample_experiment_config(experiment["id"]))
    return {**project_config_body(store, config), "experiment_id": experiment["id"]}
