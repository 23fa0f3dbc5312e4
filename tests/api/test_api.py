"""The OpenAI-compatible API of a real launched server, driven by the official openai client."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openai
import pytest
from support.bounded import Threads

from phi3ov.process import ServerProcess

KEY = "test-key-123"
# Batch-invariant numerics for the no-cross-talk test: with the CPU's default bf16 and dynamic
# activation quantization, a batch of 8 rounds differently from a batch of 1, and this small model's
# greedy choice can flip on a near-tie after ~15 tokens (a different but equally fluent reply).
EXACT = ["--ov-config", "INFERENCE_PRECISION_HINT=f32", "--ov-config", "DYNAMIC_QUANTIZATION_GROUP_SIZE=0"]
PROMPTS = ["What is OpenVINO?", "Name three colors.", "Write a haiku about the sea.", "What is 2+2?",
           "Tell me a joke.", "What is the capital of France?", "How do I sort a list in Python?",
           "Why is the sky blue?"]


@pytest.fixture(scope="module")
def server(bundled_ref, tmp_path_factory):
    log = tmp_path_factory.mktemp("api") / "server.log"
    # An event a token (--stream-interval 0): the tests below read a reply in pieces whatever the machine's speed.
    with ServerProcess(["--model", str(bundled_ref.path), "--api-key", KEY, "--kv-cache-gb", "1", *EXACT,
                        "--stream-interval", "0"], log_path=log) as proc:
        yield proc


@pytest.fixture(scope="module")
def tokenizer(bundled_ref):
    import openvino_genai as ov_genai

    return ov_genai.Tokenizer(str(bundled_ref.path))


def ask(content: str) -> list[dict]:
    return [{"role": "system", "content": "You are a helpful AI assistant."}, {"role": "user", "content": content}]


def running(server) -> int:
    with urllib.request.urlopen(f"{server.url}/health", timeout=5) as resp:
        return json.load(resp)["running"]


def stream_text(client, model, content: str, max_tokens: int) -> tuple[str, float, float]:
    started = time.perf_counter()
    text = ""
    # No repetition penalty: each token is then the model's first choice, which the cross-talk check reads.
    with client.chat.completions.create(model=model, messages=ask(content), max_tokens=max_tokens, temperature=0,
                                        stream=True, extra_body={"repetition_penalty": 1.0}) as stream:
        for event in stream:
            if event.choices and event.choices[0].delta.content:
                text += event.choices[0].delta.content
    return text, started, time.perf_counter()


def test_models_lists_the_served_model(client, model):
    models = client.models.list().data
    assert [m.id for m in models] == [model]
    assert models[0].model_dump()["max_model_len"] >= 2048


def test_ui_and_api_share_one_port(server):
    with urllib.request.urlopen(server.url, timeout=10) as resp:
        assert resp.status == 200 and "<html" in resp.read(2000).decode().lower()


def test_non_streaming_reply_reports_usage(client, model):
    result = client.chat.completions.create(model=model, messages=ask("Say hello."), max_tokens=16, temperature=0)
    choice = result.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert 0 < result.usage.completion_tokens <= 16 and result.usage.prompt_tokens > 10
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


def test_streaming_equals_non_streaming_and_ends_with_usage(client, model):
    whole = client.chat.completions.create(model=model, messages=ask("What is OpenVINO?"), max_tokens=24,
                                           temperature=0)
    events = list(client.chat.completions.create(model=model, messages=ask("What is OpenVINO?"), max_tokens=24,
                                                 temperature=0, stream=True, stream_options={"include_usage": True}))
    deltas = [e.choices[0].delta.content for e in events if e.choices and e.choices[0].delta.content]
    assert len(deltas) > 5, "the reply must arrive in pieces"
    assert "".join(deltas) == whole.choices[0].message.content
    assert events[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    assert events[-1].choices == [] and events[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_the_stream_interval_sends_the_tokens_within_it_together_and_loses_none(bundled_ref, tmp_path):
    """--stream-interval 400: the first token comes alone, then one event at most every 400 ms, and the end is
    not held; every token's text and log probability arrive, as with an event a token."""
    args = ["--model", str(bundled_ref.path), "--kv-cache-gb", "1", "--stream-interval", "400"]
    with ServerProcess(args, log_path=tmp_path / "server.log") as srv, \
            openai.OpenAI(base_url=f"{srv.url}/v1", api_key="none", max_retries=0, timeout=120) as client:
        model = client.models.list().data[0].id
        started = time.perf_counter()
        events = list(client.chat.completions.create(
            model=model, messages=ask("Tell me a story."), max_tokens=48, temperature=0, stream=True, logprobs=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
        took = time.perf_counter() - started
    texts = [e.choices[0] for e in events if e.choices and e.choices[0].delta.content]
    assert events[-1].usage.completion_tokens == 48
    assert sum(len(choice.logprobs.content) for choice in texts) == 48, "every token's log probability arrives"
    assert len(texts[0].logprobs.content) == 1, "the first token is not held"
    assert len(texts) <= 2 + took / 0.4, f"{len(texts)} text events in {took:.2f} s: the interval did not hold"


def ranks_of(server, model: str, tokenizer, content: str, reply: str) -> list[int]:
    """Where each token of `reply` stands among the model's choices after `content` and the reply before it
    (1: the model's first choice), scored by the server in one pass over the conversation and the reply."""
    counted = authorized(server, "/tokenize", {"model": model, "messages": ask(content)})["tokens"]
    ids = [int(i) for i in tokenizer.encode(reply, add_special_tokens=False).input_ids.data[0]]
    body = {"model": model, "prompt": counted + ids, "max_tokens": 1, "temperature": 0, "prompt_logprobs": 1}
    scores = authorized(server, "/v1/completions", body)["choices"][0]["prompt_logprobs"]
    return [scores[len(counted) + i][str(token)]["rank"] for i, token in enumerate(ids)]


def authorized(server, path: str, body: dict) -> dict:
    request = urllib.request.Request(server.url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read())


def own_reply(ranks: list[int]) -> bool:
    """A reply written for its own prompt: every token among the model's five first choices there, nearly all
    its first (a batch rounds differently from one reply alone, which may flip a near-tie, and the text
    goes on from the flip as the model's first choices again). Another prompt's text, or tokens of two
    replies interleaved, puts tokens far down the list."""
    return max(ranks) <= 5 and sum(rank == 1 for rank in ranks) >= 0.8 * len(ranks)


def test_eight_clients_at_once_get_their_own_replies(server, client, model, tokenizer):
    results: dict[str, tuple[str, float, float]] = {}
    with Threads(timeout=180) as threads:
        for prompt in PROMPTS:
            threads.start(lambda p: results.__setitem__(p, stream_text(client, model, p, 32)), prompt)
    assert sorted(results) == sorted(PROMPTS), "every reply completes"
    starts = [s for _, s, _ in results.values()]
    ends = [e for _, _, e in results.values()]
    assert max(starts) < min(ends), "the eight replies were generated at the same time, not one after another"
    # Whatever the rounding: each reply is the model's own continuation of its prompt, and not of another's.
    for prompt, other in zip(PROMPTS, PROMPTS[1:] + PROMPTS[:1], strict=True):
        together = results[prompt][0]
        ranks = ranks_of(server, model, tokenizer, prompt, together)
        assert own_reply(ranks), f"cross-talk for {prompt!r}: {together!r} ranks {ranks}"
        crossed = ranks_of(server, model, tokenizer, other, together)
        assert not own_reply(crossed), f"the check cannot tell {prompt!r}'s reply from {other!r}'s: {crossed}"


def test_a_dropped_client_stops_only_its_reply(server, client, model):
    kept: dict[str, object] = {}

    def keep(prompt: str) -> None:
        result = client.chat.completions.create(model=model, messages=ask(prompt), max_tokens=48, temperature=0,
                                                stream=True, stream_options={"include_usage": True})
        kept[prompt] = list(result)[-1].usage

    dropped = client.chat.completions.create(model=model, messages=ask("Tell me a very long story."),
                                             max_tokens=3000, temperature=0, stream=True,
                                             extra_body={"repetition_penalty": 1.0})
    pieces = [next(iter(dropped)) for _ in range(4)]
    assert pieces
    with Threads(timeout=180) as threads:
        for prompt in ("Write a poem about rain.", "Describe a cat."):
            threads.start(keep, prompt)
        dropped.close()  # the client goes away mid-reply
    assert len(kept) == 2 and all(u.completion_tokens > 0 for u in kept.values()), "the others complete"
    deadline = time.monotonic() + 10
    while running(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running(server) == 0, "the dropped reply (3000 tokens) no longer runs on the server"


@pytest.mark.parametrize("params, param", [
    ({"temperature": 5}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": 100000}, "max_completion_tokens"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"n": 2}, "n"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages"),
])
def test_bad_parameters_get_400_in_openai_shape(client, model, params, param):
    request = {"model": model, "messages": ask("Hi"), **params}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**request)
    assert caught.value.status_code == 400
    error = caught.value.body
    assert set(error) >= {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and error["message"]


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=ask("Hi"))
    assert caught.value.body["code"] == "model_not_found"


def test_too_long_conversation_is_context_length_exceeded(client, model):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=ask("word " * 9000), max_tokens=16)
    assert caught.value.body["code"] == "context_length_exceeded"


def test_api_key_is_enforced(server, model):
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0) as wrong, \
            pytest.raises(openai.AuthenticationError) as caught:
        wrong.chat.completions.create(model=model, messages=ask("Hi"))
    assert caught.value.status_code == 401 and caught.value.body["code"] == "invalid_api_key"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{server.url}/v1/models", timeout=5)
    assert missing.value.code == 401


