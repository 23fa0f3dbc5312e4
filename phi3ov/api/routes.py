"""The API's routes: models, health, metrics and chat completions, behind the optional API key."""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ..engine import Engine, Reply
from ..errors import EngineNotReady, Phi3ovError
from ..settings import ServerSettings
from .chat import (
    ChatCompletionRequest,
    check_request,
    complete,
    finish_reason,
    parse_messages,
    parse_options,
    start_reply,
    stream_events,
    usage,
)
from .errors import ApiError
from .limits import Counters, read_body

log = logging.getLogger(__name__)


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
