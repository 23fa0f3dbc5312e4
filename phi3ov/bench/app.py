"""`phi3ov bench`: one user, layer by layer, from the bare pipeline to the browser's endpoint.

Every layer gets the same greedy prompts and generates exactly `--max-new-tokens` tokens, in
interleaved runs (run i of every layer, then run i+1 of every layer), and reports the median
first-token time and decode speed. The differences between neighbouring layers are the
breakdown of what the app adds:

    LLMPipeline            a bare openvino_genai.LLMPipeline.generate with a text streamer
    batching pipeline      the ContinuousBatchingPipeline alone (add_request / step / read)
    engine                 phi3ov's engine in this process: fit to context, template, tokenize,
                           driver thread, detokenize, queue to the consumer (what the server runs)
    API (HTTP + SSE)       the same through a launched server's /v1/chat/completions, read by the openai client
    API, bare SSE reader   the same read by httpx and json.loads (the server without the client's parsing)
    chat UI (Gradio)       the same through the server's /chat endpoint over Gradio's queue and
                           server-sent events (what the browser's chat uses)

Each run's system prompt starts with its own number, so no layer serves a prompt from a prefix cache.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..engine.reply import decode_speed
from ..errors import BadOptions
from ..options import DEFAULT_SYSTEM_PROMPT

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
    parser.add_argument("--prompt-lookup", action="store_true",
                        help="Instead: replies with and without prompt-lookup decoding, on an input-grounded "
                        "prompt and a free chat prompt.")
    parser.add_argument("--determinism", type=int, nargs="?", const=4, metavar="N",
                        help="Instead: what --deterministic costs against the default (one reply, the next turn of a "
                        "long chat, N replies at once; default N 4).")
    parser.add_argument("--document", type=int, nargs="?", const=2000, metavar="N",
                        help="Instead: a document of N tokens attached to a question, then a second question about "
                        "it; both first tokens, with and without the prefix cache (default N 2000).")
    parser.add_argument("--prefill-levers", action="store_true",
                        help="Instead: how fast a prompt of --prompt-tokens (default 2000) is read under each "
                        "prefill lever (chunk size, split-fuse, precision, dynamic quantization, KV cache precision), "
                        "beside this machine's matrix ceiling.")
    parser.add_argument("--soak", type=int, metavar="N",
                        help="Instead: N mixed requests (streaming or not, sampled, stopped, dropped, long "
                        "histories) against a launched server; prints failures and the server's RSS.")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="Pass ARG to the server (and the in-process engine) under test, e.g. --server-arg=--engine=single.")
    peers = parser.add_argument_group("peers (phi3ov vs. raw openvino-genai vs. llama.cpp on the same weights)")
    peers.add_argument("--peers", action="store_true", help="Instead: compare with llama.cpp (needs `make peers`).")
    peers.add_argument("--shape", choices=["bundled", "phi3-mini"], default="bundled",
                       help="bundled: the bundled model and its own GGUF; phi3-mini: Phi-3-mini's widths with "
                       "random weights, built locally as GGUF and OpenVINO exports of the same weights. Without "
                       "--peers: the layer breakdown on that shape's all-int4 export.")
    peers.add_argument("--rounds", type=int, default=3, help="Interleaved rounds (default 3); --runs per round.")
    peers.add_argument("--layers", type=int, default=4, help="Layers of the --shape model (default 4).")
    peers.add_argument("--prompt-tokens", type=int, metavar="N",
                       help="A prompt of about N tokens (text of the bundled book and a question) instead of the "
                       "short one: first token and prefill tokens/s on long prompts (the layer breakdown too).")
    peers.add_argument("--peer-folder", action="append", metavar="LABEL=FOLDER",
                       help="Also measure raw openvino-genai on another export of the same model.")


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


def measure_layers(layers: dict[str, Layer], runs: int, prompt: str, n: int) -> dict[str, dict[str, float]]:
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in layers}
    own = {name: chats(runs, prompt, j) for j, name in enumerate(layers)}
    for i in range(runs + 1):
        for name, layer in layers.items():
            figures = layer(own[name][i], n)
            if i:  # the first chat warms each layer up
                results[name].append(figures)
    return {name: {"ttft_ms": round(statistics.median(r[0] for r in rows), 1),
                   "tokens_per_s": round(statistics.median(r[1] for r in rows), 1)} for name, rows in results.items()}


def shape_model(args: argparse.Namespace) -> Any:
    """`--shape` without `--peers`: the layer breakdown on that shape's all-int4 export (built here if `--peers`
    has not built it yet: without llama.cpp's GGUFs, which this needs none of)."""
    from .. import models
    from ..settings import default_cache_dir
    from .shapes import build

    if args.model:
        raise BadOptions("--shape and --model name two different models.", "Give one of them.")
    folder = build(args.shape, default_cache_dir() / "shapes", layers=args.layers, gguf=False,
                   log=lambda line: print(line, file=sys.stderr, flush=True))["ov-int4"]
    return models.resolve(folder)


