"""The engine the server serves, which the model menu can replace while nobody is being answered.

`SwitchableEngine` stands in for the engine everywhere (UI, API, metrics): it forwards every
attribute to the current one. `switch(name)` refuses while any reply is running, closes the
current engine first (one model resident at a time: memory), then loads the new one; when the
new one cannot be loaded, the previous model is loaded again and the error says why.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .catalog import Choice, available
from .engine import Engine, Reply
from .errors import BadOptions, EngineNotReady, ModelNotFound
from .models import ModelRef

log = logging.getLogger(__name__)
OWN = ("_engine", "_make", "_choices", "_replies", "_switching", "_overrides", "_context_cap")


class SwitchableEngine:
    def __init__(self, engine: Engine, ref: ModelRef, make: Callable[[ModelRef], Engine],
                 choices: Callable[[tuple[str, Path]], list[Choice]], context_cap: int | None = None):
        self._engine, self._make, self._choices = engine, make, choices
        self._context_cap = context_cap  # --context-length: each model serves at most this much of its own
        self._replies: weakref.WeakSet[Reply] = weakref.WeakSet()
        self._switching = threading.Lock()
        self._overrides: dict[str, Any] = {}  # what the server set on the engine (context cap, timeout)
        self._engine.model_ref = ref

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in OWN:
            object.__setattr__(self, name, value)
        else:
            if name != "context_length":
                self._overrides[name] = value
            setattr(self._engine, name, value)

    @property
    def current(self) -> Engine:
        return self._engine

    def models(self) -> list[Choice]:
        return self._choices((self._engine.name, self._engine.model_ref.path))

    def chat(self, *args: Any, **kwargs: Any) -> Reply:
        if self._switching.locked():
            raise EngineNotReady("Another model is being loaded for this server.", "Try again in a few seconds.")
        reply = self._engine.chat(*args, **kwargs)
        self._replies.add(reply)
        return reply

    @property
    def busy(self) -> int:
        """Replies being written (not yet stopped or finished)."""
        return sum(1 for r in list(self._replies) if not r.stopped)

    def _wound_down(self, timeout_s: float = 5.0) -> bool:
        """Stopped replies leave the pipeline within a step: wait for that, a few seconds at most."""
        deadline = time.monotonic() + timeout_s
        while getattr(self._engine, "running", 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        return not getattr(self._engine, "running", 0)

    def switch(self, name: str) -> float:
        """Serve the model called `name` from now on; returns the seconds it took to load."""
        choice = next((c for c in self.models() if c.name == name), None)
        if choice is None:
            raise ModelNotFound(f"No model called {name!r} on this machine.",
                                "Pick one from the model menu (GET /v1/models lists them).")
        if choice.path == self._engine.model_ref.path:
            return 0.0
        if not self._switching.acquire(blocking=False):
            raise BadOptions("Another model is being loaded right now.", "Wait a moment, then try again.")
        try:
            if self.busy or not self._wound_down():
                raise BadOptions(f"{max(self.busy, 1)} replies are being written: the model cannot change under them.",
                                 "Wait until they finish (or press Stop), then switch.")
            old_ref = self._engine.model_ref
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
        engine.model_ref = ref
        for name, value in self._overrides.items():
            setattr(engine, name, value)
        if self._context_cap:
            engine.context_length = min(engine.context_length, self._context_cap)
        object.__setattr__(self, "_engine", engine)


def switchable(engine: Engine, ref: ModelRef, make: Callable[[ModelRef], Engine], cache_dir: Path,
               models_dir: Path | None, only: tuple[str, ...], context_cap: int | None) -> SwitchableEngine:
    return SwitchableEngine(engine, ref, make, lambda current: available(cache_dir, models_dir, only, current),
                            context_cap)
