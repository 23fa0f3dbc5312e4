"""POST /tokenize, POST /detokenize and GET /tokenizer_info, as vLLM offers them, so a client can count
tokens before sending, and tokenize remotely (lm-evaluation-harness's `tokenizer_backend=remote`).

/tokenize takes either `messages` (counted exactly as /v1/chat/completions would send them: the model's chat
template applied, markers typed in the text kept as text) or `prompt` (raw text, read as /v1/completions
reads it: markers typed in it stay text too, so `<|im_start|>` is several tokens, not the special one).
`add_special_tokens: true` adds what the tokenizer adds around a text (a BOS token for some models; vLLM's
default is true, phi3ov's false, as /v1/completions reads a prompt). It answers `{"count", "max_model_len",
"tokens"}`. /detokenize takes `tokens` (ids) and answers `{"prompt"}`, special tokens written out.
/tokenizer_info answers the tokenizer's facts: its special tokens (text and id), `model_max_length` (the
context served) and `chat_template`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from ..engine import Engine
from ..errors import Phi3ovError
from ..settings import ServerSettings
from .chat import ChatCompletionRequest, parse_messages
from .error_shapes import ApiError
from .options import bad

MAX_DETOKENIZE = 100_000


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    prompt: Any = None
    messages: Any = None
    add_special_tokens: Any = False


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    tokens: Any = None


def check_model(model: str | None, engine: Engine) -> None:
    if model is not None and model != engine.name:
        raise ApiError(404, f"The model `{model}` does not exist on this server; it serves `{engine.name}`.",
                       param="model", code="model_not_found")


def tokenize(req: TokenizeRequest, engine: Engine, settings: ServerSettings) -> dict[str, Any]:
    check_model(req.model, engine)
    if (req.prompt is None) == (req.messages is None):
        raise bad("prompt", "Send either `prompt` (raw text) or `messages` (a chat), not both or neither.")
    try:
        if req.messages is not None:
            if not isinstance(req.messages, list) or not req.messages:
                raise bad("messages", "`messages` must be a non-empty list of messages.")
            chat = ChatCompletionRequest(model=engine.name, messages=req.messages)
            tokens = engine.count_prompt(parse_messages(chat, settings))
        else:
            if not isinstance(req.prompt, str):
                raise bad("prompt", "`prompt` must be a string.")
            if len(req.prompt) > settings.max_message_chars:
                raise bad("prompt", f"`prompt` may be at most {settings.max_message_chars} characters.")
            if not isinstance(req.add_special_tokens, bool):
                raise bad("add_special_tokens", "`add_special_tokens` must be true or false.")
            tokens = engine.tokenize(req.prompt, add_special_tokens=req.add_special_tokens)
    except Phi3ovError as err:
        raise ApiError.from_domain(err) from None
    return {"count": len(tokens), "max_model_len": engine.context_length, "tokens": tokens}


def detokenize(req: DetokenizeRequest, engine: Engine) -> dict[str, Any]:
    check_model(req.model, engine)
    ids = req.tokens
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise bad("tokens", "`tokens` must be a list of token ids (whole numbers).")
    if len(ids) > MAX_DETOKENIZE:
        raise bad("tokens", f"At most {MAX_DETOKENIZE} tokens per request.")
    try:
        return {"prompt": engine.detokenize(ids)}
    except Phi3ovError as err:
        raise ApiError.from_domain(err, param="tokens") from None


def tokenizer_info(engine: Engine) -> dict[str, Any]:
    """vLLM's GET /tokenizer_info: what a client needs to tokenize through /tokenize and /detokenize."""
    try:
        facts = engine.special_token_texts()
    except Phi3ovError as err:
        raise ApiError.from_domain(err) from None
    return {"tokenizer_class": "openvino_tokenizers", "model": engine.name, "model_max_length": engine.context_length,
            "chat_template": engine.chat_template, **facts}
