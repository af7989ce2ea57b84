"""Cell body -> chat messages: role blocks (``user:`` …) or a JSON list of message objects.

Why: the cell is the prompt; it is parsed once, before anything is sent, and every malformed body
is reported with the line it is on.
"""
from __future__ import annotations

import json
import re
from typing import Any

from .errors import CellSyntaxError, did_you_mean

ROLES = ("system", "user", "assistant", "tool")
_ROLE_LINE = re.compile(r"^(system|user|assistant|tool)\s*:(.*)$", re.IGNORECASE)
_LONE_WORD_LINE = re.compile(r"^\s*([A-Za-z_]+)\s*:\s*$")


def parse_cell(body: str) -> list[dict[str, Any]]:
    """Messages in cell order.

    Role blocks: a line ``system:``, ``user:``, ``assistant:`` or ``tool:`` (text may follow the
    colon) starts a message; following lines continue it, blank lines kept inside. Text before the
    first role line is a user message. A line starting with ``\\`` is taken literally (``\\user:``).
    A body whose first character is ``[`` is read as a JSON list of message objects.

    Lines end at ``\\n`` or ``\\r\\n`` only: other characters ``str.splitlines`` breaks at (``\\u2028``,
    ``\\x0b``, ``\\x85``, a lone ``\\r`` …) are text. A lone surrogate (cell text that is not valid
    Unicode) is rejected here, with its line, because it could never be sent (pitfall 17).

    Raises:
        CellSyntaxError: empty body, empty message, unknown role, invalid or too deeply nested JSON,
            or a lone surrogate; with its line.
    """
    if not body.strip():
        raise CellSyntaxError("the cell has no messages: write 'user:' and your prompt below the magic line")
    _check_encodable(body)
    if body.lstrip().startswith("["):
        return _parse_json(body)
    return _parse_blocks(body)


def _parse_blocks(body: str) -> list[dict[str, Any]]:
    messages: list[tuple[int, str, list[str]]] = []  # (line number, role, lines)
    for number, line in enumerate(_lines(body), start=1):
        match = _ROLE_LINE.match(line)
        if match:
            first = match.group(2).strip(" \t")
            messages.append((number, match.group(1).lower(), [first] if first else []))
            continue
        lone = _LONE_WORD_LINE.match(line)
        if lone and lone.group(1).lower() not in ROLES:
            hint = did_you_mean(lone.group(1).lower(), ROLES)
            if hint:
                raise CellSyntaxError(f"unknown role {lone.group(1)!r}{hint}", number)
        if line.startswith("\\"):
            line = line[1:]
        if not messages:
            if not line.strip():
                continue
            messages.append((number, "user", []))
        messages[-1][2].append(line)
    if not messages:  # e.g. only escaped blank lines
        raise CellSyntaxError("the cell has no messages: write 'user:' and your prompt below the magic line")
    result = []
    for number, role, lines in messages:
        content = "\n".join(lines).strip("\n")
        if not content.strip():
            raise CellSyntaxError(f"the {role} message is empty", number)
        result.append({"role": role, "content": content})
    return result


def _lines(body: str) -> list[str]:
    """The cell's lines, split at ``\\n`` with a ``\\r`` before it dropped (not ``str.splitlines``)."""
    lines = [line.removesuffix("\r") for line in body.split("\n")]
    return lines[:-1] if len(lines) > 1 and not lines[-1] else lines


def _check_encodable(body: str) -> None:
    try:
        body.encode("utf-8")
    except UnicodeEncodeError as exc:
        line = body.count("\n", 0, exc.start) + 1
        raise CellSyntaxError(f"{body[exc.start]!r} is a lone surrogate, not valid UTF-8; remove it", line) from None


def _parse_json(body: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise CellSyntaxError(f"invalid JSON: {exc.msg}", exc.lineno) from None
    except RecursionError:
        raise CellSyntaxError("invalid JSON: nested too deeply", 1) from None
    if not isinstance(data, list) or not data:
        raise CellSyntaxError("a JSON body must be a non-empty list of message objects", 1)
    messages = []
    for position, item in enumerate(data):
        where = f"message {position + 1}"
        if not isinstance(item, dict):
            raise CellSyntaxError(f"{where} is not an object")
        role = item.get("role")
        if role not in ROLES:
            hint = did_you_mean(str(role), ROLES)
            raise CellSyntaxError(f"{where} has role {role!r}; expected one of {', '.join(ROLES)}{hint}")
        content = item.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise CellSyntaxError(f"{where}: content must be a string, a list of parts or null")
        messages.append(item)
    return messages


def last_user_text(messages: list[dict[str, Any]]) -> str | None:
    """The text of the last user message (the frame's ``prompt`` column)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
            return content
    return None
