"""Server settings, each declared once: the CLI's flags, the PHI3OV_* variables (a Space's settings), the
bench's --server-arg and the README's flag table are all read from the ServerSettings table below.

A setting is one field: its type and default, and `setting(...)` with its help text, its flag and variable
(derived from the name unless given), its range and how text is read into it. Adding a serve flag is adding
a field.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import BadOptions
from .options import DEFAULT_SYSTEM_PROMPT

SPACE_DEFAULT_MODEL = "OpenVINO/Phi-3-mini-4k-instruct-int4-ov"


def default_cache_dir() -> Path:
    env = os.environ.get("PHI3OV_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "phi3ov"


def env_bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Setting:
    """How one server setting is given and checked (the field's own type and default are the rest)."""

    help: str
    kind: type = str  # str, int, float, bool or Path: how a flag or variable's text is read
    parse: Callable[[Any], Any] | None = None  # reads a flag's or variable's value instead (repeatable flags: a list)
    flag: str | None = ""  # "" : --name-with-dashes; None: no flag (a variable only)
    env: tuple[str, ...] | None = ()  # (): PHI3OV_NAME; None: no variable
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    above_minimum: bool = False  # the minimum itself is refused
    unit: str = ""  # in the range's message
    repeat: bool = False  # the flag may be given several times
    metavar: str | None = None

    def flag_name(self, name: str) -> str:
        return self.flag or "--" + name.replace("_", "-")

    def env_names(self, name: str) -> tuple[str, ...]:
        return self.env if self.env else ("PHI3OV_" + name.upper(),)

    def read(self, value: Any) -> Any:
        if self.parse is not None:
            return self.parse(value)
        if self.kind is bool:
            return value if isinstance(value, bool) else env_bool(str(value))
        return self.kind(value)

    def check(self, name: str, value: Any) -> None:
        """BadOptions, with the flag's name, for a value out of its choices or range."""
        flag = self.flag_name(name)
        if self.choices and value not in self.choices:
            raise BadOptions(f"{flag} must be one of {', '.join(self.choices)}, got {value!r}.")
        if self.minimum is None or value is None:
            return
        low, high = self.minimum, self.maximum
        if self.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise BadOptions(f"{flag} must be a whole number of at least {low:g}, got {value!r}.")
        if (value <= low if self.above_minimum else value < low) or (high is not None and value > high):
            unit = f" {self.unit}" if self.unit else ""
            if high is None:
                what = f"a whole number of at least {low:g}" if self.kind is int and not unit else f"at least {low:g}{unit}"
                raise BadOptions(f"{flag} must be {what}, got {value!r}.")
            raise BadOptions(f"{flag} must be between {low:g} and {high:g}{unit}, got {value!r}.")


def setting(default: Any = None, help: str = "", *, factory: Callable[[], Any] | None = None, **how: Any) -> Any:
    """A ServerSettings field: its default and how it is given (see Setting)."""
    meta = {"setting": Setting(help, **how)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


ENGINES = ("batched", "single")  # --engine


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


@dataclass(frozen=True)
class ServerSettings:
    """Everything `app.py` / `phi3ov serve` needs; from flags, PHI3OV_* variables or the defaults here."""

    model: str | None = setting(None, "OpenVINO model folder, .gguf file or Hugging Face repo id. Default: "
                                "./model/phi3-instruct/int4 if it exists, else the bundled SmolLM2-135M-Instruct.")
    device: str = setting("CPU", "CPU (default), GPU, NPU or AUTO.")
    host: str = setting("127.0.0.1", "Address to listen on (default 127.0.0.1: this machine only).")
    port: int = setting(7860, "Port (default 7860).", kind=int, env=("PHI3OV_PORT", "PORT"))
    share: bool = setting(False, "Also open a temporary public gradio.live link.", kind=bool)
    inbrowser: bool = setting(False, "Open the chat in the web browser once it is ready (make run does).",
                              kind=bool, flag="--open", env=None)
    auth: tuple[str, str] | None = setting(None, "USER:PASSWORD required to open the UI (recommended with --share).",
                                           parse=parse_auth, metavar="USER:PASSWORD")
    api_key: str | None = setting(None, "Key that API clients must send as a Bearer token.")
    allow_no_api_key: bool = setting(False, "Serve the API without a key even when listening beyond loopback.",
                                     kind=bool)
    backend: str = setting("local", "local: OpenVINO GenAI here (default); openai: any OpenAI-compatible server, "
                           "e.g. OpenVINO Model Server (needs --base-url).", choices=("local", "openai"))
    base_url: str | None = setting(None, "With --backend openai: the server's URL, e.g. http://ovms:8000/v3.")
    remote_model: str | None = setting(None, "With --backend openai: the model name on that server.")
    system_prompt: str = setting(DEFAULT_SYSTEM_PROMPT, "The chat's system prompt.", flag=None)
    remote_api_key: str | None = setting(None, "With --backend openai: the key that server wants.")
    engine: str = setting("batched", "batched: many replies at once from one ContinuousBatchingPipeline (default); "
                          "single: one LLMPipeline, one reply at a time.", choices=ENGINES)
    ov_config: tuple[tuple[str, str], ...] = setting(
        (), "An OpenVINO property for the pipeline, e.g. INFERENCE_PRECISION_HINT=f32; repeatable (the variable: "
        "comma-separated).", parse=parse_ov_config, repeat=True, metavar="KEY=VALUE")
    prompt_lookup: bool = setting(False, "Prompt-lookup decoding: propose tokens copied from the chat and check them "
                                  "in one step; much faster for replies that repeat the input (editing code, "
                                  "summaries).", kind=bool)
    deterministic: bool = setting(False, "Reproducible replies: a greedy or seeded reply is the same token for token "
                                  "whether it is asked alone, asked again or among others, on this machine and model "
                                  "(no prefix cache, one reply computed at a time; others wait their turn).", kind=bool)
    stream_interval: float = setting(30.0, "Streaming: the tokens that come within this many milliseconds of the last "
                                     "SSE event or page update go out together in the next (default 30; 0: each token "
                                     "alone). Fewer sends leave more CPU to the generation; the first token and the "
                                     "end are never held.", kind=float, minimum=0, maximum=1000, unit="ms")
    max_num_seqs: int = setting(8, "Replies generated at once (continuous batching; default 8).", kind=int, minimum=1)
    request_timeout: float = setting(600.0, "Seconds one reply may take (default 600; 0: no limit); then it ends "
                                     'with finish_reason "timeout" and keeps its text.', kind=float, minimum=0,
                                     maximum=86400, unit="seconds")
    drain_seconds: float = setting(5.0, "On SIGTERM or Ctrl-C, how long replies in flight may finish before the "
                                   "server exits (default 5).", kind=float, minimum=0, maximum=86400, unit="seconds")
    max_queue: int = setting(64, "API requests that may wait for a free slot beyond --max-num-seqs (default 64); "
                             "past that a 429 with Retry-After.", kind=int, minimum=0)
    max_body_mb: float = setting(4.0, "Largest API request body in MB (default 4; 413 beyond).", kind=float,
                                 minimum=0, above_minimum=True, maximum=1024)
    max_upload_mb: float = setting(20.0, "Largest file attached in the chat, in MB (default 20); a larger one is "
                                   "refused with a message, the chat unchanged.", kind=float, minimum=0,
                                   above_minimum=True, maximum=1024)
    max_messages: int = setting(512, "Most messages in one request or chat (default 512).", kind=int, minimum=1)
    max_message_chars: int = setting(100_000, "Most characters in one message (default 100000).", kind=int, minimum=1)
    max_batched_tokens: int = setting(1024, "Tokens processed in one continuous-batching step (default 1024; longer "
                                      "prompts are split into chunks of this size between decode steps).", kind=int,
                                      minimum=1)
    kv_cache_gb: float | None = setting(None, "Most memory the continuous-batching KV cache may take, in GB (default: "
                                        "enough for --max-num-seqs whole contexts, at most 2 GB or a quarter of the "
                                        "free memory).", kind=float)
    context_length: int | None = setting(None, "Use at most this many tokens of the model's context (default: the "
                                         "model's own). Older turns are trimmed to fit.", kind=int, minimum=64,
                                         unit="tokens")
    cors_origins: tuple[str, ...] = setting((), "Let web pages from this origin (e.g. https://app.example.com) call "
                                            "the API from a browser; repeatable or comma-separated. Default: no "
                                            "cross-origin access.", parse=parse_origins,
                                            flag="--cors-origin", env=("PHI3OV_CORS_ORIGIN",), repeat=True,
                                            metavar="ORIGIN")
    log_prompts: bool = setting(False, "Log each request's messages (one INFO line, JSON). Default: logs never "
                                "contain message text.", kind=bool)
    cache_dir: Path = setting(help="Converted models and compiled kernels (PHI3OV_CACHE).", factory=default_cache_dir,
                              kind=Path, flag=None, env=None)
    embedding_model: Path | None = setting(None, "An OpenVINO text-embedding model folder (openvino_genai's "
                                           "TextEmbeddingPipeline): attached documents' passages are ranked by its "
                                           "similarity to the question as well as by BM25. Default: BM25 alone.",
                                           kind=Path, metavar="FOLDER")
    models_dir: Path | None = setting(None, "More model folders for the model menu.", kind=Path)
    models: tuple[str, ...] = setting((), "The model menu lists only these names or folders (comma-separated or "
                                      "repeated; default: every model found).", parse=parse_models,
                                      repeat=True)

    @classmethod
    def from_env(cls, **overrides: Any) -> ServerSettings:
        """Settings from PHI3OV_* variables (a Space's settings), then `overrides` (flags) over them."""
        env = os.environ
        values: dict[str, Any] = {}
        for name, how in declared():
            for var in how.env_names(name) if how.env is not None else ():
                if env.get(var):
                    values[name] = how.read(env[var])
                    break
        if env.get("SPACE_ID"):  # a Space has the Hub at hand and serves behind its own proxy and auth
            values.setdefault("model", SPACE_DEFAULT_MODEL)
            values.setdefault("host", "0.0.0.0")
            values.setdefault("allow_no_api_key", True)
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name, how in declared():
            if name in values:
                how.check(name, values[name])
        return cls(**values)

    @classmethod
    def from_argv(cls, argv: list[str]) -> ServerSettings:
        """Settings from serve flags given as a list (the bench's --server-arg), over the variables."""
        parser = argparse.ArgumentParser(prog="phi3ov serve", add_help=False)
        add_flags(parser)
        return from_args(parser.parse_args(argv))


def declared() -> list[tuple[str, Setting]]:
    """(name, Setting) of every server setting, in the table's order."""
    return [(f.name, f.metadata["setting"]) for f in fields(ServerSettings) if "setting" in f.metadata]


def add_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] = ()) -> None:
    """The serve flags (or `only` these settings' flags) on `parser`, each from its declaration."""
    for name, how in declared():
        if how.flag is None or (only and name not in only):
            continue
        env = "" if how.env is None else f" (env {how.env_names(name)[0]})"
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": how.help + env}
        if how.kind is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs.update(action="append" if how.repeat else "store", metavar=how.metavar,
                          type=how.kind if how.kind in (int, float, Path) and how.parse is None else str)
            if how.choices:
                kwargs["choices"] = list(how.choices)
        parser.add_argument(how.flag_name(name), **kwargs)


def from_args(args: argparse.Namespace) -> ServerSettings:
    """ServerSettings from parsed flags (only those given), over the PHI3OV_* variables."""
    overrides = {}
    for name, how in declared():
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = how.parse(value) if how.parse is not None else value
    return ServerSettings.from_env(**overrides)
