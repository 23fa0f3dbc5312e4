"""POST /v1/completions: the legacy text API. A raw prompt is continued, no chat template applied.

`prompt` is a string, a list of token ids, or a list of either (one choice each, generated one after the
other). Text is read as people's text, so chat markers typed in it stay text (special_tokens.py); token ids
are taken as they are, special ones included (the caller chose them). `echo` puts the prompt in front of the
text; `logprobs: N` (0 to 20) lists the log probability of each generated token with the N most likely ones,
in the legacy shape (tokens, token_logprobs, top_logprobs, text_offset). With `echo` too, the prompt's tokens
come first in those lists, scored by the model in one pass over the prompt (the first one's log probability
is null: nothing comes before it), which is what lm-evaluation-harness reads for multiple-choice and
perplexity tasks. vLLM's `prompt_logprobs: N` gives the same scores as each choice's `prompt_logprobs` (token
id -> logprob, rank, decoded_token). `suffix` and `best_of` above 1 are refused.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

from ..engine import Engine, Reply
from ..errors import BadOptions
from ..logprobs import Piece, PromptToken
from ..options import GenerationOptions
from ..settings import ServerSettings
from .error_shapes import ApiError
from .options import (
    SamplingRequest,
    bad,
    check_common,
    check_constraint,
    constraint_of,
    parse_options,
    whole_number,
)
from .replies import finish_reason, stopped_by, usage

MAX_PROMPTS = 16


class CompletionRequest(SamplingRequest):
    """The body of POST /v1/completions."""

    prompt: Any = None
    echo: Any = None
    logprobs: Any = None
    suffix: Any = None
    best_of: Any = None
    prompt_logprobs: Any = None  # vLLM's


Prompt = str | list[int]


def is_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and \
        all(isinstance(i, int) and not isinstance(i, bool) for i in value)


def read_prompts(prompt: Any, settings: ServerSettings) -> list[Prompt]:
    """OpenAI's four shapes of `prompt`: a string, token ids, a list of strings, a list of token id lists."""
    prompts = [prompt] if isinstance(prompt, str) or is_ids(prompt) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) or is_ids(p) for p in prompts):
        raise bad("prompt", "`prompt` must be a string, a list of token ids, or a list of strings or of token id "
                  "lists.")
    if len(prompts) > MAX_PROMPTS:
        raise bad("prompt", f"At most {MAX_PROMPTS} prompts per request, got {len(prompts)}.")
    if any(isinstance(p, str) and len(p) > settings.max_message_chars for p in prompts):
        raise bad("prompt", f"A prompt may be at most {settings.max_message_chars} characters.")
    if any(i < 0 for p in prompts if not isinstance(p, str) for i in p):
        raise bad("prompt", "Token ids are whole numbers of 0 and up.")
    return prompts


def parse_completion(req: CompletionRequest, engine: Engine, settings: ServerSettings
                     ) -> tuple[list[Prompt], GenerationOptions]:
    check_common(req, engine)
    prompts = read_prompts(req.prompt, settings)
    if req.echo not in (None, True, False):
        raise bad("echo", f"`echo` must be true or false, got {req.echo!r}.")
    if req.suffix not in (None, ""):
        raise bad("suffix", "`suffix` (insertion) is not supported: the served model has no fill-in-the-middle mode.",
                  code="unsupported_parameter")
    if req.best_of not in (None, 1):
        raise bad("best_of", "Only `best_of=1` is supported.", code="unsupported_parameter")
    top = None if req.logprobs is None else whole_number("logprobs", req.logprobs, 0, 20)
    scored = None if req.prompt_logprobs is None else whole_number("prompt_logprobs", req.prompt_logprobs, 0, 20)
    if top is not None and req.echo:
        scored = top if scored is None else max(scored, top)
    options = parse_options(req, max_tokens=("max_tokens", 16 if req.max_tokens is None else req.max_tokens),
                            logprobs=top is not None, top_logprobs=top or 0, constraint=constraint_of(req))
    check_constraint(req, engine, options)
    return prompts, dataclasses.replace(options, prompt_logprobs=scored)


def start_replies(engine: Engine, prompts: list[Prompt], options: GenerationOptions) -> list[Reply]:
    try:
        return [engine.complete(prompt, options) for prompt in prompts]
    except BadOptions as err:  # a token id past the vocabulary, an empty prompt
        raise ApiError.from_domain(err, param="prompt") from None


