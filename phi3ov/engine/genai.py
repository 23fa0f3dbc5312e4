"""What the OpenVINO GenAI engines share: the device check, cached pipelines, the model's facts, chat template,
token counts and generation config (LocalEngine in local.py, BatchedEngine in batched.py)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import faults
from ..conversation import Fitted, Message, fit
from ..detokenizer import token_texts
from ..errors import (
    BadInput,
    BadOptions,
    ContextOverflow,
    DeviceUnavailable,
    ModelNotServable,
    reason,
)
from ..logprobs import PromptToken, ReplyTokens, Scorer
from ..models import ModelRef, read_info, weight_group_size
from ..options import SEED_MAX, GenerationOptions
from ..special_tokens import SpecialTokens
from ..structured import GrammarChecker
from .base import Engine
from .reply import Reply, Runner

log = logging.getLogger(__name__)

DEVICES = ("CPU", "GPU", "NPU", "AUTO")
PROMPT_LOOKUP_TOKENS = 5  # candidate tokens copied from the chat per step (measured: docs/performance.md)
PROMPT_LOOKUP_NGRAM = 3  # the longest n-gram matched to find them
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


def model_properties(folder: Path, device: str) -> dict[str, str]:
    """Properties a model's own weights call for. On CPU, activations are quantized on the fly in groups of the int4
    weights' own group size: on Phi-3-mini's widths (group 128) this read a 2,000-token prompt 1.33x as fast and
    decoded 1.23x as fast as OpenVINO's default of 32 (`phi3ov bench --shape phi3-mini --prefill-levers`); a group
    larger than the weights' was slower than either."""
    group = weight_group_size(folder)  # a scan of the IR: done here, once per load, not in read_info
    return {"DYNAMIC_QUANTIZATION_GROUP_SIZE": str(group)} if group and device.upper() == "CPU" else {}


_pipelines: dict[tuple, Any] = {}
_pipelines_lock = threading.Lock()


def _id(token_id: int) -> int | None:
    return int(token_id) if token_id is not None and token_id >= 0 else None


def capped_context(model_context: int, cap: int | None) -> int:
    """The context served: the model's own, capped by --context-length (never raised by it)."""
    return min(model_context, cap or model_context)


def load_failed(folder: Path, device: str, err: Exception) -> ModelNotServable:
    """The error to raise when OpenVINO GenAI cannot load a model folder."""
    return ModelNotServable(f"OpenVINO GenAI could not load {folder} on {device}: {reason(err)}",
                            f"Run `phi3ov doctor {folder}` to see what is missing.")


def get_pipeline(folder: Path, device: str, properties: dict[str, str], prefix_caching: bool = True) -> Any:
    """One LLMPipeline per (folder, device, properties, prefix caching) for the whole process, built lazily.

    On CPU an LLMPipeline runs on the paged-attention backend, whose prefix cache is on by default: a prompt
    that shares blocks with an earlier one is computed another way. `prefix_caching=False` turns it off.
    """
    key = (str(Path(folder).resolve()), device, tuple(sorted(properties.items())), prefix_caching)
    with _pipelines_lock:
        if key not in _pipelines:
            import openvino_genai as ov_genai

            started = time.perf_counter()
            extra: dict[str, Any] = {}
            if not prefix_caching:
                scheduler = ov_genai.SchedulerConfig()
                scheduler.enable_prefix_caching = False
                extra["scheduler_config"] = scheduler
            try:
                _pipelines[key] = ov_genai.LLMPipeline(str(folder), device, **properties, **extra)
            except RuntimeError as err:
                raise load_failed(folder, device, err) from None
            log.info("Loaded %s on %s in %.1f s", folder, device, time.perf_counter() - started)
        return _pipelines[key]


