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

`LocalEngine` keeps one cached `openvino_genai.LLMPipeline` per (folder, device, properties)
and runs one generation at a time, first come first served. Conversations are never stored
here: each call gets the whole message list from its caller.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from . import faults
from .conversation import Fitted, Message, fit
from .errors import (
    BadOptions,
    ContextOverflow,
    DeviceUnavailable,
    GenerationFailed,
    ModelNotServable,
    Phi3ovError,
    reason,
)
from .logprobs import Piece, ReplyTokens, Scorer
from .models import ModelRef, read_info
from .settings import SEED_MAX, GenerationOptions
from .special_tokens import SpecialTokens
from .structured import GrammarChecker

log = logging.getLogger(__name__)
prompt_log = logging.getLogger("phi3ov.prompts")

DEVICES = ("CPU", "GPU", "NPU", "AUTO")
PROMPT_LOOKUP_TOKENS = 5  # candidate tokens copied from the chat per step (measured: docs/performance.md)
PROMPT_LOOKUP_NGRAM = 3  # the longest n-gram matched to find them


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
        self.stats: Stats | None = None
        self.finish_reason: str | None = None  # "stop", "length", "cancelled" or "timeout"
        self._stop = threading.Event()
        self._started = False
        self.client_ttft_ms: float | None = None  # as seen by the consumer, queueing included

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
                if not text and not logprobs:
                    continue
                if self.client_ttft_ms is None and text:
                    self.client_ttft_ms = (time.perf_counter() - started) * 1000
                self.text += text
                self.logprobs += logprobs
                yield Piece(text, logprobs)
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


class Engine:
    """What every backend offers. Subclasses set name/device/context_length and `_runner`."""

    name: str = "model"
    device: str = "CPU"
    context_length: int = 4096
    request_timeout_s: float | None = None  # each reply is stopped this long after it starts
    prompt_lookup: bool = False  # the backend proposes tokens copied from the chat (prompt-lookup decoding)
    fault: faults.Fault | None = None  # a failure to inject (faults.py, tests only)
    log_prompts: bool = False  # --log-prompts: one INFO line per reply with its messages (never by default)

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

    def chat(self, messages: list[Message], options: GenerationOptions | None = None) -> Reply:
        if self.log_prompts:  # the only place message text is logged, and only when asked for
            prompt_log.info("request messages: %s", json.dumps({"messages": messages}, ensure_ascii=False))
        options = self.capped(options or GenerationOptions())
        self.check_options(options)
        fitted = self.prepare(messages, options)
        return Reply(self._runner(fitted, options), fitted, options, self.request_timeout_s)

    def check_options(self, options: GenerationOptions) -> None:
        """Raise BadOptions for what this backend cannot honour (before any work starts)."""

    def complete(self, prompt: str, options: GenerationOptions | None = None) -> Reply:
        """A continuation of raw text, no chat template (the legacy completions API)."""
        raise BadOptions(f"Raw text completion is not available with the {type(self).__name__}.",
                         "Use the chat completions API.")

    def tokenize(self, text: str) -> list[int]:
        raise BadOptions(f"Tokenizing is not available with the {type(self).__name__}: its tokenizer is elsewhere.")

    def detokenize(self, ids: list[int]) -> str:
        raise BadOptions(f"Detokenizing is not available with the {type(self).__name__}: its tokenizer is elsewhere.")

    def count_prompt(self, messages: list[Message]) -> list[int]:
        """The token ids the model reads for these messages (chat template included)."""
        raise BadOptions(f"Tokenizing is not available with the {type(self).__name__}: its tokenizer is elsewhere.")

    def _runner(self, fitted: Fitted, options: GenerationOptions) -> Runner:
        raise NotImplementedError

    def warm_up(self) -> None:
        """Generate one token, so the first visitor does not wait for the device's first run."""

    def close(self) -> None:
        pass


