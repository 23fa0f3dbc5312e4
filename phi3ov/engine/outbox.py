"""What a reply's worker thread posts, read by one consumer in batches: at most one batch per `interval`.

Each token's text costs its reader a wake-up, and what it does with it (an SSE event, a page update) runs on
the cores the pipeline computes on: with tokens every 10-20 ms, sending each alone slows the generation by a
few percent (docs/performance.md, section 9). An outbox lets the reader take what came during an interval in
one go, and the worker wakes nobody while the reader holds:

    worker thread:  post(item) ...  post(END)     wakes the reader when it waits and the interval since its
                                                  last batch is over, or with the end (never held back)
    reader:         take() -> [items]             a thread: blocks; `atake` in an event loop

A batch goes when the first item after the interval comes (one wake-up a batch, none for a timer), or, if none
comes, one more interval later; the first item is never held, nor the end. `interval` 0: every item as soon as
it comes (the reader still takes all that queued while it was busy).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any


class Outbox:
    """Items from one worker thread to one reader (a thread, or a coroutine in `loop`)."""

    def __init__(self, end: Any, interval: float = 0.0, loop: asyncio.AbstractEventLoop | None = None):
        self.end = end  # the last item: wakes the reader whatever it holds for
        self.interval = interval
        self.loop = loop
        self._items: list[Any] = []
        self._lock = threading.Lock()
        self._signal: queue.SimpleQueue = queue.SimpleQueue()  # wakes a thread reader (a C queue: cheap)
        self._until = 0.0  # time.monotonic() before which the reader holds what comes
        self._waiting = False
        self._future: asyncio.Future | None = None

    def post(self, item: Any) -> bool:
        """In the worker thread: add an item; wake the reader if it waits and may take it now. False: the
        reader's loop is closed (nobody reads these items any more)."""
        with self._lock:
            self._items.append(item)
            if not self._waiting or not (item is self.end or time.monotonic() >= self._until):
                return True
            self._waiting = False
            future, self._future = self._future, None
        if self.loop is None:
            self._signal.put(None)
            return True
        try:
            self.loop.call_soon_threadsafe(_resolve, future)
        except RuntimeError:
            return False
        return True

    def _batch(self, woken: bool) -> tuple[list[Any] | None, float | None]:
        """Under the lock: the items when the reader may take them now, else None and how long it waits at
        most (None: until a post wakes it). `woken`: by that timeout, which takes what is held."""
        now = time.monotonic()
        if self._items and (woken or now >= self._until or self._items[-1] is self.end):
            items, self._items = self._items, []
            self._until = now + self.interval
            self._waiting = False
            return items, None
        self._waiting = True
        return None, None if now >= self._until else self._until + self.interval - now

    def take(self) -> list[Any]:
        """In the reader's thread: the next batch (blocks until there is one)."""
        timed_out = False
        while True:
            with self._lock:
                items, hold = self._batch(timed_out)
            if items is not None:
                return items
            try:
                self._signal.get(timeout=hold)  # a wake-up left from an earlier wait only makes this loop once more
                timed_out = False
            except queue.Empty:
                timed_out = self._stop_waiting()

    async def atake(self) -> list[Any]:
        """`take` for a coroutine in the outbox's loop."""
        assert self.loop is not None
        timed_out = False
        while True:
            with self._lock:
                items, hold = self._batch(timed_out)
                if items is not None:
                    return items
                future = self._future = self.loop.create_future()
            timer = self.loop.call_later(hold, _resolve, future) if hold is not None else None
            try:
                await future
            finally:
                if timer is not None:
                    timer.cancel()
                timed_out = self._stop_waiting()

    def _stop_waiting(self) -> bool:
        """After a wait: True when its timeout ended it (no post woke the reader, or the flag would be clear)."""
        with self._lock:
            timed_out, self._waiting = self._waiting, False
            return timed_out


def _resolve(future: asyncio.Future | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)
