"""`phi3ov bench --determinism`: what --deterministic costs, against the default, in the same run.

Two batching engines on the same folder in this process, one default (prefix cache on, replies batched together)
and one deterministic (no prefix cache, one reply in the pipeline at a time), measured in interleaved rounds:

    one reply          first token and decode speed of a fresh prompt (no cache can help either engine)
    next turn          first token of a follow-up in a long chat: the default serves the history from its prefix
                       cache, the deterministic engine reads it again
    N at once          N replies sent together: wall-clock throughput of all tokens, and the mean first token
                       (waiting for a turn included: in deterministic mode replies are computed one after another)

Every reply generates exactly --max-new-tokens tokens (ignore_eos), greedy.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from ..options import GenerationOptions

HISTORY_TURNS = 6
STORY = "Tell me about the history of the lighthouse at Alexandria, and why it mattered to sailors. "


def one(engine: Any, messages: list[dict], options: GenerationOptions) -> dict[str, float]:
    reply = engine.chat(messages, options)
    list(reply)
    return {"ttft_ms": reply.stats.ttft_ms, "tokens_per_s": reply.stats.tokens_per_s,
            "tokens": reply.stats.output_tokens}


def at_once(engine: Any, batch: list[list[dict]], options: GenerationOptions) -> dict[str, float]:
    results: list[dict | None] = [None] * len(batch)
    started = time.perf_counter()

    def run(i: int) -> None:
        results[i] = one(engine, batch[i], options)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(batch))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    wall = time.perf_counter() - started
    done = [r for r in results if r is not None]
    if len(done) < len(batch):
        raise RuntimeError(f"{len(batch) - len(done)} of {len(batch)} replies did not finish in 600 s")
    return {"ttft_ms": statistics.mean(r["ttft_ms"] for r in done),
            "tokens_per_s": sum(r["tokens"] for r in done) / wall}


def history(run: int) -> list[dict]:
    """A long chat (its own first line per run, so runs share no cache), ending with a user message."""
    messages = [{"role": "system", "content": f"Run {run}. You are a helpful assistant."}]
    for turn in range(HISTORY_TURNS):
        messages += [{"role": "user", "content": f"{STORY} Part {turn + 1}."},
                     {"role": "assistant", "content": STORY * 3}]
    return messages


def run_determinism(ref: Any, device: str, runs: int, max_new_tokens: int, concurrency: int,
                    log: Any = print) -> dict[str, Any]:
    from ..engine import BatchedEngine

    engines = {"default": BatchedEngine(ref, device, max_num_seqs=max(concurrency, 2)),
               "deterministic": BatchedEngine(ref, device, max_num_seqs=max(concurrency, 2), deterministic=True)}
    options = GenerationOptions(max_new_tokens=max_new_tokens, temperature=0, ignore_eos=True)
    rows: dict[str, dict[str, list[float]]] = {name: {} for name in engines}

    def add(name: str, key: str, value: float) -> None:
        rows[name].setdefault(key, []).append(value)

    try:
        for engine in engines.values():
            engine.warm_up()
        for run in range(runs):
            for name, engine in engines.items():  # interleaved: run i of each engine, then run i + 1
                tag = f"{name} {run}"
                fresh = one(engine, [{"role": "system", "content": f"Run {tag}."},
                                     {"role": "user", "content": "Write a short story about a robot."}], options)
                add(name, "one_ttft_ms", fresh["ttft_ms"])
                add(name, "one_tokens_per_s", fresh["tokens_per_s"])
                chat = history(hash(tag) % 10**6)
                one(engine, chat, GenerationOptions(max_new_tokens=1, temperature=0))  # the turn before
                follow = chat + [{"role": "assistant", "content": "Yes."}, {"role": "user", "content": "And then?"}]
                add(name, "next_turn_ttft_ms", one(engine, follow, options)["ttft_ms"])
                batch = [[{"role": "system", "content": f"Run {tag}, reply {i}."},
                          {"role": "user", "content": "Write a short story about a robot."}] for i in range(concurrency)]
                together = at_once(engine, batch, options)
                add(name, "many_ttft_ms", together["ttft_ms"])
                add(name, "many_tokens_per_s", together["tokens_per_s"])
                log(f"run {run + 1}/{runs} {name}: one {fresh['tokens_per_s']:.1f} t/s, "
                    f"{concurrency} at once {together['tokens_per_s']:.1f} t/s")
    finally:
        for engine in engines.values():
            engine.close()
    medians = {name: {k: round(statistics.median(v), 1) for k, v in figures.items()} for name, figures in rows.items()}
    base, det = medians["default"], medians["deterministic"]
    ratios = {k: round(det[k] / base[k], 3) if base[k] else None for k in base}
    return {"model": ref.name, "device": device, "runs": runs, "max_new_tokens": max_new_tokens,
            "concurrency": concurrency, "default": base, "deterministic": det, "deterministic_vs_default": ratios}


def table(f: dict[str, Any]) -> str:
    n = f["concurrency"]
    names = [("one_ttft_ms", "one reply: first token (ms)"), ("one_tokens_per_s", "one reply: decode (tokens/s)"),
             ("next_turn_ttft_ms", "next turn of a long chat: first token (ms)"),
             ("many_ttft_ms", f"{n} at once: mean first token (ms)"),
             ("many_tokens_per_s", f"{n} at once: throughput (tokens/s)")]
    lines = [f"{f['model']} on {f['device']}, {f['max_new_tokens']} greedy tokens per reply, median of {f['runs']} "
             "interleaved runs", "",
             "| figure | default | --deterministic | ratio |", "|---|---|---|---|"]
    for key, label in names:
        lines.append(f"| {label} | {f['default'][key]} | {f['deterministic'][key]} | "
                     f"{f['deterministic_vs_default'][key]} |")
    return "\n".join(lines)
