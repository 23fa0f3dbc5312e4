"""`phi3ov bench --soak N`: N mixed requests against a launched server; does memory stay flat?

The mix, in a fixed pseudo-random order (seeded): streaming and not, greedy and sampled, replies
stopped after a few events, clients that drop their connection mid-stream, and long histories close
to the context limit. It prints how many requests ran and failed (a failure: an exception or a 5xx;
a refusal the request asked for is not one) and the server's RSS after a warm-up of 50 requests and
at the end. Not a test: figures for the README and for an operator's own machine.
"""

from __future__ import annotations

import http.client
import json
import random
import time
from pathlib import Path
from typing import Any

WARM_UP = 50


def one(client: Any, model: str, kind: str, rng: random.Random, context: int) -> None:
    sampled = rng.random() < 0.5
    options = dict(model=model, max_tokens=rng.choice([8, 32, 64]),
                   temperature=0.8 if sampled else 0, seed=rng.randrange(1000) if sampled else None)
    messages = [{"role": "user", "content": rng.choice(["Tell me a story.", "What is 2+2?", "Name a color."])}]
    if kind == "long":  # a history that nearly fills the context
        filler = "The quick brown fox jumps over the lazy dog. " * max(1, (context - 200) // 12)
        messages = [{"role": "user", "content": filler}, {"role": "assistant", "content": "OK."}, *messages]
        options["max_tokens"] = 8
    if kind == "plain":
        assert client.chat.completions.create(messages=messages, **options).choices
    elif kind in ("stream", "long"):
        assert list(client.chat.completions.create(messages=messages, stream=True, **options))
    elif kind == "stop":
        stream = client.chat.completions.create(messages=messages, stream=True, **{**options, "max_tokens": 200})
        next(iter(stream))
        stream.close()


def drop(port: int, model: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 500,
         "stream": True}), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.readline()
    response.close()
    conn.close()


def run_soak(folder: Path, device: str, n: int, server_args: list[str] | None = None, log=print) -> dict[str, Any]:
    import logging

    import openai

    from ..process import ServerProcess, status_mb

    logging.getLogger("openai").setLevel(logging.WARNING)
    rng = random.Random(0)
    kinds = ["plain"] * 3 + ["stream"] * 3 + ["stop"] * 2 + ["drop"] + ["long"]
    failures: list[str] = []
    figures: dict[str, Any] = {"requests": n}
    with ServerProcess(["--model", str(folder), "--device", device, *(server_args or [])]) as server, \
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=120) as client:
        card = client.models.list().data[0]
        context = min(int(getattr(card, "max_model_len", 2048) or 2048), 2048)
        started = time.perf_counter()
        for i in range(n):
            kind = rng.choice(kinds)
            try:
                if kind == "drop":
                    drop(server.port, card.id)
                else:
                    one(client, card.id, kind, rng, context)
            except Exception as err:  # noqa: BLE001 - counted and reported
                failures.append(f"{kind}: {type(err).__name__}: {str(err)[:120]}")
            if i + 1 == WARM_UP:
                figures["rss_after_warm_up_mb"] = round(status_mb(server.proc.pid, "VmRSS"), 1)
            if (i + 1) % 50 == 0:
                log(f"{i + 1}/{n} requests, {len(failures)} failed, server RSS {status_mb(server.proc.pid, 'VmRSS'):.0f} MB")
        time.sleep(1.0)  # let the last dropped streams be stopped
        figures["rss_at_end_mb"] = round(status_mb(server.proc.pid, "VmRSS"), 1)
        figures["seconds"] = round(time.perf_counter() - started, 1)
    figures["failures"] = len(failures)
    figures["failure_samples"] = failures[:5]
    if "rss_after_warm_up_mb" in figures:
        figures["rss_growth_pct"] = round(100 * (figures["rss_at_end_mb"] / figures["rss_after_warm_up_mb"] - 1), 1)
    return figures
