"""The engine: a conversation and generation options in, a stream of text out.

Every caller (the UI, the API, the terminal chat, the benchmark) uses one interface:

    reply = engine.chat(messages, options)   # validates and trims now: errors raise here
    for chunk in reply:                       # streams; closing the loop stops the backend
        ...
    reply.text, reply.stats, reply.finish_reason, reply.fitted.notice

`Reply` turns a backend's callback into a generator: a worker thread runs the backend, which
pushes text onto a queue; the worker always posts one final item (done or the exception), so
the consumer is never left waiting. `reply.stop()` or closing the generator sets a stop event
that the backend checks between tokens.

Conversations are never stored in an engine: each call gets the whole message list from its
caller.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

from .. import faults
from ..conversation import Fitted, Message, fit
from ..errors import (
    BadOptions,
    GenerationFailed,
    Phi3ovError,
)
from ..logprobs import Piece, PromptToken
from ..options import GenerationOptions

log = logging.getLogger(__name__)
prompt_log = logging.getLogger("phi3ov.prompts")



@dataclass(frozen=True)
class Stats:
    """Figures of one reply. Backend figures where the backend reports them."""

    ttft_ms: float  # time to first token
    tokens_per_s: float  # decode speed after the first token
    input_tokens: int
    output_tokens: int
    total_s: float
    seed: int | None = None
    steps: int | None = None  # pipeline steps that produced tokens (fewer than tokens when lookup pays off)

    def summary(self) -> str:
        return (
            f"first token {self.ttft_ms:.0f} ms · {self.tokens_per_s:.1f} tokens/s · "
            f"{self.input_tokens} prompt + {self.output_tokens} generated tokens · {self.total_s:.2f} s"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decode_speed(tokens: int, first: float, last: float) -> float:
    """Decode speed: the tokens after the first over the time from the first to the last (0 where undefined)."""
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


Emit = Callable[[str | Piece], None]  # text, or text with the log probabilities of its tokens
Runner = Callable[[Emit, threading.Event], Stats]

_DONE = object()


class Reply:
    """One streaming reply. Iterate once for text chunks; read the figures afterwards."""

    def __init__(self, run: Runner, fitted: Fitted, options: GenerationOptions, timeout_s: float | None = None):
        self._run = run
        self.timeout_s = timeout_s  # the reply is stopped this long after it starts (None: no limit)
        self.timed_out = False
        self.fitted = fitted
        self.options = options
        self.text = ""
        self.logprobs: list = []  # TokenLogprob of each generated token, when options.logprobs
        self.tokens_so_far = 0  # generated tokens streamed so far, where the backend counts them
        self.stats: Stats | None = None
        self.finish_reason: str | None = None  # "stop", "length", "cancelled" or "timeout"
        self._stop = threading.Event()
        self._started = False
        self.client_ttft_ms: float | None = None  # as seen by the consumer, queueing included
        self.prefix = ""  # a continued reply: the text it goes on from (the streamed text comes after it)
        self.prompt_logprobs: list[PromptToken] | None = None  # each prompt token scored, when options ask for it

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Ask the backend to stop; it ends within a token and the text so far is kept."""
        self._stop.set()

    def _time_out(self) -> None:
        self.timed_out = True
        self._stop.set()

    def __iter__(self) -> Iterator[str]:
        return (piece.text for piece in self.pieces() if piece.text)

    def pieces(self) -> Iterator[Piece]:
        """The reply as Pieces: text with the log probabilities of its tokens (empty unless asked for)."""
        if self._started:
            raise RuntimeError("A reply can be iterated only once.")
        self._started = True
        return self._stream()

    def _stream(self) -> Iterator[Piece]:
        chunks: queue.SimpleQueue = queue.SimpleQueue()
        outcome: list[Any] = []

        def work() -> None:
            try:
                outcome.append(self._run(chunks.put, self._stop))
            except BaseException as err:  # noqa: BLE001 - re-raised in the consumer
                outcome.append(err)
            finally:
                chunks.put(_DONE)

        started = time.perf_counter()
        worker = threading.Thread(target=work, name="phi3ov-generate", daemon=True)
        worker.start()
        timer = None
        if self.timeout_s:
            timer = threading.Timer(self.timeout_s, self._time_out)
            timer.daemon = True
            timer.start()
        try:
            done = False
            while not done:
                # Send what is ready: one chunk when the consumer keeps up, all the queued ones
                # joined when it fell behind, so a slow consumer costs one update, not one per token.
                pending = [chunks.get()]
                while pending[-1] is not _DONE:
                    try:
                        pending.append(chunks.get_nowait())
                    except queue.Empty:
                        break
                done = pending[-1] is _DONE
                items = [item if isinstance(item, Piece) else Piece(item) for item in pending if item is not _DONE]
                text = "".join(item.text for item in items)
                logprobs = [entry for item in items for entry in item.logprobs]
                self.tokens_so_far += sum(item.tokens for item in items)
                if not text and not logprobs:
                    continue
                if self.client_ttft_ms is None and text:
                    self.client_ttft_ms = (time.perf_counter() - started) * 1000
                self.text += text
                self.logprobs += logprobs
                yield Piece(text, logprobs, sum(item.tokens for item in items))
            result = outcome[0] if outcome else GenerationFailed("The generation ended without a result.")
            if isinstance(result, BaseException):
                if isinstance(result, Phi3ovError):
                    raise result
                detail = [line for line in str(result).splitlines() if line.strip()] or [""]
                raise GenerationFailed(
                    f"Generation failed: {type(result).__name__}: {detail[-1].strip()}",
                    "The text so far is kept; try again, or lower “max new tokens”.",
                ) from result
            self.stats = result
            if self.timed_out:
                self.finish_reason = "timeout"
            elif self._stop.is_set():
                self.finish_reason = "cancelled"
            elif result.output_tokens >= self.options.max_new_tokens:
                self.finish_reason = "length"
            else:
                self.finish_reason = "stop"
        finally:
            if timer is not None:
                timer.cancel()
            self._stop.set()  # a closed generator (Stop button, dropped client) stops the backend


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
