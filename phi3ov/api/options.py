"""Sampling parameters shared by chat and text completions, checked into GenerationOptions.

Every value is checked on its own first, so a 400 names the API parameter at fault. Parameters that
this server cannot honour are refused with a 400 saying so, never silently dropped: `logit_bias`
(OpenVINO GenAI's sampler has no per-token bias), `n` above 1, audio and predicted outputs. Tools: api/tools.py.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..engine import Engine
from ..errors import BadOptions
from ..options import GenerationOptions
from ..structured import Constraint, from_response_format
from .error_shapes import ApiError, bad

log = logging.getLogger(__name__)

UNSUPPORTED = ("audio", "prediction", "modalities", "web_search_options")
GUIDED = {"guided_json": "json_schema", "guided_regex": "regex", "guided_grammar": "grammar"}  # vLLM's extras


class StreamOptions(BaseModel):
    include_usage: bool = False  # OpenAI's: a last event with the usage
    continuous_usage_stats: bool = False  # vLLM's: with include_usage, the usage so far in every event too

    @staticmethod
    def of(options: StreamOptions | None) -> tuple[bool, bool]:
        """(usage at the end, usage in every event)."""
        last = bool(options and options.include_usage)
        return last, last and bool(options and options.continuous_usage_stats)


class SamplingRequest(BaseModel):
    """What chat and text completions share. Numbers are checked by GenerationOptions.parse."""

    model_config = ConfigDict(extra="allow")

    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Any = None
    temperature: Any = None
    top_p: Any = None
    top_k: Any = None
    repetition_penalty: Any = None
    presence_penalty: Any = None
    frequency_penalty: Any = None
    logit_bias: Any = None
    seed: Any = None
    stop: Any = None
    ignore_eos: Any = None
    prompt_lookup: Any = None
    user: Any = None
    n: int | None = None
    guided_json: Any = None
    guided_regex: Any = None
    guided_grammar: Any = None


def check_model_name(model: str, engine: Engine) -> None:
    """The request must name the model being served. One this machine has but does not serve now is a
    404 that says how to switch (a request never switches: that would change the model under every user)."""
    if model == engine.name:
        return
    others = engine.model_names()
    if model in others:
        raise ApiError(404, f"The model `{model}` is on this machine but not loaded; this server serves "
                       f"`{engine.name}` now. Switch to it in the chat page's model menu, or ask `{engine.name}`.",
                       param="model", code="model_not_loaded")
    raise ApiError(404, f"The model `{model}` does not exist on this server; it serves `{engine.name}` "
                   "(see GET /v1/models).", param="model", code="model_not_found")


def check_common(req: SamplingRequest, engine: Engine) -> None:
    """The model, n, the parameters refused here, and `user` (logged as a hash only)."""
    check_model_name(req.model, engine)
    if req.n not in (None, 1):
        raise bad("n", "Only `n=1` is supported: ask again for another reply.")
    if req.logit_bias not in (None, {}):
        raise bad("logit_bias", "`logit_bias` is not supported: OpenVINO GenAI's sampler cannot add a bias to "
                  "chosen tokens. Leave it out; to keep tokens out of a reply, use `stop`, or constrain the reply "
                  "with `response_format`.", code="unsupported_parameter")
    extra = req.model_extra or {}
    for name in UNSUPPORTED:
        if extra.get(name) not in (None, False, [], {}):
            raise bad(name, f"`{name}` is not supported by this server: leave it out.", code="unsupported_parameter")
    if req.user is not None:
        if not isinstance(req.user, str):
            raise bad("user", "`user` must be a string.")
        log.info("request for user %s", hashlib.sha256(req.user.encode()).hexdigest()[:12])


def constraint_of(req: SamplingRequest, response_format: Any = None) -> Constraint | None:
    """The structured-output constraint: OpenAI's `response_format`, or one of vLLM's guided_* parameters."""
    given = [name for name in GUIDED if getattr(req, name) is not None]
    if response_format is not None and given or len(given) > 1:
        names = (["response_format"] if response_format is not None else []) + given
        raise bad(names[-1], f"Give one of {', '.join(f'`{n}`' for n in names)}, not several.")
    try:
        if given:
            name = given[0]
            value = getattr(req, name)
            if name == "guided_json" and isinstance(value, dict):
                return from_response_format({"type": "json_schema", "json_schema": {"schema": value}})
            if not isinstance(value, str):
                raise BadOptions(f"`{name}` must be a string" + (" or a JSON schema object." if name == "guided_json"
                                                                  else "."))
            return Constraint(GUIDED[name], value)
        return from_response_format(response_format)
    except BadOptions as err:
        raise bad(given[0] if given else "response_format", str(err)) from None


def check_constraint(req: SamplingRequest, engine: Engine, options: GenerationOptions) -> None:
    """A constraint the grammar compiler rejects is a 400 naming the parameter that carried it."""
    if options.constraint is None:
        return
    try:
        engine.check_options(options)
    except BadOptions as err:
        param = next((name for name in GUIDED if getattr(req, name) is not None), "response_format")
        raise bad(param, str(err)) from None


def parse_options(req: SamplingRequest, *, max_tokens: tuple[str, Any], logprobs: bool, top_logprobs: int,
                  constraint: Constraint | None) -> GenerationOptions:
    """GenerationOptions from the request; a bad value is a 400 naming the API parameter."""
    values = {"max_new_tokens": max_tokens, "temperature": ("temperature", req.temperature),
              "top_p": ("top_p", req.top_p), "top_k": ("top_k", req.top_k),
              "repetition_penalty": ("repetition_penalty", req.repetition_penalty),
              "presence_penalty": ("presence_penalty", req.presence_penalty),
              "frequency_penalty": ("frequency_penalty", req.frequency_penalty),
              "seed": ("seed", req.seed), "stop": ("stop", req.stop), "ignore_eos": ("ignore_eos", req.ignore_eos),
              "prompt_lookup": ("prompt_lookup", req.prompt_lookup)}
    try:  # parsed once; only a refused request is parsed again, field by field, to name the parameter at fault
        return GenerationOptions.parse(**{name: value for name, (_, value) in values.items()}, logprobs=logprobs,
                                       top_logprobs=top_logprobs, constraint=constraint)
    except BadOptions as refused:
        for name, (param, value) in values.items():
            try:
                GenerationOptions.parse(**{name: value})
            except BadOptions as err:
                raise bad(param, f"Invalid `{param}`: {err}") from None
        raise refused


def whole_number(param: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad(param, f"`{param}` must be a whole number between {low} and {high}, got {value!r}.")
    return value
