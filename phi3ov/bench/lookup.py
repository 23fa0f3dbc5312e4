"""`phi3ov bench --prompt-lookup`: when does prompt-lookup decoding pay?

Two engines of the same kind as the server's (batched), one built with prompt lookup and one
without, in this process, answer the same greedy prompts in interleaved runs: an input-grounded
one (return a given piece of code with docstrings added: most of the reply is copied from the
prompt) and a free chat one (a story: nothing to copy). Reported: the reply's tokens per second
over its whole generation (first token included), and whether the text came out the same.
"""

from __future__ import annotations

import statistics
import time
from importlib import resources
from typing import Any

from ..options import DEFAULT_SYSTEM_PROMPT, GenerationOptions


def prompts() -> dict[str, str]:
    code = resources.files("phi3ov").joinpath("conversation.py").read_text(encoding="utf-8")
    start = code.index("def ")
    return {
        "input-grounded (edit code)": "Return this Python code unchanged except for a one-line docstring added "
                                      "to each function:\n\n```python\n" + code[start:start + 1200] + "\n```",
        "free chat (a story)": "Write a short story about a robot who learns to paint.",
    }


def run_lookup(ref: Any, device: str, runs: int, n: int, log=print) -> dict[str, Any]:
    from ..engine import BatchedEngine

    engines = {"off": BatchedEngine(ref, device), "on": BatchedEngine(ref, device, prompt_lookup=True)}
    rows = []
    for name, prompt in prompts().items():
        rates: dict[str, list[float]] = {k: [] for k in engines}
        texts: dict[str, str] = {}
        for i in range(runs + 1):  # the first run warms up
            for key, engine in engines.items():
                messages = [{"role": "system", "content": f"Conversation {i}. {DEFAULT_SYSTEM_PROMPT}"},
                            {"role": "user", "content": prompt}]
                started = time.perf_counter()
                reply = engine.chat(messages, GenerationOptions(max_new_tokens=n, temperature=0,
                                                                repetition_penalty=1.0))
                texts[key] = "".join(reply)
                if i:
                    rates[key].append(reply.stats.output_tokens / (time.perf_counter() - started))
        off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
        log(f"{name}: {off:.1f} -> {on:.1f} tokens/s")
        rows.append({"prompt": name, "tokens_per_s_off": round(off, 1), "tokens_per_s_on": round(on, 1),
                     "speedup": round(on / off, 2), "same_text": texts["on"] == texts["off"]})
    for engine in engines.values():
        engine.close()
    return {"model": ref.name, "device": device, "max_new_tokens": n, "runs": runs, "prompt_lookup": rows}


def table(f: dict[str, Any]) -> str:
    lines = [f"{f['model']} on {f['device']}, greedy, up to {f['max_new_tokens']} tokens, median of {f['runs']} runs; "
             "tokens/s over the whole reply",
             f"{'prompt':<28} {'without':>8} {'with lookup':>12} {'speedup':>8} {'same text':>10}"]
    for r in f["prompt_lookup"]:
        lines.append(f"{r['prompt']:<28} {r['tokens_per_s_off']:>8.1f} {r['tokens_per_s_on']:>12.1f} "
                     f"{r['speedup']:>7.2f}x {str(r['same_text']):>10}")
    return "\n".join(lines)
