"""Pydantic request models mirroring the v4 wire schemas field for field (spec §2–§5, §9).

Why: FastAPI validates bodies and publishes the OpenAPI document from these; unknown fields are
ignored as the v4 schemas allow. Responses are built as plain dicts in ``bodies.py`` and only
described here, so that validation cost stays off the hot path.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Callable, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator
from typing_extensions import TypedDict

from .providers.mock import MAX_MOCK_MS, mock_ms
from .providers.upstream import MAX_TIMEOUT, base_url, timeout_seconds
from .store import MULTI_VALUED_FEEDBACK

Role = Literal["user", "assistant", "system", "tool"]
# the v4 wire's providers (spec §5), plus ours: llamacpp runs a GGUF model in the server (local extra)
ModelProvider = Literal["openai", "openai_azure", "ai21", "mock", "anthropic", "langchain", "cohere",
                        "replicate", "google", "groq", "llamacpp"]


class WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, protected_namespaces=())


class FunctionTool(WireModel):
    name: str
    arguments: str | None = None


class ToolCall(WireModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionTool


def _check_part(index: int, part: dict[str, Any]) -> None:
    """spec §4 content parts: ``text`` parts carry a string, ``image_url`` parts an object with a
    string ``url``; other types are passed through to the provider untouched."""
    kind = part.get("type")
    if kind == "text" and not isinstance(part.get("text"), str):
        raise ValueError(f"content part {index}: a text part needs a string text")
    if kind == "image_url":
        image = part.get("image_url")
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            raise ValueError(f"content part {index}: an image_url part needs image_url.url, a string")


class ChatMessage(WireModel):
    """spec §4. A role without content is valid (the SDK examples send exactly that)."""

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call: FunctionTool | None = None

    @field_validator("content")
    @classmethod
    def _parts(cls, content: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
        if isinstance(content, list):
            for index, part in enumerate(content):
                _check_part(index, part)
        return content


class ResponseFormat(WireModel):
    type: Literal["json_object"]


class ToolRequest(WireModel):
    """An inline or linked tool (spec §5). Only ``name``/``id`` matter to our providers."""

    name: str | None = None
    id: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    source: str | None = None
    source_code: str | None = None
    other: dict[str, Any] | None = None
    preset_name: str | None = None


def _knob(check: Callable[[Any], Any], schema: dict[str, Any]) -> Any:
    """An ``other`` key we read ourselves: validated by ``check`` but stored exactly as sent, so a
    config's parameters (and so its id) do not change with validation."""
    def validate(value: Any) -> Any:
        check(value)
        return value
    return Annotated[Any, AfterValidator(validate), WithJsonSchema({"anyOf": [schema, {"type": "null"}]})]


MockMs = _knob(mock_ms, {"type": "number", "minimum": 0, "maximum": MAX_MOCK_MS})


