"""The reply's threads: workers reused without waiting for a new thread, and one thread for every deadline."""

from __future__ import annotations

import threading
import weakref

from phi3ov.conversation import Fitted
from phi3ov.engine import Reply, Stats
from phi3ov.engine.workers import Deadlines, Workers
from phi3ov.logprobs import Piece
from phi3ov.options import GenerationOptions


def wait_idle(workers: Workers, count: int = 1) -> None:
    for _ in range(100):
        if workers._idle >= count:
            return
        threading.Event().wait(0.05)
    raise AssertionError("the worker never became idle")


def test_an_idle_worker_takes_the_next_task_and_a_busy_one_gets_company():
    workers = Workers("test-worker")
    ran: list[int] = []
    done = threading.Semaphore(0)

    def task() -> None:
        ran.append(threading.get_ident())
        done.release()

    for _ in range(3):  # one after another, each once the worker is idle again: one thread for all three
        workers.run(task)
        assert done.acquire(timeout=5), "a task never ran"
        wait_idle(workers)
    assert workers.threads == 1 and len(set(ran)) == 1

    gate, started = threading.Event(), threading.Semaphore(0)

    def blocked() -> None:
        started.release()
        assert gate.wait(5)

    workers.run(blocked)
    workers.run(blocked)  # the first is still running: a second thread
    assert started.acquire(timeout=5) and started.acquire(timeout=5), "two tasks did not run at once"
    gate.set()
    assert workers.threads == 2


def test_a_failing_task_leaves_its_worker_running():
    workers, done = Workers("test-worker"), threading.Event()

    def boom() -> None:
        raise ValueError("boom")

    workers.run(boom)
    wait_idle(workers)  # once it has logged the error
    workers.run(done.set)
    assert done.wait(5) and workers.threads == 1


def test_deadlines_fire_in_order_and_a_cancelled_one_never_does():
    deadlines, fired, last = Deadlines(), [], threading.Event()
    deadlines.add(0.3, lambda: (fired.append("late"), last.set()))
    deadlines.add(0.1, lambda: fired.append("early"))
    deadlines.add(0.2, lambda: fired.append("cancelled")).cancel()
    assert last.wait(5), "the last deadline never fired"
    assert fired == ["early", "late"]


def test_a_reply_past_its_time_limit_stops_and_says_timeout():
    gate = threading.Event()

    def run(emit, stop: threading.Event) -> Stats:  # "a", then waits for the gate; stops when asked
        for i, text in enumerate(["a", "b", "c"]):
            if stop.is_set():
                return Stats(ttft_ms=1.0, tokens_per_s=1.0, input_tokens=1, output_tokens=i, total_s=0.1)
            emit(Piece(text, [], 1))
            assert i or gate.wait(5), "the test never opened the gate"
        return Stats(ttft_ms=1.0, tokens_per_s=1.0, input_tokens=1, output_tokens=3, total_s=0.1)

    fitted = Fitted(messages=[{"role": "user", "content": "Hi"}], prompt_tokens=1, dropped=0)
    reply = Reply(run, fitted, GenerationOptions(max_new_tokens=3), timeout_s=0.2)
    stream = reply.pieces()
    assert next(stream).text == "a"
    for _ in range(100):
        if reply.stopped:
            break
        threading.Event().wait(0.05)
    gate.set()
    assert "".join(p.text for p in stream) == ""  # stopped before "b": the text so far is kept
    assert reply.text == "a" and reply.timed_out and reply.finish_reason == "timeout"


def test_an_idle_worker_keeps_nothing_of_its_last_task():
    workers, done = Workers("test-worker"), threading.Event()

    class Task:  # stands for a reply's closure: its text, its queue, its event loop
        def __call__(self) -> None:
            done.set()

    task = Task()
    ref = weakref.ref(task)
    workers.run(task)
    del task
    assert done.wait(5)
    for _ in range(100):
        if ref() is None:
            break
        threading.Event().wait(0.05)
    assert ref() is None, "the idle worker still holds its last task"


def test_a_cancelled_deadline_keeps_nothing_of_its_callback():
    class Callback:  # stands for a reply's bound method
        def __call__(self) -> None:
            raise AssertionError("a cancelled deadline fired")

    callback = Callback()
    ref = weakref.ref(callback)
    deadline = Deadlines().add(600.0, callback)
    del callback
    deadline.cancel()
    assert deadline.cancelled and ref() is None
