"""Domain errors. Each says what happened and what to do next.

The core raises these; the edges translate them: the chat (ui/) into `gr.Error`, api.py into an
OpenAI-style error object with `http_status`, cli.py into a message and an exit code.
"""

from __future__ import annotations


class Phi3ovError(Exception):
    """Base class. `str(err)` is the full message shown to a user."""

    http_status = 500
    code = "internal_error"

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message} {hint}" if hint else message)


def reason(err: BaseException) -> str:
    """The line of an OpenVINO error that says what is wrong (not the `Exception from file:line` ones)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    said = [line for line in lines if not line.startswith("Exception from ")]
    return (said or lines)[0][:200]


class BadOptions(Phi3ovError):
    """A generation option or a launch flag is out of range or malformed."""

    http_status = 400
    code = "invalid_request_error"


class BadInput(Phi3ovError):
    """A message the model cannot take (empty, non-text content, unknown role)."""

    http_status = 400
    code = "invalid_request_error"


class BadDocument(BadInput):
    """An attached file that cannot be read: not a kind we read, too big, encrypted, corrupt, or with no text."""

    code = "invalid_file"


class ContextOverflow(Phi3ovError):
    """The newest message (with the system prompt and the reply budget) does not fit."""

    http_status = 400
    code = "context_length_exceeded"


class ModelNotFound(Phi3ovError):
    http_status = 404
    code = "model_not_found"


class ModelNotServable(Phi3ovError):
    """A model folder exists but cannot be served as it is (missing IR, tokenizer, template)."""

    http_status = 503
    code = "model_not_servable"


class DownloadFailed(Phi3ovError):
    http_status = 502
    code = "download_failed"


class DeviceUnavailable(Phi3ovError):
    http_status = 503
    code = "device_unavailable"


class EngineNotReady(Phi3ovError):
    http_status = 503
    code = "engine_not_ready"


class GenerationFailed(Phi3ovError):
    """The backend failed while generating. The partial text, if any, is kept by the caller."""

    http_status = 500
    code = "generation_failed"


class ExportFailed(Phi3ovError):
    http_status = 500
    code = "export_failed"
