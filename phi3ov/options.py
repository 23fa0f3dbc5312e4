"""Generation options with their ranges: the sliders (ui/), the API's validation (api/) and the CLI take their
bounds and defaults from here, so a range is written down exactly once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
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
    prompt_logprobs: int | None = None  # score the prompt too: each token's log probability, with this many others
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
