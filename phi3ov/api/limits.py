"""What the API lets in: the reply slots and queue (429 past them), and the request body's size (413)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from ..engine import Engine
from ..metrics import Metrics
from ..settings import ServerSettings
from .error_shapes import ApiError


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
        slots = Slots(engine.capabilities.max_concurrency, settings.max_queue)
        return cls(slots, Metrics(running=lambda: engine.running or 0, waiting=slots.waiting))


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
