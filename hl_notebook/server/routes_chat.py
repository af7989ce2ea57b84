"""The four chat endpoints (spec §3): ``/chat``, ``/chat-deployed``, ``/chat-experiment``, ``/chat-model-config``.

Why: one router holds the wire surface; each endpoint only names its body schema and hands it to
the shared pipeline in ``chat.py``. Streaming is decided by the body's ``stream`` flag, never by
the Accept header (the SDKs send ``Accept: application/json`` on streaming calls too).
"""
from __future__ import annotations

import json
from typing import Any, Callable

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from .auth import require_api_key_and_clean_body
from . import idempotency
from .bodies import replay_events
from .chat import ChatRun, internal_error
from .direct_route import DirectRoute
from .schemas import (ChatDeployedRequest, ChatExperimentRequest, ChatModelConfigRequest, ChatRequest,
                      ChatRequestBase, ChatResponse, ErrorBody, HTTPValidationError)
from .streaming import EventStream
from .writer import GroupWriter

JSON = "application/json"

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": HTTPValidationError},
    429: {"model": ErrorBody}, 502: {"model": ErrorBody}, 503: {"model": ErrorBody},
}
STREAM_DOC = {200: {"model": ChatResponse, "content": {"text/event-stream": {}},
                    "description": "A ChatResponse, or with stream=true SSE events each holding one."}}

# DirectRoute: a valid, authorised JSON body skips FastAPI's dependency solving (direct_route.py);
# the dependencies still answer every other request and declare the key in the OpenAPI document
router = APIRouter(dependencies=[Depends(require_api_key_and_clean_body)], tags=["Chats"], route_class=DirectRoute)


def chat_limiter(app: Any) -> anyio.CapacityLimiter:
    """The worker threads of chat calls, apart from anyio's default pool that the management
    endpoints use: slow chats (a mock latency, a slow provider) can fill these, never those.
    Created on first use, inside the event loop (anyio requires it)."""
    limiter = getattr(app.state, "chat_limiter", None)
    if limiter is None:
        limiter = app.state.chat_limiter = anyio.CapacityLimiter(app.state.settings.worker_threads)
    return limiter


def _run(request: Request, endpoint: str, body: ChatRequestBase) -> Response:
    """One streamed chat call, on a chat worker thread; its later steps go to the same threads.

    With an ``Idempotency-Key`` (see ``idempotency.py``): a stored call is replayed, a running one
    waited for, and a new one runs under the key until its response (or stream) ends.
    """
    state = request.app.state
    key = idempotency.checked_key(request.headers.get(idempotency.HEADER))
    if key is None:
        run = ChatRun(state.store, endpoint, body, state.settings.mock_latency_ms, upstreams=state.upstreams)
        return _respond(request, run, None)
    digest = idempotency.request_hash(endpoint, body)
    replay = _replay(request, key, digest, body.stream)
    if replay is not None:
        return replay
    state.in_flight.enter(key, state.settings.idempotency_wait)
    try:
        replay = _replay(request, key, digest, body.stream)  # the one we waited for may have completed
        if replay is not None:
            state.in_flight.leave(key)
            return replay
        run = ChatRun(state.store, endpoint, body, state.settings.mock_latency_ms, idempotency=(key, digest),
                      upstreams=state.upstreams)
        return _respond(request, run, lambda: state.in_flight.leave(key))
    except BaseException:
        state.in_flight.leave(key)
        raise


def _respond(request: Request, run: ChatRun, release: Callable[[], None] | None) -> Response:
    """Run the call as an EventStream whose end (completed or not) releases the key."""
    def on_close(completed: bool) -> None:
        try:
            if not completed:
                run.abandon()
        finally:
            if release is not None:
                release()

    return EventStream(run.stream_events(), limiter=chat_limiter(request.app), on_error=run.fail_stream,
                       on_close=on_close)


