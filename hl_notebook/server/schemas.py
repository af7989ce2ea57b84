"""Pydantic request models mirroring the v4 wire schemas field for field (spec §2–§5, §9).

Why: FastAPI validates bodies and publishes the OpenAPI document from these; unknown fields are
ignored as the v4 schemas allow. Responses are built as plain dicts in ``bodies.py`` and only
described here, so that validation cost stays off the hot path.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["user", "assistant", "system", "tool"]
ModelProvider = Literal["openai", "openai_azure", "ai21", "mock", "anthropic", "langchain", "cohere",
                        "replicate", "google", "groq"]


class WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, protected_namespaces=())


class FunctionTool(WireModel):
    name: str
    arguments: str | None = None


class ToolCall(WireModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionTool


class ChatMessage(WireModel):
    """spec §4. A role without content is valid (the SDK examples send exactly that)."""

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call: FunctionTool | None = None


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
    other: dict[str, Any] = Field(default_factory=dict)
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
