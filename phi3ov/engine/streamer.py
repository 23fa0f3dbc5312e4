"""The single engine's streamer: one class at module level, as in the OpenVINO GenAI samples (callback -> queue)."""

from __future__ import annotations

import threading
from typing import Any

import openvino_genai as ov_genai

from .. import faults
from ..logprobs import ReplyTokens
from .reply import Emit


class Streamer(ov_genai.StreamerBase):
    """Token ids from the pipeline, text out at once (see logprobs.ReplyTokens); STOP once stopped.

    The pipeline calls these methods from C++: an exception escaping them aborts the whole
    process. So none escapes: a failure is kept, stops the generation, and is raised once
    `generate` has returned (one reply fails, the server goes on).
    """

    def __init__(self, emit: Emit, stop: threading.Event, tokens: ReplyTokens, fault: faults.Fault | None):
        super().__init__()
        self.emit, self.stop, self.tokens = emit, stop, tokens
        self.fault, self.generated = fault, 0
        self.error: BaseException | None = None

    def write(self, token: Any) -> ov_genai.StreamingStatus:
        if self.stop.is_set() or self.error is not None:
            return ov_genai.StreamingStatus.STOP
        try:
            ids = token if isinstance(token, list) else [token]
            self.generated += len(ids)
            if self.fault is not None:
                self.fault.check(self.generated)
            if piece := self.tokens.push(ids):
                self.emit(piece)
        except BaseException as err:  # noqa: BLE001 - raised after generate returns
            self.error = err
            return ov_genai.StreamingStatus.STOP
        return ov_genai.StreamingStatus.RUNNING

    def end(self) -> None:
        try:
            if not self.stop.is_set() and self.error is None and (rest := self.tokens.end()):
                self.emit(rest)
        except BaseException as err:  # noqa: BLE001 - raised after generate returns
            self.error = err
