"""The engine: a conversation and generation options in, a stream of text out.

Every caller (the UI, the API, the terminal chat, the benchmark) uses one interface:

    reply = engine.chat(messages, options)   # validates and trims now: errors raise here
    for chunk in reply:                       # streams; closing the loop stops the backend
        ...
    reply.text, reply.stats, reply.finish_reason, reply.fitted.notice

`Reply` (reply.py) turns a backend's callback into a stream, for a thread or an event loop.

Conversations are never stored in an engine: each call gets the whole message list from its
caller.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from .. import faults
from ..conversation import Fitted, Message, fit
from ..errors import BadOptions
from ..options import GenerationOptions
from .reply import Reply, Runner

log = logging.getLogger(__name__)
prompt_log = logging.getLogger("phi3ov.prompts")


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared by the backend and read by its callers (never probed)."""

    max_concurrency: int = 1  # replies generated at once; more wait their turn (the UI's and the API's slots)
    can_switch: bool = False  # model_names() lists more than the served model, and switch() serves another
    can_continue: bool = False  # continue_reply(): the model goes on from a reply's text
    can_tokenize: bool = False  # tokenize, detokenize, count_prompt and complete() with the model's own tokenizer
    deterministic: bool = False  # --deterministic: a greedy or seeded reply is the same alone, again or among others


class Engine:
    """What every backend offers. Subclasses set name/device/context_length/capabilities and `_runner`."""

    name: str = "model"
    device: str = "CPU"
    context_length: int = 4096
    capabilities: Capabilities = Capabilities()
    chat_template: str = ""  # the model's chat template, where this process has it
    request_timeout_s: float | None = None  # each reply is stopped this long after it starts
    prompt_lookup: bool = False  # the backend proposes tokens copied from the chat (prompt-lookup decoding)
    fault: faults.Fault | None = None  # a failure to inject (faults.py, tests only)
    log_prompts: bool = False  # --log-prompts: one INFO line per reply with its messages (never by default)

    @property
    def running(self) -> int | None:
        """Replies waiting for or inside the backend now; None where the backend does not count them."""
        return None

    def model_names(self) -> list[str]:
        """The models this server can serve, the served one first (others only where capabilities.can_switch)."""
        return [self.name]

    def switch(self, name: str) -> float:
        """Serve the model called `name` from now on; returns the seconds it took to load."""
        raise BadOptions(f"This server serves {self.name} only.", "Start it with another --model to serve another.")

    def count_tokens(self, messages: list[Message]) -> int:
        raise NotImplementedError

    def count_text(self, text: str) -> int:
        """Tokens in a piece of reply text (for live figures); exact where the engine has a tokenizer."""
        return self.count_tokens([{"role": "assistant", "content": text}])

    def capped(self, options: GenerationOptions) -> GenerationOptions:
        """The options with max_new_tokens cut to half the context when it would not leave room for a prompt."""
        if options.max_new_tokens >= self.context_length:
            options = replace(options, max_new_tokens=self.context_length // 2)
        return options

    def prepare(self, messages: list[Message], options: GenerationOptions) -> Fitted:
        """Trim to the context budget (raises ContextOverflow when the newest message cannot fit)."""
        return fit(messages, self.count_tokens, self.context_length, self.capped(options).max_new_tokens)

    def chat(self, messages: list[Message], options: GenerationOptions | None = None,
             fitted: Fitted | None = None) -> Reply:
        """The reply to `messages`; `fitted` is what `prepare(messages, options)` gave the caller's own check, so
        the conversation is fitted once."""
        if self.log_prompts:  # the only place message text is logged, and only when asked for
            prompt_log.info("request messages: %s", json.dumps({"messages": messages}, ensure_ascii=False))
        options = self.capped(options or GenerationOptions())
        self.check_options(options)
        fitted = fitted or self.prepare(messages, options)
        return self._reply(fitted, options)

    def _reply(self, fitted: Fitted, options: GenerationOptions) -> Reply:
        if options.prompt_logprobs is not None:
            raise BadOptions(f"Prompt log probabilities are not available with the {type(self).__name__}: "
                             "the model's weights are elsewhere.", "Leave out `prompt_logprobs` and `echo`.")
        return Reply(self._runner(fitted, options), fitted, options, self.request_timeout_s)

    def check_options(self, options: GenerationOptions) -> None:
        """Raise BadOptions for what this backend cannot honour (before any work starts)."""

    def continue_reply(self, messages: list[Message], options: GenerationOptions | None = None) -> Reply:
        """More of the last message, an assistant's reply cut at the length limit: the model reads the
        conversation and the reply so far, and writes on (`reply.prefix` is the text it goes on from)."""
        raise BadOptions(f"Continuing a reply is not available with the {type(self).__name__}.",
                         "Regenerate the reply with a larger “max new tokens” instead.")

    def complete(self, prompt: str | list[int], options: GenerationOptions | None = None) -> Reply:
        """A continuation of raw text (or of token ids, taken as they are), no chat template (the legacy
        completions API)."""
        raise BadOptions(f"Raw text completion is not available with the {type(self).__name__}.",
                         "Use the chat completions API.")

    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[int]:
        raise BadOptions(f"Tokenizing is not available with the {type(self).__name__}: its tokenizer is elsewhere.")

    def detokenize(self, ids: list[int]) -> str:
        raise BadOptions(f"Detokenizing is not available with the {type(self).__name__}: its tokenizer is elsewhere.")

    def special_token_texts(self) -> dict[str, Any]:
        """The tokenizer's bos, eos and pad tokens (text and id), for a client that tokenizes remotely."""
        raise BadOptions(f"Tokenizer facts are not available with the {type(self).__name__}: its tokenizer is "
                         "elsewhere.")

    def count_prompt(self, messages: list[Message]) -> list[int]:
        """The token ids the model reads for these messages (chat template included)."""
        raise BadOptions(f"Tokenizing is not available with the {type(self).__name__}: its tokenizer is elsewhere.")

    def _runner(self, fitted: Fitted, options: GenerationOptions) -> Runner:
        raise NotImplementedError

    def warm_up(self) -> None:
        """Generate one token, so the first visitor does not wait for the device's first run."""

    def close(self) -> None:
        pass