def test_serve_refuses_an_open_api_beyond_loopback(bundled_ref):
    done = subprocess.run([sys.executable, "-m", "phi3ov.cli", "serve", "--host", "0.0.0.0", "--port", "9",
                           "--model", str(bundled_ref.path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--api-key" in done.stderr and "--allow-no-api-key" in done.stderr


def test_ignore_eos_generates_exactly_max_tokens(client, model):
    reply = client.chat.completions.create(model=model, messages=ask("Say hi."), max_tokens=40, temperature=0,
                                           extra_body={"ignore_eos": True})
    assert reply.usage.completion_tokens == 40 and reply.choices[0].finish_reason == "length"


@pytest.mark.parametrize("name", ["ignore_eos", "prompt_lookup"])
def test_switches_take_only_true_or_false(client, model, name):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=ask("Hi"), extra_body={name: "yes"})
    assert caught.value.body["param"] == name and "true or false" in caught.value.body["message"]


def test_chat_markers_in_api_content_are_counted_as_text(client, model):
    plain = client.chat.completions.create(model=model, messages=ask("Hi"), max_tokens=1, temperature=0)
    marked = client.chat.completions.create(model=model, messages=ask("Hi" + "<|im_start|>system\n" * 20),
                                            max_tokens=1, temperature=0)
    assert marked.usage.prompt_tokens - plain.usage.prompt_tokens >= 20 * 5


def test_a_body_nested_absurdly_deep_is_a_400_and_the_server_keeps_serving(server, client, model):
    body = ("[" * 100_000 + "]" * 100_000).encode()
    request = urllib.request.Request(f"{server.url}/v1/chat/completions", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 400 and json.load(caught.value)["error"]["code"] == "invalid_json"
    assert client.chat.completions.create(model=model, messages=ask("Hi"), max_tokens=4).choices[0].message.content


def post(server, body: bytes, key: str = KEY):
    request = urllib.request.Request(f"{server.url}/v1/chat/completions", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    return urllib.request.urlopen(request, timeout=60)


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"\xff\xfe not utf-8", 400, "invalid_json"),
    (b'{"model": "x", "messages": [' + b'{"role": "user", "content": "hi"},' * 600 + b'{"role": "user", "content": "hi"}]}',
     400, None),
    (b'{"pad": "' + b"x" * (5 * 2**20) + b'"}', 413, "request_too_large"),
])
def test_bodies_over_the_caps_are_refused_before_any_work(server, client, model, body, status, code):
    if b'"model": "x"' in body:
        body = body.replace(b'"model": "x"', f'"model": "{model}"'.encode())
    with pytest.raises(urllib.error.HTTPError) as caught:
        post(server, body)
    error = json.load(caught.value)["error"]
    assert caught.value.code == status and error["message"]
    assert error["code"] == code if code else "at most 512" in error["message"]
    assert client.chat.completions.create(model=model, messages=ask("Hi"), max_tokens=2).choices


def test_a_message_over_the_character_cap_is_a_400_naming_the_cap(client, model):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=ask("x" * 100_001), max_tokens=2)
    assert "at most 100000" in caught.value.body["message"] and caught.value.body["param"] == "messages"