class FairLock:
    """A lock granted in arrival order, so no request waits behind later ones."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> FairLock:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while self._serving != ticket:
                self._cond.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


def check_device(device: str) -> str:
    import openvino as ov

    device = device.strip().upper()
    base = device.split(".")[0].split(":")[0]
    if base not in DEVICES + ("HETERO", "MULTI"):
        raise DeviceUnavailable(f"Unknown device {device!r}.", f"Use one of {', '.join(DEVICES)}.")
    if base in ("AUTO", "HETERO", "MULTI"):
        return device
    available = ov.Core().available_devices
    if not any(d == device or d.split(".")[0] == device for d in available):
        raise DeviceUnavailable(
            f"Device {device} is not available on this machine (OpenVINO sees: {', '.join(available) or 'none'}).",
            "Use --device CPU, or install the device's driver (see the OpenVINO install guide for GPU/NPU).",
        )
    return device


def default_properties(cache_dir: Path) -> dict[str, str]:
    return {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "CACHE_DIR": str(cache_dir / "ov_cache")}


_pipelines: dict[tuple, Any] = {}
_pipelines_lock = threading.Lock()


def load_failed(folder: Path, device: str, err: Exception) -> ModelNotServable:
    """The error to raise when OpenVINO GenAI cannot load a model folder."""
    return ModelNotServable(f"OpenVINO GenAI could not load {folder} on {device}: {reason(err)}",
                            f"Run `phi3ov doctor {folder}` to see what is missing.")


def get_pipeline(folder: Path, device: str, properties: dict[str, str]) -> Any:
    """One LLMPipeline per (folder, device, properties) for the whole process, built lazily."""
    key = (str(Path(folder).resolve()), device, tuple(sorted(properties.items())))
    with _pipelines_lock:
        if key not in _pipelines:
            import openvino_genai as ov_genai

            started = time.perf_counter()
            try:
                _pipelines[key] = ov_genai.LLMPipeline(str(folder), device, **properties)
            except RuntimeError as err:
                raise load_failed(folder, device, err) from None
            log.info("Loaded %s on %s in %.1f s", folder, device, time.perf_counter() - started)
        return _pipelines[key]


class OpenVINOEngine(Engine):
    """What the OpenVINO GenAI engines share: model facts, chat template, token counts, stop tokens.

    A subclass calls `_load(model, device, make_pipeline)` with a function that builds its pipeline
    (an LLMPipeline or a ContinuousBatchingPipeline) for the checked device, and implements `_runner`.
    """

    def _properties(self, properties: dict[str, str] | None, cache_dir: Path | None, prompt_lookup: bool) -> dict:
        """The pipeline's properties: the given ones (else the defaults), with prompt lookup when asked."""
        from .settings import default_cache_dir

        self.prompt_lookup = prompt_lookup
        props = properties if properties is not None else default_properties(cache_dir or default_cache_dir())
        self.device_properties = dict(props)  # for the scorer's copy of the model (logprobs.py)
        return {**props, "prompt_lookup": True} if prompt_lookup else props

    def warm_up(self) -> None:
        started = time.perf_counter()
        list(self.chat([{"role": "user", "content": "Hi"}], GenerationOptions(max_new_tokens=1, temperature=0)))
        log.info("Warmed up in %.2f s", time.perf_counter() - started)

    def _load(self, model: ModelRef, device: str, make_pipeline: Callable[[str], Any]) -> None:
        self.model = model
        self.fault: faults.Fault | None = faults.from_env()  # a test hook; None unless PHI3OV_FAULT_INJECT is set
        self.name = model.name
        self.device = check_device(device)
        self.info = read_info(model.path)
        self.context_length = self.info.context_length
        self.pipeline = make_pipeline(self.device)
        self.tokenizer = self.pipeline.get_tokenizer()
        self.special_tokens = SpecialTokens.from_tokenizer(self.tokenizer)
        if not self.tokenizer.chat_template:
            raise ModelNotServable(
                f"{model.path} has no chat template, so a conversation cannot be formatted for it.",
                f"Run `phi3ov doctor {model.path}`; re-export with `phi3ov export` to get one.",
            )
        self.chat_template = self.tokenizer.chat_template
        self.base_config = self._model_config()
        self._grammar: GrammarChecker | None = None
        self._scorer: Scorer | None = None
        self._tools_lock = threading.Lock()
        self.stop_token_ids = set(self.base_config.stop_token_ids)
        for token in self.info.stop_tokens:  # e.g. Phi-3's <|end|>, which must end a reply
            ids = list(self.tokenizer.encode(token, add_special_tokens=False).input_ids.data[0])
            if len(ids) == 1:
                self.stop_token_ids.add(int(ids[0]))

    def _model_config(self) -> Any:
        """A fresh copy of the model's own generation defaults."""
        return self.pipeline.get_generation_config()

    def _history(self, messages: list[Message]) -> Any:
        """The messages for the chat template, their text defused: typed markers stay text. Tool calls' names
        and arguments and tool results are people's data too."""
        import openvino_genai as ov_genai

        return ov_genai.ChatHistory([self.special_tokens.defuse_all(m) for m in messages])

    def prompt(self, messages: list[Message], tools: tuple[dict, ...] = ()) -> str:
        """The exact text the model sees for these messages (the model's own chat template), with the tool
        definitions (defused too) where given."""
        defused = self.special_tokens.defuse_all(list(tools)) if tools else None
        return self.tokenizer.apply_chat_template(self._history(messages), add_generation_prompt=True, tools=defused)

    def prepare(self, messages: list[Message], options: GenerationOptions) -> Fitted:
        if not options.tools:
            return super().prepare(messages, options)
        return fit(messages, lambda kept: self.count_text(self.prompt(kept, options.tools)), self.context_length,
                   self.capped(options).max_new_tokens)

    def count_tokens(self, messages: list[Message]) -> int:
        return self.count_text(self.prompt(messages))

    def count_text(self, text: str) -> int:
        return int(self.tokenizer.encode(text, add_special_tokens=False).input_ids.shape[1])

    def _encode(self, text: str) -> list[int]:
        return [int(i) for i in self.tokenizer.encode(text, add_special_tokens=False).input_ids.data[0]]

    def count_prompt(self, messages: list[Message]) -> list[int]:
        return self._encode(self.prompt(messages))

    def tokenize(self, text: str) -> list[int]:
        """Token ids of raw text, read as people's text: markers typed in it stay text (special_tokens.py)."""
        return self._encode(self.special_tokens.defuse(text))

    def detokenize(self, ids: list[int]) -> str:
        vocab = len(self.tokenizer.get_vocab())
        if any(not 0 <= i < vocab for i in ids):
            raise BadOptions(f"Token ids must be between 0 and {vocab - 1} for this model.")
        return self.tokenizer.decode(ids, skip_special_tokens=False) if ids else ""

    def check_options(self, options: GenerationOptions) -> None:
        if options.constraint is not None:
            with self._tools_lock:
                self._grammar = self._grammar or GrammarChecker(self.tokenizer)
            self._grammar.check(options.constraint)

    def reply_tokens(self, prompt_ids: list[int], options: GenerationOptions) -> ReplyTokens:
        """Token ids to Pieces for one reply; with log probabilities from the scorer when asked for."""
        session = None
        if options.logprobs:
            with self._tools_lock:
                self._scorer = self._scorer or Scorer(str(self.model.path / "openvino_model.xml"), self.device,
                                                      self.device_properties, self.tokenizer)
            session = self._scorer.session(prompt_ids)
        return ReplyTokens(self.tokenizer, session, options.top_logprobs, self.stop_token_ids)

    def _runner(self, fitted: Fitted, options: GenerationOptions) -> Runner:
        return self._runner_for(self._encode(self.prompt(fitted.messages, options.tools)), fitted, options)

    def _runner_for(self, prompt_ids: list[int], fitted: Fitted, options: GenerationOptions) -> Runner:
        raise NotImplementedError

    def complete(self, prompt: str, options: GenerationOptions | None = None) -> Reply:
        options = self.capped(options or GenerationOptions())
        self.check_options(options)
        ids = self.tokenize(prompt)
        if not ids:
            raise BadOptions("The prompt is empty.", "Send some text to continue.")
        if len(ids) + options.max_new_tokens > self.context_length:
            raise ContextOverflow(f"The prompt ({len(ids)} tokens) and max_tokens={options.max_new_tokens} do not fit "
                                  f"the model's context of {self.context_length} tokens.",
                                  "Shorten the prompt, or lower max_tokens.")
        fitted = Fitted([{"role": "user", "content": prompt}], len(ids), 0)
        return Reply(self._runner_for(ids, fitted, options), fitted, options, self.request_timeout_s)

    def generation_config(self, options: GenerationOptions) -> tuple[Any, int]:
        config = self._model_config()
        config.max_new_tokens = options.max_new_tokens
        config.stop_token_ids = set(self.stop_token_ids)
        config.stop_strings = set(options.stop)
        config.include_stop_str_in_output = False
        config.repetition_penalty = options.repetition_penalty
        config.ignore_eos = options.ignore_eos
        config.presence_penalty = options.presence_penalty
        config.frequency_penalty = options.frequency_penalty
        if options.constraint is not None:
            config.structured_output_config = options.constraint.config()
        if self.prompt_lookup:
            # A prompt-lookup pipeline needs both on every request: turned down, it proposes one token a step
            # (switching it off entirely would take a second pipeline, i.e. the model's memory twice).
            on = options.prompt_lookup
            config.num_assistant_tokens, config.max_ngram_size = (PROMPT_LOOKUP_TOKENS, PROMPT_LOOKUP_NGRAM) if on \
                else (1, 1)
        seed = options.seed if options.seed is not None else random.randint(0, SEED_MAX)
        if options.greedy:
            config.do_sample = False
        else:
            config.do_sample = True
            config.temperature = options.temperature
            config.top_p = options.top_p
            config.top_k = options.top_k if options.top_k > 0 else 2**31 - 1
            config.rng_seed = seed
        return config, seed


