"""`phi3ov bench`: speed figures, medians of several runs, against a baseline in the same run.

Baseline ("raw"): a bare `openvino_genai.LLMPipeline.generate` with a streamer callback,
timed from the call to the first streamed text and over the rest of the decode.
App: the same prompt and settings streamed by a client through the running app (a server
child process on loopback, its `/chat` endpoint over Gradio's HTTP API with server-sent events).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from ..settings import DEFAULT_SYSTEM_PROMPT

PROMPT = "Write a short story about a robot who learns to paint."


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=5, help="Runs per measurement; the median is reported (default 5).")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="Tokens per reply (default 128).")
    parser.add_argument("--prompt", default=PROMPT, help="The user message.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of a table.")
    parser.add_argument("--compare", action="store_true",
                        help="Also measure optimum-intel OVModelForCausalLM.generate on the same folder.")
    parser.add_argument("--concurrency", metavar="N,N,...", help="Instead: N clients streaming at once through "
                        "the API vs. the same N requests one after another, for each N (e.g. 1,2,4,8).")
    peers = parser.add_argument_group("peers (phi3ov vs. raw openvino-genai vs. llama.cpp on the same weights)")
    peers.add_argument("--peers", action="store_true", help="Instead: compare with llama.cpp (needs `make peers`).")
    peers.add_argument("--shape", choices=["bundled", "phi3-mini"], default="bundled",
                       help="bundled: the bundled model and its own GGUF; phi3-mini: Phi-3-mini's widths with "
                       "random weights, built locally as GGUF and OpenVINO exports of the same weights.")
    peers.add_argument("--rounds", type=int, default=3, help="Interleaved rounds (default 3); --runs per round.")
    peers.add_argument("--layers", type=int, default=4, help="Layers of the --shape model (default 4).")
    peers.add_argument("--peer-folder", action="append", metavar="LABEL=FOLDER",
                       help="Also measure raw openvino-genai on another export of the same model.")


def _decode_rate(tokens: int, first: float, end: float) -> float:
    return (tokens - 1) / (end - first) if tokens > 1 and end > first else 0.0


def measure_raw(folder: Path, device: str, messages: list[dict], max_new_tokens: int, runs: int) -> dict:
    import openvino_genai as ov_genai

    from ..engine import default_properties
    from ..settings import default_cache_dir

    pipe = ov_genai.LLMPipeline(str(folder), device, **default_properties(default_cache_dir()))
    config = pipe.get_generation_config()
    config.max_new_tokens = max_new_tokens
    config.do_sample = False
    ttfts, rates, texts = [], [], []
    for i in range(runs + 1):  # the first run warms up and is not counted
        first: list[float] = []

        def streamer(_text: str, first: list[float] = first) -> ov_genai.StreamingStatus:
            if not first:
                first.append(time.perf_counter())
            return ov_genai.StreamingStatus.RUNNING

        start = time.perf_counter()
        result = pipe.generate(ov_genai.ChatHistory(messages), config, streamer)
        end = time.perf_counter()
        tokens = result.perf_metrics.get_num_generated_tokens()
        if i:
            ttfts.append((first[0] - start) * 1000)
            rates.append(_decode_rate(tokens, first[0], end))
            texts.append(result.texts[0])
    del pipe
    return {"ttft_ms": statistics.median(ttfts), "tokens_per_s": statistics.median(rates),
            "tokens": tokens, "text": texts[-1]}


def measure_app(model: str, device: str, messages: list[dict], max_new_tokens: int, runs: int,
                tokens: int) -> dict:
    """Stream through the running app's `/chat` endpoint over Gradio's HTTP API (server-sent events)."""
    import httpx

    from ..process import ServerProcess

    payload = {"data": [messages[-1]["content"], [], messages[0]["content"], max_new_tokens, 0.0, 1.0, 0, 1.0, None]}
    with ServerProcess(["--model", model, "--device", device]) as server, httpx.Client(timeout=120) as http:
        url = f"{server.url}/gradio_api/call/chat"
        ttfts, rates, text = [], [], ""
        for i in range(runs + 1):
            start = time.perf_counter()
            first = None
            event_id = http.post(url, json=payload).raise_for_status().json()["event_id"]
            with http.stream("GET", f"{url}/{event_id}") as events:
                for line in events.iter_lines():
                    if not line.startswith("data:") or line == "data: null":
                        continue
                    history = json.loads(line[5:])[0]
                    if history and _text(history[-1]):
                        first = first or time.perf_counter()
                        text = _text(history[-1])
            end = time.perf_counter()
            if i and first is not None:
                ttfts.append((first - start) * 1000)
                rates.append(_decode_rate(tokens, first, end))
    return {"ttft_ms": statistics.median(ttfts), "tokens_per_s": statistics.median(rates), "text": text}


def _text(message: dict) -> str:
    from ..conversation import text_of

    return text_of(message.get("content")) if message.get("role") == "assistant" else ""


def main(args: argparse.Namespace) -> int:
    from .. import models

    if args.peers:
        from .peers import main as peers_main

        return peers_main(args)
    ref = models.resolve(args.model)
    device = args.device or "CPU"
    if args.concurrency:
        from .concurrency import main as concurrency_main

        return concurrency_main(args, ref.path, device)
    messages = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": args.prompt}]
    raw = measure_raw(ref.path, device, messages, args.max_new_tokens, args.runs)
    app = measure_app(str(ref.path), device, messages, args.max_new_tokens, args.runs, raw["tokens"])
    figures = {
        "model": ref.name, "device": device, "runs": args.runs, "max_new_tokens": args.max_new_tokens,
        "generated_tokens": raw["tokens"],
        "raw_ttft_ms": round(raw["ttft_ms"], 1), "raw_tokens_per_s": round(raw["tokens_per_s"], 1),
        "app_ttft_ms": round(app["ttft_ms"], 1), "app_tokens_per_s": round(app["tokens_per_s"], 1),
        "same_text": raw["text"] == app["text"],
    }
    figures["app_vs_raw_tokens_per_s"] = round(app["tokens_per_s"] / raw["tokens_per_s"], 3)
    figures["app_added_ttft_ms"] = round(app["ttft_ms"] - raw["ttft_ms"], 1)
    if args.compare:
        from .optimum import measure_optimum

        opt = measure_optimum(ref.path, messages, args.max_new_tokens, args.runs)
        figures["optimum_ttft_ms"] = round(opt["ttft_ms"], 1)
        figures["optimum_tokens_per_s"] = round(opt["tokens_per_s"], 1)
    if args.json:
        print(json.dumps(figures))
    else:
        print(table(figures))
    return 0


def table(f: dict) -> str:
    rows = [("raw LLMPipeline", f["raw_ttft_ms"], f["raw_tokens_per_s"]),
            ("through the app", f["app_ttft_ms"], f["app_tokens_per_s"])]
    if "optimum_ttft_ms" in f:
        rows.append(("optimum-intel generate", f["optimum_ttft_ms"], f["optimum_tokens_per_s"]))
    lines = [f"{f['model']} on {f['device']}, {f['generated_tokens']} tokens, median of {f['runs']} runs",
             f"{'':24} {'first token (ms)':>17} {'tokens/s':>9}"]
    lines += [f"{name:24} {ttft:17.1f} {tps:9.1f}" for name, ttft, tps in rows]
    lines.append(f"app/raw tokens/s: {f['app_vs_raw_tokens_per_s']:.3f} · app adds {f['app_added_ttft_ms']:.1f} ms "
                 f"to the first token · same text: {f['same_text']}")
    return "\n".join(lines)
