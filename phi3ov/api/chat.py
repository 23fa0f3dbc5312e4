"""POST /v1/chat/completions: the request, its options and messages, and the reply as JSON or events."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from ..conversation import check_count, check_lengths, normalize
from ..engine import Engine, Reply
from ..errors import BadOptions, ContextOverflow, Phi3ovError
from ..settings import GenerationOptions, ServerSettings
from .errors import ApiError

# GenerationOptions field -> the API parameter that sets it
API_PARAMS = {"max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
              "repetition_penalty": "repetition_penalty", "seed": "seed", "stop": "stop", "ignore_eos": "ignore_eos",
              "prompt_lookup": "prompt_lookup"}
UNSUPPORTED = ("tools", "functions", "logprobs", "top_logprobs", "response_format", "audio", "prediction")



class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The body of POST /v1/chat/completions. Numbers are checked by GenerationOptions.parse."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Any = None
    max_completion_tokens: Any = None
    temperature: Any = None
    top_p: Any = None
    top_k: Any = None
    repetition_penalty: Any = None
    seed: Any = None
    stop: Any = None
    ignore_eos: Any = None
    prompt_lookup: Any = None
    n: int | None = None


def parse_options(req: ChatCompletionRequest) -> GenerationOptions:
    """GenerationOptions from the request; a bad value is a 400 naming the API parameter."""
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    values = {"max_new_tokens": max_tokens, "temperature": req.temperature, "top_p": req.top_p,
              "top_k": req.top_k, "repetition_penalty": req.repetition_penalty, "seed": req.seed, "stop": req.stop,
              "ignore_eos": req.ignore_eos, "prompt_lookup": req.prompt_lookup}
    for name, value in values.items():
        try:
            GenerationOptions.parse(**{name: value})
        except BadOptions as err:
            param = "max_completion_tokens" if name == "max_new_tokens" and req.max_completion_tokens is not None \
                else API_PARAMS[name]
            raise ApiError(400, f"Invalid `{param}`: {err}", param=param, code="invalid_value") from None
    return GenerationOptions.parse(**values)


def parse_messages(req: ChatCompletionRequest, settings: ServerSettings) -> list[dict[str, str]]:
    # Newer OpenAI clients send the system prompt with the role "developer".
    messages = [{**m, "role": "system"} if m.get("role") == "developer" else m for m in req.messages]
    try:
        check_count(messages, settings.max_messages)  # before any per-message work
        messages = normalize(messages)
        check_lengths(messages, settings.max_message_chars)
        return messages
    except Phi3ovError as err:
        raise ApiError.from_domain(err, param="messages") from None


def check_request(req: ChatCompletionRequest, engine: Engine) -> None:
    if req.model != engine.name:
        raise ApiError(404, f"The model `{req.model}` does not exist on this server; it serves `{engine.name}` "
                       "(see GET /v1/models).", param="model", code="model_not_found")
    if req.n not in (None, 1):
        raise ApiError(400, "Only `n=1` is supported: ask again for another reply.", param="n",
                       code="invalid_value")
    extra = req.model_extra or {}
    for name in UNSUPPORTED:
        if extra.get(name) not in (None, False, [], {}) and not (name == "response_format" and
                                                                 extra[name] == {"type": "text"}):
            raise ApiError(400, f"`{name}` is not supported by this server.", param=name,
                           code="unsupported_parameter")


def start_reply(engine: Engine, messages: list[dict[str, str]], options: GenerationOptions) -> Reply:
    """The reply, refusing (not trimming) a conversation that does not fit the context."""
    reply = engine.chat(messages, options)
    if reply.fitted.dropped:
        raise ContextOverflow(
            f"The messages do not fit the model's context of {engine.context_length} tokens together with "
            f"max_tokens={reply.options.max_new_tokens}: the {reply.fitted.dropped} oldest would have to be left out.",
            "Shorten the conversation, or lower max_tokens.")
    return reply


def usage(reply: Reply) -> dict[str, int]:
    prompt = reply.stats.input_tokens if reply.stats else reply.fitted.prompt_tokens
    completion = reply.stats.output_tokens if reply.stats else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def finish_reason(reply: Reply) -> str:
    # "timeout" (--request-timeout ended it) is not one of OpenAI's values; clients pass it through.
    return reply.finish_reason if reply.finish_reason in ("length", "timeout") else "stop"


def sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


async def stream_events(reply: Reply, model: str, include_usage: bool,
                        done: Callable[[Reply], None]) -> AsyncIterator[str]:
    """The reply as OpenAI chat.completion.chunk events. Stops the reply when the client goes away."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}

    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        return sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    try:
        try:
            yield chunk({"role": "assistant", "content": ""})
            async for text in iterate_in_threadpool(iter(reply)):
                yield chunk({"content": text})
            yield chunk({}, finish_reason(reply))
            if include_usage:
                yield sse({**base, "choices": [], "usage": usage(reply)})
        except Phi3ovError as err:  # after the 200 is sent, an error travels as an event
            yield sse(ApiError.from_domain(err).body())
        finally:
            reply.stop()  # a dropped client (or any early exit) stops the generation
        yield sse("[DONE]")
    finally:
        done(reply)  # after [DONE]: a draining server waits for this


async def complete(reply: Reply, request: Request) -> str:
    """The whole reply text; stops the reply if the client disconnects while waiting."""
    import anyio

    async def watch_disconnect() -> None:
        while not await request.is_disconnected():
            await anyio.sleep(0.5)
        reply.stop()

    outcome: list[Any] = []
    async with anyio.create_task_group() as group:
        group.start_soon(watch_disconnect)
        try:
            outcome.append(await run_in_threadpool(lambda: "".join(reply)))
        except Phi3ovError as err:  # raised below, outside the group (which would wrap it in an ExceptionGroup)
            outcome.append(err)
        finally:
            group.cancel_scope.cancel()
    if isinstance(outcome[0], Phi3ovError):
        raise outcome[0]
    return outcome[0]
