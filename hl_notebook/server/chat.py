"""The chat pipeline shared by the four endpoints: resolve config -> render -> provider -> store.

Why: the endpoints differ only in how they pick a model config (spec §3); everything after that —
templating, sampling, storage in one transaction, response shape, streaming — is one code path.
"""
from __future__ import annotations

import itertools
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import anyio.to_thread

from .. import template as templating
from .bodies import data_entry, envelope, usage_dict
from .errors import BadRequest, MissingVariables
from .ids import new_id
from .providers import get_provider
from .providers.base import Generation, ProviderCall, ProviderError, ProviderResult, StreamDelta, StreamUsage
from .providers.upstream import Upstreams
from .schemas import (ChatDeployedRequest, ChatExperimentRequest, ChatModelConfigRequest, ChatRequest,
                      ChatRequestBase, ModelConfigChatRequest)
from .store import NotFound, PendingLog, Store, project_id_for
from .writer import GroupWriter

log = logging.getLogger("hl_notebook.server")

DEFAULT_PROJECT = "default"  # decisions table: /chat without a project logs under "default"


@dataclass
class Target:
    """Where a call's samples go: the project, and per sample the config (experiments vary it)."""

    project_id: str
    project_name: str | None  # set when the project may need creating (by name)
    sample_configs: list[str]  # config id per sample
    configs: dict[str, dict[str, Any]]  # config id -> params
    new_config: tuple[str, dict[str, Any], str | None, str | None] | None = None  # id, params, name, descr
    experiment_id: str | None = None  # the experiment the configs were sampled from (stored on the logs)


@dataclass
class Group:
    """Samples that share one config, answered by one provider call."""

    config_id: str
    params: dict[str, Any]
    indices: list[int]
    messages: list[dict[str, Any]] = field(default_factory=list)


# -- resolving the config (spec §3) ------------------------------------------------------------
def _project(store: Store, body: ChatRequestBase, default: str | None) -> tuple[str, str | None]:
    if body.project_id:
        return store.project_by_id(body.project_id)["id"], None
    name = body.project or default
    if name is None:
        raise BadRequest(["body", "project_id"], "one of project or project_id is required")
    found = store.project_by_name(name)
    return (found["id"], None) if found else (project_id_for(name), name)


def _from_experiment(store: Store, experiment_id: str, project_id: str, n: int) -> Target:
    """Configs drawn per sample by Thompson sampling on the experiment's feedback (``experiments.py``)."""
    ids = store.sample_experiment_configs(experiment_id, n)
    return Target(project_id, None, ids, {c: store.config(c)["params"] for c in set(ids)},
                  experiment_id=experiment_id)


def resolve(store: Store, body: Any) -> Target:
    """The project and per-sample configs the endpoint's body selects (spec §3)."""
    n = body.num_samples
    if isinstance(body, ChatRequest):
        project_id, name = _project(store, body, DEFAULT_PROJECT)
        config: ModelConfigChatRequest = body.config
        params = config.params()
        config_id = store.config_id_for(project_id, params)
        return Target(project_id, name, [config_id] * n, {config_id: params},
                      new_config=(config_id, params, config.name, config.description))
    if isinstance(body, ChatModelConfigRequest):
        found = store.config(body.model_config_id)
        return Target(found["project_id"], None, [found["id"]] * n, {found["id"]: found["params"]})
    if isinstance(body, ChatExperimentRequest):
        experiment = store.experiment(body.experiment_id)
        return _from_experiment(store, experiment["id"], experiment["project_id"], n)
    assert isinstance(body, ChatDeployedRequest)
    project_id, unknown_name = _project(store, body, None)
    if unknown_name is not None:
        raise NotFound(f"project {unknown_name} not found")
    deployment = store.deployment(project_id, body.environment)
    if deployment["experiment_id"]:
        return _from_experiment(store, deployment["experiment_id"], project_id, n)
    found = store.config(deployment["config_id"])
    return Target(project_id, None, [found["id"]] * n, {found["id"]: found["params"]})


