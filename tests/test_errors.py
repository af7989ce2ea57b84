"""Error messages: one line, body -> readable text, redaction, rendering switch."""
from __future__ import annotations

from hl_notebook import errors
from hl_notebook.config import HLSettings
from hl_notebook.secrets import Secret, provider_keys_from_env, redact


def test_validation_body_becomes_first_item_plus_count():
    body = {"detail": [{"loc": ["body", "model_config", "model"], "msg": "Field required", "type": "missing"},
                       {"loc": ["body", "messages"], "msg": "Field required", "type": "missing"}]}
    error = errors.error_for_status(422, "/chat", body)
    assert isinstance(error, errors.HLValidationError)
    assert str(error) == "POST /chat returned 422: body.model_config.model: Field required (+1 more)"


def test_provider_object_and_status_classes():
    body = {"detail": {"type": "rate_limit_error", "message": "slow down", "code": 429, "origin": "OpenAI"}}
    error = errors.error_for_status(429, "/chat", body, retry_after=2)
    assert isinstance(error, errors.HLRateLimitError) and error.retry_after == 2
    assert str(error) == "POST /chat returned 429: OpenAI: slow down"
    assert isinstance(errors.error_for_status(503, "/chat", {"detail": "x"}), errors.HLServerError)
    assert isinstance(errors.error_for_status(404, "/chat", {"detail": "x"}), errors.HLNotFoundError)
    assert isinstance(errors.error_for_status(403, "/chat", {"detail": "x"}), errors.HLAuthError)


def test_messages_are_one_line_capped_and_redacted(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "canary-provider-key-123")
    provider_keys_from_env()
    secret = Secret("canary-hl-key-456")
    error = errors.HLError("line one\nline two canary-provider-key-123 canary-hl-key-456 " + "x" * 400)
    text = str(error)
    assert "\n" not in text and len(text) <= errors.MAX_MESSAGE
    assert "canary" not in text
    assert repr(secret) == "Secret('***')" and str(secret) == "Secret('***')"
    assert redact({"provider_api_keys": {"openai": "k"}, "X-API-KEY": "v", "ok": "canary-hl-key-456"}) == {
        "provider_api_keys": "***", "X-API-KEY": "***", "ok": "***"}


def test_render_traceback_is_one_line_unless_switched_on():
    error = errors.CellSyntaxError("bad", 3)
    assert error._render_traceback_() == ["CellSyntaxError: line 3: bad"]
    HLSettings.instance().show_traceback = True
    try:
        raise error
    except errors.CellSyntaxError as caught:
        lines = caught._render_traceback_()
    assert lines[0].startswith("Traceback") and lines[-1] == "hl_notebook.errors.CellSyntaxError: line 3: bad"
