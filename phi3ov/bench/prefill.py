"""`phi3ov bench --prefill-levers`: how fast a long prompt is read, and what each lever does to it.

One prompt of about N tokens (`--prompt-tokens`, default 2,000) is read by the pipeline the app serves with
(ContinuousBatchingPipeline, the app's scheduler settings and properties, model_properties included), once per
lever setting: the scheduler's `max_num_batched_tokens` (the prefill chunk), dynamic split-fuse, the inference
precision, the dynamic quantization group and the KV cache precision, plus a bare LLMPipeline (the whole prompt in
one inference). Every setting is its own pipeline, loaded once; the runs are interleaved (round r runs every setting
once), the prefix cache is off, and each run writes DECODE_TOKENS greedy tokens after the first, so a lever's cost
to decoding shows beside its gain. Each round's prompt opens with its own number, so the LLMPipeline (whose CPU
backend keeps a prefix cache of its own) reads it whole too. The machine's own matrix ceiling (compute.py) is
printed beside it: prefill tokens/s x 2 x the model's linear weights per token is the matrix work done.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from .compute import machine_peak, prefill_tflops

BASE = "app default"
# label -> (scheduler changes, property changes); the app's own settings are the base of each.
LEVERS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    BASE: ({}, {}),
    "max_num_batched_tokens 256": ({"max_num_batched_tokens": 256}, {}),
    "max_num_batched_tokens 512": ({"max_num_batched_tokens": 512}, {}),
    "max_num_batched_tokens 2048": ({"max_num_batched_tokens": 2048}, {}),
    "max_num_batched_tokens 8192": ({"max_num_batched_tokens": 8192}, {}),
    "split-fuse off, 8192 batched": ({"max_num_batched_tokens": 8192, "dynamic_split_fuse": False}, {}),
    "inference precision f32": ({}, {"INFERENCE_PRECISION_HINT": "f32"}),
    "dynamic quantization off": ({}, {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}),
    "dynamic quantization group 32": ({}, {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "32"}),
    "dynamic quantization group 64": ({}, {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "64"}),
    "dynamic quantization group 128": ({}, {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "128"}),
    "dynamic quantization group 256": ({}, {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "256"}),
    "KV cache f16": ({}, {"KV_CACHE_PRECISION": "f16"}),
    "KV cache u8": ({}, {"KV_CACHE_PRECISION": "u8"}),
}
LLM = "LLMPipeline (one inference)"
DECODE_TOKENS = 32


def flops_per_token(folder: Path) -> float:
    """2 x the weights of the decoder's matrix products (attention projections and MLP), from config.json."""
    config = json.loads((folder / "config.json").read_text())
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    kv, d = config.get("num_key_value_heads") or heads, config.get("head_dim") or h // heads
    per_layer = h * (heads + 2 * kv) * d + heads * d * h + 3 * h * i
    return 2.0 * per_layer * layers


def _pipelines(folder: Path, tokens: int, properties: dict[str, str], levers: dict) -> dict[str, Any]:
    import openvino_genai as ov_genai

    from ..engine.batched import KV_BLOCK_TOKENS

    out: dict[str, Any] = {}
    for label, (scheduler_changes, property_changes) in levers.items():
        scheduler = ov_genai.SchedulerConfig()
        scheduler.num_kv_blocks = tokens // KV_BLOCK_TOKENS + 8  # room for the prompt and its token
        scheduler.cache_size = 0
        scheduler.max_num_seqs = 8
        scheduler.max_num_batched_tokens = 1024  # the app's default (--max-batched-tokens)
        scheduler.enable_prefix_caching = False
        for name, value in scheduler_changes.items():
            setattr(scheduler, name, value)
        out[label] = ov_genai.ContinuousBatchingPipeline(str(folder), scheduler, "CPU",
                                                         {**properties, **property_changes})
    out[LLM] = ov_genai.LLMPipeline(str(folder), "CPU", **properties)
    return out