# -- rendering ---------------------------------------------------------------------------------
def render(params: dict[str, Any], body: ChatRequestBase) -> list[dict[str, Any]]:
    """Template messages (strict: every variable needs an input) then request messages.

    Request messages are rendered leniently: variables present in ``inputs`` are substituted,
    others are left as written, so literal braces in user text never fail a call.
    """
    template = params.get("chat_template") or []
    missing = templating.missing_inputs(template, body.inputs)
    if missing:
        raise MissingVariables(missing)
    request = [m.model_dump(mode="json") for m in body.messages]
    return [templating.render_message(m, body.inputs) for m in [*template, *request]]


def groups(target: Target, body: ChatRequestBase) -> list[Group]:
    by_config: dict[str, Group] = {}
    for index, config_id in enumerate(target.sample_configs):
        if config_id not in by_config:
            by_config[config_id] = Group(config_id, target.configs[config_id], [])
        by_config[config_id].indices.append(index)
    for group in by_config.values():
        group.messages = render(group.params, body)
    return list(by_config.values())


def provider_call(group: Group, body: ChatRequestBase) -> ProviderCall:
    keys = body.provider_api_keys.model_dump(exclude_none=True) if body.provider_api_keys else {}
    config = dict(group.params)
    if config.get("seed") is None and body.seed is not None:
        config["seed"] = body.seed  # spec §2: top-level seed is the deprecated spelling
    return ProviderCall(config=config, messages=group.messages, num_samples=len(group.indices),
                        api_keys=keys, user=body.user, tool_choice=body.tool_choice,
                        response_format=body.response_format.model_dump() if body.response_format else None)


