"""The layers of `phi3ov bench`: each runs one greedy reply of exactly n tokens and times its first and last text.

app.py lists them from the bare pipeline to the browser's endpoint and runs them interleaved (`measure_layers`).
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..engine.reply import decode_speed
from ..options import DEFAULT_SYSTEM_PROMPT


class Timer:
    """First-text and last-text times of one streamed run."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first = self.last = 0.0

    def text(self) -> None:
        self.last = time.perf_counter()
        self.first = self.first or self.last

    def figures(self, tokens: int) -> tuple[float, float]:
        return (self.first - self.started) * 1000, decode_speed(tokens, self.first, self.last)


Layer = Callable[[list[dict], int], tuple[float, float]]  # (messages, max_new_tokens) -> (ttft ms, tokens/s)
BARE = ("LLMPipeline", "batching pipeline", "batching generate()")  # the layers without the app
EXACT = {"ignore_eos": True, "repetition_penalty": 1.0}  # the API's extensions for exactly n unpenalized tokens


def llm_layer(folder: Path, device: str, properties: dict) -> Layer:
    import openvino_genai as ov_genai

    pipe = ov_genai.LLMPipeline(str(folder), device, **properties)

    def run(messages: list[dict], n: int) -> tuple[float, float]:
        config = pipe.get_generation_config()
        config.max_new_tokens, config.do_sample, config.ignore_eos = n, False, True
        timer = Timer()

        def streamer(_text: str) -> ov_genai.StreamingStatus:
            timer.text()
            return ov_genai.StreamingStatus.RUNNING

        result = pipe.generate(ov_genai.ChatHistory(messages), config, streamer)
        return timer.figures(int(result.perf_metrics.get_num_generated_tokens()))

    return run


def batching_layer(engine: Any) -> Layer:
    """The engine's own ContinuousBatchingPipeline, driven directly (the engine is idle meanwhile)."""

    from .peer_openvino import run_cb

    numbers = iter(range(10**6, 10**9))  # request ids apart from the engine's own

    def run(messages: list[dict], n: int) -> tuple[float, float]:
        ids = [int(i) for i in engine.tokenizer.encode(engine.prompt(messages), add_special_tokens=False)
               .input_ids.data[0]]
        with engine.exclusive():
            ttft_ms, decode, _count = run_cb(engine.pipeline, ids, n, next(numbers))
        return ttft_ms, decode

    return run


def batching_generate_layer(engine: Any) -> Layer:
    """The same pipeline through its own `generate()` loop, as the engine runs a reply that is alone."""

    from .peer_openvino import run_cb_generate

    def run(messages: list[dict], n: int) -> tuple[float, float]:
        ids = [int(i) for i in engine.tokenizer.encode(engine.prompt(messages), add_special_tokens=False)
               .input_ids.data[0]]
        with engine.exclusive():
            ttft_ms, decode, _count = run_cb_generate(engine.pipeline, ids, n)
        return ttft_ms, decode

    return run


def engine_layer(engine: Any) -> Layer:
    from ..options import GenerationOptions

    def run(messages: list[dict], n: int) -> tuple[float, float]:
        timer = Timer()
        reply = engine.chat(messages, GenerationOptions(max_new_tokens=n, temperature=0, repetition_penalty=1.0,
                                                        ignore_eos=True))
        for _chunk in reply:
            timer.text()
        return timer.figures(reply.stats.output_tokens)

    return run


def api_layer(url: str) -> Layer:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)
    model = client.models.list().data[0].id

    def run(messages: list[dict], n: int) -> tuple[float, float]:
        timer, _finished, usage = stream_api(client, model, messages, n)
        return timer.figures(usage.completion_tokens if usage else 0)

    return run


def stream_api(client: Any, model: str, messages: list[dict], n: int) -> tuple[Timer, float, Any]:
    """Stream one greedy reply of exactly `n` tokens through the API: its text timer, when its finish
    event came (0.0 if none) and its usage."""
    timer, finished, usage = Timer(), 0.0, None
    for event in client.chat.completions.create(
            model=model, messages=messages, max_tokens=n, temperature=0, stream=True,
            stream_options={"include_usage": True}, extra_body=EXACT):
        if event.choices and event.choices[0].delta.content:
            timer.text()
        if event.choices and event.choices[0].finish_reason:
            finished = time.perf_counter()
        usage = event.usage or usage
    return timer, finished, usage


