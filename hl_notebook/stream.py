"""Byte-level SSE reading for streamed chat responses (spec §7), and the shape check of a
ChatResponse and of each stream event (spec §6, §7).

Why: the SDKs keep only ``data:`` lines and skip payloads that are not JSON (``[DONE]``); lines
are cut from raw bytes by ``wire.sse_data`` (pitfall 8), shared with the server. Well-formed JSON
of the wrong shape is caught here, once, so it is one typed error at the client instead of a
TypeError in the assembler or the frame later.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

from .errors import HLStreamError
from .wire import sse_data

# ChatDataResponse fields the notebook reads -> the JSON types they may have (None: null)
_ENTRY_FIELDS: dict[str, tuple[type, ...]] = {
    "output": (str,), "raw_output": (str,), "finish_reason": (str,), "id": (str,), "model_config_id": (str,),
    "output_message": (dict,),
}
_KINDS = {str: "a string", dict: "an object"}


def response_problem(value: Any, *, event: bool = False) -> str | None:
    """What makes ``value`` unusable as a ChatResponse (or, with ``event``, a stream event), or None.

    Only the fields the notebook reads are checked, and extra fields are allowed: ``data`` a list of
    objects (a stream event may have none), each with an integer ``index``, string-or-null
    ``output``/``raw_output``/``finish_reason``/``id``/``model_config_id`` and an object-or-null
    ``output_message``; ``usage`` an object of integers or null, or null.
    """
    if not isinstance(value, dict):
        return "the body is not an object"
    data = value.get("data")
    if data is None and not event:
        return "data is missing"
    if data is not None and not isinstance(data, list):
        return "data is not a list"
    for position, entry in enumerate(data or []):
        problem = _entry_problem(entry)
        if problem:
            return f"data[{position}]{problem}"
    usage = value.get("usage")
    if usage is not None and not isinstance(usage, dict):
        return "usage is not an object or null"
    for name, count in (usage or {}).items():
        if count is not None and not _is_int(count):
            return f"usage.{name} is not an integer or null"
    return None


def _entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return " is not an object"
    if "index" in entry and not _is_int(entry["index"]):
        return ".index is not an integer"
    for name, kinds in _ENTRY_FIELDS.items():
        if entry.get(name) is not None and not isinstance(entry[name], kinds):
            return f".{name} is not {_KINDS[kinds[0]]} or null"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def sse_events(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """JSON events; non-JSON payloads (such as ``[DONE]``) are skipped as the SDKs do."""
    for payload in sse_data(chunks):
        try:
            event = json.loads(payload.decode("utf-8", "replace"))  # as the SSE standard decodes
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            yield event


class StreamAssembler:
    """Rebuilds a non-streaming ChatResponse from stream events, sample by sample.

    Keeps every delta received, so a stream that breaks mid-way still has its partial text.
    """

    def __init__(self) -> None:
        self.texts: dict[int, str] = {}
        self.finals: dict[int, dict[str, Any]] = {}
        self.first: dict[int, dict[str, Any]] = {}
        self.envelope: dict[str, Any] = {}

    def add(self, event: dict[str, Any]) -> tuple[int, str]:
        """Record one event; returns (sample index, text delta). An event without a sample adds nothing.

        Raises:
            HLStreamError: the event is not shaped like a ChatResponse; nothing of it is recorded.
        """
        problem = response_problem(event, event=True)
        if problem:
            raise HLStreamError(f"a malformed stream event: {problem}; partial output kept", self.partial_text())
        if not event.get("data"):
            return 0, ""
        entry = event["data"][0]
        index = entry.get("index", 0)
        delta = entry.get("output") or ""
        self.texts[index] = self.texts.get(index, "") + delta
        self.first.setdefault(index, entry)
        if entry.get("finish_reason") is not None:
            self.finals[index] = entry
            self.envelope = {k: v for k, v in event.items() if k != "data"}
        elif not self.envelope:
            self.envelope = {k: v for k, v in event.items() if k != "data"}
        return index, delta

    def response(self) -> dict[str, Any]:
        """The assembled response; samples without a final event keep their partial text."""
        data = []
        for index in sorted(self.texts):
            entry = dict(self.finals.get(index) or self.first[index])
            text = self.texts[index]
            message = dict(entry.get("output_message") or {"role": "assistant"})
            message["content"] = text
            entry.update(output=text.strip(), raw_output=text, output_message=message,
                         finish_reason=self.finals.get(index, {}).get("finish_reason"))
            data.append(entry)
        return {**self.envelope, "data": data, "provider_responses": self.envelope.get("provider_responses", [])}

    def partial_text(self) -> str:
        return "\n".join(self.texts[i] for i in sorted(self.texts))