class LocalEngine(OpenVINOEngine):
    """OpenVINO GenAI in this process: one LLMPipeline, one generation at a time, in order."""

    def __init__(self, model: ModelRef, device: str = "CPU", properties: dict[str, str] | None = None,
                 cache_dir: Path | None = None, prompt_lookup: bool = False):
        props = self._properties(properties, cache_dir, prompt_lookup)
        self._load(model, device, lambda dev: get_pipeline(model.path, dev, props))
        self._lock = FairLock()

    def _runner_for(self, prompt_ids: list[int], fitted: Fitted, options: GenerationOptions) -> Runner:
        import numpy as np
        import openvino as ov
        import openvino_genai as ov_genai

        config, seed = self.generation_config(options)
        ids = np.array([prompt_ids], dtype=np.int64)
        inputs = ov_genai.TokenizedInputs(ov.Tensor(ids), ov.Tensor(np.ones_like(ids)))

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

        def run(emit: Emit, stop: threading.Event) -> Stats:
            with self._lock:
                started = time.perf_counter()
                if stop.is_set():  # stopped while waiting in line
                    return Stats(0.0, 0.0, fitted.prompt_tokens, 0, 0.0, seed)
                streamer = Streamer(emit, stop, self.reply_tokens(prompt_ids, options), self.fault)
                result = self.pipeline.generate(inputs, config, streamer)
                total = time.perf_counter() - started
            if streamer.error is not None:
                raise streamer.error
            metrics = result.perf_metrics
            return Stats(
                ttft_ms=float(metrics.get_ttft().mean),
                tokens_per_s=float(metrics.get_throughput().mean),
                input_tokens=int(metrics.get_num_input_tokens()),
                output_tokens=int(metrics.get_num_generated_tokens()),
                total_s=total,
                seed=None if options.greedy else seed,
            )

        return run
