"""The OpenAI-compatible API, served beside the UI on the same port.

    POST /v1/chat/completions   streaming (server-sent events, ending in `data: [DONE]`) or not
    GET  /v1/models             the one model this server serves (with `max_model_len`)
    GET  /health                readiness, and how many replies are being generated right now

Requests are validated with the same ranges as the UI's sliders (settings.BOUNDS, via
GenerationOptions.parse without clamping); errors come back in OpenAI's shape
`{"error": {"message", "type", "param", "code"}}` with the status of the domain error.
Besides OpenAI's parameters, `top_k`, `repetition_penalty` and `ignore_eos` are accepted (as
OVMS and vLLM do), and `prompt_lookup` (false: no lookup for this reply, where the server runs
with --prompt-lookup); other OpenAI parameters that do not change a reply here (user, logit_bias...) are ignored.
Defaults are the app's own (settings.BOUNDS), not OpenAI's.

Unlike the chat UI, the API never leaves old messages out silently: a conversation that does
not fit the context is a 400 `context_length_exceeded`. The engine's blocking iteration runs
in worker threads, and a client that goes away stops its reply.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from .conversation import check_count, check_lengths, normalize
from .engine import Engine, Reply
from .errors import BadOptions, ContextOverflow, EngineNotReady, Phi3ovError
from .metrics import Metrics
from .settings import GenerationOptions, ServerSettings

# GenerationOptions field -> the API parameter that sets it
API_PARAMS = {"max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
              "repetition_penalty": "repetition_penalty", "seed": "seed", "stop": "stop", "ignore_eos": "ignore_eos",
              "prompt_lookup": "prompt_lookup"}
UNSUPPORTED = ("tools", "functions", "logprobs", "top_logprobs", "response_format", "audio", "prediction")


log = logging.getLogger(__name__)
RETRY_AFTER_S = 2  # what a busy server (429) asks a client to wait


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


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None):  # noqa: A002 - OpenAI's field name
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")

    @classmethod
    def from_domain(cls, err: Phi3ovError, param: str | None = None) -> ApiError:
        return cls(err.http_status, str(err), param=param, code=err.code)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if self.status == 429 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


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


class Slots:
    """Replies that may run (`running`) plus requests that may wait for one (`queue`); past both, a 429.

    Counted in the event loop's thread only, so no lock is needed.
    """

    def __init__(self, running: int, queue: int):
        self.capacity, self.running_slots, self.taken = running + queue, running, 0
        self.closing = False  # the server is draining before it exits: no new requests

    def waiting(self) -> int:
        return max(0, self.taken - self.running_slots)

    def take(self) -> None:
        if self.closing:
            raise ApiError(503, "The server is shutting down.", code="shutting_down")
        if self.taken >= self.capacity:
            raise ApiError(429, f"The server is busy: {self.running_slots} replies are being written and "
                           f"{self.capacity - self.running_slots} more are waiting. Try again in a few seconds.",
                           code="rate_limit_exceeded", type="rate_limit_error")
        self.taken += 1

    def give(self) -> None:
        self.taken = max(0, self.taken - 1)


@dataclass
class Counters:
    """What one server counts: its API slots (queue bound, drain) and its Prometheus metrics."""

    slots: Slots
    metrics: Metrics

    @classmethod
    def for_engine(cls, engine: Engine | None, settings: ServerSettings) -> Counters:
        slots = Slots(getattr(engine, "max_concurrency", 1), settings.max_queue)
        return cls(slots, Metrics(running=lambda: getattr(engine, "running", None) or 0, waiting=slots.waiting))


async def read_body(request: Request, settings: ServerSettings) -> Any:
    """The JSON body, refused with 413 past --max-body-mb and 400 when not UTF-8 JSON, before any other work.

    An oversized body is still read (and dropped) up to 16 times the cap, so the client, which is
    still sending, gets the 413 rather than a reset connection; beyond that the connection is cut.
    """
    limit = int(settings.max_body_mb * 2**20)
    declared = request.headers.get("content-length", "")
    body, size = bytearray(), 0
    if not (declared.isdigit() and int(declared) > 16 * limit):
        async for piece in request.stream():
            size += len(piece)
            if size <= limit:
                body += piece
            elif size > 16 * limit:
                break
    if size > limit or (declared.isdigit() and int(declared) > limit):
        raise ApiError(413, f"The request body is larger than {settings.max_body_mb:g} MB.",
                       code="request_too_large")
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "The request body is not UTF-8 text.", code="invalid_json") from None
    except ValueError:
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
    except RecursionError:
        raise ApiError(400, "The request body is nested too deeply.", code="invalid_json") from None


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


def create_router(engine: Engine | None, settings: ServerSettings, counters: Counters | None = None) -> APIRouter:
    """The API routes for this engine. `engine=None` answers 503 until one is given."""
    router = APIRouter()
    created = int(time.time())
    counters = counters or Counters.for_engine(engine, settings)
    slots, metrics = counters.slots, counters.metrics

    def answered(route: str, response: Any, status: int = 200) -> Any:
        metrics.requests.labels(route, str(getattr(response, "status_code", status))).inc()
        return response

    def refused(route: str, err: ApiError) -> JSONResponse:
        # Expected traffic, not a bug: one line, no traceback, no message text.
        log.info("%s answered %d (%s)", route, err.status, err.code)
        return answered(route, err.response())

    def finished(reply: Reply) -> None:
        slots.give()
        metrics.reply_done(reply)

    def check_key(request: Request) -> None:
        if not settings.api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise ApiError(401, "Missing or wrong API key: send the server's key as `Authorization: Bearer KEY` "
                           "(the openai client's api_key).", code="invalid_api_key")

    def ready() -> Engine:
        if engine is None:
            raise ApiError.from_domain(EngineNotReady("The model is still loading.", "Try again in a minute."))
        return engine

    def model_card(eng: Engine) -> dict[str, Any]:
        return {"id": eng.name, "object": "model", "created": created, "owned_by": "phi3ov",
                "max_model_len": eng.context_length}

    @router.get("/health")
    async def health():
        if engine is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ok", "model": engine.name, "running": getattr(engine, "running", None)}

    @router.get("/metrics")
    async def prometheus(request: Request):
        try:
            check_key(request)
        except ApiError as err:
            return err.response()
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @router.get("/v1/models")
    async def list_models(request: Request):
        try:
            check_key(request)
            return {"object": "list", "data": [model_card(ready())]}
        except ApiError as err:
            return err.response()

    @router.get("/v1/models/{model:path}")
    async def get_model(model: str, request: Request):
        try:
            check_key(request)
            eng = ready()
            if model != eng.name:
                raise ApiError(404, f"The model `{model}` does not exist on this server; it serves `{eng.name}`.",
                               param="model", code="model_not_found")
            return model_card(eng)
        except ApiError as err:
            return err.response()

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        route = "/v1/chat/completions"
        try:
            check_key(request)
            eng = ready()
            body = await read_body(request, settings)
            try:
                req = ChatCompletionRequest.model_validate(body)
            except ValidationError as err:
                first = err.errors()[0]
                param = ".".join(str(p) for p in first["loc"]) or None
                raise ApiError(400, f"Invalid request: `{param}`: {first['msg']}.", param=param,
                               code="invalid_value") from None
            check_request(req, eng)
            options = parse_options(req)
            messages = parse_messages(req, settings)
            slots.take()
            try:
                reply = await run_in_threadpool(start_reply, eng, messages, options)
            except BaseException:
                slots.give()
                raise
        except ApiError as err:
            return refused(route, err)
        except Phi3ovError as err:
            return refused(route, ApiError.from_domain(err))

        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return answered(route, StreamingResponse(
                stream_events(reply, eng.name, include_usage, finished), media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}))
        try:
            text = await complete(reply, request)
        except Phi3ovError as err:
            return refused(route, ApiError.from_domain(err))
        finally:
            finished(reply)
        answered(route, None)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": eng.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": finish_reason(reply)}],
            "usage": usage(reply),
        }

    return router
