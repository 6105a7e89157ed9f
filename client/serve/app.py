"""The FastAPI app: OpenAI's `/v1/models`, `/v1/completions` and `/v1/chat/completions`, with
`/healthz` and `/metrics`.

Every completion response, streamed or not, carries `ppatch-patches`: the patches that produced
it, `ns/name@version` in application order, comma-separated, empty for none. A request reads the
served snapshot once, at its start, and runs to the end on that snapshot's patch set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from ppatch.serve.chat import chat_prompt_ids
from ppatch.serve.engine import Delta, Event, Failed, Finished, Job, Sampling
from ppatch.serve.errors import (
    ContextTooLongError,
    InvalidParameterError,
    OpenAIError,
    error_body,
)
from ppatch.serve.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    GenerationRequest,
    unsupported_parameters,
)
from ppatch.serve.served_sets import ServedSet
from ppatch.serve.server import ModelServer

__all__ = ["PATCHES_HEADER", "create_app"]

PATCHES_HEADER = "ppatch-patches"
COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
log = logging.getLogger("ppatch.serve")


@dataclass(frozen=True)
class _Kind:
    """What differs between the two completion endpoints' answers."""

    endpoint: str
    object_name: str
    chunk_name: str
    id_prefix: str
    chat: bool


COMPLETIONS = _Kind("completions", "text_completion", "text_completion", "cmpl-", chat=False)
CHAT = _Kind("chat.completions", "chat.completion", "chat.completion.chunk", "chatcmpl-", chat=True)


