"""A reply on the wire: usage, finish reason, server-sent events, and waiting for a whole reply."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..engine import Reply
from ..errors import Phi3ovError
from ..logprobs import Piece
from .error_shapes import ApiError


def usage(replies: list[Reply]) -> dict[str, int]:
    """The tokens read and written; for a reply still streaming, the tokens so far."""
    prompt = sum(r.stats.input_tokens if r.stats else r.fitted.prompt_tokens for r in replies)
    completion = sum(r.stats.output_tokens if r.stats else r.tokens_so_far for r in replies)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def finish_reason(reply: Reply) -> str:
    """One of OpenAI's values: a reply the server's --request-timeout ended is "length" (cut at a limit, as
    at max_tokens), and `stopped_by` says which limit (typed clients fail on a value OpenAI does not list)."""
    return "length" if reply.finish_reason in ("length", "timeout") else "stop"


def stopped_by(reply: Reply) -> dict[str, str]:
    """phi3ov's extension beside `finish_reason`: {"stopped_by": "request_timeout"} when that limit ended it."""
    return {"stopped_by": "request_timeout"} if reply.finish_reason == "timeout" else {}


def sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


async def stream_events(replies: list[Reply], head: list[dict[str, Any]],
                        events: Callable[[int, Reply, Piece | None], list[dict]],
                        last: dict[str, Any] | None, done: Callable[[list[Reply]], None],
                        running_usage: bool = False, interval: float = 0.0) -> AsyncIterator[str]:
    """`head` at once; then each reply in turn as events: `events(index, reply, piece)` for each piece, then with
    None when the reply ends; then `last` with the usage if given, and `[DONE]`. `running_usage`: every event
    carries the usage so far (vLLM's continuous_usage_stats). `interval` (seconds): the tokens that come within it
    after an event go in one (Reply.apieces). Stops the replies when the client goes away."""

    def counted(event: dict[str, Any]) -> dict[str, Any]:
        return {**event, "usage": usage(replies)} if running_usage else event

    try:
        try:
            # Every reply starts now (n > 1: side by side), while the head is sent; they are read in turn.
            streams = [reply.apieces(interval) for reply in replies]  # the worker wakes this loop: no thread hop
            for event in head:
                yield sse(counted(event))
            for index, (reply, stream) in enumerate(zip(replies, streams, strict=True)):
                async for piece in stream:
                    for event in events(index, reply, piece):
                        yield sse(counted(event))
                for event in events(index, reply, None):
                    yield sse(counted(event))
            if last is not None:
                yield sse({**last, "usage": usage(replies)})
        except Phi3ovError as err:  # after the 200 is sent, an error travels as an event
            yield sse(ApiError.from_domain(err).body())
        finally:
            for reply in replies:
                reply.stop()  # a dropped client (or any early exit) stops the generation
        yield sse("[DONE]")
    finally:
        done(replies)  # after [DONE]: a draining server waits for this


async def complete(reply: Reply, request: Request) -> None:
    """Wait for the whole reply (then read reply.text, reply.logprobs); stops it if the client disconnects."""
    import anyio

    async def watch_disconnect() -> None:
        while not await request.is_disconnected():
            await anyio.sleep(0.5)
        reply.stop()

    failure: list[Phi3ovError] = []
    async with anyio.create_task_group() as group:
        group.start_soon(watch_disconnect)
        try:
            await run_in_threadpool(lambda: list(reply.pieces()))
        except Phi3ovError as err:  # raised below, outside the group (which would wrap it in an ExceptionGroup)
            failure.append(err)
        finally:
            group.cancel_scope.cancel()
    if failure:
        raise failure[0]
