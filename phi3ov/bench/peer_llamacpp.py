"""One llama.cpp measurement, run by the peers environment's Python (`.venv-peers`), not phi3ov's.

Reads a JSON job on stdin: {"gguf", "prompts": [[ids], ...], "max_new_tokens", "threads", "text"}.
The first prompt warms up; each other prompt is one timed run: the same token ids as every other
engine, greedy, exactly `max_new_tokens` tokens (end of text ignored). Prints one JSON line:
{"ttft_ms": [...], "decode_tokens_per_s": [...], "peak_rss_mb", "tokenizer_agrees", "version"}.
This file imports nothing from phi3ov: it runs beside a different set of packages.
"""

import json
import sys
import time

import llama_cpp
from rss import peak_rss_mb  # beside this script (it runs as one, in the peers' environment)


def run_once(llm: llama_cpp.Llama, ids: list[int], n: int) -> tuple[float, float]:
    llm.reset()  # no prefix reuse between runs: every run evaluates its whole prompt
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    for _token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
        last = time.perf_counter()
        first = first or last
        count += 1
        if count >= n:
            break
    decode = (count - 1) / (last - first) if count > 1 and last > first else 0.0
    return (first - started) * 1000, decode


def main() -> int:
    job = json.loads(sys.stdin.read())
    llm = llama_cpp.Llama(job["gguf"], n_ctx=job.get("n_ctx", 2048), n_threads=job["threads"],
                          n_threads_batch=job["threads"], n_batch=512, verbose=False)
    # llama.cpp's own tokenizer on the same text must give the ids every engine is fed.
    own = llm.tokenize(job["text"].encode(), add_bos=False, special=True) if job.get("text") else None
    agrees = own == job["prompts"][0] if own is not None else None
    prompts, n = job["prompts"], job["max_new_tokens"]
    run_once(llm, prompts[0], n)
    ttfts, rates = [], []
    for ids in prompts[1:]:
        ttft, rate = run_once(llm, ids, n)
        ttfts.append(ttft)
        rates.append(rate)
    peak = peak_rss_mb()
    print(json.dumps({"ttft_ms": ttfts, "decode_tokens_per_s": rates, "peak_rss_mb": peak,
                      "tokenizer_agrees": agrees, "version": llama_cpp.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
