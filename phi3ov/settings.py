"""Typed settings: generation options with their ranges, and server settings.

The sliders (ui/), the API validation (api.py) and the CLI all take their bounds and
defaults from here, so a range is written down exactly once.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import BadOptions
from .structured import Constraint

DEFAULT_SYSTEM_PROMPT = "You are a helpful AI assistant."
EXAMPLES = [
    "can you introduce yourself?",
    "What is OpenVINO?",
    "Write a Python function that checks whether a number is prime.",
    "Give me three tips for a good night's sleep, as a markdown list.",
]


@dataclass(frozen=True)
class Bound:
    """The range, default and help text of one numeric generation option."""

    default: float
    minimum: float
    maximum: float
    step: float
    label: str
    info: str

    def check(self, name: str, value: Any, *, clamp: bool) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadOptions(f"`{name}` must be a number, got {value!r}.")
        if value != value:  # NaN
            raise BadOptions(f"`{name}` must be a number, got NaN.")
        if self.minimum <= value <= self.maximum:
            return value
        if clamp:
            return min(max(value, self.minimum), self.maximum)
        raise BadOptions(
            f"`{name}` must be between {self.minimum:g} and {self.maximum:g}, got {value:g}."
        )


BOUNDS: dict[str, Bound] = {
    "max_new_tokens": Bound(
        1024, 1, 4096, 1, "Max new tokens", "The longest reply, in tokens. The reply also ends at the model's stop token."
    ),
    "temperature": Bound(
        0.7, 0.0, 2.0, 0.05, "Temperature", "Randomness of sampling. 0 means greedy: always the most likely token."
    ),
    "top_p": Bound(
        0.9, 0.01, 1.0, 0.01, "Top-p", "Sample only from the smallest set of tokens whose probabilities add up to this."
    ),
    "top_k": Bound(50, 0, 200, 1, "Top-k", "Sample only from the k most likely tokens. 0 means no limit."),
    "repetition_penalty": Bound(
        1.1, 1.0, 2.0, 0.01, "Repetition penalty", "Above 1 discourages repeating tokens already in the chat."
    ),
}
# API-only options (no slider in the UI): OpenAI's penalties and the number of alternatives per token.
API_BOUNDS: dict[str, Bound] = {
    "presence_penalty": Bound(0.0, -2.0, 2.0, 0.1, "Presence penalty",
                              "Above 0 discourages any token already in the reply; below 0 encourages it."),
    "frequency_penalty": Bound(0.0, -2.0, 2.0, 0.1, "Frequency penalty",
                               "Above 0 discourages tokens in proportion to how often they are already in the reply."),
    "top_logprobs": Bound(0, 0, 20, 1, "Top logprobs", "How many most likely tokens to list at each position."),
}
SEED_MAX = 2**31 - 1
SPACE_DEFAULT_MODEL = "OpenVINO/Phi-3-mini-4k-instruct-int4-ov"


@dataclass(frozen=True)
class GenerationOptions:
    """How to generate one reply. Build with `GenerationOptions.parse` to validate."""

    max_new_tokens: int = int(BOUNDS["max_new_tokens"].default)
    temperature: float = BOUNDS["temperature"].default
    top_p: float = BOUNDS["top_p"].default
    top_k: int = int(BOUNDS["top_k"].default)
    repetition_penalty: float = BOUNDS["repetition_penalty"].default
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # generate exactly max_new_tokens (benchmarks; vLLM's `ignore_eos`)
    prompt_lookup: bool = True  # where the server runs with --prompt-lookup: propose tokens copied from the chat
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: bool = False  # report each generated token's log probability (the model's own log-softmax)
    top_logprobs: int = 0  # ... with this many most likely tokens at each position
    constraint: Constraint | None = None  # structured output: the reply follows this JSON schema, regex or grammar
    tools: tuple[dict, ...] = ()  # tool definitions (OpenAI's shape) given to the chat template; calls are read back

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @classmethod
    def parse(cls, *, clamp: bool = False, **values: Any) -> GenerationOptions:
        """Validate raw values (from a slider, JSON or the CLI); None means "use the default".

        With clamp=True out-of-range numbers are pulled into range (the UI's choice, since a
        slider cannot go further anyway); otherwise they raise BadOptions (the API's choice).
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BadOptions(f"Unknown generation option(s): {', '.join(unknown)}.")
        out: dict[str, Any] = {}
        for name, bound in {**BOUNDS, **API_BOUNDS}.items():
            value = values.get(name)
            if value is None:
                continue
            value = bound.check(name, value, clamp=clamp)
            if name in ("max_new_tokens", "top_k", "top_logprobs"):
                if not float(value).is_integer():
                    raise BadOptions(f"`{name}` must be a whole number, got {value!r}.")
                value = int(value)
            out[name] = value
        seed = values.get("seed")
        if seed is not None and seed != "":
            whole = isinstance(seed, int) and not isinstance(seed, bool) or \
                isinstance(seed, str) and seed.strip().lstrip("-").isdigit()
            if not whole:  # 1.5, "1.5", true: refused, never rounded
                raise BadOptions(f"`seed` must be a whole number, got {seed!r}.")
            seed = int(seed)
            if not 0 <= seed <= SEED_MAX:
                if not clamp:
                    raise BadOptions(f"`seed` must be between 0 and {SEED_MAX}, got {seed}.")
                seed = seed % (SEED_MAX + 1)
            out["seed"] = seed
        stop = values.get("stop")
        if stop:
            if isinstance(stop, str):
                stop = [stop]
            if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) and s for s in stop):
                raise BadOptions("`stop` must be a string or a list of non-empty strings.")
            if len(stop) > 4:
                raise BadOptions("`stop` takes at most 4 strings.")
            out["stop"] = tuple(stop)
        constraint = values.get("constraint")
        if constraint is not None:
            if not isinstance(constraint, Constraint):
                raise BadOptions("`constraint` must be a structured.Constraint.")
            out["constraint"] = constraint
        tools = values.get("tools")
        if tools:
            if not isinstance(tools, (list, tuple)) or not all(isinstance(t, dict) for t in tools):
                raise BadOptions("`tools` must be a list of tool definitions.")
            out["tools"] = tuple(tools)
        for name in ("ignore_eos", "prompt_lookup", "logprobs"):
            flag = values.get(name)
            if flag is not None:
                if not isinstance(flag, bool):
                    raise BadOptions(f"`{name}` must be true or false, got {flag!r}.")
                out[name] = flag
        return cls(**out)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        d["constraint"] = self.constraint.as_dict() if self.constraint else None
        d["tools"] = list(self.tools)
        return d


