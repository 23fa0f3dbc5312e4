"""`phi3ov bench --document N`: a document of N tokens attached to a question, then a second question about it.

The document goes through the chat's own path (phi3ov/documents: extracted from a .txt file, put whole inside the
user message it came with), and the follow-up is the next turn of the same conversation, the first reply in its
history. Its prompt starts with the same tokens as the first one, so the prefix cache serves the document and only
the reply and the new question are read. Measured on the engine the server runs (BatchedEngine, prefix caching on)
and, as the baseline, on the same engine without a prefix cache (--deterministic), in interleaved rounds; each
round's system prompt carries its own number, so no round serves another's cache. Greedy, exactly
--max-new-tokens tokens a reply.
"""

from __future__ import annotations

import statistics
from importlib import resources
from typing import Any

from .. import documents
from ..options import DEFAULT_SYSTEM_PROMPT, GenerationOptions

QUESTIONS = ("Who does Alice follow down the rabbit hole?", "What does she find on the little glass table?")
GOAL = 0.1  # the follow-up's first token at most this fraction of the first's


def document_text(count: Any, tokens: int) -> str:
    """The start of Alice in Wonderland (phi3ov/data/alice.txt), cut at a line end to about `tokens` tokens."""
    book = resources.files("phi3ov").joinpath("data/alice.txt").read_text(encoding="utf-8")
    lines = book.splitlines()
    while count(book) < tokens:  # a longer document than the book: the book again
        lines += lines
        book = "\n".join(lines)
    lo, hi = 1, len(lines)
    while lo < hi:  # the fewest lines that reach `tokens`
        mid = (lo + hi) // 2
        if count("\n".join(lines[:mid])) >= tokens:
            hi = mid
        else:
            lo = mid + 1
    return "\n".join(lines[:lo])


def conversation(engine: Any, text: str, run: str) -> list[dict]:
    """The first question with the document attached, as the chat sends it."""
    document = documents.extract("alice.txt", text.encode())
    attached = documents.attach([document], QUESTIONS[0], engine.context_length, engine.count_text)
    return [{"role": "system", "content": f"Round {run}. {DEFAULT_SYSTEM_PROMPT}"},
            {"role": "user", "content": documents.prompt_text(attached.context, QUESTIONS[0])}]


def ask(engine: Any, messages: list[dict], options: GenerationOptions) -> tuple[float, int, str]:
    reply = engine.chat(messages, options)
    text = "".join(reply)
    return reply.stats.ttft_ms, reply.stats.input_tokens, text


def run_document(ref: Any, device: str, tokens: int, runs: int, max_new_tokens: int,
                 log: Any = print) -> dict[str, Any]:
    from ..engine import BatchedEngine

    engines = {"prefix cache": BatchedEngine(ref, device), "no prefix cache": BatchedEngine(ref, device,
                                                                                           deterministic=True)}
    options = GenerationOptions(max_new_tokens=max_new_tokens, temperature=0, ignore_eos=True)
    rows: dict[str, dict[str, list[float]]] = {name: {"first_ms": [], "follow_up_ms": []} for name in engines}
    prompts: dict[str, int] = {}
    try:
        some = next(iter(engines.values()))
        text = document_text(some.count_text, tokens)
        counted = some.count_text(text)
        if counted + 2 * max_new_tokens + 200 > some.context_length:
            raise SystemExit(f"A document of {counted} tokens does not fit {some.name}'s context of "
                             f"{some.context_length} tokens with two replies: ask for a smaller --document.")
        for engine in engines.values():
            engine.warm_up()
        for run in range(runs + 1):  # the first round warms both engines up on long prompts
            for name, engine in engines.items():
                messages = conversation(engine, text, f"{run} {name}")
                first_ms, prompts["first"], reply = ask(engine, messages, options)
                follow = [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": QUESTIONS[1]}]
                follow_ms, prompts["follow_up"], _ = ask(engine, follow, options)
                if run:
                    rows[name]["first_ms"].append(first_ms)
                    rows[name]["follow_up_ms"].append(follow_ms)
                log(f"round {run}/{runs} {name}: first token {first_ms:.0f} ms, follow-up {follow_ms:.0f} ms")
    finally:
        for engine in engines.values():
            engine.close()
    medians = {name: {k: round(statistics.median(v), 1) for k, v in figures.items()} for name, figures in rows.items()}
    for figures in medians.values():
        figures["ratio"] = round(figures["follow_up_ms"] / figures["first_ms"], 3) if figures["first_ms"] else None
    return {"model": ref.name, "device": device, "runs": runs, "max_new_tokens": max_new_tokens,
            "document_tokens": counted, "prompt_tokens": prompts, "engines": medians,
            "goal_met": (medians["prefix cache"]["ratio"] or 1) <= GOAL}


def table(f: dict[str, Any]) -> str:
    lines = [f"{f['model']} on {f['device']}: a document of {f['document_tokens']} tokens, then a second question "
             f"(prompts of {f['prompt_tokens']['first']} and {f['prompt_tokens']['follow_up']} tokens), "
             f"median of {f['runs']} interleaved rounds", "",
             "| engine | first question: first token | follow-up: first token | follow-up / first |",
             "|---|---|---|---|"]
    for name, r in f["engines"].items():
        lines.append(f"| {name} | {r['first_ms']:.0f} ms | {r['follow_up_ms']:.0f} ms | {r['ratio']} |")
    lines += ["", f"goal (follow-up <= {GOAL}x the first, with the prefix cache): "
              + ("met" if f["goal_met"] else "NOT met")]
    return "\n".join(lines)