def api_reader_layer(url: str) -> Layer:
    """The same API read by a bare SSE reader (httpx, one json.loads an event): the server without the
    `openai` client's own parsing, which runs on the same cores as the pipeline here."""
    import httpx

    http = httpx.Client(timeout=600)
    model = http.get(f"{url}/v1/models").raise_for_status().json()["data"][0]["id"]

    def run(messages: list[dict], n: int) -> tuple[float, float]:
        body = {"model": model, "messages": messages, "max_tokens": n, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}, **EXACT}
        timer, tokens = Timer(), 0
        with http.stream("POST", f"{url}/v1/chat/completions", json=body) as events:
            for line in events.raise_for_status().iter_lines():
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[6:])
                if event.get("choices") and event["choices"][0]["delta"].get("content"):
                    timer.text()
                tokens = (event.get("usage") or {}).get("completion_tokens", tokens)
        return timer.figures(tokens)

    return run


def gradio_layer(url: str, count_text: Callable[[str], int]) -> Layer:
    """The /chat endpoint over Gradio's HTTP API with server-sent events, as the page's JS client uses it; the
    reply's length is counted from its text with the model's tokenizer (exact for these prompts)."""
    import httpx

    from ..conversation import text_of

    http = httpx.Client(timeout=600)
    session = f"phi3ov-bench-{uuid.uuid4().hex}"  # kept, as a page keeps its own: Gradio builds a session's
    # state (every component's config, ~11 ms for this app) on its first event; a call without one pays it each time

    def run(messages: list[dict], n: int) -> tuple[float, float]:
        payload = {"data": [messages[-1]["content"], [], messages[0]["content"], n, 0.0, 1.0, 0, 1.0, None, True],
                   "session_hash": session}
        timer, text = Timer(), ""
        event_id = http.post(f"{url}/gradio_api/call/chat", json=payload).raise_for_status().json()["event_id"]
        with http.stream("GET", f"{url}/gradio_api/call/chat/{event_id}") as events:
            for line in events.iter_lines():
                if not line.startswith("data:") or line == "data: null":
                    continue
                history = json.loads(line[5:])[0]
                if history and history[-1].get("role") == "assistant" and text_of(history[-1]["content"]):
                    timer.text()
                    text = text_of(history[-1]["content"])
        return timer.figures(count_text(text))

    return run


def chats(runs: int, prompt: str, layer: int = 0) -> list[list[dict]]:
    """One chat to warm up, then one per run; each opens with its own numbers (run and layer), so no layer's run
    finds another's prompt in a prefix cache (the engine's layers share one pipeline, the server's one more)."""
    return [[{"role": "system", "content": f"Conversation {k}-{layer}. {DEFAULT_SYSTEM_PROMPT}"},
             {"role": "user", "content": prompt}] for k in range(1, runs + 2)]


def measure_layers(layers: dict[str, Layer], runs: int, prompt: str, n: int) -> dict[str, list[tuple[float, float]]]:
    """Each layer's (first token ms, tokens/s) of every run, in rounds: round i runs every layer once, in the
    listed order in even rounds and backwards in odd ones, so that no layer always runs after the same one or
    in the same place. Round 0 warms each layer up and is left out."""
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in layers}
    own = {name: chats(runs, prompt, j) for j, name in enumerate(layers)}
    names = list(layers)
    for i in range(runs + 1):
        for name in names if i % 2 == 0 else names[::-1]:
            figures = layers[name](own[name][i], n)
            if i:
                rows[name].append(figures)
    return rows


def summarize(rows: dict[str, list[tuple[float, float]]], bare: Sequence[str]) -> dict[str, dict[str, float]]:
    """Each layer's medians, and how it stands against the best bare layer (the bare layer with the fastest
    median first token, and the one with the fastest median decode) two ways: the medians compared, and the
    median of the comparisons within each round (paired: a round that ran slow for every layer, as a busy
    moment of a shared machine does, moves the first and not the second)."""
    medians = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
               for name, runs in rows.items()}
    bares = [name for name in bare if name in rows]
    first = min(bares, key=lambda name: medians[name][0])
    fast = max(bares, key=lambda name: medians[name][1])
    out = {}
    for name, runs in rows.items():
        ttft, rate = medians[name]
        out[name] = {
            "ttft_ms": round(ttft, 1), "tokens_per_s": round(rate, 1),
            "added_ttft_vs_best_bare_ms": round(ttft - medians[first][0], 1),
            "tokens_per_s_vs_best_bare": round(rate / medians[fast][1], 3) if medians[fast][1] else 0.0,
            "paired_added_ttft_ms": round(statistics.median(a[0] - b[0] for a, b in zip(runs, rows[first], strict=True)), 1),
            "paired_tokens_per_s_vs_best_bare": round(statistics.median(
                [a[1] / b[1] for a, b in zip(runs, rows[fast], strict=True) if b[1]] or [0.0]), 3)}
    return out
