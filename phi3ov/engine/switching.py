"""The engine the server serves, which the model menu can replace while nobody is being answered.

`SwitchableEngine` stands in for the engine everywhere (UI, API, metrics): an Engine that serves through
the current one. `switch(name)` refuses while any reply is running, closes the
current engine first (one model resident at a time: memory), then loads the new one; when the
new one cannot be loaded, the previous model is loaded again and the error says why.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..conversation import Fitted, Message
from ..errors import BadOptions, EngineNotReady, ModelNotFound
from ..models import ModelRef
from ..models.catalog import Choice, available
from ..options import GenerationOptions
from .base import Capabilities, Engine
from .reply import Reply

log = logging.getLogger(__name__)


class SwitchableEngine(Engine):
    """An Engine that serves through the current one, which `switch()` replaces; what the server set on it
    (reply timeout, prompt logging) carries over to the next model, and `make` gives each its context cap."""

    def __init__(self, engine: Engine, ref: ModelRef, make: Callable[[ModelRef], Engine],
                 choices: Callable[[tuple[str, Path]], list[Choice]]):
        self._engine, self._make, self._choices = engine, make, choices
        self._replies: weakref.WeakSet[Reply] = weakref.WeakSet()
        self._switching = threading.Lock()
        self._ref = ref

    @property
    def current(self) -> Engine:
        return self._engine

    # -- what the current engine is and declares ---------------------------------------------------
    @property
    def name(self) -> str:  # type: ignore[override]
        return self._engine.name

    @property
    def device(self) -> str:  # type: ignore[override]
        return self._engine.device

    @property
    def context_length(self) -> int:  # type: ignore[override]
        return self._engine.context_length

    @property
    def request_timeout_s(self) -> float | None:  # type: ignore[override]
        return self._engine.request_timeout_s

    @request_timeout_s.setter
    def request_timeout_s(self, value: float | None) -> None:
        self._engine.request_timeout_s = value

    @property
    def log_prompts(self) -> bool:  # type: ignore[override]
        return self._engine.log_prompts

    @log_prompts.setter
    def log_prompts(self, value: bool) -> None:
        self._engine.log_prompts = value

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        return dataclasses.replace(self._engine.capabilities, can_switch=True)

    @property
    def prompt_lookup(self) -> bool:  # type: ignore[override]
        return self._engine.prompt_lookup

    @property
    def chat_template(self) -> str:  # type: ignore[override]
        return self._engine.chat_template

    @property
    def running(self) -> int | None:
        return self._engine.running

    def model_names(self) -> list[str]:
        return [c.name for c in self.models()]

    def models(self) -> list[Choice]:
        return self._choices((self._engine.name, self._ref.path))

    # -- replies, counted so that no switch happens under one ------------------------------------------
    def chat(self, *args: Any, **kwargs: Any) -> Reply:
        return self._track(self._engine.chat, *args, **kwargs)

    def continue_reply(self, *args: Any, **kwargs: Any) -> Reply:
        return self._track(self._engine.continue_reply, *args, **kwargs)

    def complete(self, *args: Any, **kwargs: Any) -> Reply:
        return self._track(self._engine.complete, *args, **kwargs)

    def _track(self, start: Callable[..., Reply], *args: Any, **kwargs: Any) -> Reply:
        if self._switching.locked():
            raise EngineNotReady("Another model is being loaded for this server.", "Try again in a few seconds.")
        reply = start(*args, **kwargs)
        self._replies.add(reply)
        return reply

    # -- the rest is the current engine's ----------------------------------------------------------------
    def count_tokens(self, messages: list[Message]) -> int:
        return self._engine.count_tokens(messages)

    def count_text(self, text: str) -> int:
        return self._engine.count_text(text)

    def prepare(self, messages: list[Message], options: GenerationOptions) -> Fitted:
        return self._engine.prepare(messages, options)

    def check_options(self, options: GenerationOptions) -> None:
        self._engine.check_options(options)

    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self._engine.tokenize(text, add_special_tokens)

    def detokenize(self, ids: list[int]) -> str:
        return self._engine.detokenize(ids)

    def special_token_texts(self) -> dict[str, Any]:
        return self._engine.special_token_texts()

    def count_prompt(self, messages: list[Message]) -> list[int]:
        return self._engine.count_prompt(messages)

    def warm_up(self) -> None:
        self._engine.warm_up()

    def close(self) -> None:
        self._engine.close()

    @property
    def busy(self) -> int:
        """Replies being written (not yet stopped or finished)."""
        return sum(1 for r in list(self._replies) if not r.stopped)

    def _wound_down(self, timeout_s: float = 5.0) -> bool:
        """Stopped replies leave the pipeline within a step: wait for that, a few seconds at most."""
        deadline = time.monotonic() + timeout_s
        while self._engine.running and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._engine.running

    def switch(self, name: str) -> float:
        """Serve the model called `name` from now on; returns the seconds it took to load."""
        choice = next((c for c in self.models() if c.name == name), None)
        if choice is None:
            raise ModelNotFound(f"No model called {name!r} on this machine.",
                                "Pick one from the model menu (GET /v1/models lists them).")
        if choice.path == self._ref.path:
            return 0.0
        if not self._switching.acquire(blocking=False):
            raise BadOptions("Another model is being loaded right now.", "Wait a moment, then try again.")
        try:
            if self.busy or not self._wound_down():
                raise BadOptions(f"{max(self.busy, 1)} replies are being written: the model cannot change under them.",
                                 "Wait until they finish (or press Stop), then switch.")
            old_ref = self._ref
            started = time.monotonic()
            self._engine.close()  # first: two models at once may not fit in memory
            try:
                self._install(ModelRef(choice.path, choice.name, str(choice.path)))
            except Exception:
                log.warning("Could not load %s; loading %s again.", choice.name, old_ref.name)
                self._install(old_ref)
                raise
            log.info("Now serving %s (loaded in %.1f s).", choice.name, time.monotonic() - started)
            return time.monotonic() - started
        finally:
            self._switching.release()

    def _install(self, ref: ModelRef) -> None:
        engine = self._make(ref)
        engine.warm_up()
        engine.request_timeout_s, engine.log_prompts = self._engine.request_timeout_s, self._engine.log_prompts
        self._engine, self._ref = engine, ref


def switchable(engine: Engine, ref: ModelRef, make: Callable[[ModelRef], Engine], cache_dir: Path,
               models_dir: Path | None, only: tuple[str, ...]) -> SwitchableEngine:
    return SwitchableEngine(engine, ref, make, lambda current: available(cache_dir, models_dir, only, current))
