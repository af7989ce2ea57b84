"""The ``{{var}}`` rules of chat templates (spec §5.1), shared by the client and the server.

Why: the notebook checks for missing variables before sending and the server renders what it
receives; importing one set of rules makes both sides agree by construction. This module imports
nothing heavy, so planning a cell never loads the server.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable

# spec §5.1: one optional space inside the braces; names of letters, digits, _ . [ ]
VARIABLE = re.compile(r"\{\{ ?([A-Za-z0-9_.\[\]]+) ?\}\}")


def text_parts(message: dict[str, Any]) -> Iterable[str]:
    """The templatable text of a message: string content or ``text`` parts (images untouched)."""
    content = message.get("content")
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                yield part["text"]


def variables(messages: Iterable[dict[str, Any]]) -> list[str]:
    """Names used in the messages, in first-seen order."""
    seen: dict[str, None] = {}
    for message in messages:
        for text in text_parts(message):
            for name in VARIABLE.findall(text):
                seen.setdefault(name, None)
    return list(seen)


def missing_inputs(messages: Iterable[dict[str, Any]], inputs: dict[str, Any]) -> list[str]:
    return [name for name in variables(messages) if name not in inputs]


def _stringify(value: Any) -> str:
    # spec §5.1: non-string input values are stringified
    return value if isinstance(value, str) else json.dumps(value)


def render_text(text: str, inputs: dict[str, Any]) -> str:
    return VARIABLE.sub(lambda m: _stringify(inputs[m.group(1)]) if m.group(1) in inputs else m.group(0), text)


def render_message(message: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    rendered = dict(message)
    if isinstance(content, str):
        rendered["content"] = render_text(content, inputs)
    elif isinstance(content, list):
        rendered["content"] = [
            {**part, "text": render_text(part["text"], inputs)}
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
    return rendered


def render(messages: Iterable[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """Every message rendered leniently (variables without a value are left as written)."""
    return [render_message(m, inputs) for m in messages]