# -- running ---------------------------------------------------------------------------------------
class ChatRun:
    """One chat call from resolved target to stored logs and a response body."""

    def __init__(self, store: Store, endpoint: str, body: ChatRequestBase, mock_latency_ms: float,
                 idempotency: tuple[str, str] | None = None, upstreams: Upstreams | None = None) -> None:
        """``idempotency``: the call's (key, request hash); a completed call is stored under it.
        ``upstreams``: the app's pass-through connections (their timeout; cut at shutdown)."""
        self.store, self.endpoint, self.body = store, endpoint, body
        self.idempotency = idempotency
        self.upstreams = upstreams
        self.mock_latency_ms = mock_latency_ms
        self.target = resolve(store, body)
        self.groups = groups(self.target, body)
        self.log_ids = [new_id("data") for _ in range(body.num_samples)]
        self.inputs = body.inputs if body.return_inputs else {}
        self.stored = False  # the call's logs are in the store (success or failure)
        self.response_json: bytes | None = None  # the completed call's body as JSON, when it was encoded to be stored
        self.streamed: dict[int, str] = {}  # text streamed so far, per sample

    def _provider(self, group: Group):  # noqa: ANN202 - Provider protocol
        return get_provider(group.params.get("provider", "openai"), mock_latency_ms=self.mock_latency_ms,
                            upstreams=self.upstreams)

    def _messages_for(self, index: int) -> list[dict[str, Any]]:
        for group in self.groups:
            if index in group.indices:
                return group.messages
        return []

    def store_logs(self, outcomes: dict[int, tuple[str | None, str | None, dict[str, Any] | None]],
                   usage: dict[str, int] | None,
                   respond: Callable[[str | None], dict[str, Any]] | None = None) -> tuple[str | None, Any]:
        """Write project, config, session and one log per sample in a single transaction.

        ``respond`` (given for a completed call) builds the response body from the session id;
        with an idempotency key it is stored under the key in the same transaction (not with
        ``save=False``: the body holds what that flag keeps out of the store). Returns the
        session id and that body.
        """
        with self.store.write() as db:
            written = self.write_logs(db, outcomes, usage, respond)
        self._committed()
        return written

    async def store_logs_async(self, writer: GroupWriter,
                               outcomes: dict[int, tuple[str | None, str | None, dict[str, Any] | None]],
                               usage: dict[str, int] | None,
                               respond: Callable[[str | None], dict[str, Any]] | None = None
                               ) -> tuple[str | None, Any]:
        """``store_logs`` through the group writer: the same rows, atomic per call, committed before it returns."""
        written = await writer.write(lambda db: self.write_logs(db, outcomes, usage, respond))
        self._committed()
        return written

    def _committed(self) -> None:
        """The call's logs are committed, and with them its config (later calls skip registering it)."""
        self.stored = True
        if self.target.new_config is not None:
            self.store.note_config_stored(self.target.new_config[0])

    def write_logs(self, db: Any, outcomes: dict[int, tuple[str | None, str | None, dict[str, Any] | None]],
                   usage: dict[str, int] | None,
                   respond: Callable[[str | None], dict[str, Any]] | None) -> tuple[str | None, Any]:
        """The statements of ``store_logs`` inside the caller's transaction."""
        body, target = self.body, self.target
        if target.project_name is not None:
            target.project_id = self.store.ensure_project(db, target.project_name)
        if target.new_config is not None and not self.store.config_stored(target.new_config[0]):
            config_id, params, name, description = target.new_config
            self.store.ensure_config(db, target.project_id, params, name, description)
        session_id = body.session_id
        if body.session_reference_id and not session_id:
            session_id = self.store.session_for_reference(db, body.session_reference_id)
        # per sample: in an experiment each config renders its own template
        logs = [PendingLog(self.log_ids[i], i, target.sample_configs[i], *outcomes[i], self._messages_for(i))
                for i in sorted(outcomes)]
        self.store.write_logs(db, project_id=target.project_id, endpoint=self.endpoint, logs=logs,
                              inputs=body.inputs, messages=self._messages_for(0), metadata=body.metadata,
                              source=body.source, usage=usage, session_id=session_id,
                              parent_id=body.parent_id, save=body.save, experiment_id=target.experiment_id)
        response = respond(session_id) if respond is not None else None
        if response is not None and self.idempotency is not None and body.save:
            # encoded once, for the stored record and the reply (``response_json``)
            self.response_json = json_bytes(response)
            self.store.remember_call(db, *self.idempotency,
                                     response if self.response_json is None else self.response_json.decode())
        return session_id, response

    @contextmanager
    def _failure_logged(self) -> Iterator[None]:
        """A failure before any answer: every sample is logged with it, then it answers the request
        (a provider error as its §8 object, anything else as our 500)."""
        try:
            yield
        except ProviderError as exc:
            self._fail(exc)
            raise
        except Exception as exc:  # a bug: still a logged failed call
            self._fail(internal_error(exc))
            raise

    def _fail(self, exc: ProviderError, partial: dict[int, str] | None = None) -> None:
        self.store_logs(*self._failed(exc, partial))

    def _failed(self, exc: ProviderError, partial: dict[int, str] | None = None) -> tuple[Any, None, None]:
        """What ``store_logs`` stores for a failed call: every sample with the error (and its partial text)."""
        error = exc.detail()
        return {i: ((partial or {}).get(i), None, error) for i in range(self.body.num_samples)}, None, None

    async def complete(self, writer: GroupWriter, limiter: Any) -> dict[str, Any]:
        """A call without streaming, on the event loop: providers, then the logs, then the response body.

        A provider that can wait without a thread (``complete_async``: the mock's latency) is
        awaited; any other runs on a thread of ``limiter``. The logs go through the group ``writer``.
        A failure before any answer is logged for every sample, then raised (as ``_failure_logged``).
        """
        try:
            answers = [await self._answer(group, limiter) for group in self.groups]
        except ProviderError as exc:
            await self.store_logs_async(writer, *self._failed(exc))
            raise
        except Exception as exc:  # a bug: still a logged failed call
            await self.store_logs_async(writer, *self._failed(internal_error(exc)))
            raise
        return (await self.store_logs_async(writer, *self._completed(answers)))[1]

    async def _answer(self, group: Group, limiter: Any) -> ProviderResult:
        provider, call = self._provider(group), provider_call(group, self.body)
        complete_async = getattr(provider, "complete_async", None)
        if complete_async is not None:
            return await complete_async(call)
        return await anyio.to_thread.run_sync(provider.complete, call, limiter=limiter)

    def _completed(self, answers: list[ProviderResult]) -> tuple[Any, dict[str, int] | None, Callable[[str | None], Any]]:
        """``store_logs``' arguments for the groups' answers (in ``self.groups`` order)."""
        results: dict[int, Generation] = {}
        responses: list[Any] = []
        request: dict[str, Any] | None = None
        for group, result in zip(self.groups, answers):
            for generation, index in zip(result.generations, group.indices):
                results[index] = generation
            responses.extend(result.provider_responses)
            request = request or result.provider_request
        usage = _usage([(result.prompt_tokens, result.generation_tokens) for result in answers])
        outcomes = {i: (g.text, g.finish_reason, None) for i, g in results.items()}

        def respond(session_id: str | None) -> dict[str, Any]:
            data = [self._entry(i, g.text, g.finish_reason, g.tool_calls) for i, g in sorted(results.items())]
            return envelope(self.body, self.target.project_id, session_id, data, usage, request, responses)

        return outcomes, usage, respond

    def _entry(self, index: int, text: str, finish_reason: str | None,
               tool_calls: list[dict[str, Any]] | None) -> dict[str, Any]:
        """``data[index]`` of a completed call (also what a completed stream stores for replays)."""
        return data_entry(log_id=self.log_ids[index], index=index, text=text, finish_reason=finish_reason,
                          config_id=self.target.sample_configs[index], tool_calls=tool_calls, inputs=self.inputs,
                          messages=self._messages_for(index), echo_messages=self._echoes(index))

    def _echoes(self, index: int) -> bool:
        """Whether ``data[index]`` carries ``messages``: only the first sample of each config does.

        Every sample of one config was sent the same messages, so repeating them per sample only
        multiplied the response (1 MB of messages x 100 samples was 100 MB). In an experiment each
        config renders its own template, so each config's first sample carries its messages; the
        logs (``GET /logs``) keep every sample's messages.
        """
        return any(index == group.indices[0] for group in self.groups)

    # -- streaming (spec §7) -------------------------------------------------------------------
    def _deltas(self) -> Iterator[StreamDelta | StreamUsage]:
        """Deltas of every group with sample indices mapped back to the call's indices."""
        for group in self.groups:
            for item in self._provider(group).stream(provider_call(group, self.body)):
                if isinstance(item, StreamDelta):
                    item.index = group.indices[item.index]
                yield item

    def stream_events(self) -> Iterator[dict[str, Any]]:
        """Events as dicts: deltas as they come, each sample's final event held until usage is known.

        The first provider item is pulled before this returns an iterator, so a provider failure
        before any output is an ordinary HTTP error rather than an event. The iterator may be
        closed early; it then stops without any I/O (pitfall 18): the caller says what happened
        by calling ``abandon`` or ``fail_stream`` itself, on a thread of its choosing.
        """
        source = self._deltas()
        with self._failure_logged():
            first = next(source, None)
        return self._events(first, source)

    def _events(self, first: Any, source: Iterator[Any]) -> Iterator[dict[str, Any]]:
        finals: dict[int, StreamDelta] = {}
        counts: list[tuple[int | None, int | None]] = []
        responses: list[Any] = []
        request: dict[str, Any] | None = None
        try:
            for item in itertools.chain([first] if first is not None else [], source):
                if isinstance(item, StreamUsage):
                    counts.append((item.prompt_tokens, item.generation_tokens))
                    responses.extend(item.provider_responses)
                    request = request or item.provider_request
                    continue
                self.streamed[item.index] = self.streamed.get(item.index, "") + item.text
                if item.finish_reason is not None:
                    finals[item.index] = item
                if item.text or item.finish_reason is None:
                    yield self._event(item.index, item.text, None, None, None)
            usage = _usage(counts)
            outcomes = {i: (self.streamed.get(i, ""), finals[i].finish_reason if i in finals else "stop", None)
                        for i in range(self.body.num_samples)}

            def respond(session_id: str | None) -> dict[str, Any]:  # the call as a plain response, for replays
                data = [self._entry(i, outcomes[i][0] or "", outcomes[i][1],
                                    finals[i].tool_calls if i in finals else None) for i in sorted(outcomes)]
                return envelope(self.body, self.target.project_id, session_id, data, usage, request, responses)

            session_id = self.store_logs(outcomes, usage, respond if self.idempotency else None)[0]
        except Exception as exc:  # a provider error, or a bug: the spec's error event and a log, never a cut stream
            yield self.fail_stream(exc)
            return
        for index in range(self.body.num_samples):
            final = finals.get(index)
            event = self._event(index, "", outcomes[index][1], self.streamed.get(index, ""),
                                final.tool_calls if final else None)
            event.update(usage=usage, session_id=session_id, provider_request=request, provider_responses=responses)
            yield event

    def fail_stream(self, exc: Exception) -> dict[str, Any]:
        """A stream that broke (provider error, or any exception while streaming): every sample is
        logged with the error and the text streamed so far, unless the logs are stored already;
        returns the decisions table's error event ``{"detail": {…§8 object…}}``."""
        error = exc if isinstance(exc, ProviderError) else internal_error(exc)
        if not self.stored:
            try:
                self._fail(error, self.streamed)
            except Exception:  # the store itself failed: the client still gets the error event
                log.exception("could not log the failed stream of a %s call", self.endpoint)
        return {"detail": error.detail()}

    def abandon(self) -> None:
        """The client left before the stream ended: every sample is logged as ``client_closed``
        (status 499) with the text streamed so far — unless the logs were stored before it left."""
        if not self.stored:
            self._fail(ProviderError("the client closed the stream", status=499, type="client_closed"),
                       self.streamed)

    def _event(self, index: int, delta: str, finish_reason: str | None, full_text: str | None,
               tool_calls: list[dict[str, Any]] | None) -> dict[str, Any]:
        entry = data_entry(log_id=self.log_ids[index], index=index, text=delta, finish_reason=finish_reason,
                           config_id=self.target.sample_configs[index], tool_calls=tool_calls,
                           inputs=self.inputs, messages=None)
        entry["output"] = delta  # spec §7: deltas are not stripped, consumers concatenate them
        entry["output_message"]["content"] = full_text  # the whole text only on the final event
        session_id = self.body.session_id or (self.store.session_id_for(self.body.session_reference_id)
                                              if self.body.session_reference_id else None)
        return envelope(self.body, self.target.project_id, session_id, [entry], None, None, [])


def _usage(counts: list[tuple[int | None, int | None]]) -> dict[str, int] | None:
    """The call's usage: the providers' counts summed over its groups; null (spec §6 allows it)
    when any count is unknown, because a partial sum would read as the whole."""
    if any(prompt is None or generated is None for prompt, generated in counts):
        return None
    return usage_dict(sum(p for p, _ in counts), sum(g for _, g in counts))  # type: ignore[misc]


def json_bytes(body: Any) -> bytes | None:
    """``body`` as ``JSONResponse`` renders it (the same bytes); None if it cannot be (a non-finite
    number or a lone surrogate from a provider), so that ``JSONResponse`` raises as it always did."""
    try:
        return json.dumps(body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return None


def internal_error(exc: BaseException) -> ProviderError:
    """An unexpected exception as the §8 object (500, origin Humanloop); its text is not shown, as it
    may hold request data, and goes to the server log instead."""
    log.error("unexpected %s during a chat call", type(exc).__name__, exc_info=exc)
    return ProviderError("internal server error", status=500, type="internal_error", origin="Humanloop")
