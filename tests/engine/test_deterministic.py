"""--deterministic: a greedy or seeded reply is the same token for token alone, asked again, or among others.

Without it, the prefix cache computes a repeated prompt's last token another way and a batch of replies rounds
differently from one reply alone (bf16 on AMX CPUs, f32 elsewhere), so the same request can get two replies.
These tests compare a reply only with itself on the same machine: they hold whatever the text is.
"""

from __future__ import annotations

import concurrent.futures

import openai
import pytest

from phi3ov.options import GenerationOptions
from phi3ov.process import ServerProcess
from phi3ov.settings import ServerSettings

pytestmark = pytest.mark.slow

PROMPTS = ["What is OpenVINO?", "Tell me a story about a cat.", "Explain photosynthesis in two sentences."]
GREEDY = {"temperature": 0}
SEEDED = {"temperature": 0.8, "top_p": 0.9, "seed": 7}
TOKENS = 48


def test_the_flag_and_the_variable_turn_it_on(monkeypatch):
    assert not ServerSettings.from_env().deterministic
    assert ServerSettings.from_argv(["--deterministic"]).deterministic
    monkeypatch.setenv("PHI3OV_DETERMINISTIC", "1")
    assert ServerSettings.from_env().deterministic


@pytest.fixture(scope="module")
def server(bundled_ref, tmp_path_factory):
    log = tmp_path_factory.mktemp("deterministic") / "server.log"
    with ServerProcess(["--model", str(bundled_ref.path), "--deterministic", "--kv-cache-gb", "1"],
                       log_path=log) as proc:
        yield proc


def ask(client, prompt: str, sampling: dict) -> str:
    reply = client.chat.completions.create(model=client.models.list().data[0].id, messages=[{"role": "user", "content": prompt}],
                                           max_tokens=TOKENS, **sampling)
    return reply.choices[0].message.content


@pytest.mark.parametrize("sampling", [GREEDY, SEEDED], ids=["greedy", "seeded"])
def test_a_reply_is_the_same_alone_again_and_among_eight(server, sampling):
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=180) as client:
        alone = [ask(client, p, sampling) for p in PROMPTS]
        again = [ask(client, p, sampling) for p in PROMPTS]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(ask, client, PROMPTS[i % len(PROMPTS)], sampling) for i in range(8)]
            together = [f.result(timeout=300) for f in futures]
    assert all(alone), "every prompt got a reply"
    assert again == alone
    assert together == [alone[i % len(PROMPTS)] for i in range(8)]


def test_the_page_says_replies_are_reproducible(server):
    import urllib.request

    with urllib.request.urlopen(f"{server.url}/", timeout=30) as page:
        assert "reproducible replies" in page.read().decode()


def test_the_single_engine_is_deterministic_too(bundled_ref):
    import threading

    from phi3ov.engine import LocalEngine

    engine = LocalEngine(bundled_ref, deterministic=True)
    options = GenerationOptions(max_new_tokens=TOKENS, **GREEDY)

    def text(prompt: str) -> str:
        reply = engine.chat([{"role": "user", "content": prompt}], options)
        list(reply)
        return reply.text

    alone = [text(p) for p in PROMPTS]
    again = [text(p) for p in reversed(PROMPTS)][::-1]  # another order: another prefix cache, were it on
    together: list[str | None] = [None] * 6
    threads = [threading.Thread(target=lambda i=i: together.__setitem__(i, text(PROMPTS[i % 3])), daemon=True)
               for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
        assert not thread.is_alive(), "a reply did not finish in 300 s"
    assert again == alone
    assert together == [alone[i % 3] for i in range(6)]
