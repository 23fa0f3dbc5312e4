"""One raw openvino-genai measurement in its own process: `python -m phi3ov.bench.peer_openvino`.

Reads a JSON job on stdin: {"folder", "prompts": [[ids], ...], "max_new_tokens", "properties",
"pipeline": "llm" | "cb"}. The first prompt warms up; each other prompt is one timed run, fed as
token ids (the same ids as every other engine), greedy, exactly `max_new_tokens` tokens. Prints
one JSON line like peer_llamacpp.py. "llm" is a bare LLMPipeline.generate with a streamer;
"cb" is a ContinuousBatchingPipeline driven by add_request/step for one request, as the app's
batched engine drives it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from .rss import peak_rss_mb


def _config(pipe: Any, n: int) -> Any:
    config = pipe.get_generation_config() if hasattr(pipe, "get_generation_config") else pipe.get_config()
    config.max_new_tokens = n
    config.do_sample = False
    config.ignore_eos = True
    return config


def _inputs(ids: list[int]) -> Any:
    import numpy as np
    import openvino as ov

    return ov.Tensor(np.array([ids], dtype=np.int64))


def run_llm(pipe: Any, ids: list[int], n: int) -> tuple[float, float, int]:
    """One LLMPipeline.generate on token ids; a token streamer notes when each token arrives."""
    import numpy as np
    import openvino as ov
    import openvino_genai as ov_genai

    marks: list[float] = []

    class Marks(ov_genai.StreamerBase):
        def write(self, token: Any) -> ov_genai.StreamingStatus:
            marks.append(time.perf_counter())
            return ov_genai.StreamingStatus.RUNNING

        def end(self) -> None:
            pass

    inputs = ov_genai.TokenizedInputs(_inputs(ids), ov.Tensor(np.ones((1, len(ids)), dtype=np.int64)))
    started = time.perf_counter()
    result = pipe.generate(inputs, _config(pipe, n), Marks())
    end = time.perf_counter()
    count = len(result.tokens[0])
    first = marks[0] if marks else end
    return (first - started) * 1000, (count - 1) / (end - first) if count > 1 and end > first else 0.0, count


def run_cb(pipe: Any, ids: list[int], n: int, request_id: int) -> tuple[float, float, int]:
    """One request through ContinuousBatchingPipeline.add_request/step, as the app's driver runs it."""
    import openvino_genai as ov_genai

    started = time.perf_counter()
    handle = pipe.add_request(request_id, _inputs(ids), _config(pipe, n))
    first = last = 0.0
    count = 0
    while handle.get_status() == ov_genai.GenerationStatus.RUNNING or handle.can_read():
        if pipe.has_non_finished_requests():
            pipe.step()
        if handle.can_read():
            for output in handle.read().values():
                if output.generated_ids:
                    last = time.perf_counter()
                    first = first or last
                    count += len(output.generated_ids)
        elif not pipe.has_non_finished_requests():
            break
    return (first - started) * 1000, (count - 1) / (last - first) if count > 1 and last > first else 0.0, count


def run_cb_generate(pipe: Any, ids: list[int], n: int) -> tuple[float, float, int]:
    """One request through ContinuousBatchingPipeline.generate (its own loop, the GIL released), a token
    streamer noting when each token arrives: how the app runs a reply that is alone."""
    import openvino_genai as ov_genai

    marks: list[float] = []

    class Marks(ov_genai.StreamerBase):
        def write(self, token: Any) -> ov_genai.StreamingStatus:
            marks.append(time.perf_counter())
            return ov_genai.StreamingStatus.RUNNING

        def end(self) -> None:
            pass

    started = time.perf_counter()
    result = pipe.generate([_inputs(ids)], [_config(pipe, n)], Marks())
    count = len(result[0].m_generation_ids[0])
    first, last = (marks[0], marks[-1]) if marks else (started, started)
    return (first - started) * 1000, (count - 1) / (last - first) if count > 1 and last > first else 0.0, count


def main() -> int:
    import openvino_genai as ov_genai

    job = json.loads(sys.stdin.read())
    prompts, n, props = job["prompts"], job["max_new_tokens"], job.get("properties", {})
    if job.get("pipeline", "llm") == "cb":
        scheduler = ov_genai.SchedulerConfig()
        scheduler.cache_size = 1
        scheduler.max_num_seqs = 1
        pipe = ov_genai.ContinuousBatchingPipeline(job["folder"], scheduler, "CPU", props)
        runs = [lambda ids, i=i: run_cb(pipe, ids, n, i) for i in range(len(prompts))]
    else:
        pipe = ov_genai.LLMPipeline(job["folder"], "CPU", **props)
        runs = [lambda ids: run_llm(pipe, ids, n)] * len(prompts)
    ttfts, rates, counts = [], [], []
    for i, ids in enumerate(prompts):
        ttft, rate, count = runs[i](ids)
        if i:
            ttfts.append(ttft)
            rates.append(rate)
            counts.append(count)
    peak = peak_rss_mb()  # its own peak, not the parent's (ru_maxrss keeps that across fork and exec)
    print(json.dumps({"ttft_ms": ttfts, "decode_tokens_per_s": rates, "peak_rss_mb": peak, "tokens": counts,
                      "version": ov_genai.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
