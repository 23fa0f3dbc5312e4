"""Cross-origin access to the API's routes: none, unless `--cors-origin` names the origins allowed.

Gradio puts its own CORS middleware around every route of its app: it answers every preflight and
lets pages served from localhost call in, with credentials. For the API's routes (/v1, /health,
/metrics) this module's policy replaces Gradio's: without `--cors-origin` a cross-origin request gets
no CORS header at all (a browser refuses to hand the answer to the page, and a preflight is answered
405), and with it Starlette's CORSMiddleware allows exactly the origins given (preflight included). The
UI's own routes keep Gradio's policy.

The wrapper goes around the app's whole middleware stack, Gradio's included, from the app's lifespan:
that runs once the stack is built and before the server accepts its first connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

API_PREFIXES = ("/v1", "/health", "/metrics")


def is_api_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in API_PREFIXES)


class _WithoutOrigin:
    """Passes a request on without its Origin header, so no inner CORS layer (Gradio's) answers it."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"origin"]
        await self.app({**scope, "headers": headers}, receive, send)


class ApiCors:
    """ASGI: the API's routes under this policy (`origins`, none by default), the others untouched."""

    def __init__(self, app: Any, origins: tuple[str, ...]):
        from starlette.middleware.cors import CORSMiddleware

        self.app = app
        self.api: Any = _WithoutOrigin(app)
        if origins:
            self.api = CORSMiddleware(self.api, allow_origins=list(origins), allow_methods=["GET", "POST"],
                                      allow_headers=["Authorization", "Content-Type"], max_age=600)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and is_api_path(scope.get("path", "")):
            await self.api(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def lifespan(origins: tuple[str, ...]) -> Callable[[Any], Any]:
    """A lifespan for the server's app (Gradio's `app_kwargs`) that puts ApiCors around its middleware."""

    @asynccontextmanager
    async def wrap(app: Any) -> AsyncIterator[None]:
        if app.middleware_stack is None:  # built on the app's first call, the lifespan's own
            app.middleware_stack = app.build_middleware_stack()
        app.middleware_stack = ApiCors(app.middleware_stack, origins)
        yield

    return wrap
