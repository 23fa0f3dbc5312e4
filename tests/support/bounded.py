"""Threads a test can always get out of: daemonic, joined against one deadline, failures re-raised.

A thread left blocked (a reply that never comes) fails the test with its name instead of keeping
the interpreter alive at exit, so no test can hang the suite.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Threads:
    """`with Threads(timeout=120) as threads: threads.start(fn, *args)`; joined and checked on exit."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self, fn: Callable, *args: object) -> threading.Thread:
        def run() -> None:
            try:
                fn(*args)
            except BaseException as err:  # noqa: BLE001 - re-raised in the test's thread
                self.errors.append(err)

        thread = threading.Thread(target=run, name=f"test-{getattr(fn, '__name__', 'fn')}", daemon=True)
        self.threads.append(thread)
        thread.start()
        return thread

    def join(self) -> None:
        deadline = time.monotonic() + self.timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self.threads if t.is_alive()]
        if self.errors:
            raise self.errors[0]
        assert not stuck, f"threads still blocked after {self.timeout:.0f} s: {stuck}"

    def __enter__(self) -> Threads:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.join()
