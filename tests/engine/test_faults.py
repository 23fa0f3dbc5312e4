"""A failure inside the pipeline during one reply stays local (PHI3OV_FAULT_INJECT, a test-only hook).

The fault is real: it is raised inside the engine's own generation path (the batching driver's step,
or the streamer callback the single pipeline calls), never by a mock engine. The reply it touches
fails with a message that says so; a reply beside it, and every request after it, are served by the
same process.
"""

from __future__ import annotations

import json
import urllib.request

import openai
import pytest
from gradio_client import Client
from support.bounded import Threads

from phi3ov.process import ServerProcess

FAULT_AT = 12  # a reply fails when it reaches this many tokens
SYSTEM = "You are a helpful AI assistant."
LONG = dict(max_tokens=60, temperature=0, stream=True, extra_body={"ignore_eos": True})


def ask(content: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]


def running(server) -> int:
    with urllib.request.urlopen(f"{server.url}/health", timeout=10) as resp:
        return json.load(resp)["running"]


def gradio_chat(server, message: str, max_new_tokens: int, timeout: float = 120):
    """/chat through gradio_client (greedy, ignore_eos); the final history, or the app's error."""
    client = Client(server.url, verbose=False)
    job = client.submit(message, [], SYSTEM, max_new_tokens, 0.0, 1.0, 0, 1.0, None, True, api_name="/chat")
    try:
        return job.result(timeout=timeout)
    except TimeoutError:
        job.cancel()
        raise AssertionError(f"no answer from /chat within {timeout} s") from None


def stream(client, model: str, content: str, **kwargs) -> tuple[str, list]:
    text, finish = "", []
    with client.chat.completions.create(model=model, messages=ask(content), **kwargs) as events:
        for event in events:
            if event.choices and event.choices[0].delta.content:
                text += event.choices[0].delta.content
            if event.choices and event.choices[0].finish_reason:
                finish.append(event.choices[0].finish_reason)
    return text, finish


@pytest.mark.parametrize("engine", ["batched", "single"])
def test_a_reply_that_fails_inside_the_pipeline_fails_alone(bundled_ref, tmp_path, engine):
    env = {"PHI3OV_FAULT_INJECT": f"after_tokens:{FAULT_AT}"}
    with ServerProcess(["--model", str(bundled_ref.path), "--engine", engine], env=env,
                       log_path=tmp_path / "server.log") as srv, \
            openai.OpenAI(base_url=f"{srv.url}/v1", api_key="none", max_retries=0, timeout=120) as client:
        model = client.models.list().data[0].id
        outcome: dict[str, object] = {}

        def failing() -> None:
            with pytest.raises(openai.APIError) as caught:  # the stream's error event, then [DONE]
                stream(client, model, "Tell me a long story.", **LONG)
            outcome["failing"] = caught.value

        def beside() -> None:  # shorter than the fault: never touched by it
            outcome["beside"] = stream(client, model, "Name three colors.", max_tokens=FAULT_AT - 4, temperature=0,
                                       stream=True, extra_body={"ignore_eos": True})

        with Threads(timeout=240) as threads:
            threads.start(failing)
            threads.start(beside)
        message = str(outcome["failing"].message)
        assert "Generation failed" in message and "InjectedFault" in message and "try again" in message
        assert outcome["failing"].body["code"] == "generation_failed"
        text, finish = outcome["beside"]
        assert text and finish == ["length"], "the reply beside the failing one was finished"

        with pytest.raises(openai.InternalServerError) as caught:  # not streamed: a 500 in OpenAI's shape
            client.chat.completions.create(model=model, messages=ask("Tell me a long story."),
                                           **{**LONG, "stream": False})
        assert caught.value.status_code == 500 and caught.value.body["code"] == "generation_failed"
        assert "Generation failed" in caught.value.body["message"]

        from gradio_client.exceptions import AppError

        with pytest.raises(AppError, match="Generation failed"):
            gradio_chat(srv, "Tell me a long story.", max_new_tokens=60)
        history = gradio_chat(srv, "Say hi.", max_new_tokens=4)
        assert history[-1]["role"] == "assistant" and history[-1]["content"], "the chat goes on without a restart"

        reply = client.chat.completions.create(model=model, messages=ask("What is 2+2?"), max_tokens=6,
                                               temperature=0)
        assert reply.choices[0].message.content and reply.usage.completion_tokens > 0
        assert not running(srv)  # 0 (batched); the single engine does not count
        assert srv.proc.poll() is None, "the same server process served every request"


def test_a_batching_step_that_fails_ends_its_replies_and_the_driver_goes_on(bundled_ref, tmp_path):
    env = {"PHI3OV_FAULT_INJECT": f"step_after_tokens:{FAULT_AT}"}
    with ServerProcess(["--model", str(bundled_ref.path)], env=env, log_path=tmp_path / "server.log") as srv, \
            openai.OpenAI(base_url=f"{srv.url}/v1", api_key="none", max_retries=0, timeout=120) as client:
        model = client.models.list().data[0].id
        with pytest.raises(openai.APIError, match="Generation failed"):
            stream(client, model, "Tell me a long story.", **LONG)
        for _ in range(3):  # the driver thread survived the step and keeps stepping
            text, finish = stream(client, model, "Name three colors.", max_tokens=FAULT_AT - 4, temperature=0,
                                  stream=True, extra_body={"ignore_eos": True})
            assert text and finish == ["length"]
        assert running(srv) == 0
    assert "A continuous batching step failed" in (tmp_path / "server.log").read_text()
