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
from .options import StreamOptions
from .replies import complete, stream_events
from .tokens import DetokenizeRequest, TokenizeRequest, detokenize, tokenize, tokenizer_info

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


class Api:
    """What the routes share: the engine (None while loading), the settings, the slots and the figures."""

    def __init__(self, engine: Engine | None, settings: ServerSettings, counters: Counters):
        self.engine, self.settings = engine, settings
        self.created = int(time.time())
        self.slots, self.metrics = counters.slots, counters.metrics

    def answered(self, route: str, response: Any, status: int = 200) -> Any:
        self.metrics.requests.labels(route, str(getattr(response, "status_code", status))).inc()
        return response

    def refused(self, route: str, err: ApiError) -> JSONResponse:
        # Expected traffic, not a bug: one line, no traceback, no message text.
        log.info("%s answered %d (%s)", route, err.status, err.code)
        return self.answered(route, err.response())

    def finished(self, replies: list[Reply]) -> None:
        self.slots.give()
        for reply in replies:
            self.metrics.reply_done(reply)

    def check_key(self, request: Request) -> None:
        key = self.settings.api_key
        if not key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise ApiError(401, "Missing or wrong API key: send the server's key as `Authorization: Bearer KEY` "
                           "(the openai client's api_key).", code="invalid_api_key")

    def ready(self) -> Engine:
        if self.engine is None:
            raise ApiError.from_domain(EngineNotReady("The model is still loading.", "Try again in a minute."))
        return self.engine

    def model_card(self, eng: Engine) -> dict[str, Any]:
        return {"id": eng.name, "object": "model", "created": self.created, "owned_by": "phi3ov",
                "max_model_len": eng.context_length, "loaded": True}

    def model_cards(self, eng: Engine) -> list[dict[str, Any]]:
        """The model served, then the others the model menu can switch to (not loaded)."""
        others = eng.model_names()[1:]
        return [self.model_card(eng), *({"id": name, "object": "model", "created": self.created,
                                         "owned_by": "phi3ov", "loaded": False} for name in others)]

    async def parsed(self, request: Request, model: type[BaseModel]) -> Any:
        self.check_key(request)
        body = await read_body(request, self.settings)
        try:
            return model.model_validate(body)
        except ValidationError as err:
            first = err.errors()[0]
            param = ".".join(str(p) for p in first["loc"]) or None
            raise ApiError(400, f"Invalid request: `{param}`: {first['msg']}.", param=param,
                           code="invalid_value") from None

    async def started(self, start: Callable[[], list[Reply]]) -> list[Reply]:
        """The replies, started in a worker thread, holding one slot (429 past the queue)."""
        self.slots.take()
        try:
            return await run_in_threadpool(start)
        except BaseException:
            self.slots.give()
            raise

    def streamed(self, route: str, replies: list[Reply], events: Any, stream_options: StreamOptions | None
                 ) -> StreamingResponse:
        include_usage, running_usage = StreamOptions.of(stream_options)
        last = events.usage_event() if include_usage else None
        head = events.head() if hasattr(events, "head") else []
        return self.answered(route, ClosingStreamingResponse(
            stream_events(replies, head, events, last, self.finished, running_usage,
                          self.settings.stream_interval / 1000), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}))

    async def waited(self, route: str, replies: list[Reply], request: Request) -> JSONResponse | None:
        """None once every reply is complete; the error response when one failed."""
        try:
            for reply in replies:
                await complete(reply, request)
        except Phi3ovError as err:
            return self.refused(route, ApiError.from_domain(err))
        finally:
            self.finished(replies)
        return None


def create_router(engine: Engine | None, settings: ServerSettings, counters: Counters | None = None) -> APIRouter:
    """The API routes for this engine. `engine=None` answers 503 until one is given."""
    router = APIRouter()
    api = Api(engine, settings, counters or Counters.for_engine(engine, settings))
    add_info_routes(router, api)
    add_generation_routes(router, api)
    return router


