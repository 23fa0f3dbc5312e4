"""POST /v1/chat/completions: the request, its messages and options, and the reply as JSON or events."""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import Field

from ..conversation import check_count, check_lengths, normalize
from ..engine import Engine, Reply
from ..errors import ContextOverflow, Phi3ovError
from ..logprobs import Piece
from ..settings import GenerationOptions, ServerSettings
from .errors import ApiError
from .options import (
    SamplingRequest,
    bad,
    check_common,
    check_constraint,
    check_tools,
    constraint_of,
    parse_options,
    whole_number,
)
from .replies import finish_reason, usage


class ChatCompletionRequest(SamplingRequest):
    """The body of POST /v1/chat/completions."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    max_completion_tokens: Any = None
    logprobs: Any = None
    top_logprobs: Any = None
    response_format: Any = None


def parse_chat(req: ChatCompletionRequest, engine: Engine, settings: ServerSettings
               ) -> tuple[list[dict[str, str]], GenerationOptions]:
    check_common(req, engine)
    check_tools(req, engine)
    if req.logprobs not in (None, True, False):
        raise bad("logprobs", f"`logprobs` must be true or false, got {req.logprobs!r}.")
    top = 0
    if req.top_logprobs is not None:
        top = whole_number("top_logprobs", req.top_logprobs, 0, 20)
        if not req.logprobs:
            raise bad("top_logprobs", "`top_logprobs` needs `logprobs: true`.")
    max_tokens = ("max_completion_tokens", req.max_completion_tokens) if req.max_completion_tokens is not None \
        else ("max_tokens", req.max_tokens)
    options = parse_options(req, max_tokens=max_tokens, logprobs=bool(req.logprobs), top_logprobs=top,
                            constraint=constraint_of(req, req.response_format))
    check_constraint(req, engine, options)
    return parse_messages(req, settings), options


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


def start_reply(engine: Engine, messages: list[dict[str, str]], options: GenerationOptions) -> Reply:
    """The reply, refusing (not trimming) a conversation that does not fit the context."""
    reply = engine.chat(messages, options)
    if reply.fitted.dropped:
        raise ContextOverflow(
            f"The messages do not fit the model's context of {engine.context_length} tokens together with "
            f"max_tokens={reply.options.max_new_tokens}: the {reply.fitted.dropped} oldest would have to be left out.",
            "Shorten the conversation, or lower max_tokens.")
    return reply


def logprobs_of(reply: Reply, entries: list) -> dict[str, Any] | None:
    return {"content": [e.openai() for e in entries], "refusal": None} if reply.options.logprobs else None


def chat_response(reply: Reply, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text, "refusal": None},
                     "logprobs": logprobs_of(reply, reply.logprobs), "finish_reason": finish_reason(reply)}],
        "usage": usage([reply]),
    }


class ChatEvents:
    """chat.completion.chunk events: the role first, then the text (with its logprobs), then the finish."""

    def __init__(self, model: str):
        self.base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": model}

    def head(self) -> list[dict[str, Any]]:
        return [self.chunk({"role": "assistant", "content": ""})]

    def __call__(self, index: int, reply: Reply, piece: Piece | None) -> list[dict[str, Any]]:
        if piece is None:
            return [self.chunk({}, finish=finish_reason(reply))]
        return [self.chunk({"content": piece.text}, logprobs_of(reply, piece.logprobs))]

    def chunk(self, delta: dict[str, str], logprobs: dict | None = None, finish: str | None = None) -> dict:
        return {**self.base, "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}

    def usage_event(self) -> dict[str, Any]:
        return {**self.base, "choices": []}