def run_levers(folder: Path, tokens: int, runs: int, log=print, levers: dict | None = None) -> dict[str, Any]:
    from ..engine import default_properties, model_properties
    from ..settings import default_cache_dir
    from .peer_openvino import run_cb, run_llm
    from .peers import long_prompt, prompt_ids

    levers = levers or LEVERS
    text = long_prompt(folder, tokens)  # each round's prompt opens with its own number: no prefix is ever cached
    prompts = prompt_ids(folder, [[{"role": "system", "content": f"Round {r}."}, {"role": "user", "content": text}]
                                  for r in range(runs + 1)])[0]
    ids = prompts[0]
    log(f"Probing the matrix units, then loading {len(levers) + 1} pipelines of {folder} ...")
    peak = machine_peak()
    started = time.perf_counter()
    app = {**default_properties(default_cache_dir()), **model_properties(folder, "CPU")}  # what the app loads with
    pipes = _pipelines(folder, max(map(len, prompts)), app, levers)
    log(f"Loaded in {time.perf_counter() - started:.0f} s; {runs + 1} interleaved rounds of a {len(ids)}-token prompt")
    times: dict[str, list[float]] = {label: [] for label in pipes}
    decode: dict[str, list[float]] = {label: [] for label in pipes}
    numbers, n = iter(range(10**6)), DECODE_TOKENS + 1
    for r, ids in enumerate(prompts):  # round 0 warms every pipeline up
        for label, pipe in pipes.items():
            ttft, rate, _ = run_llm(pipe, ids, n) if label == LLM else run_cb(pipe, ids, n, next(numbers))
            if r:
                times[label].append(ttft)
                decode[label].append(rate)
        log(f"round {r} of {runs} done")
    work = flops_per_token(folder)
    base, base_decode = statistics.median(times[BASE]), statistics.median(decode[BASE])
    rows = []
    for label, ms in times.items():
        median = statistics.median(ms)
        rate = len(ids) / (median / 1000)
        rows.append({"lever": label, "first_token_ms": round(median, 1), "prefill_tokens_per_s": round(rate, 1),
                     "vs_default": round(base / median, 3), "tflops": round(prefill_tflops(work, rate), 3),
                     "decode_tokens_per_s": round(statistics.median(decode[label]), 1),
                     "decode_vs_default": round(statistics.median(decode[label]) / base_decode, 3)})
    return {"folder": str(folder), "prompt_tokens": len(ids), "runs": runs, "flops_per_token": work, "app": app,
            "decode_tokens": DECODE_TOKENS,
            "machine_peak": peak, "rows": rows}


def table(f: dict[str, Any]) -> str:
    peak = f["machine_peak"]
    lines = [f"{Path(f['folder']).name}: a {f['prompt_tokens']}-token prompt, first token, median of {f['runs']} "
             f"interleaved runs; {f['flops_per_token'] / 1e9:.2f} GFLOP of matrix work per token",
             "the app's properties: " + ", ".join(f"{k} {v}" for k, v in f["app"].items() if k != "CACHE_DIR"),
             "this machine's matrix ceiling (OpenVINO, one 1024x3072x8192 product): " + ", ".join(
                 f"{p} {v['tflops']:.2f} T/s ({v['kernel']})" for p, v in peak.items()),
             f"{'lever':<32} {'first token':>11} {'prefill t/s':>11} {'x default':>9} {'TFLOP/s':>8} "
             f"{'of int8':>7} {'of bf16':>7} {'decode t/s':>10} {'x default':>9}"]
    for r in f["rows"]:
        lines.append(f"{r['lever']:<32} {r['first_token_ms']:>9.0f}ms {r['prefill_tokens_per_s']:>11.0f} "
                     f"{r['vs_default']:>9.3f} {r['tflops']:>8.3f} {r['tflops'] / peak['int8']['tflops']:>7.0%} "
                     f"{r['tflops'] / peak['bf16']['tflops']:>7.0%} {r['decode_tokens_per_s']:>10.1f} "
                     f"{r['decode_vs_default']:>9.3f}")
    return "\n".join(lines)
