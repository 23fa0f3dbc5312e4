"""RemoteEngine (`--backend openai`) against our own API on loopback as the model server."""

from __future__ import annotations

import json
import time
import urllib.request

import openai
import pytest

from phi3ov.errors import BadOptions, EngineNotReady
from phi3ov.options import GenerationOptions
from phi3ov.process import ServerProcess, free_port

KEY = "remote-key-456"
GREEDY = GenerationOptions(temperature=0, max_new_tokens=24)


def ask(content: str) -> list[dict]:
    return [{"role": "system", "content": "You are a helpful AI assistant."}, {"role": "user", "content": content}]


@pytest.fixture(scope="module")
def server(bundled_ref, tmp_path_factory):
    log = tmp_path_factory.mktemp("remote") / "server.log"
    # Deterministic: the tests below ask it the same request twice and compare the replies.
    with ServerProcess(["--model", str(bundled_ref.path), "--api-key", KEY, "--kv-cache-gb", "1", "--deterministic"],
                       log_path=log) as proc:
        yield proc


@pytest.fixture(scope="module")
def remote(server):
    from phi3ov.engine.remote import RemoteEngine

    engine = RemoteEngine(f"{server.url}/v1", api_key=KEY)
    yield engine
    engine.close()


def running(server) -> int:
    with urllib.request.urlopen(f"{server.url}/health", timeout=5) as resp:
        return json.load(resp)["running"]


def test_name_and_context_come_from_the_server(remote, server):
    with urllib.request.urlopen(f"{server.url}/health", timeout=5) as resp:
        assert remote.name == json.load(resp)["model"]
    assert remote.context_length == 8192  # SmolLM2's, sent as max_model_len


def test_remote_reply_streams_and_equals_the_servers_own(remote, server):
    reply = remote.chat(ask("What is OpenVINO?"), GREEDY)
    chunks = list(reply)
    assert len(chunks) > 5
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0) as client:
        direct = client.chat.completions.create(model=remote.name, messages=ask("What is OpenVINO?"),
                                                max_tokens=24, temperature=0)
    assert reply.text == direct.choices[0].message.content
    assert reply.finish_reason == direct.choices[0].finish_reason
    assert reply.stats.output_tokens == direct.usage.completion_tokens


def test_stop_closes_the_stream_and_the_server_stops(remote, server):
    reply = remote.chat(ask("Tell me a very long story."), GenerationOptions(temperature=0, max_new_tokens=3000))
    pieces = iter(reply)
    [next(pieces) for _ in range(3)]
    reply.stop()
    list(pieces)
    assert reply.finish_reason == "cancelled" and reply.stats.output_tokens < 100
    deadline = time.monotonic() + 10
    while running(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running(server) == 0


def test_overflow_estimate_is_conservative(remote):
    from phi3ov.engine.remote import estimate_tokens

    messages = ask("The quick brown fox jumps over the lazy dog. " * 20)
    # Our own server's exact count for these messages is far below the estimate.
    assert estimate_tokens(messages) > 230


def test_unreachable_server_and_wrong_key_are_clear(server):
    from phi3ov.engine.remote import RemoteEngine

    with pytest.raises(EngineNotReady, match="--base-url"):
        RemoteEngine(f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(BadOptions, match="--remote-api-key"):
        RemoteEngine(f"{server.url}/v1", api_key="wrong")


def test_the_app_serves_with_a_remote_backend(server, bundled_ref):
    args = ["--backend", "openai", "--base-url", f"{server.url}/v1", "--remote-api-key", KEY]
    with ServerProcess(args) as front, openai.OpenAI(base_url=f"{front.url}/v1", api_key="x") as client:
        model = client.models.list().data[0].id
        result = client.chat.completions.create(model=model, messages=ask("What is OpenVINO?"), max_tokens=24,
                                                temperature=0)
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY) as back:
            direct = back.chat.completions.create(model=model, messages=ask("What is OpenVINO?"), max_tokens=24,
                                                  temperature=0)
    assert result.choices[0].message.content == direct.choices[0].message.content


def test_logprobs_and_structured_output_pass_through(remote):
    from phi3ov.structured import Constraint

    options = GenerationOptions(temperature=0, max_new_tokens=60, logprobs=True, top_logprobs=2,
                                constraint=Constraint("regex", r"(yes|no)\."))
    reply = remote.chat(ask("Is the sky blue?"), options)
    text = "".join(reply)
    assert text in ("yes.", "no.")
    assert "".join(e.token for e in reply.logprobs) == text
    assert all(len(e.top) == 2 and e.top[0].logprob >= e.top[1].logprob for e in reply.logprobs)


def test_a_bad_grammar_comes_back_as_the_servers_400(remote):
    from phi3ov.structured import Constraint

    reply = remote.chat(ask("Hi"), GenerationOptions(max_new_tokens=4, constraint=Constraint("regex", "(")))
    with pytest.raises(BadOptions) as caught:
        list(reply)
    assert "parenthesis" in str(caught.value)


def test_raw_completion_and_tokens_need_a_local_tokenizer(remote):
    for call in (lambda: remote.complete("Hello"), lambda: remote.tokenize("Hello")):
        with pytest.raises(BadOptions) as caught:
            call()
        assert "not available" in str(caught.value)
