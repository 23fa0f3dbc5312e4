"""What a launched server lets out: cross-origin access to the API (--cors-origin) and message text in
its logs (--log-prompts). Both are off unless asked for."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from gradio_client import Client

from phi3ov.process import ServerProcess
from phi3ov.settings import ServerSettings

MARKER = "zebra-7f3c-secret-marker"
KEY = "test-key-cors"
SYSTEM = "You are a helpful AI assistant."
ALLOWED = ("https://app.example", "http://localhost:3000", "https://b.example")
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}


def gradio_chat(url: str, message: str, timeout: float = 120):
    client = Client(url, verbose=False)
    job = client.submit(message, [], SYSTEM, 4, 0.0, 1.0, 0, 1.0, None, False, api_name="/chat")
    try:
        return job.result(timeout=timeout)
    except TimeoutError:
        job.cancel()
        raise AssertionError(f"no answer from /chat within {timeout} s") from None


def api_chat(url: str, messages: list | str, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(messages, str):  # a raw body
        return httpx.post(f"{url}/v1/chat/completions", content=messages, headers=headers, timeout=120)
    model = httpx.get(f"{url}/v1/models", headers=headers, timeout=30).json()["data"][0]["id"]
    return httpx.post(f"{url}/v1/chat/completions", headers=headers, timeout=120,
                      json={"model": model, "messages": messages, "max_tokens": 4, "temperature": 0})


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


@pytest.fixture(scope="module")
def plain(bundled_ref, tmp_path_factory):
    """A server with neither flag; its log (stdout and stderr) is kept."""
    log = tmp_path_factory.mktemp("plain") / "server.log"
    with ServerProcess(["--model", str(bundled_ref.path)], log_path=log) as srv:
        yield srv, log


@pytest.fixture(scope="module")
def open_server(bundled_ref, tmp_path_factory):
    """A server with --cors-origin (repeated, and a comma list) and --log-prompts."""
    log = tmp_path_factory.mktemp("open") / "server.log"
    args = ["--model", str(bundled_ref.path), "--api-key", KEY, "--log-prompts",
            "--cors-origin", ALLOWED[0], "--cors-origin", f"{ALLOWED[1]}, {ALLOWED[2]}/"]
    with ServerProcess(args, log_path=log) as srv:
        yield srv, log


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost:3000", "http://127.0.0.1:9999"])
def test_no_cors_headers_on_the_api_by_default(plain, origin):
    srv, _ = plain
    preflight = httpx.options(f"{srv.url}/v1/chat/completions", headers={"Origin": origin, **PREFLIGHT}, timeout=30)
    assert preflight.status_code >= 400 and not cors_headers(preflight), "a preflight is not granted"
    for path in ("/v1/models", "/health", "/metrics"):
        response = httpx.get(f"{srv.url}{path}", headers={"Origin": origin}, timeout=30)
        assert response.status_code == 200 and not cors_headers(response), path
    posted = api_chat(srv.url, [{"role": "user", "content": "Hi"}])
    assert posted.status_code == 200 and not cors_headers(posted)


@pytest.mark.parametrize("origin", ALLOWED)
def test_cors_origin_allows_exactly_those_origins(open_server, origin):
    srv, _ = open_server
    preflight = httpx.options(f"{srv.url}/v1/chat/completions", headers={"Origin": origin, **PREFLIGHT}, timeout=30)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "POST" in preflight.headers["access-control-allow-methods"]
    models = httpx.get(f"{srv.url}/v1/models", headers={"Origin": origin, "Authorization": f"Bearer {KEY}"},
                       timeout=30)
    assert models.status_code == 200 and models.headers["access-control-allow-origin"] == origin
    refused = httpx.get(f"{srv.url}/v1/models", headers={"Origin": origin}, timeout=30)  # no key: still a 401
    assert refused.status_code == 401


@pytest.mark.parametrize("origin", ["https://evil.example", "https://app.example.evil.example", "http://app.example"])
def test_cors_origin_refuses_other_origins(open_server, origin):
    srv, _ = open_server
    preflight = httpx.options(f"{srv.url}/v1/chat/completions", headers={"Origin": origin, **PREFLIGHT}, timeout=30)
    assert preflight.status_code >= 400 and "access-control-allow-origin" not in preflight.headers
    models = httpx.get(f"{srv.url}/v1/models", headers={"Origin": origin, "Authorization": f"Bearer {KEY}"},
                       timeout=30)
    assert "access-control-allow-origin" not in models.headers


def test_cors_origins_from_the_environment_and_bad_ones_refused(monkeypatch):
    monkeypatch.setenv("PHI3OV_CORS_ORIGIN", "https://a.example, http://localhost:8080")
    assert ServerSettings.from_env().cors_origins == ("https://a.example", "http://localhost:8080")
    monkeypatch.delenv("PHI3OV_CORS_ORIGIN")
    assert ServerSettings.from_env().cors_origins == ()
    serve = subprocess.run([sys.executable, "-m", "phi3ov.cli", "serve", "--cors-origin", "https://a.example/app"],
                           capture_output=True, text=True, timeout=120)
    assert serve.returncode == 2 and "scheme://host[:port], no path" in serve.stderr


def send_marked_traffic(url: str, key: str | None = None) -> None:
    """The marker in served messages (API and /chat) and in refused ones (each refusal is logged)."""
    ok = api_chat(url, [{"role": "user", "content": f"Repeat this word: {MARKER}"}], key)
    assert ok.status_code == 200
    history = gradio_chat(url, f"Please remember {MARKER}.")
    assert history[-1]["role"] == "assistant"
    if key:
        return
    refusals = [
        [{"role": f"wizard-{MARKER}", "content": "hi"}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"https://{MARKER}.example"}}]}],
        f'{{"model": "m", "messages": [{{"role": "user", "content": "{MARKER}',
    ]
    for body in refusals:
        assert api_chat(url, body).status_code == 400
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError):  # over the characters cap: a toast, and a log line
        gradio_chat(url, MARKER + "x" * 100_001)


def test_logs_never_hold_message_text_by_default(plain):
    srv, log = plain
    send_marked_traffic(srv.url)
    srv.stop()  # the log is complete, shutdown included
    text = log.read_text()
    assert "answered 400" in text and "Refused in the chat" in text, "the refusals were logged, as one line each"
    assert MARKER not in text


def test_log_prompts_logs_each_requests_messages_as_json(open_server):
    srv, log = open_server
    send_marked_traffic(srv.url, KEY)
    srv.stop()
    lines = [line for line in log.read_text().splitlines() if "request messages: " in line]
    assert len(lines) == 2, "one line per request: the API one and the /chat one"
    logged = [json.loads(line.split("request messages: ", 1)[1])["messages"] for line in lines]
    assert {"role": "user", "content": f"Repeat this word: {MARKER}"} in logged[0]
    assert logged[1][0] == {"role": "system", "content": SYSTEM}
    assert any(MARKER in m["content"] for m in logged[1] if m["role"] == "user")
