"""The engine interface over any OpenAI-compatible server (`--backend openai --base-url URL`).

This lets the same UI drive OpenVINO Model Server (which serves the same exported folder with
continuous batching and scales out), vLLM, or another phi3ov's API. Replies stream through the
official `openai` client; Stop closes the HTTP stream, which makes the server stop generating.

Token counts: the OpenAI API has no way to count a prompt's tokens before sending it, so
`count_tokens` estimates conservatively (about one token per 3 bytes of UTF-8 text, plus a few per
message for the chat template), which over-counts ordinary text. Trimming old turns therefore
happens a little early, never late; when the estimate is still short, the server's own
context_length_exceeded error comes back as ContextOverflow.

Penalties, log probabilities and structured output are passed on (a JSON schema as `response_format`,
a regex or grammar as vLLM's `guided_regex` / `guided_grammar`); the remote server refuses what it
cannot do, and its 400 comes back as such. Raw completions and token counts need the tokenizer here,
so they are refused with this backend.
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

from ..conversation import Fitted, Message
from ..errors import BadOptions, ContextOverflow, EngineNotReady, GenerationFailed, ModelNotFound
from ..logprobs import Piece, TokenLogprob
from ..options import GenerationOptions
from .base import Capabilities, Engine
from .reply import Emit, Runner, Stats, decode_speed

DEFAULT_CONTEXT_LENGTH = 4096  # when neither the flag nor the server says (phi3ov and vLLM send max_model_len)
BYTES_PER_TOKEN = 3
TOKENS_PER_MESSAGE = 8  # role markers and separators added by a chat template
TOKENS_PER_PROMPT = 16  # the template's start and the assistant's opening


def estimate_tokens(messages: list[Message]) -> int:
    """A generous token count for messages whose tokenizer lives on another machine."""
    text_tokens = sum(math.ceil(len(m["content"].encode()) / BYTES_PER_TOKEN) for m in messages)
    return text_tokens + TOKENS_PER_MESSAGE * len(messages) + TOKENS_PER_PROMPT


class RemoteEngine(Engine):
    """Replies from an OpenAI-compatible server; many at once (the server does the batching)."""

    capabilities = Capabilities(max_concurrency=16)  # the server does the batching; it refuses what it cannot do

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 context_length: int | None = None, timeout: float = 600):
        import openai

        self.base_url = base_url.rstrip("/")
        self.device = f"remote {self.base_url}"
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "none", timeout=timeout,
                                    max_retries=0)
        card = self._model_card(model)
        self.name = model or card["id"]
        served = card.get("max_model_len") or card.get("context_length")
        self.context_length = int(context_length or served or DEFAULT_CONTEXT_LENGTH)

    def _model_card(self, model: str | None) -> dict[str, Any]:
        """The server's entry for `model` (or its first model); checks that the server answers."""
        try:
            cards = [m.model_dump() for m in self.client.models.list().data]
        except Exception as err:  # noqa: BLE001 - turned into an actionable error
            raise self._error(err) from None
        if not cards:
            raise ModelNotFound(f"The server at {self.base_url} serves no model.",
                                "Check its configuration (for OVMS: the config.json or --source_model).")
        if model is None:
            return cards[0]
        for card in cards:
            if card.get("id") == model:
                return card
        raise ModelNotFound(f"The server at {self.base_url} has no model {model!r}; it serves "
                            f"{', '.join(repr(c.get('id')) for c in cards)}.", "Pass one of those with --remote-model.")

    def _error(self, err: Exception) -> Exception:
        import openai

        where = f"the model server at {self.base_url}"
        if isinstance(err, openai.APIConnectionError):
            return EngineNotReady(f"Cannot reach {where}: {str(err).rstrip('.')}.",
                                  "Start it, or check --base-url (for OVMS it usually ends in /v3).")
        if isinstance(err, openai.AuthenticationError):
            return BadOptions(f"{where} refused the API key.", "Pass its key with --remote-api-key.")
        if isinstance(err, openai.NotFoundError):
            return ModelNotFound(f"{where} answered 404: {_message(err)}",
                                 "Check --base-url and --remote-model.")
        if isinstance(err, openai.APIStatusError):
            if _code(err) == "context_length_exceeded":
                return ContextOverflow(f"{where} says the conversation is too long: {_message(err)}",
                                       "Shorten the message, or lower “max new tokens”.")
            if err.status_code == 400:
                return BadOptions(f"{where} refused the request: {_message(err)}")
            if err.status_code == 503:
                return EngineNotReady(f"{where} is not ready: {_message(err)}", "Try again shortly.")
            return GenerationFailed(f"{where} failed ({err.status_code}): {_message(err)}")
        return GenerationFailed(f"The request to {where} failed: {type(err).__name__}: {err}")

    def count_tokens(self, messages: list[Message]) -> int:
        return estimate_tokens(messages)

    def _runner(self, fitted: Fitted, options: GenerationOptions) -> Runner:
        request: dict[str, Any] = {
            "model": self.name, "messages": fitted.messages, "stream": True,
            "stream_options": {"include_usage": True}, "max_tokens": options.max_new_tokens,
            "temperature": options.temperature, "top_p": options.top_p,
            # Not in OpenAI's API, but OVMS, vLLM and phi3ov take them.
            "extra_body": {"top_k": options.top_k, "repetition_penalty": options.repetition_penalty},
        }
        if options.seed is not None:
            request["seed"] = options.seed
        if options.stop:
            request["stop"] = list(options.stop)
        if options.ignore_eos:
            request["extra_body"]["ignore_eos"] = True
        if options.presence_penalty or options.frequency_penalty:
            request["presence_penalty"], request["frequency_penalty"] = options.presence_penalty, options.frequency_penalty
        if options.logprobs:
            request["logprobs"], request["top_logprobs"] = True, options.top_logprobs
        if options.constraint is not None:  # OpenAI's response_format for a schema; vLLM's guided_* (phi3ov takes them)
            if options.constraint.kind == "json_schema":
                request["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "reply", "schema": json.loads(options.constraint.text)}}
            else:
                request["extra_body"][f"guided_{options.constraint.kind}"] = options.constraint.text

        def run(emit: Emit, stop: threading.Event) -> Stats:
            started = time.perf_counter()
            first = last = None
            chunks, usage = 0, None
            try:
                stream = self.client.chat.completions.create(**request)
            except Exception as err:  # noqa: BLE001 - turned into an actionable error
                raise self._error(err) from None
            try:
                for event in stream:
                    if stop.is_set():
                        break  # closing the stream below drops the connection; the server stops
                    usage = event.usage or usage
                    for choice in event.choices:
                        text = choice.delta.content if choice.delta else None
                        entries = remote_logprobs(choice) if options.logprobs else []
                        if text or entries:
                            last = time.perf_counter()
                            first = first or last
                            chunks += 1
                            emit(Piece(text or "", entries))
            except Exception as err:  # noqa: BLE001
                raise self._error(err) from None
            finally:
                stream.close()
            generated = usage.completion_tokens if usage else chunks
            return Stats(
                ttft_ms=(first - started) * 1000 if first else 0.0,
                tokens_per_s=decode_speed(generated, first, last) if first and last else 0.0,
                input_tokens=usage.prompt_tokens if usage else fitted.prompt_tokens,
                output_tokens=generated,
                total_s=time.perf_counter() - started,
                seed=options.seed,
            )

        return run

    def close(self) -> None:
        self.client.close()


def remote_logprobs(choice: Any) -> list[TokenLogprob]:
    """The log probabilities the remote server sent with a chunk, as TokenLogprob."""
    content = getattr(choice.logprobs, "content", None) if choice.logprobs else None

    def entry(item: Any, top: tuple = ()) -> TokenLogprob:
        return TokenLogprob(item.token, list(item.bytes or item.token.encode()), item.logprob, top)

    return [entry(item, tuple(entry(t) for t in item.top_logprobs or ())) for item in content or []]


def _message(err: Any) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(err, "message", err))


def _code(err: Any) -> str | None:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner.get("code")
    return getattr(err, "code", None)
