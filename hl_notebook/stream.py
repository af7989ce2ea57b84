"""Byte-level SSE reading for streamed chat responses (spec §7).

Why: the SDKs keep only ``data:`` lines and skip payloads that are not JSON (``[DONE]``); lines
are cut from raw bytes by ``wire.sse_data`` (pitfall 8), shared with the server.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

from .wire import sse_data


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
        """Record one event; returns (sample index, text delta)."""
        entry = (event.get("data") or [{}])[0]
        index = int(entry.get("index", 0))
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