def _replay(request: Request, key: str, digest: str, stream: bool) -> Response | None:
    """The stored result of the call completed under ``key``, as JSON or as SSE events; None if none."""
    found = request.app.state.store.completed_call_text(key)
    if found is None:
        return None
    stored_hash, text = found
    idempotency.check_same_request(stored_hash, digest)
    headers = {"Idempotent-Replayed": "true"}
    if not stream:  # the stored JSON text as it is: the bytes of the first answer (older rows: the same JSON)
        return Response(text.encode(), headers=headers, media_type=JSON)
    response = json.loads(text)
    return EventStream(iter(replay_events(response)), limiter=chat_limiter(request.app),
                       on_error=lambda exc: {"detail": internal_error(exc).detail()},
                       on_close=lambda completed: None, headers=headers)


def chat_writer(app: Any) -> GroupWriter:
    """The app's group writer of chat logs (``writer.py``), created on first use."""
    writer = getattr(app.state, "chat_writer", None)
    if writer is None:
        writer = app.state.chat_writer = GroupWriter(app.state.store)
    return writer


async def _complete(request: Request, endpoint: str, body: ChatRequestBase) -> Response:
    """A call without streaming, on the event loop: no thread hop on SQLite unless the provider blocks
    or the call's Idempotency-Key is running elsewhere (waiting for it takes a thread, as in ``_run``)."""
    state = request.app.state
    key = idempotency.checked_key(request.headers.get(idempotency.HEADER))
    if key is None:
        run = await _new_run(request, endpoint, body, None)
        return JSONResponse(await run.complete(chat_writer(request.app), chat_limiter(request.app)))
    digest = idempotency.request_hash(endpoint, body)
    if not await _reading(request, state.in_flight.try_enter, key):
        replay = await _reading(request, _replay, request, key, digest, False)
        if replay is not None:
            return replay
        await anyio.to_thread.run_sync(state.in_flight.enter, key, state.settings.idempotency_wait,
                                       limiter=chat_limiter(request.app))
    try:
        # checked once the key is ours: a call completed under it is final
        replay = await _reading(request, _replay, request, key, digest, False)
        if replay is not None:
            return replay
        run = await _new_run(request, endpoint, body, (key, digest))
        response = await run.complete(chat_writer(request.app), chat_limiter(request.app))
        if run.response_json is not None:  # encoded once for the idempotency record: the same bytes
            return Response(run.response_json, media_type=JSON)
        return JSONResponse(response)
    finally:
        if state.store.db.dialect == "sqlite":  # no await: nothing to shield
            state.in_flight.leave(key)
        else:
            with anyio.CancelScope(shield=True):  # a cancelled request still gives its key back
                await _reading(request, state.in_flight.leave, key)


async def _new_run(request: Request, endpoint: str, body: ChatRequestBase,
                   key: tuple[str, str] | None) -> ChatRun:
    """The call's ChatRun; resolving it reads the store (by id or name: a few indexed reads; an
    experiment's Thompson sampling counts its feedback, so that one always runs on a thread)."""
    state = request.app.state

    def make() -> ChatRun:
        return ChatRun(state.store, endpoint, body, state.settings.mock_latency_ms, idempotency=key,
                       upstreams=state.upstreams)

    if endpoint in ("chat", "chat-model-config"):
        return await _reading(request, make)
    return await anyio.to_thread.run_sync(make, limiter=chat_limiter(request.app))


async def _reading(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, which reads (or briefly claims in) the store: inline on SQLite, whose reads take
    microseconds and never wait for a writer (WAL); on a chat thread on PostgreSQL (a round trip)."""
    if request.app.state.store.db.dialect == "sqlite":
        return fn(*args)
    return await anyio.to_thread.run_sync(fn, *args, limiter=chat_limiter(request.app))


async def _serve(request: Request, endpoint: str, body: ChatRequestBase) -> Response:
    if not body.stream:
        return await _complete(request, endpoint, body)
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


def fast_routes(prefix: str) -> dict[str, tuple[Callable[..., Any], type[ChatRequestBase]]]:
    """The chat endpoints by path, with their body models, for ``fast_path.ChatServerApp``."""
    return {prefix + route.path: (route.endpoint, route.body_type) for route in router.routes
            if isinstance(route, DirectRoute) and "POST" in route.methods}
