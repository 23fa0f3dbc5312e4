"""The API's routes: models, health, metrics, chat and text completions, tokenize, behind the optional API key."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from ..engine import Engine, Reply
from ..errors import EngineNotReady, Phi3ovError
from ..settings import ServerSettings
from .chat import ChatCompletionRequest, ChatEvents, chat_response, parse_chat, start_reply
from .completions import (
    CompletionEvents,
    CompletionRequest,
    completion_response,
    parse_completion,
    start_replies,
)
from .error_shapes import ApiError
from .limits import Counters, read_body
from .replies import complete, stream_events
from .tokens import DetokenizeRequest, TokenizeRequest, detokenize, tokenize

log = logging.getLogger(__name__)


class ClosingStreamingResponse(StreamingResponse):
    """A stream that is closed as soon as the response ends, however it ends.

    When a client goes away while the stream waits at a `yield`, Starlette cancels the sending task
    but leaves the generator suspended: its `finally` (which stops the replies) would run only when
    the garbage collector finds it, and an idle server may not look for a long time, so the reply
    would go on generating for nobody. Closing it here stops the replies at once."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()


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

    def finished(replies: list[Reply]) -> None:
        slots.give()
        for reply in replies:
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
                "max_model_len": eng.context_length, "loaded": True}

    def model_cards(eng: Engine) -> list[dict[str, Any]]:
        """The model served, then the others the model menu can switch to (not loaded)."""
        others = eng.model_names()[1:]
        return [model_card(eng), *({"id": name, "object": "model", "created": created, "owned_by": "phi3ov",
                                    "loaded": False} for name in others)]

    @router.get("/health")
    async def health():
        if engine is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ok", "model": engine.name, "running": engine.running}

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
            return {"object": "list", "data": model_cards(ready())}
        except ApiError as err:
            return err.response()

    @router.get("/v1/models/{model:path}")
    async def get_model(model: str, request: Request):
        try:
            check_key(request)
            eng = ready()
            card = next((c for c in model_cards(eng) if c["id"] == model), None)
            if card is None:
                raise ApiError(404, f"The model `{model}` does not exist on this server; it serves `{eng.name}`.",
                               param="model", code="model_not_found")
            return card
        except ApiError as err:
            return err.response()

    async def parsed(request: Request, model: type[BaseModel]) -> Any:
        check_key(request)
        body = await read_body(request, settings)
        try:
            return model.model_validate(body)
        except ValidationError as err:
            first = err.errors()[0]
            param = ".".join(str(p) for p in first["loc"]) or None
            raise ApiError(400, f"Invalid request: `{param}`: {first['msg']}.", param=param,
                           code="invalid_value") from None

    async def started(start: Callable[[], list[Reply]]) -> list[Reply]:
        """The replies, started in a worker thread, holding one slot (429 past the queue)."""
        slots.take()
        try:
            return await run_in_threadpool(start)
        except BaseException:
            slots.give()
            raise

    def streamed(route: str, replies: list[Reply], events: Any, include_usage: bool) -> StreamingResponse:
        last = events.usage_event() if include_usage else None
        head = events.head() if hasattr(events, "head") else []
        return answered(route, ClosingStreamingResponse(
            stream_events(replies, head, events, last, finished), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}))

    async def waited(route: str, replies: list[Reply], request: Request) -> JSONResponse | None:
        """None once every reply is complete; the error response when one failed."""
        try:
            for reply in replies:
                await complete(reply, request)
        except Phi3ovError as err:
            return refused(route, ApiError.from_domain(err))
        finally:
            finished(replies)
        return None

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        route = "/v1/chat/completions"
        try:
            eng = ready()
            req = await parsed(request, ChatCompletionRequest)
            messages, options = parse_chat(req, eng, settings)
            replies = await started(lambda: [start_reply(eng, messages, options)])
        except ApiError as err:
            return refused(route, err)
        except Phi3ovError as err:
            return refused(route, ApiError.from_domain(err, param=param_of(err)))
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return streamed(route, replies, ChatEvents(eng.name), include_usage)
        if failed := await waited(route, replies, request):
            return failed
        answered(route, None)
        return chat_response(replies[0], eng.name)

    @router.post("/v1/completions")
    async def completions(request: Request):
        route = "/v1/completions"
        try:
            eng = ready()
            req = await parsed(request, CompletionRequest)
            prompts, options = parse_completion(req, eng, settings)
            replies = await started(lambda: start_replies(eng, prompts, options))
        except ApiError as err:
            return refused(route, err)
        except Phi3ovError as err:
            return refused(route, ApiError.from_domain(err, param=param_of(err, "prompt")))
        echo = bool(req.echo)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return streamed(route, replies, CompletionEvents(eng.name, prompts, echo), include_usage)
        if failed := await waited(route, replies, request):
            return failed
        answered(route, None)
        return completion_response(replies, prompts, echo, eng.name)

    @router.post("/tokenize")
    async def tokenize_route(request: Request):
        try:
            eng = ready()
            req = await parsed(request, TokenizeRequest)
            return answered("/tokenize", await run_in_threadpool(tokenize, req, eng, settings))
        except ApiError as err:
            return refused("/tokenize", err)

    @router.post("/detokenize")
    async def detokenize_route(request: Request):
        try:
            eng = ready()
            req = await parsed(request, DetokenizeRequest)
            return answered("/detokenize", await run_in_threadpool(detokenize, req, eng))
        except ApiError as err:
            return refused("/detokenize", err)

    return router



def param_of(err: Phi3ovError, messages: str = "messages") -> str | None:
    """The API parameter a domain error is about, where it is clear."""
    return messages if err.code == "context_length_exceeded" else None
