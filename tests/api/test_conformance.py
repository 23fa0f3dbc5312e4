"""Every field phi3ov answers is one OpenAI's types allow (the `openai` package's models, generated from
OpenAI's OpenAPI description), or a documented extension (tests/support/openai_shapes.py); every
finish_reason is one of OpenAI's, including a reply the server's --request-timeout ended."""

from __future__ import annotations

import json
import urllib.request

import pytest
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from support.http import call
from support.openai_shapes import problems

from phi3ov.process import ServerProcess

MODEL = "SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def server(bundled_ref, tmp_path_factory):
    log = tmp_path_factory.mktemp("conformance") / "server.log"
    with ServerProcess(["--model", str(bundled_ref.path), "--request-timeout", "3"], log_path=log) as proc:
        yield proc


def events(server, path: str, body: dict) -> list[dict]:
    request = urllib.request.Request(server.url + path, json.dumps({**body, "stream": True}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        lines = [line.decode()[6:].strip() for line in reply if line.startswith(b"data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


HI = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


def test_chat_answers_and_events_are_openais_shape(server):
    whole = call(server, "/v1/chat/completions", {"model": MODEL, "messages": HI, "max_completion_tokens": 4,
                                                    "logprobs": True, "top_logprobs": 2, "prompt_logprobs": 1})
    assert problems(whole, ChatCompletion) == []
    stream = events(server, "/v1/chat/completions", {
        "model": MODEL, "messages": HI, "max_completion_tokens": 4, "logprobs": True, "ignore_eos": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True}})
    assert [p for event in stream for p in problems(event, ChatCompletionChunk)] == []
    assert all(event["usage"]["prompt_tokens"] > 0 for event in stream)  # vLLM's continuous usage
    completion = [event["usage"]["completion_tokens"] for event in stream]
    assert completion == sorted(completion) and completion[-1] == 4


def test_completions_and_models_are_openais_shape(server):
    for body in ({"prompt": "Once upon a time", "max_tokens": 3, "logprobs": 2},
                 {"prompt": ["Once", "Twice"], "max_tokens": 2, "echo": True, "logprobs": 1},
                 {"prompt": [1, 2, 3], "max_tokens": 2, "prompt_logprobs": 0}):
        assert problems(call(server, "/v1/completions", {"model": MODEL, **body}), Completion) == []
    stream = events(server, "/v1/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 3, "echo": True,
                                                "stream_options": {"include_usage": True}})
    assert stream[-2]["choices"][0]["finish_reason"] == "length" and stream[-1]["choices"] == []
    # OpenAI's completion events carry finish_reason null until the last (its type, shared with whole answers,
    # says a string): checked as the string they end with.
    ended = [{**e, "choices": [{**c, "finish_reason": c["finish_reason"] or "length"} for c in e["choices"]]}
             for e in stream]
    assert [p for event in ended for p in problems(event, Completion)] == []
    models = call(server, "/v1/models")["data"]
    assert [p for card in models for p in problems(card, Model)] == []


def test_a_reply_cut_by_the_request_timeout_finishes_with_one_of_openais_reasons(server):
    body = {"model": MODEL, "messages": HI, "max_tokens": 4000, "ignore_eos": True}
    whole = call(server, "/v1/chat/completions", body)
    assert problems(whole, ChatCompletion) == []
    assert whole["choices"][0]["finish_reason"] == "length"
    assert whole["choices"][0]["stopped_by"] == "request_timeout"
    assert 0 < whole["usage"]["completion_tokens"] < 4000


def test_the_checker_catches_what_openai_does_not_allow():
    wrong = {"id": "x", "object": "chat.completion", "created": 1, "model": MODEL, "invented": 1,
             "choices": [{"index": 0, "finish_reason": "timeout",
                          "message": {"role": "assistant", "content": "hi"}}]}
    found = problems(wrong, ChatCompletion)
    assert any("invented" in p for p in found) and any("'timeout'" in p for p in found)
