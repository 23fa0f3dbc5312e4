"""`phi3ov bench --peers`: phi3ov against raw openvino-genai and llama.cpp, on the same weights.

Every contender runs in a process of its own (so peak RSS is its own), in interleaved rounds
(the order turns every round, so a noisy minute on a shared machine hits all of them), and is fed
the same prompts as the same token ids (computed once here with the model's own tokenizer; the
app's reported prompt-token count and llama.cpp's own tokenizer are checked against them). Every
run is greedy and generates exactly `max_new_tokens` tokens (end of text ignored). A run's first
token time is from the call to the first token; its decode speed is the rest of the tokens over
the time after the first one. Each round a contender's first prompt warms it up, uncounted.

Each run's prompt starts with its own number, so no engine serves it from a prefix cache.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadOptions, Phi3ovError
from ..models import read_info
from . import load
from .app import PROMPT
from .layers import chats as numbered_chats
from .layers import stream_api

PEERS_VENV = Path(".venv-peers")
WORKER_TIMEOUT_S = 1800


class PeersMissing(Phi3ovError):
    code = "peers_missing"


@dataclass
class Contender:
    """One engine on one set of weights."""

    engine: str  # what a reader compares: "phi3ov (app)", "openvino-genai", "llama.cpp"
    format: str  # the weights as that engine sees them
    kind: str  # "app", "openvino" or "llamacpp"
    path: Path
    options: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)  # one result per round


def prompt_ids(folder: Path, chats: list[list[dict[str, str]]]) -> tuple[list[list[int]], str]:
    """The token ids every engine is fed, and the first prompt's text (from the model's own template)."""
    import openvino_genai as ov_genai

    tokenizer = ov_genai.Tokenizer(str(folder))
    texts = [tokenizer.apply_chat_template(ov_genai.ChatHistory(c), add_generation_prompt=True) for c in chats]
    ids = [[int(i) for i in tokenizer.encode(t, add_special_tokens=False).input_ids.data[0]] for t in texts]
    return ids, texts[0]


def long_prompt(folder: Path, tokens: int) -> str:
    """A user message of about `tokens` tokens: the bundled book's start, then a question about it."""
    import openvino_genai as ov_genai

    from .document import document_text

    tokenizer = ov_genai.Tokenizer(str(folder))

    def count(text: str) -> int:
        return int(tokenizer.encode(text, add_special_tokens=False).input_ids.shape[1])

    return document_text(count, max(tokens - 60, 16)) + "\n\nSay in one sentence what happens above."


def peers_python() -> Path:
    python = Path(os.environ.get("PHI3OV_PEERS_PYTHON", PEERS_VENV / "bin" / "python"))
    probe = subprocess.run([str(python), "-c", "import llama_cpp"], capture_output=True, text=True) \
        if python.exists() else None
    if probe is None or probe.returncode != 0:
        raise PeersMissing(f"No llama.cpp to compare with: {python} cannot import llama_cpp.",
                           "Run `make peers` once (it builds llama-cpp-python from source into .venv-peers, "
                           "about 9 minutes on 2 cores), or set PHI3OV_PEERS_PYTHON to a Python that has it.")
    return python


def peers_build(python: Path) -> tuple[str, str]:
    """Which llama.cpp build `python` has and why, from the BUILD file `make peers` writes beside it."""
    build = Path(python).parent.parent / "BUILD"
    line = build.read_text().strip() if build.exists() else ""
    kind, _, why = line.partition(": ")
    return (kind, why) if kind else ("", f"not recorded (no {build}: rerun `make peers` to probe it)")


def llamacpp_engine(python: Path) -> str:
    """llama.cpp's row name, with its build: "llama.cpp (native)", "llama.cpp (native-no-amx)"."""
    kind = peers_build(python)[0]
    return f"llama.cpp ({kind})" if kind else "llama.cpp"


