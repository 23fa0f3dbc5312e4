"""`phi3ov bench`: one user, layer by layer, from the bare pipeline to the browser's endpoint.

Every layer gets the same greedy prompts and generates exactly `--max-new-tokens` tokens, in
interleaved runs (run i of every layer, then run i+1 of every layer, backwards), and reports the
median first-token time and decode speed; against the best bare layer also the "paired" figures,
the median of the comparisons within each round. The differences between neighbouring layers are
the breakdown of what the app adds:

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
import sys
from typing import Any

from ..errors import BadOptions
from . import load
from .layers import (
    BARE,
    Layer,
    api_layer,
    api_reader_layer,
    batching_generate_layer,
    batching_layer,
    chats,
    engine_layer,
    gradio_layer,
    llm_layer,
    measure_layers,
    summarize,
)

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
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="Keep N cores busy while measuring: N spinning processes, each in a session of its own "
                        "as another program's would be (a load started in the benchmark's own session favours its "
                        "in-process layers over the server it launches; see phi3ov/bench/load.py).")
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
    with load.busy(args.busy, log=lambda line: print(line, file=sys.stderr, flush=True)):
        return measure(args)


def measure(args: argparse.Namespace) -> int:
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
        figures = summarize(measure_layers(layers, args.runs, prompt, args.max_new_tokens), BARE)
    engine.close()
    base = figures["LLMPipeline"]
    from ..precision import resolve

    # Against the bare LLMPipeline ("raw"), and against the best of the bare layers, first token and decode taken
    # apart (the goal's baseline, the strictest): see summarize.
    out = {"model": ref.name, "device": device, "runs": args.runs, "max_new_tokens": args.max_new_tokens,
           "busy_cores": args.busy, "prompt_tokens": prompt_tokens,
           "inference_precision": str(resolve(device, dict(settings.ov_config))),
           "layers": [{"layer": name, **f, "added_ttft_ms": round(f["ttft_ms"] - base["ttft_ms"], 1),
                       "tokens_per_s_vs_raw": round(f["tokens_per_s"] / base["tokens_per_s"], 3)}
                      for name, f in figures.items()]}
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
             f"tokens, median of {f['runs']} interleaved runs" + load.note(f.get("busy_cores")),
             f"inference precision {f.get('inference_precision', '?')}; paired: the median of each round's own comparison",
             f"{'layer':<20} {'first token':>11} {'added':>8} {'tokens/s':>9} {'x raw':>6} "
             f"{'vs best bare':>12} {'x best bare':>11} {'paired':>8} {'paired':>7}"]
    for r in f["layers"]:
        lines.append(f"{r['layer']:<20} {r['ttft_ms']:>9.1f}ms {r['added_ttft_ms']:>+6.1f}ms "
                     f"{r['tokens_per_s']:>9.1f} {r['tokens_per_s_vs_raw']:>6.3f} "
                     f"{r['added_ttft_vs_best_bare_ms']:>+10.1f}ms {r['tokens_per_s_vs_best_bare']:>11.3f} "
                     f"{r['paired_added_ttft_ms']:>+6.1f}ms {r['paired_tokens_per_s_vs_best_bare']:>7.3f}")
    if "optimum" in f:
        lines.append(f"{'optimum-intel':<20} {f['optimum']['ttft_ms']:>9.1f}ms {'':>8} {f['optimum']['tokens_per_s']:>9.1f}")
    lines.append(f"through the chat UI: +{f['app_added_ttft_ms']:.1f} ms first token, "
                 f"{f['app_vs_raw_tokens_per_s']:.3f}x the raw decode speed")
    return "\n".join(lines)
