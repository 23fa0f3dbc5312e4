"""The real app, launched as a server on a free loopback port, used through gradio_client."""

import time

import pytest
from gradio_client import Client
from support.bounded import Threads

from phi3ov.process import ServerProcess

SYSTEM = "You are a helpful AI assistant."
GREEDY = dict(max_new_tokens=32, temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, seed=None)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with ServerProcess([], log_path=log) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return Client(server.url, verbose=False)


def chat(client, message, history=(), timeout=120, **options):
    """Send one message through /chat; every streamed update and the final history, within `timeout`."""
    job = client.submit(message, list(history), SYSTEM, *{**GREEDY, **options}.values(), api_name="/chat")
    try:
        final = job.result(timeout=timeout)  # raises the app's error, if any
    except TimeoutError:
        job.cancel()
        raise AssertionError(f"no reply from /chat within {timeout} s (status: {job.status().code})") from None
    return job.outputs(), final


def text(message):
    content = message["content"]
    return content if isinstance(content, str) else "".join(p["text"] for p in content)


def test_replies_stream_and_history_holds_both_turns(client):
    updates, history = chat(client, "can you introduce yourself?")
    assistant_texts = [text(u[-1]) for u in updates if len(u) == 2]
    assert len(assistant_texts) > 3, "the reply should arrive in several streamed updates"
    assert all(b.startswith(a) for a, b in zip(assistant_texts, assistant_texts[1:], strict=False))
    assert [m["role"] for m in history] == ["user", "assistant"] and text(history[1]).strip()

    _, second = chat(client, "Now say goodbye.", history)
    assert [m["role"] for m in second] == ["user", "assistant", "user", "assistant"]
    assert text(second[0]) == "can you introduce yourself?" and text(second[2]) == "Now say goodbye."


def test_two_clients_at_once_keep_separate_histories(server):
    results = {}

    def talk(name, topic):
        c = Client(server.url, verbose=False)
        _, h1 = chat(c, f"My name is {name}. Tell me about {topic}.")
        _, h2 = chat(c, "What did I just ask about?", h1)
        results[name] = h2

    with Threads(timeout=300) as threads:
        for name, topic in (("Alice", "cats"), ("Bob", "volcanoes")):
            threads.start(talk, name, topic)
    assert set(results) == {"Alice", "Bob"}
    for name, other in (("Alice", "Bob"), ("Bob", "Alice")):
        users = [text(m) for m in results[name] if m["role"] == "user"]
        assert len(results[name]) == 4 and name in users[0]
        assert not any(other in text(m) for m in results[name] if m["role"] == "user")


def test_history_sent_as_text_parts_is_accepted(client):
    history = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]},
               {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]}]
    _, out = chat(client, "Bye", history)
    assert len(out) == 4 and text(out[-1]).strip()


@pytest.mark.parametrize(
    ("message", "options", "expected"),
    [
        ("   ", {}, "empty"),
        ("hi", {"max_new_tokens": 99999}, "max_new_tokens.*between 1 and 4096"),
        ("hi", {"temperature": -1}, "temperature.*between 0 and 2"),
        ("hi", {"top_p": 7}, "top_p.*between"),
    ],
)
def test_bad_input_gets_a_clear_message(client, message, options, expected):
    import re

    with pytest.raises(Exception) as info:
        chat(client, message, **options)
    assert re.search(expected, str(info.value)), str(info.value)


def test_a_200000_character_message_is_refused_quickly_and_the_server_keeps_serving(client):
    started = time.perf_counter()
    with pytest.raises(Exception, match="too long"):
        chat(client, "lorem ipsum " * 16667)
    assert time.perf_counter() - started < 30
    _, out = chat(client, "Say hi.")
    assert text(out[-1]).strip()


def test_non_text_content_is_refused(client):
    history = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    with pytest.raises(Exception, match="text only"):
        chat(client, "What is in the picture?", history)


def test_a_port_in_use_is_refused_at_once_with_what_to_do(server):
    import subprocess
    import sys

    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "phi3ov.cli", "serve", "--port", str(server.port)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"Port {server.port}" in done.stderr and "--port" in done.stderr
    assert time.perf_counter() - started < 10  # before any model is loaded


def test_share_without_internet_keeps_serving_and_says_why(tmp_path):
    log = tmp_path / "share.log"
    with ServerProcess(["--share", "--api-key", "test-key"], log_path=log, env={"HF_HUB_OFFLINE": "1"}) as srv:
        deadline = time.monotonic() + 90
        while "No public link" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        output = log.read_text()
        assert "No public link" in output and "still served at" in output
        assert "--auth" in output  # sharing without auth is warned about
        _, out = chat(Client(srv.url, verbose=False), "Say hi.")
        assert text(out[-1]).strip()


def test_auth_refuses_anonymous_calls_to_the_ui_and_its_endpoints(tmp_path):
    import httpx

    with ServerProcess(["--auth", "alice:s3cret"], log_path=tmp_path / "auth.log") as srv:
        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises different types per version
            Client(srv.url, verbose=False)
        anonymous = httpx.post(f"{srv.url}/gradio_api/call/chat", json={"data": ["hi", []]}, timeout=30)
        assert anonymous.status_code in (401, 403)
        _, out = chat(Client(srv.url, auth=("alice", "s3cret"), verbose=False), "Say hi.")
        assert text(out[-1]).strip()


def test_no_cross_origin_access_to_the_api(server):
    import httpx

    preflight = httpx.options(f"{server.url}/v1/chat/completions", timeout=10, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.headers.get("access-control-allow-origin") not in ("*", "https://evil.example")
    post = httpx.post(f"{server.url}/v1/models", timeout=10, headers={"Origin": "https://evil.example"})
    assert post.headers.get("access-control-allow-origin") not in ("*", "https://evil.example")
