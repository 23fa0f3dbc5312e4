"""Gradio's queue woken by its events: jobs still run, in order and within their concurrency limit, and an idle
queue sleeps instead of polling. A real Gradio app on a free loopback port, used through gradio_client."""

from __future__ import annotations

import threading
import time

import gradio as gr
import pytest
from gradio_client import Client

from phi3ov.ui import queue_wake


@pytest.fixture
def app():
    running, peak, lock = [0], [0], threading.Lock()

    def work(text: str) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return text.upper()

    with gr.Blocks() as demo:
        box, out = gr.Textbox(), gr.Textbox()
        box.submit(work, box, out, api_name="work", concurrency_limit=1)
    demo.queue()
    assert queue_wake.install(demo._queue)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield demo, peak
    finally:
        demo.close()


def test_queued_jobs_run_one_at_a_time_and_all_finish(app):
    demo, peak = app
    client = Client(demo.local_url, verbose=False)
    jobs = [client.submit(f"job {k}", api_name="/work") for k in range(3)]
    assert [job.result(timeout=30) for job in jobs] == ["JOB 0", "JOB 1", "JOB 2"]
    assert peak[0] == 1  # the limit held: the 2nd and 3rd job started when a slot freed, not by a poll


def test_an_idle_queue_sleeps(app, monkeypatch):
    waits = []
    original = queue_wake._wait

    async def counted(event, timeout):
        waits.append(timeout)
        await original(event, timeout)

    monkeypatch.setattr(queue_wake, "_wait", counted)
    time.sleep(1.5)
    # Gradio's own loop would have looked for events ~1,500 times (every 1 ms); these wait up to IDLE_WAIT_S each.
    assert 1 <= len(waits) <= 6  # both loops woke by their timeout at least once, and only that


def test_another_gradio_keeps_its_loop_and_polls_slower(monkeypatch):
    class Queue:
        sleep_when_free = 0.001

    monkeypatch.setattr(gr, "__version__", "0.0.1")
    queue = Queue()
    assert not queue_wake.install(queue)
    assert queue.sleep_when_free == queue_wake.POLL_S
