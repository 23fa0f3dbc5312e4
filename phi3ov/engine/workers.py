"""The threads a reply runs on, started once and reused, and one thread for every reply's time limit.

`threading.Thread.start()` returns only once the new thread has run, and a `threading.Timer` is a thread too,
so starting a reply with a thread (and a timer) of its own made the caller (the server's event loop) wait for
the OS to schedule two new threads before the prompt could be read: a few milliseconds on a busy machine, every
reply. Here a reply's work goes to an idle worker (a new one only when every worker is busy) and its deadline
into one heap:

    WORKERS.run(work)                        # returns at once; `work` runs on an idle daemon thread
    handle = DEADLINES.add(600.0, time_out)  # time_out() in 600 s, on the deadline thread
    handle.cancel()                          # the reply ended first

Every thread here is a daemon that waits, with nothing to do, on a queue or a condition: none keeps the process
alive or spins. Workers are kept for the next reply (as many as replies ever ran at once).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)
PRUNE_AT = 1024  # deadlines kept before the cancelled ones are dropped


class Workers:
    """Daemon threads that run one callable after another; `run` never waits for a thread to start when one is idle."""

    def __init__(self, name: str):
        self.name = name
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self.threads = 0

    def run(self, work: Callable[[], None]) -> None:
        # idle == the workers that will take a task - the tasks waiting: a task put when idle > 0 is taken at once.
        with self._lock:
            self._tasks.put(work)
            if self._idle:
                self._idle -= 1
                return
            self.threads += 1
        # (a Thread keeps its args while it runs: the task goes through the queue, not as an argument)
        threading.Thread(target=self._loop, name=self.name, daemon=True).start()

    def _loop(self) -> None:
        while True:
            work: Callable[[], None] | None = self._tasks.get()
            try:
                work()
            except BaseException:  # noqa: BLE001 - a task's own errors are its own; the worker goes on
                log.exception("A %s task raised", self.name)
            work = None  # an idle worker holds nothing of its last reply
            with self._lock:
                self._idle += 1


class Deadline:
    def __init__(self, when: float, callback: Callable[[], None]):
        self.when = when
        self.callback: Callable[[], None] | None = callback

    @property
    def cancelled(self) -> bool:
        return self.callback is None

    def cancel(self) -> None:
        self.callback = None  # a cancelled deadline left in the heap holds nothing of its reply


class Deadlines:
    """Callbacks at given times, all on one daemon thread (started with the first deadline)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, delay_s: float, callback: Callable[[], None]) -> Deadline:
        deadline = Deadline(time.monotonic() + delay_s, callback)
        with self._cond:
            if len(self._heap) >= PRUNE_AT:  # replies that ended early leave cancelled deadlines behind
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
            heapq.heappush(self._heap, (deadline.when, next(self._order), deadline))
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="phi3ov-deadlines", daemon=True)
                self._thread.start()
        return deadline

    def _due(self) -> Deadline:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                wait = self._heap[0][0] - time.monotonic() if self._heap else None
                if wait is not None and wait <= 0:
                    return heapq.heappop(self._heap)[2]
                self._cond.wait(wait)

    def _loop(self) -> None:
        while True:
            callback = self._due().callback  # None: cancelled since it was taken off the heap
            try:
                if callback is not None:
                    callback()
            except Exception:  # noqa: BLE001 - one callback's error must not end every other deadline
                log.exception("A deadline's callback raised")


WORKERS = Workers("phi3ov-generate")
DEADLINES = Deadlines()
