"""The user-facing error tree and its one-line rendering in notebooks (conventions §2.1, §2.2).

Why: a notebook user needs one line saying what failed, why and what to do; IPython prints exactly
what ``_render_traceback_`` returns, and ``str(exc)`` is saved in the ``.ipynb``, so messages are
redacted and capped here, once, for every error.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable

from .secrets import redact

MAX_MESSAGE = 300


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """Collapse whitespace, mask secrets and cap the length of a message."""
    text = " ".join(redact(str(text)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _render(error: BaseException, name: str) -> list[str]:
    """One line, or the full traceback when ``HLSettings.show_traceback`` is on (pitfall 1)."""
    from .config import HLSettings

    if HLSettings.instance().show_traceback:
        import traceback
        return [line.rstrip("\n") for line in traceback.format_exception(error)]
    return [f"{name}: {error}"]


class HLError(Exception):
    """Base of every error a user can trigger. Bugs stay ordinary exceptions."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))

    def _render_traceback_(self) -> list[str]:
        return _render(self, type(self).__name__)


class HLInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: still a KeyboardInterrupt, rendered as one line with what was kept."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))

    def _render_traceback_(self) -> list[str]:
        return _render(self, "KeyboardInterrupt")


class HLCancelled(HLError):
    """A call of an interrupted run that never finished: its row says so, and ``retry(df)`` runs it."""


class HLInternalError(HLError):
    """An unexpected exception inside one call (a bug): kept as that call's error row, so a sweep
    never ends early; the original exception is its ``__cause__`` (shown with show_traceback)."""


class HLUsageError(HLError, ValueError):
    """A bad or unknown option, or options that make no sense together."""


class CellSyntaxError(HLUsageError):
    """A malformed cell body; ``line`` is 1-based within the cell."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


class MissingInputError(HLUsageError):
    """Template variables without values; nothing was sent."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        listed = ", ".join(names)
        super().__init__(f"no value for template variable{'s' if len(names) > 1 else ''} {listed}: "
                         f"pass --inputs VAR or define {'them' if len(names) > 1 else 'it'} in the notebook")


class HLConfigError(HLError):
    """No API key, a bad base URL, or a missing optional dependency."""


class HLAPIError(HLError):
    """The server answered with an error status."""

    def __init__(self, message: str, *, status_code: int, endpoint: str, body: Any = None,
                 retry_after: float | None = None) -> None:
        self.status_code = status_code
        self.endpoint = endpoint
        self.body = redact(body)
        self.retry_after = retry_after
        super().__init__(message)


class HLValidationError(HLAPIError):
    """422 or 400: the server rejected the request body."""


class HLAuthError(HLAPIError):
    """401 or 403: missing or wrong key (Humanloop's or the provider's)."""


class HLNotFoundError(HLAPIError):
    """404: unknown project, config, experiment, or nothing deployed."""


class HLRateLimitError(HLAPIError):
    """429 after the retries ran out."""


class HLServerError(HLAPIError):
    """5xx: the server or the provider behind it failed."""


class HLConnectionError(HLError):
    """The server could not be reached (refused, reset, DNS)."""


class HLTimeoutError(HLConnectionError, TimeoutError):
    """No answer within the read timeout, or no complete answer within the call deadline."""


class HLStreamError(HLError):
    """The stream broke mid-way; ``partial`` keeps the text received before the break."""

    def __init__(self, message: str, partial: str = "") -> None:
        self.partial = partial
        super().__init__(message)


STATUS_ERRORS: dict[int, type[HLAPIError]] = {400: HLValidationError, 422: HLValidationError, 401: HLAuthError,
                                              403: HLAuthError, 404: HLNotFoundError, 429: HLRateLimitError}


def describe_body(body: Any) -> str:
    """The readable part of a v4 error body (spec §8): 422 items, a provider object, or a string."""
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list) and detail:
        first = detail[0] if isinstance(detail[0], dict) else {"msg": str(detail[0])}
        loc = ".".join(str(part) for part in first.get("loc", []))
        more = f" (+{len(detail) - 1} more)" if len(detail) > 1 else ""
        return f"{loc}: {first.get('msg', '')}{more}" if loc else f"{first.get('msg', '')}{more}"
    if isinstance(detail, dict):
        origin = detail.get("origin") or "provider"
        return f"{origin}: {detail.get('message', detail.get('type', 'error'))}"
    if detail is None:
        return "no details"
    return str(detail)


def _missing_key_hint(body: Any) -> str | None:
    """A provider key the server did not get, said in the notebook's terms: where to set it, and
    the offline alternative (the server's own wording speaks of the server's environment)."""
    from .secrets import PROVIDER_KEY_ENV

    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, dict) or detail.get("type") != "authentication_error":
        return None
    origin = str(detail.get("origin") or "")
    variable = PROVIDER_KEY_ENV.get(origin.lower())
    if variable is None or not str(detail.get("message", "")).startswith("no "):
        return None
    return (f"{origin}: no {origin} API key; set {variable} in the notebook's environment "
            f"(%env {variable}=…) or use --provider mock for offline answers")


def error_for_status(status: int, endpoint: str, body: Any, retry_after: float | None = None,
                     method: str = "POST") -> HLAPIError:
    cls = STATUS_ERRORS.get(status, HLServerError if status >= 500 else HLAPIError)
    message = f"{method} {endpoint} returned {status}: {_missing_key_hint(body) or describe_body(body)}"
    return cls(message, status_code=status, endpoint=endpoint, body=body, retry_after=retry_after)
