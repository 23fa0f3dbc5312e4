"""POST /v1/completions: the legacy text API. A raw prompt is continued, no chat template applied.

`prompt` is a string or a list of strings (one choice each, generated one after the other); the
prompt is read as people's text, so chat markers typed in it stay text (special_tokens.py). `echo`
puts the prompt in front of the text; `logprobs: N` (0 to 20) lists the log probability of each
generated token with the N most likely ones, in the legacy shape (tokens, token_logprobs,
top_logprobs, text_offset). The prompt's own log probabilities are not computed: `echo` with
`logprobs` is a 400. `suffix` and `best_of` above 1 are refused too.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ..engine import Engine, Reply
from ..logprobs import Piece
from ..options import GenerationOptions
from ..settings import ServerSettings
from .options import (
    SamplingRequest,
    bad,
    check_common,
    check_constraint,
    constraint_of,
    parse_options,
    whole_number,
)
from .replies import finish_reason, usage

MAX_PROMPTS = 16


class CompletionRequest(SamplingRequest):
    """The body of POST /v1/completions."""

    prompt: Any = None
    echo: Any = None
    logprobs: Any = None
    suffix: Any = None
    best_of: Any = None


def parse_completion(req: CompletionRequest, engine: Engine, settings: ServerSettings
                     ) -> tuple[list[str], GenerationOptions]:
    check_common(req, engine)
    prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise bad("prompt", "`prompt` must be a string or a list of strings (token ids are not taken here).")
    if len(prompts) > MAX_PROMPTS:
        raise bad("prompt", f"At most {MAX_PROMPTS} prompts per request, got {len(prompts)}.")
    if any(len(p) > settings.max_message_chars for p in prompts):
        raise bad("prompt", f"A prompt may be at most {settings.max_message_chars} characters.")
    if req.echo not in (None, True, False):
        raise bad("echo", f"`echo` must be true or false, got {req.echo!r}.")
    if req.suffix not in (None, ""):
        raise bad("suffix", "`suffix` (insertion) is not supported: the served model has no fill-in-the-middle mode.",
                  code="unsupported_parameter")
    if req.best_of not in (None, 1):
        raise bad("best_of", "Only `best_of=1` is supported.", code="unsupported_parameter")
    top = None if req.logprobs is None else whole_number("logprobs", req.logprobs, 0, 20)
    if top is not None and req.echo:
        raise bad("logprobs", "`echo` with `logprobs` is not supported: the prompt's own log probabilities are not "
                  "computed here. Leave one of them out.", code="unsupported_parameter")
    options = parse_options(req, max_tokens=("max_tokens", 16 if req.max_tokens is None else req.max_tokens),
                            logprobs=top is not None, top_logprobs=top or 0, constraint=constraint_of(req))
    check_constraint(req, engine, options)
    return prompts, options


def start_replies(engine: Engine, prompts: list[str], options: GenerationOptions) -> list[Reply]:
    return [engine.complete(prompt, options) for prompt in prompts]


def legacy_logprobs(entries: list, start: int) -> dict[str, Any]:
    """The completions API's logprobs: parallel lists, and each token's offset in the choice's text."""
    offsets, at = [], start
    for entry in entries:
        offsets.append(at)
        at += len(entry.token) if not entry.token.startswith("bytes:") else 0
    return {"tokens": [e.token for e in entries], "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{t.token: t.logprob for t in e.top} for e in entries], "text_offset": offsets}


def completion_response(replies: list[Reply], prompts: list[str], echo: bool, model: str) -> dict[str, Any]:
    choices = []
    for index, (reply, prompt) in enumerate(zip(replies, prompts, strict=True)):
        head = prompt if echo else ""
        choices.append({"index": index, "text": head + reply.text, "finish_reason": finish_reason(reply),
                        "logprobs": legacy_logprobs(reply.logprobs, len(head)) if reply.options.logprobs else None})
    return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
            "model": model, "choices": choices, "usage": usage(replies)}


class CompletionEvents:
    """text_completion events: the echoed prompt first (when asked), then the text, then the finish."""

    def __init__(self, model: str, prompts: list[str], echo: bool):
        self.base = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                     "model": model}
        self.prompts, self.echo = prompts, echo
        self.offsets = [len(p) if echo else 0 for p in prompts]
        self.echoed: set[int] = set()

    def choice(self, index: int, text: str, logprobs: dict | None = None, finish: str | None = None) -> dict:
        return {**self.base, "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}]}

    def __call__(self, index: int, reply: Reply, piece: Piece | None) -> list[dict[str, Any]]:
        events = []
        if self.echo and index not in self.echoed:
            self.echoed.add(index)
            events.append(self.choice(index, self.prompts[index]))
        if piece is None:
            events.append(self.choice(index, "", finish=finish_reason(reply)))
        else:
            logprobs = legacy_logprobs(piece.logprobs, self.offsets[index]) if reply.options.logprobs else None
            self.offsets[index] += len(piece.text)
            events.append(self.choice(index, piece.text, logprobs))
        return events

    def usage_event(self) -> dict[str, Any]:
        return {**self.base, "choices": []}

