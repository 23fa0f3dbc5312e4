"""`phi3ov bench --concurrency 1,2,4,8`: many clients at once through the API vs. one after another.

For each level N, N clients stream N different prompts at the same time from a server child
process (the default, batched engine) through POST /v1/chat/completions; then the same N
requests are sent one after another. Aggregate tokens/s is all completion tokens (the
server's usage figures) over the wall time of the round; time to first token is measured by
each client, from sending the request to the first text. Medians over `runs` rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

from ..errors import BadOptions
from ..options import DEFAULT_SYSTEM_PROMPT

PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "Explain how a rainbow forms.",
    "Give me three tips for a good night's sleep.",
    "Describe the city of Paris to a child.",
    "What makes a good cup of tea?",
    "Write a poem about the ocean.",
    "How do airplanes stay in the air?",
    "Tell me about the history of chess.",
]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


_numbers = iter(range(1, 10**9))


def _one(client, model: str, prompt: str, max_new_tokens: int) -> tuple[float, int]:
    """(time to first text in s, completion tokens) for one streamed request."""
    # A new number in every user message, so a repeated prompt is not served from the prefix cache
    # (the system prompt, shared by all requests as in real use, still is).
    prompt = f"Request {next(_numbers)}: {prompt}"
    started = time.perf_counter()
    first = None
    tokens = 0
    stream = client.chat.completions.create(
        model=model, stream=True, stream_options={"include_usage": True}, max_tokens=max_new_tokens,
        temperature=0, messages=[{"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                                 {"role": "user", "content": prompt}])
    for event in stream:
        if first is None and event.choices and event.choices[0].delta.content:
            first = time.perf_counter()
        if event.usage:
            tokens = event.usage.completion_tokens
    return (first or time.perf_counter()) - started, tokens


def _round(client, model: str, prompts: list[str], max_new_tokens: int, together: bool) -> dict:
    results: list[tuple[float, int]] = []
    started = time.perf_counter()
    if together:
        threads = [threading.Thread(target=lambda p=p: results.append(_one(client, model, p, max_new_tokens)))
                   for p in prompts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        results = [_one(client, model, p, max_new_tokens) for p in prompts]
    wall = time.perf_counter() - started
    ttfts = [r[0] * 1000 for r in results]
    tokens = sum(r[1] for r in results)
    return {"tokens_per_s": tokens / wall, "p50_ttft_ms": _percentile(ttfts, 50),
            "p95_ttft_ms": _percentile(ttfts, 95), "tokens": tokens}


def _median_of(rounds: list[dict]) -> dict:
    return {key: round(statistics.median(r[key] for r in rounds), 1) for key in rounds[0]}


def run_concurrency(model: str, device: str, levels: list[int], max_new_tokens: int, runs: int,
                    extra_args: list[str] | None = None) -> dict:
    import logging

    import openai

    from ..process import ServerProcess

    logging.getLogger("openai").setLevel(logging.WARNING)  # no line per request
    args = ["--model", model, "--device", device, "--max-num-seqs", str(max(levels)), *(extra_args or [])]
    rows = []
    with ServerProcess(args) as server, openai.OpenAI(base_url=f"{server.url}/v1", api_key="none",
                                                      max_retries=0, timeout=600) as client:
        served = client.models.list().data[0].id
        _round(client, served, PROMPTS[:2], max_new_tokens, together=True)  # warm-up, not counted
        for level in levels:
            prompts = [PROMPTS[i % len(PROMPTS)] for i in range(level)]
            together = _median_of([_round(client, served, prompts, max_new_tokens, True) for _ in range(runs)])
            alone = _median_of([_round(client, served, prompts, max_new_tokens, False) for _ in range(runs)])
            rows.append({
                "concurrency": level,
                "aggregate_tokens_per_s": together["tokens_per_s"],
                "p50_ttft_ms": together["p50_ttft_ms"], "p95_ttft_ms": together["p95_ttft_ms"],
                "sequential_tokens_per_s": alone["tokens_per_s"],
                "sequential_p50_ttft_ms": alone["p50_ttft_ms"], "sequential_p95_ttft_ms": alone["p95_ttft_ms"],
            })
    single = rows[0]["aggregate_tokens_per_s"] if rows and rows[0]["concurrency"] == 1 else None
    for row in rows:
        row["speedup_vs_one_client"] = round(row["aggregate_tokens_per_s"] / single, 2) if single else None
    return {"model": served, "device": device, "max_new_tokens": max_new_tokens, "runs": runs, "concurrency": rows}


def table(figures: dict) -> str:
    lines = [f"{figures['model']} on {figures['device']}, {figures['max_new_tokens']} new tokens per request, "
             f"median of {figures['runs']} rounds; N clients at once vs. the same N requests one after another",
             f"{'clients':>7} {'tokens/s':>9} {'x one':>6} {'p50 TTFT':>9} {'p95 TTFT':>9} │ "
             f"{'seq tok/s':>9} {'seq p50':>8} {'seq p95':>8}"]
    for r in figures["concurrency"]:
        speedup = f"{r['speedup_vs_one_client']:.2f}" if r["speedup_vs_one_client"] else "-"
        lines.append(f"{r['concurrency']:>7} {r['aggregate_tokens_per_s']:>9.1f} {speedup:>6} "
                     f"{r['p50_ttft_ms']:>7.0f}ms {r['p95_ttft_ms']:>7.0f}ms │ {r['sequential_tokens_per_s']:>9.1f} "
                     f"{r['sequential_p50_ttft_ms']:>6.0f}ms {r['sequential_p95_ttft_ms']:>6.0f}ms")
    return "\n".join(lines)


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or any(n < 1 or n > 64 for n in levels):
        raise BadOptions(f"--concurrency takes client counts between 1 and 64, e.g. 1,2,4,8; got {text!r}.")
    return levels


def main(args: argparse.Namespace, folder: Path, device: str) -> int:
    figures = run_concurrency(str(folder), device, parse_levels(args.concurrency), args.max_new_tokens, args.runs,
                              getattr(args, "server_arg", None))
    print(json.dumps(figures) if args.json else table(figures))
    return 0