def create_app(server: ModelServer, *, manage_server: bool = True) -> FastAPI:
    """The app for `server`; with `manage_server`, the app starts and stops it with itself."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_server:
            server.start()
        try:
            yield
        finally:
            if manage_server:
                server.stop()

    app = FastAPI(title="ppatch serve", lifespan=lifespan)
    _add_error_handlers(app)

    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        snapshot = server.state.current
        return {
            "object": "list",
            "data": [
                {
                    "id": served.model_id,
                    "object": "model",
                    "created": 0,
                    "owned_by": "ppatch",
                    "description": served.description,
                    "patches": [patch for patch in served.header.split(",") if patch],
                    "default": served.model_id == snapshot.default_id,
                }
                for served in snapshot.sets.values()
            ],
        }

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Response:
        return await _complete(
            server, COMPLETIONS, body, lambda served: _completion_prompts(served, body)
        )

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> Response:
        return await _complete(
            server,
            CHAT,
            body,
            lambda served: [chat_prompt_ids(served.patched.tokenizer, body.messages)],
        )

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        snapshot = server.state.current
        upgrader = server.upgrader
        return {
            "status": "ok",
            "model": snapshot.default_id,
            "patches": snapshot.default.header,
            "generation": snapshot.generation,
            "last_swap_error": server.state.last_error,
            "last_upgrade_error": upgrader.last_error if upgrader is not None else None,
        }

    @app.get("/metrics")
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, error: OpenAIError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        param = ".".join(location) or None
        where = f"{param}: " if param else ""
        message = f"{where}{first.get('msg', 'invalid value')}"
        if first.get("type") == "extra_forbidden":
            message = f"Unrecognized request argument supplied: {param}"
        elif first.get("type") == "json_invalid":
            message = "the request body is not valid JSON"
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        body = error_body(message + more, "invalid_request_error", param, "invalid_value")
        return JSONResponse(body, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        body = error_body(str(error.detail), "invalid_request_error", None, None)
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)


async def _complete(
    server: ModelServer,
    kind: _Kind,
    body: GenerationRequest,
    prompts_of: Callable[[ServedSet], list[list[int]]],
) -> Response:
    try:
        snapshot = server.state.current  # read once: the whole request runs on this set
        served = snapshot.lookup(body.model)
        _refuse_unsupported(body)
        prompts = prompts_of(served)
        max_tokens = _max_tokens(server, served, body, prompts, kind)
        job, events = _submit(server, served, body, prompts, max_tokens)
    except OpenAIError as error:
        server.metrics.requests.labels(kind.endpoint, str(error.status_code)).inc()
        return JSONResponse(error.body(), status_code=error.status_code)
    headers = {PATCHES_HEADER: served.header}
    answer = _Answer(kind, body.model, len(job.prompts), _prompt_tokens(prompts))
    if body.stream:
        server.metrics.requests.labels(kind.endpoint, "200").inc()
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _stream(answer, job, events, include_usage),
            media_type="text/event-stream",
            headers=headers,
        )
    try:
        result = await _collect(answer, job, events)
    except _GenerationFailedError as error:
        server.metrics.requests.labels(kind.endpoint, "500").inc()
        body_ = error_body(str(error), "server_error", None, "generation_failed")
        return JSONResponse(body_, status_code=500, headers=headers)
    finally:
        job.cancelled.set()  # a client that left stops its rows
    server.metrics.requests.labels(kind.endpoint, "200").inc()
    return JSONResponse(result, headers=headers)


def _refuse_unsupported(body: GenerationRequest) -> None:
    problems = unsupported_parameters(body)
    if problems:
        param, why = problems[0]
        raise InvalidParameterError(f"{param}: {why}", param=param)


def _completion_prompts(served: ServedSet, body: CompletionRequest) -> list[list[int]]:
    tokenizer = served.patched.tokenizer
    prompt = body.prompt
    vocabulary = len(tokenizer)
    if isinstance(prompt, str):
        return [_encode(tokenizer, prompt)]
    if all(isinstance(item, str) for item in prompt):
        return [_encode(tokenizer, str(item)) for item in prompt]
    token_lists: list[Any] = (
        [prompt] if all(isinstance(item, int) for item in prompt) else list(prompt)
    )
    checked: list[list[int]] = []
    for tokens in token_lists:
        ids = [int(token) for token in tokens]
        if not ids:
            raise InvalidParameterError("prompt: a token list is empty", param="prompt")
        bad = [token for token in ids if not 0 <= token < vocabulary]
        if bad:
            raise InvalidParameterError(
                f"prompt: token id {bad[0]} is outside the vocabulary (0..{vocabulary - 1})",
                param="prompt",
            )
        checked.append(ids)
    return checked


def _encode(tokenizer: Any, text: str) -> list[int]:
    ids = [int(token) for token in tokenizer(text)["input_ids"]]
    if not ids:
        raise InvalidParameterError("prompt: the prompt is empty", param="prompt")
    return ids


def _max_tokens(
    server: ModelServer,
    served: ServedSet,
    body: GenerationRequest,
    prompts: Sequence[Sequence[int]],
    kind: _Kind,
) -> int:
    """The tokens to generate, checked against the context the longest prompt leaves."""
    limit = server.context_length
    virtual = served.patched.num_virtual_tokens
    longest = max(len(prompt) for prompt in prompts)
    room = limit - virtual - longest
    asked = body.max_tokens
    if isinstance(body, ChatCompletionRequest) and body.max_completion_tokens is not None:
        asked = body.max_completion_tokens
    param = "messages" if kind.chat else "prompt"
    if asked is None:
        if room < 1:
            raise ContextTooLongError(longest, virtual, 1, limit, param=param)
        return room if kind.chat else min(COMPLETION_DEFAULT_MAX_TOKENS, room)
    if asked > room:
        raise ContextTooLongError(longest, virtual, asked, limit, param=param)
    return asked


def _submit(
    server: ModelServer,
    served: ServedSet,
    body: GenerationRequest,
    prompts: list[list[int]],
    max_tokens: int,
) -> tuple[Job, asyncio.Queue[Event]]:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Event] = asyncio.Queue()

    def emit(event: Event) -> None:
        loop.call_soon_threadsafe(events.put_nowait, event)

    temperature = 1.0 if body.temperature is None else body.temperature
    job = Job(
        served=served,
        prompts=[prompt for prompt in prompts for _ in range(body.n)],
        max_tokens=max_tokens,
        stop=body.stop_sequences(),
        sampling=Sampling(temperature, 1.0 if body.top_p is None else body.top_p, body.seed),
        emit=emit,
    )
    server.engine.submit(job)
    return job, events


def _prompt_tokens(prompts: Sequence[Sequence[int]]) -> int:
    return sum(len(prompt) for prompt in prompts)


class _GenerationFailedError(Exception):
    pass


@dataclass
class _Answer:
    """Builds the response bodies of one request."""

    kind: _Kind
    model: str
    choices: int
    prompt_tokens: int

    def __post_init__(self) -> None:
        self.id = self.kind.id_prefix + uuid.uuid4().hex
        self.created = int(time.time())

    def usage(self, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }

    def envelope(self, object_name: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": object_name,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def choice(self, index: int, text: str, finish: str | None) -> dict[str, Any]:
        if self.kind.chat:
            message = {"role": "assistant", "content": text}
            return {"index": index, "message": message, "finish_reason": finish}
        return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}

    def chunk_choice(
        self, index: int, text: str | None, finish: str | None, *, first: bool = False
    ) -> dict[str, Any]:
        if self.kind.chat:
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if text is not None:
                delta["content"] = text
            return {"index": index, "delta": delta, "finish_reason": finish}
        return {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}


async def _collect(answer: _Answer, job: Job, events: asyncio.Queue[Event]) -> dict[str, Any]:
    texts = [""] * answer.choices
    finished: dict[int, Finished] = {}
    while len(finished) < answer.choices:
        event = await events.get()
        if isinstance(event, Failed):
            raise _GenerationFailedError(event.message)
        if isinstance(event, Delta):
            texts[event.index] += event.text
        else:
            finished[event.index] = event
    choices = [answer.choice(i, texts[i], finished[i].reason) for i in range(answer.choices)]
    body = answer.envelope(answer.kind.object_name, choices)
    body["usage"] = answer.usage(sum(event.completion_tokens for event in finished.values()))
    return body


async def _stream(
    answer: _Answer, job: Job, events: asyncio.Queue[Event], include_usage: bool
) -> AsyncIterator[str]:
    def sse(document: dict[str, Any]) -> str:
        return f"data: {json.dumps(document, separators=(',', ':'))}\n\n"

    name = answer.kind.chunk_name
    try:
        if answer.kind.chat:  # OpenAI's first chunk of each choice names the role
            for index in range(answer.choices):
                first = answer.chunk_choice(index, "", None, first=True)
                yield sse(answer.envelope(name, [first]))
        done = 0
        tokens = 0
        while done < answer.choices:
            event = await events.get()
            if isinstance(event, Failed):
                yield sse(error_body(event.message, "server_error", None, "generation_failed"))
                return
            if isinstance(event, Delta):
                yield sse(
                    answer.envelope(name, [answer.chunk_choice(event.index, event.text, None)])
                )
                continue
            done += 1
            tokens += event.completion_tokens
            last = answer.chunk_choice(event.index, None, event.reason)
            yield sse(answer.envelope(name, [last]))
        if include_usage:
            final = answer.envelope(name, [])
            final["usage"] = answer.usage(tokens)
            yield sse(final)
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled.set()
