"""The four chat endpoints (spec §3): ``/chat``, ``/chat-deployed``, ``/chat-experiment``, ``/chat-model-config``.

Why: one router holds the wire surface; each endpoint only names its body schema and hands it to
the shared pipeline in ``chat.py``. Streaming is decided by the body's ``stream`` flag, never by
the Accept header (the SDKs send ``Accept: application/json`` on streaming calls too).
"""
from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from .auth import require_api_key
from .bodycheck import check_body
from .chat import ChatRun
from .schemas import (ChatDeployedRequest, ChatExperimentRequest, ChatModelConfigRequest, ChatRequest,
                      ChatRequestBase, ChatResponse, ErrorBody, HTTPValidationError)
from .streaming import EventStream

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": HTTPValidationError},
    429: {"model": ErrorBody}, 502: {"model": ErrorBody}, 503: {"model": ErrorBody},
}
STREAM_DOC = {200: {"model": ChatResponse, "content": {"text/event-stream": {}},
                    "description": "A ChatResponse, or with stream=true SSE events each holding one."}}

router = APIRouter(dependencies=[Depends(require_api_key), Depends(check_body)], tags=["Chats"])


def chat_limiter(app: Any) -> anyio.CapacityLimiter:
    """The worker threads of chat calls, apart from anyio's default pool that the management
    endpoints use: slow chats (a mock latency, a slow provider) can fill these, never those.
    Created on first use, inside the event loop (anyio requires it)."""
    limiter = getattr(app.state, "chat_limiter", None)
    if limiter is None:
        limiter = app.state.chat_limiter = anyio.CapacityLimiter(app.state.settings.worker_threads)
    return limiter


def _run(request: Request, endpoint: str, body: ChatRequestBase) -> Response:
    """One chat call, on a chat worker thread; a stream's later steps go to the same threads."""
    state = request.app.state
    run = ChatRun(state.store, endpoint, body, state.settings.mock_latency_ms)
    if body.stream:
        return EventStream(run.stream_events(), limiter=chat_limiter(request.app), on_error=run.fail_stream,
                           on_close=lambda completed: None if completed else run.abandon())
    return JSONResponse(run.complete())


async def _serve(request: Request, endpoint: str, body: ChatRequestBase) -> Response:
    limiter = chat_limiter(request.app)
    return await anyio.to_thread.run_sync(_run, request, endpoint, body, limiter=limiter)


@router.post("/chat", operation_id="Chats_create", responses={**STREAM_DOC, **ERROR_RESPONSES})
async def chat(request: Request, body: ChatRequest) -> Response:
    """Chat with an inline model config; it is registered (deduplicated) and its id returned."""
    return await _serve(request, "chat", body)


@router.post("/chat-deployed", operation_id="Chats_createDeployed", responses={**STREAM_DOC, **ERROR_RESPONSES})
async def chat_deployed(request: Request, body: ChatDeployedRequest) -> Response:
    """Chat with the config or experiment deployed to the project's environment."""
    return await _serve(request, "chat-deployed", body)


@router.post("/chat-experiment", operation_id="Chats_createExperiment",
             responses={**STREAM_DOC, **ERROR_RESPONSES})
async def chat_experiment(request: Request, body: ChatExperimentRequest) -> Response:
    """Chat with configs sampled from an experiment, independently per sample."""
    return await _serve(request, "chat-experiment", body)


@router.post("/chat-model-config", operation_id="Chats_createModelConfig",
             responses={**STREAM_DOC, **ERROR_RESPONSES})
async def chat_model_config(request: Request, body: ChatModelConfigRequest) -> Response:
    """Chat with a registered model config by id."""
    return await _serve(request, "chat-model-config", body)
