"""POST /v1/chat/completions: the request, its messages and options, and the reply as JSON or events."""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

from pydantic import Field

from ..conversation import check_count, check_lengths, normalize
from ..engine import Engine, Reply
from ..errors import ContextOverflow, Phi3ovError
from ..logprobs import Piece
from ..options import GenerationOptions
from ..settings import ServerSettings
from ..tool_calls import Call, ToolCallReader, read_reply
from .error_shapes import ApiError
from .options import (
    SamplingRequest,
    bad,
    check_common,
    check_constraint,
    constraint_of,
    parse_options,
    whole_number,
)
from .replies import finish_reason, stopped_by, usage
from .tools import call_deltas, call_id, parse_tools, tool_call


class ChatCompletionRequest(SamplingRequest):
    """The body of POST /v1/chat/completions."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    max_completion_tokens: Any = None
    logprobs: Any = None
    top_logprobs: Any = None
    response_format: Any = None
    prompt_logprobs: Any = None  # vLLM's: the prompt's tokens scored, at the response's top level


def parse_chat(req: ChatCompletionRequest, engine: Engine, settings: ServerSettings
               ) -> tuple[list[dict[str, str]], GenerationOptions]:
    check_common(req, engine)
    tools, tool_constraint = parse_tools(req.model_extra or {}, req.messages, engine)
    if req.logprobs not in (None, True, False):
        raise bad("logprobs", f"`logprobs` must be true or false, got {req.logprobs!r}.")
    top = 0
    if req.top_logprobs is not None:
        top = whole_number("top_logprobs", req.top_logprobs, 0, 20)
        if not req.logprobs:
            raise bad("top_logprobs", "`top_logprobs` needs `logprobs: true`.")
    max_tokens = ("max_completion_tokens", req.max_completion_tokens) if req.max_completion_tokens is not None \
        else ("max_tokens", req.max_tokens)
    constraint = constraint_of(req, req.response_format)
    if tools and req.logprobs:
        raise bad("logprobs", "`logprobs` with `tools` is not supported here: leave one of them out.",
                  code="unsupported_parameter")
    if tool_constraint is not None and constraint is not None:
        raise bad("tool_choice", "A required tool call and `response_format` (or guided_*) both constrain the reply: "
                  'send one of them, or use `tool_choice: "auto"`.')
    options = parse_options(req, max_tokens=max_tokens, logprobs=bool(req.logprobs), top_logprobs=top,
                            constraint=tool_constraint or constraint)
    scored = None if req.prompt_logprobs is None else whole_number("prompt_logprobs", req.prompt_logprobs, 0, 20)
    options = dataclasses.replace(options, tools=tools, prompt_logprobs=scored)
    if tool_constraint is not None:
        try:
            engine.check_options(options)
        except Phi3ovError as err:
            raise bad("tools", str(err)) from None
    else:
        check_constraint(req, engine, options)
    return parse_messages(req, settings), options


def parse_messages(req: ChatCompletionRequest, settings: ServerSettings) -> list[dict[str, str]]:
    # Newer OpenAI clients send the system prompt with the role "developer".
    messages = [{**m, "role": "system"} if m.get("role") == "developer" else m for m in req.messages]
    try:
        check_count(messages, settings.max_messages)  # before any per-message work
        messages = normalize(messages, tools=True)
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
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    finish = finish_reason(reply)
    if reply.options.tools:
        text, calls = read_reply(reply.text)
        if calls:
            message["content"] = text or None
            message["tool_calls"] = [tool_call(call, call_id()) for call in calls]
            finish = "tool_calls" if finish == "stop" else finish
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": logprobs_of(reply, reply.logprobs),
                     "finish_reason": finish, **stopped_by(reply)}],
        "usage": usage([reply]),
        **prompt_scores(reply),
    }


def prompt_scores(reply: Reply) -> dict[str, Any]:
    """vLLM's `prompt_logprobs` where the request asked for them."""
    if reply.prompt_logprobs is None:
        return {}
    return {"prompt_logprobs": [t.vllm() for t in reply.prompt_logprobs]}


class ChatEvents:
    """chat.completion.chunk events: the role first, then the text (with its logprobs), then the finish.

    With tools, the text is read for calls as it comes (tools.ToolCallReader): text as `content` deltas, each
    call as `tool_calls` deltas (its index, id and name, then its arguments)."""

    def __init__(self, model: str, reply: Reply):
        self.base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": model}
        self.reader: ToolCallReader | None = None
        self.calls = 0
        self.scores = prompt_scores(reply)

    def head(self) -> list[dict[str, Any]]:
        return [{**self.chunk({"role": "assistant", "content": ""}), **self.scores}]

    def __call__(self, index: int, reply: Reply, piece: Piece | None) -> list[dict[str, Any]]:
        if reply.options.tools:
            self.reader = self.reader or ToolCallReader()
            items = self.reader.end() if piece is None else self.reader.feed(piece.text)
            events = [self.chunk(delta) for item in items for delta in self.deltas(item)]
            if piece is None:
                finish = finish_reason(reply)
                events.append(self.chunk({}, finish="tool_calls" if self.calls and finish == "stop" else finish,
                                         **stopped_by(reply)))
            return events
        if piece is None:
            return [self.chunk({}, finish=finish_reason(reply), **stopped_by(reply))]
        return [self.chunk({"content": piece.text}, logprobs_of(reply, piece.logprobs))]

    def deltas(self, item: str | Call) -> list[dict[str, Any]]:
        if isinstance(item, str):
            return [{"content": item}]
        self.calls += 1
        return call_deltas(item, call_id())

    def chunk(self, delta: dict[str, str], logprobs: dict | None = None, finish: str | None = None,
              **extra: str) -> dict:
        return {**self.base, "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish,
                                          **extra}]}

    def usage_event(self) -> dict[str, Any]:
        return {**self.base, "choices": []}
