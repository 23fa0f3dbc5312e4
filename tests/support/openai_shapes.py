"""Does a JSON answer use only what OpenAI's own types allow? Checked against the `openai` package's models
(generated from OpenAI's OpenAPI description): every key must be a field of the type at that place, or one of
phi3ov's documented extensions; every value of a field typed as a set of literals (finish_reason, object,
role) must be one of them."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from pydantic import BaseModel

# Documented extensions (README "API"): names OpenAI does not use, each where it appears.
EXTENSIONS = {
    "ChatCompletion": {"prompt_logprobs"},  # vLLM's, when asked for
    "ChatCompletionChunk": {"prompt_logprobs"},
    "Choice": {"stopped_by", "prompt_logprobs"},  # phi3ov's (why a reply ended); vLLM's (completions)
    "CompletionChoice": {"stopped_by", "prompt_logprobs"},
    "Model": {"max_model_len", "loaded"},  # vLLM's; phi3ov's (the model menu's other models)
}

# The legacy completions' echoed prompt: its first token has no log probability (nothing comes before it), null
# as OpenAI's own API answered and vLLM does, though the generated types say float.
FIRST_MAY_BE_NULL = {"Logprobs": {"token_logprobs", "top_logprobs"}}


def _args(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _args(arg)]
    return [annotation]


def problems(value: Any, annotation: Any, where: str = "$") -> list[str]:
    """What in `value` the annotation (an openai type) does not allow, as readable lines."""
    found: list[str] = []
    options = _args(annotation)
    if value is None:
        return [] if type(None) in options or Any in options else [f"{where}: null where OpenAI has none"]
    literals = [o for o in options if typing.get_origin(o) is Literal]
    if literals and all(isinstance(o, type(None)) or typing.get_origin(o) is Literal or o is type(None)
                        for o in options):
        allowed = {v for o in literals for v in typing.get_args(o)}
        return [] if value in allowed else [f"{where}: {value!r} is not one of OpenAI's {sorted(map(str, allowed))}"]
    models = [o for o in options if isinstance(o, type) and issubclass(o, BaseModel)]
    if isinstance(value, dict) and models:
        model = models[0]
        fields = {(f.alias or name): f for name, f in model.model_fields.items()}
        for key, item in value.items():
            if key in FIRST_MAY_BE_NULL.get(model.__name__, set()) and isinstance(item, list) and item \
                    and item[0] is None:
                found += problems(item[1:], fields[key].annotation, f"{where}.{key}[1:]")
            elif key in fields:
                found += problems(item, fields[key].annotation, f"{where}.{key}")
            elif key not in EXTENSIONS.get(model.__name__, set()):
                found.append(f"{where}.{key}: not a field of OpenAI's {model.__name__}")
        return found
    lists = [o for o in options if typing.get_origin(o) in (list, typing.List)]  # noqa: UP006
    if isinstance(value, list) and lists:
        (inner,) = typing.get_args(lists[0]) or (Any,)
        for i, item in enumerate(value):
            found += problems(item, inner, f"{where}[{i}]")
    return found
