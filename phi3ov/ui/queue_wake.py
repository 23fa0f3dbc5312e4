"""Gradio's queue, woken by what it waits for instead of polling for it.

`gradio.queueing.Queue` looks for a new event every 1 ms while it has none, and for progress updates every
10 ms: with nobody using the app that is ~3 % of a core, and on a 2-core machine it is taken from the
pipeline's threads while they generate (each wake-up of the event loop preempts one of them, and the other
waits for it at the next barrier). `install` gives one queue two loops that sleep until an event is pushed,
a job ends (a slot frees) or a job starts; a timeout bounds every wait, so a wake-up that never comes
costs at most a delay, never a stuck event.

The processing loop is Gradio's own (`Queue.start_processing` of gradio 6.31.0, Apache-2.0) with its sleeps
replaced; for any other Gradio version nothing is replaced and the queue polls every `POLL_S` instead of 1 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import types
from typing import Any

GRADIO = "6.31.0"  # the version whose processing loop is below
POLL_S = 0.005  # another Gradio: how often its queue looks for new events while it has none (its default: 1 ms)
IDLE_WAIT_S = 1.0  # the longest a loop sleeps without being woken (a wake-up missed costs at most this)
FULL_WAIT_S = 0.05  # every slot busy or every event over its concurrency limit: look again this often too
PROGRESS_S = 0.1  # progress updates while jobs run (Gradio: 10 ms; this app has no progress bars)


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


def install(queue: Any) -> bool:
    """Make `queue` (a Blocks' `_queue`, before launch) wait for its events; False where Gradio differs and
    it polls every POLL_S instead."""
    import gradio

    needed = ("push", "process_events", "start_processing", "start_progress_updates", "get_events",
              "active_jobs", "event_queue_per_concurrency_id", "stopped")
    if gradio.__version__ != GRADIO or not all(hasattr(queue, name) for name in needed):
        if hasattr(queue, "sleep_when_free"):
            queue.sleep_when_free = POLL_S
        return False
    work, started = asyncio.Event(), asyncio.Event()  # an event pushed or a slot freed; a job started
    push, process_events = queue.push, queue.process_events

    async def pushed(*args: Any, **kwargs: Any) -> Any:
        try:
            return await push(*args, **kwargs)
        finally:
            work.set()

    async def processed(*args: Any, **kwargs: Any) -> Any:
        try:
            return await process_events(*args, **kwargs)
        finally:
            work.set()

    queue.push, queue.process_events = pushed, processed
    queue.start_processing = types.MethodType(lambda q: _start_processing(q, work, started), queue)
    queue.start_progress_updates = types.MethodType(lambda q: _progress_updates(q, started), queue)
    return True


async def _start_processing(self: Any, work: asyncio.Event, started: asyncio.Event) -> None:
    """gradio 6.31.0's `Queue.start_processing`, waiting on `work` where it slept `sleep_when_free`."""
    from gradio.utils import run_coro_in_background, set_task_name

    try:
        while not self.stopped:
            work.clear()  # before looking: a push from here on wakes the wait below
            if len(self) == 0:
                await _wait(work, IDLE_WAIT_S)
                continue
            if None not in self.active_jobs:
                await _wait(work, FULL_WAIT_S)
                continue
            async with self.delete_lock:
                event_batch = self.get_events()
            if not event_batch:
                await _wait(work, FULL_WAIT_S)
                continue
            events, batch, concurrency_id = event_batch
            self.active_jobs[self.active_jobs.index(None)] = events
            event_queue = self.event_queue_per_concurrency_id[concurrency_id]
            event_queue.current_concurrency += 1
            start_time = time.time()
            fn = events[0].fn
            event_queue.start_times_per_fn[fn].add(start_time)
            for event in events:
                if (a := self.event_analytics.get(event._id)) is not None:
                    a["status"] = "processing"
            task = run_coro_in_background(self.process_events, events, batch, start_time, fn)
            set_task_name(task, events[0].session_hash, fn._id, events[0]._id, batch)
            self._asyncio_tasks.add(task)
            task.add_done_callback(self._asyncio_tasks.discard)
            started.set()
            if self.live_updates:
                self.broadcast_estimations(concurrency_id)
    finally:
        self.stopped = True
        self._cancel_asyncio_tasks()


async def _progress_updates(self: Any, started: asyncio.Event) -> None:
    """Gradio's progress loop: asleep while no job runs, every PROGRESS_S while one does."""
    while not self.stopped:
        started.clear()
        events = [evt for job in self.active_jobs if job is not None for evt in job]
        if not events:
            await _wait(started, IDLE_WAIT_S)
            continue
        for event in events:
            if event.progress_pending and event.progress:
                event.progress_pending = False
                self.send_message(event, event.progress)
        await asyncio.sleep(PROGRESS_S)