def prompt_text(reply: Reply) -> str:
    """The prompt as text (token ids written out), for `echo`."""
    return reply.fitted.messages[-1]["content"]


def legacy_logprobs(entries: list, start: int) -> dict[str, Any]:
    """The completions API's logprobs: parallel lists, and each token's offset in the choice's text."""
    offsets, at = [], start
    for entry in entries:
        offsets.append(at)
        at += len(entry.token) if not entry.token.startswith("bytes:") else 0
    return {"tokens": [e.token for e in entries], "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{t.token: t.logprob for t in e.top} for e in entries], "text_offset": offsets}


def prompt_legacy_logprobs(scored: list[PromptToken], top: int) -> dict[str, Any]:
    """The prompt's tokens in the legacy shape: the first one's log probability (and alternatives) null."""
    offsets, at = [], 0
    for token in scored:
        offsets.append(at)
        at += len(token.token) if not token.token.startswith("bytes:") else 0
    return {"tokens": [t.token for t in scored], "token_logprobs": [t.logprob for t in scored],
            "top_logprobs": [None if t.logprob is None else {a.token: a.logprob for a in t.top[:top]}
                             for t in scored], "text_offset": offsets}


def joined(*parts: dict[str, Any]) -> dict[str, Any]:
    return {key: [v for part in parts for v in part[key]] for key in parts[0]}


def echoed_logprobs(reply: Reply, echo: bool) -> dict[str, Any] | None:
    """The echoed prompt's tokens in the legacy logprobs (with `echo` and `logprobs`), else None."""
    if not (echo and reply.options.logprobs and reply.prompt_logprobs is not None):
        return None
    return prompt_legacy_logprobs(reply.prompt_logprobs, reply.options.top_logprobs)


def vllm_prompt_logprobs(reply: Reply) -> list[dict | None] | None:
    return None if reply.prompt_logprobs is None else [t.vllm() for t in reply.prompt_logprobs]


def completion_response(replies: list[Reply], echo: bool, model: str, scores: bool = False) -> dict[str, Any]:
    """The whole response; `scores`: the request asked for vLLM's `prompt_logprobs`."""
    choices = []
    for index, reply in enumerate(replies):
        head = prompt_text(reply) if echo else ""
        logprobs = legacy_logprobs(reply.logprobs, len(head)) if reply.options.logprobs else None
        if (prompt := echoed_logprobs(reply, echo)) is not None:
            logprobs = joined(prompt, logprobs)
        choice = {"index": index, "text": head + reply.text, "finish_reason": finish_reason(reply),
                  **stopped_by(reply), "logprobs": logprobs}
        if scores:
            choice["prompt_logprobs"] = vllm_prompt_logprobs(reply)
        choices.append(choice)
    return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
            "model": model, "choices": choices, "usage": usage(replies)}


class CompletionEvents:
    """text_completion events: the echoed prompt first (when asked), then the text, then the finish."""

    def __init__(self, model: str, echo: bool, scores: bool = False):
        self.base = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                     "model": model}
        self.echo, self.scores = echo, scores
        self.offsets: dict[int, int] = {}

    def choice(self, index: int, text: str, logprobs: dict | None = None, finish: str | None = None,
               **extra: Any) -> dict:
        return {**self.base, "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish,
                                          **extra}]}

    def __call__(self, index: int, reply: Reply, piece: Piece | None) -> list[dict[str, Any]]:
        events = []
        if index not in self.offsets:  # the reply's first event: the echoed prompt, the prompt's scores
            head = prompt_text(reply) if self.echo else ""
            self.offsets[index] = len(head)
            extra = {"prompt_logprobs": vllm_prompt_logprobs(reply)} if self.scores else {}
            if head or extra:
                events.append(self.choice(index, head, echoed_logprobs(reply, self.echo), **extra))
        if piece is None:
            events.append(self.choice(index, "", finish=finish_reason(reply), **stopped_by(reply)))
        else:
            logprobs = legacy_logprobs(piece.logprobs, self.offsets[index]) if reply.options.logprobs else None
            self.offsets[index] += len(piece.text)
            events.append(self.choice(index, piece.text, logprobs))
        return events

    def usage_event(self) -> dict[str, Any]:
        return {**self.base, "choices": []}