class OpenVINOEngine(Engine):
    """What the OpenVINO GenAI engines share: model facts, chat template, token counts, stop tokens.

    A subclass calls `_load(model, device, make_pipeline)` with a function that builds its pipeline
    (an LLMPipeline or a ContinuousBatchingPipeline) for the checked device, and implements `_runner`.
    """

    def _properties(self, model: ModelRef, device: str, properties: dict[str, str] | None, cache_dir: Path | None,
                    prompt_lookup: bool) -> dict:
        """The pipeline's properties: what the model's weights call for (model_properties), then the given ones (else
        the defaults), which win; with prompt lookup when asked."""
        from ..settings import default_cache_dir

        self.prompt_lookup = prompt_lookup
        given = properties if properties is not None else default_properties(cache_dir or default_cache_dir())
        props = {**model_properties(model.path, device), **given}
        if props.get("DYNAMIC_QUANTIZATION_GROUP_SIZE") and "DYNAMIC_QUANTIZATION_GROUP_SIZE" not in given:
            log.info("Dynamic quantization in groups of %s, the weights' own int4 group size",
                     props["DYNAMIC_QUANTIZATION_GROUP_SIZE"])
        self.device_properties = dict(props)  # for the scorer's copy of the model (logprobs.py)
        return {**props, "prompt_lookup": True} if prompt_lookup else props

    def warm_up(self) -> None:
        started = time.perf_counter()
        list(self.chat([{"role": "user", "content": "Hi"}], GenerationOptions(max_new_tokens=1, temperature=0)))
        log.info("Warmed up in %.2f s", time.perf_counter() - started)

    def _load(self, model: ModelRef, device: str, make_pipeline: Callable[[str], Any],
              context_length: int | None = None) -> None:
        """Build the pipeline; `context_length` (--context-length) caps the model's own context, never raises it."""
        self.model = model
        self.fault: faults.Fault | None = faults.from_env()  # a test hook; None unless PHI3OV_FAULT_INJECT is set
        self.name = model.name
        self.device = check_device(device)
        self.info = read_info(model.path)
        self.context_length = capped_context(self.info.context_length, context_length)
        self.pipeline = make_pipeline(self.device)
        self.tokenizer = self.pipeline.get_tokenizer()
        self.detokenizing = self._detokenizing_tokenizer(model.path)
        self.token_texts = token_texts(self.detokenizing)  # most tokens' text without a tokenizer call
        if self.token_texts is None:
            log.info("Each new token is decoded by the tokenizer (its table of token texts did not check out)")
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

    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of raw text, read as people's text: markers typed in it stay text (special_tokens.py).
        `add_special_tokens`: with what the tokenizer adds around a text (a BOS token, for some models)."""
        ids = self.tokenizer.encode(self.special_tokens.defuse(text), add_special_tokens=add_special_tokens)
        return [int(i) for i in ids.input_ids.data[0]]

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

    def scorer(self) -> Scorer:
        """The second compiled copy of the model that log probabilities come from (logprobs.py), built once."""
        with self._tools_lock:
            self._scorer = self._scorer or Scorer(str(self.model.path / "openvino_model.xml"), self.device,
                                                  self.device_properties, self.tokenizer)
        return self._scorer

    def _detokenizing_tokenizer(self, folder: Path) -> Any:
        """The tokenizer that turns each new token into text: a copy on one thread. Its decode runs once per token
        between decode steps, and on the model's thread pool it cost 7 % of the decode speed on Phi-3-mini's
        widths (its pool's threads had to be woken each time); on one thread of its own, it does not."""
        import openvino_genai as ov_genai

        try:
            return ov_genai.Tokenizer(str(folder), {"INFERENCE_NUM_THREADS": 1})
        except RuntimeError:  # a tokenizer that takes no properties here: the pipeline's own one serves
            return self.tokenizer

    def reply_tokens(self, prompt_ids: list[int], options: GenerationOptions) -> ReplyTokens:
        """Token ids to Pieces for one reply; with log probabilities from the scorer when asked for."""
        session = self.scorer().session(prompt_ids) if options.logprobs else None
        return ReplyTokens(self.detokenizing, session, options.top_logprobs, self.stop_token_ids, self.token_texts)

    def score_prompt(self, ids: list[int], top: int = 0) -> list[PromptToken]:
        """Each prompt token's log probability given the ones before it (the model's own log-softmax)."""
        return self.scorer().prompt(ids, top)

    def _reply(self, fitted: Fitted, options: GenerationOptions) -> Reply:
        return self._reply_for(self._encode(self.prompt(fitted.messages, options.tools)), fitted, options)

    def _reply_for(self, ids: list[int], fitted: Fitted, options: GenerationOptions) -> Reply:
        """The reply to these prompt tokens; the prompt scored first when `options.prompt_logprobs` asks."""
        reply = Reply(self._runner_for(ids, fitted, options), fitted, options, self.request_timeout_s)
        if options.prompt_logprobs is not None:
            reply.prompt_logprobs = self.score_prompt(ids, options.prompt_logprobs)
        return reply

    def _runner_for(self, prompt_ids: list[int], fitted: Fitted, options: GenerationOptions) -> Runner:
        raise NotImplementedError

    def continue_reply(self, messages: list[Message], options: GenerationOptions | None = None) -> Reply:
        """The prompt is the conversation before the cut reply, then the reply's text: the model writes on.

        A constrained reply (JSON, a schema) cannot resume mid-object (the grammar starts at the first token), so
        it is written again from its start with the same seed and room for the cut part and `max_new_tokens`
        more; greedy or seeded, it begins with the same text (token for token with --deterministic).
        """
        options = self.capped(options or GenerationOptions())
        *before, cut = messages
        if not before or cut.get("role") != "assistant" or not cut.get("content"):
            raise BadInput("There is no reply to continue.", "Send a message first.")
        self.check_options(options)
        so_far = self.count_text(cut["content"])
        if options.constraint is not None:
            return self.chat(before, replace(options, max_new_tokens=min(so_far + options.max_new_tokens,
                                                                          self.context_length // 2)))
        room = max(self.context_length - so_far - 1, 1)
        options = replace(options, max_new_tokens=min(options.max_new_tokens, room))
        fitted = fit(before, lambda kept: self.count_tokens(kept) + so_far, self.context_length,
                     options.max_new_tokens)
        ids = self._encode(self.prompt(fitted.messages, options.tools) + self.special_tokens.defuse(cut["content"]))
        fitted = Fitted([*fitted.messages, cut], len(ids), fitted.dropped)
        reply = self._reply_for(ids, fitted, options)
        reply.prefix = cut["content"]
        return reply

    def complete(self, prompt: str | list[int], options: GenerationOptions | None = None) -> Reply:
        options = self.capped(options or GenerationOptions())
        self.check_options(options)
        if isinstance(prompt, str):
            ids = self.tokenize(prompt)
        else:  # token ids, special ones included, are taken as the caller chose them
            ids = [int(i) for i in prompt]
            prompt = self.detokenize(ids)
        if not ids:
            raise BadOptions("The prompt is empty.", "Send some text to continue.")
        if len(ids) + options.max_new_tokens > self.context_length:
            raise ContextOverflow(f"The prompt ({len(ids)} tokens) and max_tokens={options.max_new_tokens} do not fit "
                                  f"the model's context of {self.context_length} tokens.",
                                  "Shorten the prompt, or lower max_tokens.")
        fitted = Fitted([{"role": "user", "content": prompt}], len(ids), 0)
        return self._reply_for(ids, fitted, options)

    def special_token_texts(self) -> dict[str, Any]:
        tok = self.tokenizer
        return {"bos_token": tok.get_bos_token() or None, "eos_token": tok.get_eos_token() or None,
                "pad_token": tok.get_pad_token() or None, "bos_token_id": _id(tok.get_bos_token_id()),
                "eos_token_id": _id(tok.get_eos_token_id()), "pad_token_id": _id(tok.get_pad_token_id())}

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