def default_cache_dir() -> Path:
    env = os.environ.get("PHI3OV_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "phi3ov"


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ServerSettings:
    """Everything `app.py` / `phi3ov serve` needs; read from flags or PHI3OV_* variables."""

    model: str | None = None
    device: str = "CPU"
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    inbrowser: bool = False  # open the chat in the web browser once it is ready
    auth: tuple[str, str] | None = None
    api_key: str | None = None
    allow_no_api_key: bool = False
    backend: str = "local"  # "local" (OpenVINO GenAI in this process) or "openai" (a remote server)
    base_url: str | None = None
    remote_model: str | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    remote_api_key: str | None = None  # the key the remote server wants (never our own --api-key)
    engine: str = "batched"  # "batched" (ContinuousBatchingPipeline) or "single" (LLMPipeline, one at a time)
    ov_config: tuple[tuple[str, str], ...] = ()  # OpenVINO properties over the defaults, e.g. INFERENCE_PRECISION_HINT=f32
    max_num_seqs: int = 8
    request_timeout: float = 600.0  # seconds a reply may take; then it ends with finish_reason "timeout"
    drain_seconds: float = 5.0  # on SIGTERM / Ctrl-C, replies in flight get this long to finish
    max_queue: int = 64  # API requests waiting beyond --max-num-seqs; past it a 429 with Retry-After
    max_body_mb: float = 4.0  # API request body
    max_messages: int = 512  # per request (API) or chat (UI)
    max_message_chars: int = 100_000  # per message
    max_batched_tokens: int = 1024  # prompt + generated tokens in one batching step (split-fuse chunks longer prompts)
    prompt_lookup: bool = False  # prompt-lookup decoding: faster replies that repeat text of the chat
    deterministic: bool = False  # no prefix cache, one reply in the pipeline at a time: replies reproduce exactly
    kv_cache_gb: float | None = None  # None: sized to the model, --max-num-seqs and the memory available
    context_length: int | None = None  # cap on the model's context (tokens); None: the model's own
    cors_origins: tuple[str, ...] = ()  # origins whose pages may call the API; none by default
    log_prompts: bool = False  # log each request's messages (one INFO line, JSON); never by default
    cache_dir: Path = field(default_factory=default_cache_dir)
    models_dir: Path | None = None  # more model folders for the model menu
    models: tuple[str, ...] = ()  # the model menu lists only these names or folders (empty: every one found)

    @classmethod
    def from_env(cls, **overrides: Any) -> ServerSettings:
        """Settings from PHI3OV_* environment variables (the Hugging Face Space path)."""
        env = os.environ
        values: dict[str, Any] = {}
        if env.get("PHI3OV_MODEL"):
            values["model"] = env["PHI3OV_MODEL"]
        elif env.get("SPACE_ID"):
            values["model"] = SPACE_DEFAULT_MODEL  # a Space has the Hub at hand: serve Phi-3 itself
        if env.get("PHI3OV_DEVICE"):
            values["device"] = env["PHI3OV_DEVICE"]
        if env.get("PHI3OV_HOST"):
            values["host"] = env["PHI3OV_HOST"]
        elif env.get("SPACE_ID"):
            values["host"] = "0.0.0.0"  # a Space serves behind its own proxy and auth
        if env.get("PHI3OV_PORT") or env.get("PORT"):
            values["port"] = int(env.get("PHI3OV_PORT") or env["PORT"])
        values["share"] = _env_bool("PHI3OV_SHARE")
        values["prompt_lookup"] = _env_bool("PHI3OV_PROMPT_LOOKUP")
        values["deterministic"] = _env_bool("PHI3OV_DETERMINISTIC")
        values["log_prompts"] = _env_bool("PHI3OV_LOG_PROMPTS")
        if env.get("PHI3OV_AUTH"):
            values["auth"] = parse_auth(env["PHI3OV_AUTH"])
        if env.get("PHI3OV_API_KEY"):
            values["api_key"] = env["PHI3OV_API_KEY"]
        values["allow_no_api_key"] = _env_bool("PHI3OV_ALLOW_NO_API_KEY", bool(env.get("SPACE_ID")))
        for key, name, conv in (
            ("backend", "PHI3OV_BACKEND", str),
            ("base_url", "PHI3OV_BASE_URL", str),
            ("remote_model", "PHI3OV_REMOTE_MODEL", str),
            ("system_prompt", "PHI3OV_SYSTEM_PROMPT", str),
            ("max_num_seqs", "PHI3OV_MAX_NUM_SEQS", int),
            ("max_batched_tokens", "PHI3OV_MAX_BATCHED_TOKENS", int),
            ("max_queue", "PHI3OV_MAX_QUEUE", int),
            ("request_timeout", "PHI3OV_REQUEST_TIMEOUT", float),
            ("drain_seconds", "PHI3OV_DRAIN_SECONDS", float),
            ("max_body_mb", "PHI3OV_MAX_BODY_MB", float),
            ("max_messages", "PHI3OV_MAX_MESSAGES", int),
            ("max_message_chars", "PHI3OV_MAX_MESSAGE_CHARS", int),
            ("kv_cache_gb", "PHI3OV_KV_CACHE_GB", float),
            ("context_length", "PHI3OV_CONTEXT_LENGTH", int),
            ("remote_api_key", "PHI3OV_REMOTE_API_KEY", str),
            ("engine", "PHI3OV_ENGINE", str),
            ("ov_config", "PHI3OV_OV_CONFIG", parse_ov_config),
            ("models_dir", "PHI3OV_MODELS_DIR", Path),
            ("models", "PHI3OV_MODELS", parse_models),
            ("cors_origins", "PHI3OV_CORS_ORIGIN", parse_origins),
        ):
            if env.get(name):
                values[key] = conv(env[name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("context_length") is not None and values["context_length"] < 64:
            raise BadOptions(f"--context-length must be at least 64 tokens, got {values['context_length']}.")
        for name in ("max_queue", "max_messages", "max_message_chars", "max_num_seqs", "max_batched_tokens"):
            if name in values and (not isinstance(values[name], int) or values[name] < (0 if name == "max_queue" else 1)):
                raise BadOptions(f"--{name.replace('_', '-')} must be a whole number of at least "
                                 f"{0 if name == 'max_queue' else 1}, got {values[name]!r}.")
        for name in ("request_timeout", "drain_seconds"):
            if name in values and not 0 <= values[name] <= 86400:
                raise BadOptions(f"--{name.replace('_', '-')} must be between 0 and 86400 seconds, got {values[name]!r}.")
        if "max_body_mb" in values and not 0 < values["max_body_mb"] <= 1024:
            raise BadOptions(f"--max-body-mb must be between 0 and 1024, got {values['max_body_mb']!r}.")
        if values.get("engine", "batched") not in ENGINES:
            raise BadOptions(f"--engine must be one of {', '.join(ENGINES)}, got {values['engine']!r}.")
        return cls(**values)


ENGINES = ("batched", "single")


def parse_models(text: str | list[str] | tuple) -> tuple[str, ...]:
    """--models a,b or --models a --models b: names or folders."""
    items = [text] if isinstance(text, str) else list(text)
    return tuple(part.strip() for item in items for part in str(item).split(",") if part.strip())


def parse_ov_config(text: str | list[str] | tuple) -> tuple[tuple[str, str], ...]:
    """OpenVINO properties from `KEY=VALUE` items (a list, or one string separated by commas)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        key, sep, value = item.strip().partition("=")
        if not sep or not key.strip() or not value.strip():
            raise BadOptions(f"--ov-config takes KEY=VALUE, got {item!r}.",
                             "For example --ov-config INFERENCE_PRECISION_HINT=f32.")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def parse_auth(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise BadOptions("--auth takes USER:PASSWORD, for example --auth alice:s3cret.")
    return user, password


_ORIGIN = re.compile(r"^https?://[^/\s?#@]+$")


def parse_origins(values: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Origins from `--cors-origin` items (each may be a comma-separated list) or PHI3OV_CORS_ORIGIN."""
    items = [values] if isinstance(values, str) else list(values)
    origins: list[str] = []
    for item in items:
        for origin in item.split(","):
            origin = origin.strip().rstrip("/")
            if not origin:
                continue
            if origin != "*" and not _ORIGIN.match(origin):
                raise BadOptions(f"--cors-origin takes origins like https://app.example.com or http://localhost:3000 "
                                 f"(scheme://host[:port], no path), got {origin!r}.",
                                 "Repeat the flag, or separate origins with commas; `*` allows any origin.")
            if origin not in origins:
                origins.append(origin)
    return tuple(origins)