def add_info_routes(router: APIRouter, api: Api) -> None:
    """/health, /metrics and /v1/models."""

    @router.get("/health")
    async def health():
        if api.engine is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ok", "model": api.engine.name, "running": api.engine.running}

    @router.get("/metrics")
    async def prometheus(request: Request):
        try:
            api.check_key(request)
        except ApiError as err:
            return err.response()
        body, content_type = api.metrics.render()
        return Response(body, media_type=content_type)

    @router.get("/v1/models")
    async def list_models(request: Request):
        try:
            api.check_key(request)
            return {"object": "list", "data": api.model_cards(api.ready())}
        except ApiError as err:
            return err.response()

    @router.get("/v1/models/{model:path}")
    async def get_model(model: str, request: Request):
        try:
            api.check_key(request)
            eng = api.ready()
            card = next((c for c in api.model_cards(eng) if c["id"] == model), None)
            if card is None:
                raise ApiError(404, f"The model `{model}` does not exist on this server; it serves `{eng.name}`.",
                               param="model", code="model_not_found")
            return card
        except ApiError as err:
            return err.response()


def add_generation_routes(router: APIRouter, api: Api) -> None:
    """/v1/chat/completions, /v1/completions, /tokenize, /tokenizer_info and /detokenize."""

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        route = "/v1/chat/completions"
        try:
            eng = api.ready()
            req = await api.parsed(request, ChatCompletionRequest)
            messages, options = parse_chat(req, eng, api.settings)
            replies = await api.started(lambda: [start_reply(eng, messages, options)])
        except ApiError as err:
            return api.refused(route, err)
        except Phi3ovError as err:
            return api.refused(route, ApiError.from_domain(err, param=param_of(err)))
        if req.stream:
            return api.streamed(route, replies, ChatEvents(eng.name, replies[0]), req.stream_options)
        if failed := await api.waited(route, replies, request):
            return failed
        api.answered(route, None)
        return chat_response(replies[0], eng.name)

    @router.post("/v1/completions")
    async def completions(request: Request):
        route = "/v1/completions"
        try:
            eng = api.ready()
            req = await api.parsed(request, CompletionRequest)
            prompts, options = parse_completion(req, eng, api.settings)
            replies = await api.started(lambda: start_replies(eng, prompts, options))
        except ApiError as err:
            return api.refused(route, err)
        except Phi3ovError as err:
            return api.refused(route, ApiError.from_domain(err, param=param_of(err, "prompt")))
        echo, scores = bool(req.echo), req.prompt_logprobs is not None
        if req.stream:
            return api.streamed(route, replies, CompletionEvents(eng.name, echo, scores), req.stream_options)
        if failed := await api.waited(route, replies, request):
            return failed
        api.answered(route, None)
        return completion_response(replies, echo, eng.name, scores)

    @router.post("/tokenize")
    async def tokenize_route(request: Request):
        try:
            eng = api.ready()
            req = await api.parsed(request, TokenizeRequest)
            return api.answered("/tokenize", await run_in_threadpool(tokenize, req, eng, api.settings))
        except ApiError as err:
            return api.refused("/tokenize", err)

    @router.get("/tokenizer_info")
    async def tokenizer_info_route(request: Request):
        try:
            api.check_key(request)
            return api.answered("/tokenizer_info", tokenizer_info(api.ready()))
        except ApiError as err:
            return api.refused("/tokenizer_info", err)

    @router.post("/detokenize")
    async def detokenize_route(request: Request):
        try:
            eng = api.ready()
            req = await api.parsed(request, DetokenizeRequest)
            return api.answered("/detokenize", await run_in_threadpool(detokenize, req, eng))
        except ApiError as err:
            return api.refused("/detokenize", err)


def param_of(err: Phi3ovError, messages: str = "messages") -> str | None:
    """The API parameter a domain error is about, where it is clear."""
    return messages if err.code == "context_length_exceeded" else None