def _worker(command: list[str], job: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(command, input=json.dumps(job), capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    if done.returncode != 0 or not done.stdout.strip():
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise Phi3ovError(f"A benchmark worker failed ({' '.join(command[-2:])}, exit {done.returncode}):\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def measure(contender: Contender, ids: list[list[int]], chats: list[list[dict]], text: str, n: int) -> dict:
    if contender.kind == "llamacpp":
        job = {"gguf": str(contender.path), "prompts": ids, "max_new_tokens": n, "threads": threads(), "text": text,
               "n_ctx": max(2048, max(len(x) for x in ids) + n + 16)}
        script = Path(__file__).with_name("peer_llamacpp.py")
        return _worker([str(contender.options["python"]), str(script)], job)
    if contender.kind == "openvino":
        from ..engine import default_properties
        from ..settings import default_cache_dir

        props = {**default_properties(default_cache_dir()), **contender.options.get("properties", {})}
        job = {"folder": str(contender.path), "prompts": ids, "max_new_tokens": n, "properties": props,
               "pipeline": contender.options.get("pipeline", "llm")}
        return _worker([sys.executable, "-m", "phi3ov.bench.peer_openvino"], job)
    return measure_app(contender.path, contender.options.get("server_args", []), ids, chats, n)


def measure_app(folder: Path, server_args: list[str], ids: list[list[int]], chats: list[list[dict]],
                n: int) -> dict:
    """Stream each chat through the app's own API as a client would (the server as `make run` starts it)."""
    import logging

    import openai

    from ..process import ServerProcess, status_mb

    logging.getLogger("openai").setLevel(logging.WARNING)
    ttfts, rates, prompt_tokens = [], [], []
    log_path = Path(tempfile.gettempdir()) / "phi3ov-bench-peers-server.log"  # named if the server fails to start
    with ServerProcess(["--model", str(folder), *server_args], log_path=log_path) as server, \
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=600) as client:
        model = client.models.list().data[0].id
        for i, chat in enumerate(chats):
            timer, finished, usage = stream_api(client, model, chat, n)
            if i:
                # The finish event ends the decode: the last tokens may have no text of their own.
                timer.last = finished or timer.last
                ttft, rate = timer.figures(usage.completion_tokens if usage else 0)
                ttfts.append(ttft)
                rates.append(rate)
            prompt_tokens.append(usage.prompt_tokens if usage else -1)
        peak = status_mb(server.proc.pid, "VmHWM")
    return {"ttft_ms": ttfts, "decode_tokens_per_s": rates, "peak_rss_mb": peak,
            "prompt_tokens_agree": prompt_tokens == [len(x) for x in ids]}


def run(contenders: list[Contender], folder: Path, n: int, runs: int, rounds: int,
        log=print, prompt_tokens: int | None = None) -> dict[str, Any]:
    chats = numbered_chats(runs, long_prompt(folder, prompt_tokens) if prompt_tokens else PROMPT)
    ids, text = prompt_ids(folder, chats)
    skipped = []
    context = read_info(folder).context_length
    if max(map(len, ids)) + n > context:  # the app keeps to the model's context (it would trim the prompt)
        skipped = [f"{c.engine} · {c.format}: a {max(map(len, ids))}-token prompt and {n} new tokens exceed the "
                   f"model's context of {context} tokens, which the app keeps to" for c in contenders if c.kind == "app"]
        contenders = [c for c in contenders if c.kind != "app"]
        for line in skipped:
            log(f"skipped {line}")
    for r in range(rounds):
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for contender in order:
            log(f"round {r + 1}/{rounds}: {contender.engine} · {contender.format}")
            contender.runs.append(measure(contender, ids, chats, text, n))
    return {**summarize(contenders, ids, n, runs, rounds), "skipped": skipped}


def summarize(contenders: list[Contender], ids: list[list[int]], n: int, runs: int, rounds: int) -> dict:
    rows = []
    for c in contenders:
        ttfts = [v for result in c.runs for v in result["ttft_ms"]]
        rates = [v for result in c.runs for v in result["decode_tokens_per_s"]]
        row = {"engine": c.engine, "format": c.format, "decode_tokens_per_s": round(statistics.median(rates), 1),
               "ttft_ms": round(statistics.median(ttfts), 1),
               "prefill_tokens_per_s": round(len(ids[0]) * 1000 / statistics.median(ttfts), 0),
               "peak_rss_mb": round(max(result["peak_rss_mb"] for result in c.runs), 0)}
        checks = [result.get(k) for result in c.runs for k in ("tokenizer_agrees", "prompt_tokens_agree")]
        checks = [x for x in checks if x is not None]
        row["prompt_ids_checked"] = all(checks) if checks else None
        rows.append(row)
    base = next((r for r in rows if r["engine"].startswith("llama.cpp")), None)
    for row in rows:
        row["decode_vs_llamacpp"] = round(row["decode_tokens_per_s"] / base["decode_tokens_per_s"], 2) if base else None
        row["ttft_vs_llamacpp"] = round(row["ttft_ms"] / base["ttft_ms"], 2) if base else None
        row["rss_vs_llamacpp"] = round(row["peak_rss_mb"] / base["peak_rss_mb"], 2) if base else None
    return {"prompt_tokens": len(ids[0]), "max_new_tokens": n, "runs": runs, "rounds": rounds,
            "threads": threads(), "peers": rows}


def table(figures: dict, title: str) -> str:
    lines = [f"{title}: {figures['prompt_tokens']}-token prompt, {figures['max_new_tokens']} greedy tokens, "
             f"medians of {figures['rounds']} interleaved rounds x {figures['runs']} runs, {figures['threads']} threads"
             + load.note(figures.get("busy_cores")),
             f"{'engine':<26} {'format':<38} {'decode t/s':>10} {'x llama':>7} {'1st token':>10} {'x llama':>7} "
             f"{'prefill t/s':>11} {'peak RSS':>9} {'x llama':>7}"]
    for r in figures["peers"]:
        lines.append(f"{r['engine']:<26} {r['format']:<38} {r['decode_tokens_per_s']:>10.1f} "
                     f"{r['decode_vs_llamacpp'] or 0:>7.2f} {r['ttft_ms']:>8.0f}ms {r['ttft_vs_llamacpp'] or 0:>7.2f} "
                     f"{r['prefill_tokens_per_s']:>11.0f} {r['peak_rss_mb']:>7.0f}MB {r['rss_vs_llamacpp'] or 0:>7.2f}")
    unchecked = [r["engine"] for r in figures["peers"] if r["prompt_ids_checked"] is False]
    lines.append("prompt token ids: " + (f"MISMATCH for {', '.join(unchecked)}" if unchecked else
                                         "identical for every engine (checked)"))
    lines += [f"skipped {line}" for line in figures.get("skipped") or ()]
    if figures.get("llamacpp_build"):
        lines.append(f"llama.cpp build: {figures['llamacpp_build']}")
    return "\n".join(lines)


def weight_format(folder: Path) -> str:
    """The weights of an OpenVINO IR by element type, as shares of all weight elements: "u4 78% · u8 22%"."""
    import math
    import xml.etree.ElementTree as ET

    counts: dict[str, int] = {}
    for layer in ET.parse(folder / "openvino_model.xml").getroot().iter("layer"):
        data = layer.find("data")
        if layer.get("type") != "Const" or data is None or not data.get("shape"):
            continue
        size = math.prod(int(d) for d in data.get("shape").split(",") if d.strip())
        if size >= 4096:  # weights, not scales of small tensors
            counts[data.get("element_type", "?")] = counts.get(data.get("element_type", "?"), 0) + size
    total = sum(counts.values()) or 1
    parts = sorted(counts.items(), key=lambda kv: -kv[1])
    return "OpenVINO " + " · ".join(f"{t} {100 * c / total:.0f}%" for t, c in parts if c / total >= 0.01)


def bundled_contenders(python: Path, extra: list[str]) -> tuple[list[Contender], Path]:
    from .. import models

    served = models.bundled()  # what `make run` serves on a fresh machine
    gguf = models.bundled_gguf()
    label = weight_format(served.path)
    contenders = [
        Contender("phi3ov (through the app)", label, "app", served.path),
        Contender("openvino-genai LLMPipeline", label, "openvino", served.path),
        *tuned(served.path, label),
        Contender(llamacpp_engine(python), f"GGUF {gguf.stem.split('.')[-1]}", "llamacpp", gguf, {"python": python}),
    ]
    for item in extra:
        name, _, path = item.partition("=")
        if not path:
            raise BadOptions(f"--peer-folder takes LABEL=FOLDER, got {item!r}.")
        contenders.append(Contender("openvino-genai LLMPipeline", name, "openvino", Path(path)))
    return contenders, served.path


def tuned(folder: Path, label: str) -> list[Contender]:
    """The bare LLMPipeline with the properties the app gives this model (model_properties), where they are not
    OpenVINO's defaults: the app's speed is then read against the faster of the two bare pipelines."""
    import openvino as ov

    from ..engine import model_properties

    props = model_properties(folder, "CPU")
    core = ov.Core()
    changed = {k: v for k, v in props.items() if str(core.get_property("CPU", k)) != v}
    if not changed:
        return []
    said = ", ".join(f"{k.replace('DYNAMIC_QUANTIZATION_GROUP_SIZE', 'dyn. quant. group')} {v}"
                     for k, v in changed.items())
    return [Contender("openvino-genai LLMPipeline", f"{label}, {said}", "openvino", folder, {"properties": changed})]


def shape_contenders(shape: str, python: Path, layers: int, log=print) -> tuple[list[Contender], Path]:
    from ..settings import default_cache_dir
    from .shapes import build

    built = build(shape, default_cache_dir() / "shapes", layers=layers, log=log)
    return [
        Contender("phi3ov (through the app)", "OpenVINO int4 (all layers)", "app", built["ov-int4"]),
        Contender("openvino-genai LLMPipeline", "OpenVINO int4 (all layers)", "openvino", built["ov-int4"]),
        *tuned(built["ov-int4"], "int4 (all layers)"),
        Contender("openvino-genai LLMPipeline", "OpenVINO seed flags (ratio 0.6)", "openvino", built["ov-seed"]),
        Contender(llamacpp_engine(python), "GGUF Q4_K_M", "llamacpp", built["Q4_K_M"], {"python": python}),
        Contender(llamacpp_engine(python), "GGUF Q4_0", "llamacpp", built["Q4_0"], {"python": python}),
    ], built["ov-int4"]


def main(args: Any) -> int:
    python = peers_python()
    kind, why = peers_build(python)
    log = (lambda *_: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    if args.shape == "bundled":
        contenders, folder = bundled_contenders(python, args.peer_folder or [])
        title = "bundled SmolLM2-135M-Instruct (its own GGUF)"
    else:
        contenders, folder = shape_contenders(args.shape, python, args.layers, log)
        title = f"{args.shape} shape, {args.layers} layers, random weights"
    figures = run(contenders, folder, args.max_new_tokens, args.runs, args.rounds, log, args.prompt_tokens)
    figures["shape"] = args.shape
    figures["busy_cores"] = args.busy
    figures["llamacpp_build"] = f"{kind or 'unknown'}: {why}"
    print(json.dumps(figures) if args.json else table(figures, title))
    return 0