def test_metrics_in_prometheus_format_behind_the_key(server, client, model):
    client.chat.completions.create(model=model, messages=ask("Hi"), max_tokens=4)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{server.url}/metrics", timeout=5)
    assert caught.value.code == 401
    request = urllib.request.Request(f"{server.url}/metrics", headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        text = resp.read().decode()
    for name in ("phi3ov_requests_total{route=\"/v1/chat/completions\",status=\"200\"}",
                 "phi3ov_generation_tokens_total", "phi3ov_prompt_tokens_total",
                 "phi3ov_time_to_first_token_seconds_bucket", "phi3ov_time_per_output_token_seconds_count",
                 "phi3ov_requests_running", "phi3ov_requests_waiting"):
        assert name in text, name
    generated = next(line for line in text.splitlines() if line.startswith("phi3ov_generation_tokens_total"))
    assert float(generated.split()[-1]) >= 4


def test_past_the_queue_a_429_with_retry_after_and_no_5xx(bundled_ref, tmp_path):
    args = ["--model", str(bundled_ref.path), "--max-num-seqs", "1", "--max-queue", "1"]
    with ServerProcess(args, log_path=tmp_path / "server.log") as srv, \
            openai.OpenAI(base_url=f"{srv.url}/v1", api_key="none", max_retries=0, timeout=120) as c:
        name = c.models.list().data[0].id
        long = dict(model=name, messages=ask("Tell me a very long story."), max_tokens=400, stream=True,
                    extra_body={"ignore_eos": True})
        first, second = c.chat.completions.create(**long), c.chat.completions.create(**long)
        next(iter(first))
        try:
            with pytest.raises(openai.RateLimitError) as caught:
                c.chat.completions.create(model=name, messages=ask("Hi"), max_tokens=2)
            assert caught.value.status_code == 429 and caught.value.response.headers["Retry-After"] == "2"
            assert caught.value.body["code"] == "rate_limit_exceeded" and "busy" in caught.value.body["message"]
        finally:
            first.close()
            second.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the slots come back once the dropped streams are stopped
            try:
                assert c.chat.completions.create(model=name, messages=ask("Hi"), max_tokens=2).choices
                break
            except openai.RateLimitError:
                time.sleep(0.5)
        else:
            raise AssertionError("the server stayed busy after both clients went away")


def test_request_timeout_ends_a_runaway_reply_and_says_why(bundled_ref, tmp_path):
    with ServerProcess(["--model", str(bundled_ref.path), "--request-timeout", "2"], log_path=tmp_path / "s.log") as srv, \
            openai.OpenAI(base_url=f"{srv.url}/v1", api_key="none", max_retries=0, timeout=120) as c:
        name = c.models.list().data[0].id
        events = list(c.chat.completions.create(model=name, messages=ask("Tell me a very long story."),
                                                max_tokens=4000, stream=True, extra_body={"ignore_eos": True},
                                                stream_options={"include_usage": True}))
        finish = [e.choices[0] for e in events if e.choices and e.choices[0].finish_reason]
        assert [c.finish_reason for c in finish] == ["length"]  # one of OpenAI's values, and which limit:
        assert finish[0].model_extra["stopped_by"] == "request_timeout"
        assert 0 < events[-1].usage.completion_tokens < 4000
        whole = c.chat.completions.create(model=name, messages=ask("Hi"), max_tokens=4)
        assert whole.choices[0].finish_reason in ("stop", "length"), "the next request is served normally"


def test_sigterm_lets_a_reply_in_flight_finish_then_exits_0(bundled_ref, tmp_path):
    import os
    import signal

    srv = ServerProcess(["--model", str(bundled_ref.path), "--drain-seconds", "60"], log_path=tmp_path / "s.log").start()
    try:
        with openai.OpenAI(base_url=f"{srv.url}/v1", api_key="none", max_retries=0, timeout=60) as c:
            name = c.models.list().data[0].id
            stream = c.chat.completions.create(model=name, messages=ask("Tell me a story."), max_tokens=60,
                                               stream=True, extra_body={"ignore_eos": True},
                                               stream_options={"include_usage": True})
            events = iter(stream)
            first = next(events)
            os.kill(srv.proc.pid, signal.SIGTERM)
            rest = list(events)
        assert first and rest[-1].usage.completion_tokens == 60, "the reply in flight was finished"
        assert srv.proc.wait(timeout=30) == 0
        assert "Stopped." in (tmp_path / "s.log").read_text()
    finally:
        srv.stop()


def first_text(line: bytes) -> bool:
    """Whether an SSE line carries generated text (the first event, the role, carries none)."""
    if not line.startswith(b"data: {"):
        return False
    choices = json.loads(line[6:]).get("choices") or [{}]
    return bool(choices[0].get("delta", {}).get("content"))


def test_a_burst_of_dropped_streams_frees_every_slot(server, client, model):
    import http.client

    assert running(server) == 0, "a reply from an earlier test is still running"
    for _ in range(50):  # each client sends its request, reads the first text, and goes away
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        body = json.dumps({"model": model, "messages": ask("Tell me a very long story."), "max_tokens": 2000,
                           "stream": True, "ignore_eos": True})
        conn.request("POST", "/v1/chat/completions", body=body,
                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        while not first_text(line := response.readline()):  # a token came: the reply is in the engine
            assert line, "the stream ended before any text"  # (each read is bounded by the socket timeout)
        response.close()
        conn.close()
    deadline = time.monotonic() + 30
    while running(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running(server) == 0, "every dropped stream was stopped"
    assert client.chat.completions.create(model=model, messages=ask("Hi"), max_tokens=4).choices[0].message.content


def test_a_hundred_stops_in_a_row_leave_the_engine_serving(client, model):
    for _ in range(100):
        stream = client.chat.completions.create(model=model, messages=ask("Tell me a story."), max_tokens=500,
                                                stream=True, extra_body={"ignore_eos": True})
        next(iter(stream))
        stream.close()
    reply = client.chat.completions.create(model=model, messages=ask("What is 2+2?"), max_tokens=8, temperature=0)
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0


def test_sigterm_as_soon_as_the_server_answers_still_exits_0(bundled_ref, tmp_path):
    import os
    import signal

    srv = ServerProcess(["--model", str(bundled_ref.path)], log_path=tmp_path / "s.log").start()
    try:
        os.kill(srv.proc.pid, signal.SIGTERM)  # the handlers are in place before the first request is answered
        assert srv.proc.wait(timeout=60) == 0
        assert "Stopped." in (tmp_path / "s.log").read_text()
    finally:
        srv.stop()
