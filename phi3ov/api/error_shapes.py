"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with an HTTP status."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from ..errors import Phi3ovError

RETRY_AFTER_S = 2  # what a busy server (429) asks a client to wait


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


def bad(param: str, message: str, code: str = "invalid_value") -> ApiError:
    """A 400 for the request parameter `param`."""
    return ApiError(400, message, param=param, code=code)
