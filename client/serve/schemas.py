"""Request bodies of the OpenAI endpoints this server answers, validated by pydantic.

Fields the server cannot honour are refused by name (`unsupported_parameters`) rather than
ignored: a client that asks for log-probabilities or penalties and silently gets none would be
wrong without an error. Unknown fields are refused too, as OpenAI's API does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "MAX_CHOICES",
    "MAX_STOP_SEQUENCES",
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "GenerationRequest",
    "StreamOptions",
    "unsupported_parameters",
]

MAX_CHOICES = 16
MAX_STOP_SEQUENCES = 4


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Strict):
    include_usage: bool = False


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class GenerationRequest(_Strict):
    """What both endpoints share: the model to use and the sampling parameters."""

    model: str
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # Accepted only at their neutral values (checked by `unsupported_parameters`).
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: Any = None

    @field_validator("stop")
    @classmethod
    def _stop_sequences(cls, value: str | list[str] | None) -> str | list[str] | None:
        sequences = [value] if isinstance(value, str) else value or []
        if len(sequences) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences, got {len(sequences)}")
        if any(sequence == "" for sequence in sequences):
            raise ValueError("a stop sequence must not be empty")
        return value

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionRequest(GenerationRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("the prompt list is empty")
        return value


class ChatCompletionRequest(GenerationRequest):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None
    top_logprobs: int | None = None
    parallel_tool_calls: bool | None = None


def unsupported_parameters(request: GenerationRequest) -> list[tuple[str, str]]:
    """`(param, why)` for every parameter set to something this server cannot do."""
    found: list[tuple[str, str]] = []
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(request, name) not in (None, 0, 0.0):
            found.append((name, "penalties are not supported; leave it unset or 0"))
    if request.logit_bias:
        found.append(("logit_bias", "logit_bias is not supported"))
    if request.logprobs not in (None, False, 0):
        found.append(("logprobs", "log-probabilities are not supported"))
    if isinstance(request, CompletionRequest):
        if request.echo:
            found.append(("echo", "echo is not supported"))
        if request.best_of not in (None, 1):
            found.append(("best_of", "best_of is not supported; use n"))
        if request.suffix:
            found.append(("suffix", "suffix (insertion) is not supported"))
    if isinstance(request, ChatCompletionRequest):
        for name in ("tools", "functions", "tool_choice"):
            if getattr(request, name):
                found.append((name, "tool calling is not supported"))
        response_format = request.response_format or {"type": "text"}
        if response_format.get("type") != "text":
            found.append(("response_format", "only the 'text' response format is supported"))
        if request.top_logprobs:
            found.append(("top_logprobs", "log-probabilities are not supported"))
        if request.max_tokens is not None and request.max_completion_tokens is not None:
            found.append(("max_completion_tokens", "give max_tokens or max_completion_tokens"))
    return found