def main(args: argparse.Namespace) -> int:

    from .. import models
    from ..engine import BatchedEngine, default_properties, model_properties
    from ..process import ServerProcess
    from ..server import make_engine
    from ..settings import ServerSettings, default_cache_dir

    if args.peers:
        from .peers import main as peers_main

        return peers_main(args)
    ref = shape_model(args) if args.shape != "bundled" else models.resolve(args.model)
    device = args.device or "CPU"
    if args.concurrency:
        from .concurrency import main as concurrency_main

        return concurrency_main(args, ref.path, device)
    if args.soak:
        from .soak import run_soak

        figures = run_soak(ref.path, device, args.soak, args.server_arg, log=lambda line: print(line, file=sys.stderr, flush=True))
        print(json.dumps(figures) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))
        return 0 if figures["failures"] == 0 else 1
    if args.determinism:
        from .determinism import run_determinism
        from .determinism import table as determinism_table

        figures = run_determinism(ref, device, args.runs, args.max_new_tokens, args.determinism,
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
        print(json.dumps(figures) if args.json else determinism_table(figures))
        return 0
    if args.document:
        from .document import run_document
        from .document import table as document_table

        figures = run_document(ref, device, args.document, args.runs, args.max_new_tokens,
                               log=lambda line: print(line, file=sys.stderr, flush=True))
        print(json.dumps(figures) if args.json else document_table(figures))
        return 0
    if args.prefill_levers:
        from .prefill import run_levers
        from .prefill import table as levers_table

        figures = run_levers(ref.path, args.prompt_tokens or 2000, args.runs,
                             log=lambda line: print(line, file=sys.stderr, flush=True))
        print(json.dumps(figures) if args.json else levers_table(figures))
        return 0
    if args.prompt_lookup:
        from .lookup import run_lookup
        from .lookup import table as lookup_table

        figures = run_lookup(ref, device, args.runs, args.max_new_tokens,
                             log=lambda line: print(line, file=sys.stderr, flush=True))
        print(json.dumps(figures) if args.json else lookup_table(figures))
        return 0
    if args.prompt_tokens:
        from .peers import long_prompt

        prompt = long_prompt(ref.path, args.prompt_tokens)
    else:
        prompt = args.prompt
    server_args = ["--model", str(ref.path), "--device", device, *args.server_arg]
    settings = ServerSettings.from_argv(server_args)  # the settings the launched server below reads too
    engine = make_engine(settings, ref)  # the engine the server serves (without the model menu around it)
    # The bare pipeline gets the app's own properties, so each layer below adds only what the app does.
    bare = {**default_properties(default_cache_dir()), **model_properties(ref.path, device), **dict(settings.ov_config)}
    layers: dict[str, Layer] = {"LLMPipeline": llm_layer(ref.path, device, bare)}
    if isinstance(engine, BatchedEngine):
        layers["batching pipeline"] = batching_layer(engine)
        layers["batching generate()"] = batching_generate_layer(engine)
    layers["engine"] = engine_layer(engine)
    prompt_tokens = engine.count_tokens(chats(1, prompt)[1])
    with ServerProcess(server_args) as server:
        layers["API (HTTP + SSE)"] = api_layer(server.url)
        layers["API, bare SSE reader"] = api_reader_layer(server.url)
        layers["chat UI (Gradio)"] = gradio_layer(server.url, engine.count_text)
        figures = measure_layers(layers, args.runs, prompt, args.max_new_tokens)
    engine.close()
    base = figures["LLMPipeline"]
    from ..precision import resolve

    out = {"model": ref.name, "device": device, "runs": args.runs, "max_new_tokens": args.max_new_tokens,
           "prompt_tokens": prompt_tokens,
           "inference_precision": str(resolve(device, dict(settings.ov_config))),
           "layers": [{"layer": name, **f, "added_ttft_ms": round(f["ttft_ms"] - base["ttft_ms"], 1),
                       "tokens_per_s_vs_raw": round(f["tokens_per_s"] / base["tokens_per_s"], 3)}
                      for name, f in figures.items()]}
    # The goal's baseline: the best of the bare pipelines, first token and decode taken apart (the strictest).
    bare_rows = [figures[name] for name in BARE if name in figures]
    best_ttft, best_rate = min(r["ttft_ms"] for r in bare_rows), max(r["tokens_per_s"] for r in bare_rows)
    for row in out["layers"]:
        row["added_ttft_vs_best_bare_ms"] = round(row["ttft_ms"] - best_ttft, 1)
        row["tokens_per_s_vs_best_bare"] = round(row["tokens_per_s"] / best_rate, 3) if best_rate else 0.0
    app = figures["chat UI (Gradio)"]
    out["app_added_ttft_ms"] = round(app["ttft_ms"] - base["ttft_ms"], 1)
    out["app_vs_raw_tokens_per_s"] = round(app["tokens_per_s"] / base["tokens_per_s"], 3)
    if args.compare:
        from .optimum import measure_optimum

        messages = chats(1, prompt)[1]
        opt = measure_optimum(ref.path, messages, args.max_new_tokens, args.runs)
        out["optimum"] = {"ttft_ms": round(opt["ttft_ms"], 1), "tokens_per_s": round(opt["tokens_per_s"], 1)}
    print(json.dumps(out) if args.json else table(out))
    return 0


def table(f: dict) -> str:
    lines = [f"{f['model']} on {f['device']}, a {f.get('prompt_tokens', '?')}-token prompt, {f['max_new_tokens']} greedy "
             f"tokens, median of {f['runs']} interleaved runs",
             f"inference precision {f.get('inference_precision', '?')}",
             f"{'layer':<20} {'first token':>11} {'added':>8} {'tokens/s':>9} {'x raw':>6} "
             f"{'vs best bare':>12} {'x best bare':>11}"]
    for r in f["layers"]:
        lines.append(f"{r['layer']:<20} {r['ttft_ms']:>9.1f}ms {r['added_ttft_ms']:>+6.1f}ms "
                     f"{r['tokens_per_s']:>9.1f} {r['tokens_per_s_vs_raw']:>6.3f} "
                     f"{r.get('added_ttft_vs_best_bare_ms', 0):>+10.1f}ms {r.get('tokens_per_s_vs_best_bare', 0):>11.3f}")
    if "optimum" in f:
        lines.append(f"{'optimum-intel':<20} {f['optimum']['ttft_ms']:>9.1f}ms {'':>8} {f['optimum']['tokens_per_s']:>9.1f}")
    lines.append(f"through the chat UI: +{f['app_added_ttft_ms']:.1f} ms first token, "
                 f"{f['app_vs_raw_tokens_per_s']:.3f}x the raw decode speed")
    return "\n".join(lines)
