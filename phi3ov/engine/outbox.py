"""What a reply's worker thread posts, read by one consumer in batches: at most one batch per `interval`.

Each token's text costs its reader a wake-up, and what it does with it (an SSE event, a page update) runs on
the cores the pipeline computes on: with tokens every 10-20 ms, sending each alone slows the generation by a
few percent (docs/performance.md, section 9). An outbox lets the reader take what came during an interval in
one go, and the worker wakes nobody while the reader holds:

    worker thread:  post(item) ...  post(END)       the reader is woken when it waits for the next item,
                                                    past its interval, or by the end (never held back)
    reader:         take(until)  -> [items]         a thread: blocks; `atake` in an event loop

The first item is never held (the reader waits with `until` in the past), nor the end. `interval` 0: every
item as soon as it comes (the reader still takes all that queued while it was busy).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any


class Outbox:
    """Items from one worker thread to one reader (a thread, or a coroutine in `loop`)."""

    def __init__(self, end: Any, loop: asyncio.AbstractEventLoop | None = None):
        self.end = end  # the last item: wakes the reader whatever it holds for
        self.loop = loop
        self._items: list[Any] = []
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._waiting = False  # the reader waits; `_any`: woken by any item, not only by the end
        self._any = False
        self._future: asyncio.Future | None = None

    def post(self, item: Any) -> bool:
        """In the worker thread: add an item; wake the reader if it waits for one. False: the reader's loop
        is closed (nobody reads these items any more)."""
        with self._lock:
            self._items.append(item)
            if not self._waiting or not (self._any or item is self.end):
                return True
            self._waiting = False
            if self.loop is None:
                self._ready.notify()
                return True
            future, self._future = self._future, None
        try:
            self.loop.call_soon_threadsafe(_resolve, future)
        except RuntimeError:
            return False
        return True

    def _ready_items(self, until: float) -> list[Any] | None:
        """Under the lock: all the items when they may be taken now; else None, and how to wait is set."""
        now = time.monotonic()
        if self._items and (now >= until or self._items[-1] is self.end):
            items, self._items = self._items, []
            return items
        self._waiting, self._any = True, now >= until
        return None

    def take(self, until: float = 0.0) -> list[Any]:
        """In the reader's thread: the items so far, once `until` (time.monotonic) has passed or the end came."""
        with self._lock:
            while (items := self._ready_items(until)) is None:
                self._ready.wait(None if self._any else until - time.monotonic())
            self._waiting = False
            return items

    async def atake(self, until: float = 0.0) -> list[Any]:
        """`take` for a coroutine in the outbox's loop."""
        assert self.loop is not None
        while True:
            with self._lock:
                if (items := self._ready_items(until)) is not None:
                    self._waiting = False
                    return items
                future = self._future = self.loop.create_future()
                hold = None if self._any else until - time.monotonic()
            timer = self.loop.call_later(hold, _resolve, future) if hold is not None else None
            try:
                await future
            finally:
                if timer is not None:
                    timer.cancel()
                with self._lock:
                    self._waiting = False


def _resolve(future: asyncio.Future | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)