class OtherParams(TypedDict, total=False):
    """``model_config.other`` (spec §5: extra provider parameters). Every key is passed through to
    pass-through providers except the ones below, which this server reads itself."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]

    mock_latency_ms: MockMs  # type: ignore[valid-type]
    mock_token_delay_ms: MockMs  # type: ignore[valid-type]
    timeout: _knob(timeout_seconds,  # type: ignore[valid-type]
                   {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT})
    base_url: _knob(base_url, {"type": "string", "format": "uri"})  # type: ignore[valid-type]


class ModelConfigChatRequest(WireModel):
    """spec §5 with its defaults."""

    model: str
    name: str | None = None
    description: str | None = None
    provider: ModelProvider = "openai"
    max_tokens: int = -1
    temperature: float = 1
    top_p: float = 1
    stop: str | list[str] | None = None
    presence_penalty: float = 0
    frequency_penalty: float = 0
    other: OtherParams = Field(default_factory=dict)  # type: ignore[assignment]
    seed: int | None = None
    response_format: ResponseFormat | None = None
    endpoint: Literal["complete", "chat", "edit"] = "chat"
    chat_template: list[ChatMessage] | None = None
    tools: list[ToolRequest] | None = None

    def params(self) -> dict[str, Any]:
        """The identifying parameters (everything but name and description), defaults applied."""
        fields = set(ModelConfigChatRequest.model_fields) - {"name", "description"}
        return self.model_dump(mode="json", include=fields)


class ProviderApiKeys(WireModel):
    openai: str | None = None
    ai21: str | None = None
    mock: str | None = None
    anthropic: str | None = None
    cohere: str | None = None
    openai_azure: str | None = None
    openai_azure_endpoint: str | None = None


class ChatRequestBase(WireModel):
    """Fields common to the four chat bodies (spec §2)."""

    messages: list[ChatMessage]
    project: str | None = None
    project_id: str | None = None
    session_id: str | None = None
    session_reference_id: str | None = None
    parent_id: str | None = None
    parent_reference_id: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None
    metadata: dict[str, Any] | None = None
    save: bool = True
    source_datapoint_id: str | None = None
    provider_api_keys: ProviderApiKeys | None = None
    num_samples: int = Field(1, ge=1, le=100)
    stream: bool = False
    user: str | None = None
    seed: int | None = None
    return_inputs: bool = True
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    tool_call: str | dict[str, str] | None = None
    response_format: ResponseFormat | None = None


class ChatRequest(ChatRequestBase):
    # "model_config" is reserved by pydantic, hence the alias; only the wire name is accepted
    model_config = ConfigDict(extra="ignore", populate_by_name=False, protected_namespaces=())

    config: ModelConfigChatRequest = Field(alias="model_config")


class ChatDeployedRequest(ChatRequestBase):
    environment: str | None = None


class ChatExperimentRequest(ChatRequestBase):
    experiment_id: str


class ChatModelConfigRequest(ChatRequestBase):
    model_config_id: str


# -- management bodies (spec §9) -----------------------------------------------------------
class ModelConfigRegisterRequest(ModelConfigChatRequest):
    project: str | None = None
    project_id: str | None = None
    experiment: str | None = None


class ProjectCreateRequest(WireModel):
    name: str = Field(min_length=1)
    feedback_types: list[Any] | None = None
    directory_id: str | None = None


class PositiveLabel(WireModel):
    type: str
    value: str


class ExperimentCreateRequest(WireModel):
    name: str = Field(min_length=1)
    positive_labels: list[PositiveLabel]
    config_ids: list[str] = Field(default_factory=list)
    set_active: bool = False


class EnvironmentRequest(WireModel):
    id: str | None = None
    name: str | None = None


class DeployRequest(WireModel):
    config_id: str | None = None
    experiment_id: str | None = None
    environments: list[EnvironmentRequest] | None = None


class FeedbackRequest(WireModel):
    """One item of ``POST /feedback`` (the SDK's FeedbackRequest). ``type`` is ``rating``,
    ``action``, ``issue``, ``correction``, ``comment`` or a custom type's name; ``value`` a string.

    Ours: ``data_id`` is required (feedback belongs to a log); ``value`` is required unless
    ``unset`` is true, and even then for the multi-valued types (``action``, ``issue``), whose
    unset removes that one value (the SDK: only rating, correction and comment unset blank).
    """

    type: str = Field(min_length=1, max_length=200)
    value: str | None = None
    data_id: str = Field(min_length=1)
    user: str | None = None
    created_at: datetime | None = None  # naive times are UTC
    unset: bool | None = None

    @field_validator("created_at")
    @classmethod
    def _in_utc(cls, when: datetime | None) -> datetime | None:
        """Stored as UTC: a naive time is taken as UTC; one that leaves the calendar in UTC is refused."""
        if when is None:
            return None
        try:
            return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
        except (OverflowError, ValueError):
            raise ValueError("created_at is out of range once converted to UTC") from None

    def missing_value(self) -> str | None:
        """Why ``value`` is needed but absent (a 422 at ``value``), else None."""
        if self.value is not None or (self.unset and self.type not in MULTI_VALUED_FEEDBACK):
            return None
        return (f"value is required to unset {self.type!r} feedback (it has several values per log)"
                if self.unset else "value is required unless unset is true")

    def timestamp(self) -> float | None:
        return None if self.created_at is None else self.created_at.timestamp()


class FeedbackResponse(WireModel):
    """The SDK's FeedbackResponse: ``POST /feedback`` answers one, or a list for a list."""

    id: str
    type: str
    value: str | float
    data_id: str | None = None
    user: str | None = None
    created_at: datetime | None = None


# -- response descriptions (documentation only; bodies are built in bodies.py) --------------
class Usage(WireModel):
    prompt_tokens: int
    generation_tokens: int
    total_tokens: int


class ToolResult(WireModel):
    id: str
    name: str
    signature: str
    result: str


class ChatDataResponse(WireModel):
    id: str
    index: int
    output: str
    raw_output: str
    model_config_id: str
    output_message: ChatMessage
    inputs: dict[str, Any] | None = None
    finish_reason: str | None = None
    messages: list[ChatMessage] | None = None
    tool_results: list[ToolResult] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call: FunctionTool | None = None


class ChatResponse(WireModel):
    data: list[ChatDataResponse]
    provider_responses: list[Any]
    project_id: str | None = None
    num_samples: int = 1
    logprobs: int | None = None
    suffix: str | None = None
    user: str | None = None
    usage: Usage | None = None
    metadata: dict[str, Any] | None = None
    provider_request: dict[str, Any] | None = None
    session_id: str | None = None
    tool_choice: Any = None


class ValidationError(WireModel):
    """spec §8: exactly ``loc``/``msg``/``type`` (named as in the v4 OpenAPI)."""

    loc: list[str | int]
    msg: str
    type: str


class HTTPValidationError(WireModel):
    """spec §8. Routes with parameters or a body declare their 422 with this model: FastAPI otherwise
    publishes its own ``HTTPValidationError``/``ValidationError`` (with ``input``/``ctx``) under these names."""

    detail: list[ValidationError]


class ProviderErrorDetail(WireModel):
    type: str
    message: str
    code: int
    origin: str


class ErrorBody(WireModel):
    detail: str | ProviderErrorDetail
