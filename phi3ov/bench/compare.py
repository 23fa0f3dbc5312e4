"""`phi3ov compare EXPORT...`: pick a weight format from figures, not folklore.

For several exports of one model (the seed's flags, all-int4, int8, group sizes, the GGUF's own
layout...) it prints, side by side:

- size on disk and the weights by element type,
- decode tokens/s and first token (raw LLMPipeline, each export in its own process, interleaved rounds,
  the same prompt token ids for all),
- perplexity on a bundled text (Alice's Adventures in Wonderland, chapter 1, public domain),
  from the model's own logits: one forward pass over the text, log-softmax, mean negative
  log-likelihood of each next token,
- first token on a long prompt (~1000 tokens: the bundled text, repeated to length),
- top-1 agreement with a reference export (by default the first int8 one): the share of positions
  where both predict the same next token. Agreement says how much a format changes answers;
  perplexity says whether it changes them for the worse.

`--precision f32,bf16` measures every export at each inference precision (OpenVINO's
INFERENCE_PRECISION_HINT, given to the timed pipeline and to the logits' compile_model); agreement is
then with the reference export at f32. A row says the precision the device really ran: a CPU without
bf16 units runs f32 whatever is asked.
"""

from __future__ import annotations

import argparse
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import BadOptions

PRECISIONS = ("f32", "bf16", "f16")
LONG_PROMPT_TOKENS = 1000


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="+", metavar="EXPORT", help="OpenVINO model folders of the same model.")
    parser.add_argument("--reference", help="The export others are compared with for top-1 agreement "
                        "(default: the first whose weights are mostly int8, else the first given).")
    parser.add_argument("--text", help="A UTF-8 text file for perplexity (default: the bundled one).")
    parser.add_argument("--max-text-tokens", type=int, default=512, help="Tokens of the text used (default 512).")
    parser.add_argument("--runs", type=int, default=3, help="Timed runs per round (default 3).")
    parser.add_argument("--rounds", type=int, default=2, help="Interleaved rounds for the speed figures (default 2).")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="Greedy tokens per timed run (default 128).")
    parser.add_argument("--precision", metavar="P,P,...", help="Inference precisions to measure each export at, "
                        f"from {', '.join(PRECISIONS)} (default: the device's own; see `phi3ov doctor`).")
    parser.add_argument("--long-prompt-tokens", type=int, default=LONG_PROMPT_TOKENS, help="Tokens of text in the "
                        f"long prompt whose first token is timed (default {LONG_PROMPT_TOKENS}; 0: none).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of a table.")


def parse_precisions(text: str | None) -> list[str | None]:
    """["f32", "bf16"] from "f32,bf16"; [None] (the device's default) when not given."""
    if not text:
        return [None]
    asked = [p.strip().lower() for p in text.split(",") if p.strip()]
    wrong = [p for p in asked if p not in PRECISIONS]
    if wrong or not asked:
        raise BadOptions(f"--precision takes {', '.join(PRECISIONS)} separated by commas, got {text!r}.")
    return list(dict.fromkeys(asked))


def hint(precision: str | None) -> dict[str, str]:
    return {"INFERENCE_PRECISION_HINT": precision} if precision else {}


def text_ids(folder: Path, text: str, limit: int) -> list[int]:
    import openvino_genai as ov_genai

    ids = ov_genai.Tokenizer(str(folder)).encode(text, add_special_tokens=False).input_ids.data[0]
    return [int(i) for i in ids[:limit]]


def logits(folder: Path, ids: list[int], properties: dict[str, str] | None = None) -> Any:
    """The model's next-token logits at every position of `ids` ([len(ids), vocab], float32)."""
    return forward(folder, ids, properties)[0]


def forward(folder: Path, ids: list[int], properties: dict[str, str] | None = None) -> tuple[Any, str]:
    """(the logits, the inference precision the compiled model really ran)."""
    import numpy as np
    import openvino as ov

    from ..precision import effective

    core = ov.Core()
    compiled = core.compile_model(str(folder / "openvino_model.xml"), "CPU",
                                  {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", **(properties or {})})
    request = compiled.create_infer_request()
    names = {name for port in compiled.inputs for name in port.get_names()}

    def run(chunk: list[int], start: int) -> Any:
        feed = {"input_ids": np.array([chunk], dtype=np.int64)}
        if "attention_mask" in names:
            feed["attention_mask"] = np.ones((1, start + len(chunk)), dtype=np.int64)
        if "position_ids" in names:
            feed["position_ids"] = np.arange(start, start + len(chunk), dtype=np.int64)[None]
        if "beam_idx" in names:
            feed["beam_idx"] = np.zeros(1, dtype=np.int32)
        request.infer(feed)
        return np.array(request.get_tensor("logits").data[0], dtype=np.float32)

    ran = effective(compiled)
    request.reset_state()
    out = run(ids, 0)
    if out.shape[0] == len(ids):
        return out, ran
    # A model that returns the last position only: feed the text one token at a time.
    request.reset_state()
    return np.stack([run([token], i)[-1] for i, token in enumerate(ids)]), ran


def quality(out: Any, ids: list[int]) -> tuple[float, Any]:
    """(perplexity of the text, the predicted next token at each position)."""
    import numpy as np

    shifted = out - out.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    nll = -log_probs[np.arange(len(ids) - 1), ids[1:]]
    return math.exp(float(nll.mean())), out.argmax(axis=-1)


def folder_size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.glob("openvino_model.bin")) / 2**20


def long_chats(folder: Path, text: str, runs: int, tokens: int) -> list[list[dict]]:
    """A warm-up and `runs` chats whose user message is `tokens` tokens of `text` (repeated to length); each
    opens with its own number, shared with no other prompt (no prefix-cache hits)."""
    if tokens <= 0:
        return []
    import openvino_genai as ov_genai

    from ..options import DEFAULT_SYSTEM_PROMPT

    ids = text_ids(folder, text, 10**9)
    body = ov_genai.Tokenizer(str(folder)).decode((ids * (tokens // max(len(ids), 1) + 1))[:tokens])
    return [[{"role": "system", "content": f"Long text {k}. {DEFAULT_SYSTEM_PROMPT}"},
             {"role": "user", "content": f"Summarize this text:\n\n{body}"}] for k in range(1, runs + 2)]


def speed(contenders: list, folder: Path, text: str, n: int, runs: int, rounds: int, long_tokens: int,
          log=print) -> dict[str, Any]:
    """Each contender in its own process, in interleaved rounds (the order turns every round), fed the same
    ids: a warm-up and `runs` chat prompts, then a warm-up and `runs` long prompts."""
    import statistics

    from .app import PROMPT
    from .layers import chats
    from .peers import measure, prompt_ids

    short = chats(runs, PROMPT)
    ids, first = prompt_ids(folder, short)
    long = long_chats(folder, text, runs, long_tokens)
    long_ids = prompt_ids(folder, long)[0] if long else []
    for r in range(rounds):
        for contender in contenders[r % len(contenders):] + contenders[:r % len(contenders)]:
            log(f"round {r + 1}/{rounds}: {contender.format}")
            contender.runs.append(measure(contender, ids + long_ids, short + long, first, n))
    figures = {}
    for c in contenders:  # each result's lists: `runs` chat prompts, the long warm-up, `runs` long prompts
        figures[c.format] = {
            "decode_tokens_per_s": round(statistics.median(v for x in c.runs for v in x["decode_tokens_per_s"][:runs]), 1),
            "ttft_ms": round(statistics.median(v for x in c.runs for v in x["ttft_ms"][:runs]), 1),
            "ttft_long_ms": round(statistics.median(v for x in c.runs for v in x["ttft_ms"][runs + 1:]), 1)
            if long_ids else None}
    return {"prompt_tokens": len(ids[0]), "long_prompt_tokens": len(long_ids[0]) if long_ids else 0, "rows": figures}


def compare(folders: list[Path], reference: Path | None, text: str, max_text_tokens: int, runs: int,
            rounds: int, max_new_tokens: int, log=print, precisions: list[str | None] | None = None,
            long_prompt_tokens: int = LONG_PROMPT_TOKENS) -> dict[str, Any]:
    from ..precision import resolve
    from .peers import Contender, weight_format

    for folder in folders:
        if not (folder / "openvino_model.xml").exists():
            raise BadOptions(f"{folder} is not an OpenVINO model folder (no openvino_model.xml).",
                             "Pass folders written by `phi3ov export` or optimum-cli.")
    precisions = precisions or [None]
    base = "f32" if "f32" in precisions else precisions[0]  # the reference's precision for agreement
    formats = {f: weight_format(f) for f in folders}
    if reference is None:
        reference = next((f for f in folders if formats[f].split(" ")[1] in ("u8", "i8")), folders[0])
    ids = text_ids(reference, text, max_text_tokens)
    predictions: dict[tuple, Any] = {}
    perplexity: dict[tuple, float] = {}
    ran: dict[tuple, str] = {}
    for folder in dict.fromkeys([reference, *folders]):
        folder_ids = text_ids(folder, text, max_text_tokens)
        if folder_ids != ids:
            raise BadOptions(f"{folder} tokenizes the text differently from {reference}: not the same model.")
        for p in precisions:
            log(f"quality: {folder} at {p or 'the default precision'}")
            out, ran[folder, p] = forward(folder, ids, hint(p))
            perplexity[folder, p], predictions[folder, p] = quality(out, ids)
    keys = [(folder, p) for folder in folders for p in precisions]
    label = {k: f"{k[0].name} · {k[1] or 'default'}" if len(precisions) > 1 else k[0].name for k in keys}
    contenders = [Contender("openvino-genai LLMPipeline", label[k], "openvino", k[0], {"properties": hint(k[1])})
                  for k in keys]
    timed = speed(contenders, folders[0], text, max_new_tokens, runs, rounds, long_prompt_tokens, log)
    rows = []
    for folder, p in keys:
        agreement = float((predictions[folder, p] == predictions[reference, base]).mean())
        rows.append({"export": folder.name, "path": str(folder), "weights": formats[folder],
                     "size_mb": round(folder_size_mb(folder), 1), "precision": ran[folder, p],
                     "precision_asked": p, **timed["rows"][label[folder, p]],
                     "perplexity": round(perplexity[folder, p], 3), "top1_agreement": round(agreement, 4),
                     "reference": folder == reference and p == base})
    return {"text_tokens": len(ids), "reference": str(reference), "reference_precision": ran[reference, base],
            "default_precision": str(resolve("CPU")), "prompt_tokens": timed["prompt_tokens"],
            "long_prompt_tokens": timed["long_prompt_tokens"], "max_new_tokens": max_new_tokens,
            "runs": runs, "rounds": rounds, "exports": rows}


def table(f: dict[str, Any]) -> str:
    def precision(r: dict[str, Any]) -> str:
        asked = r["precision_asked"]
        return f"{r['precision']} (default)" if not asked else r["precision"] if asked == r["precision"] else \
            f"{r['precision']} (asked {asked})"

    ew = max([22, *(len(r["export"]) for r in f["exports"])])
    ww = max([30, *(len(r["weights"]) for r in f["exports"])])
    lines = [f"{f['text_tokens']} tokens of text for perplexity; top-1 agreement with {Path(f['reference']).name} "
             f"at {f['reference_precision']}; speed: {f['max_new_tokens']} greedy tokens, medians of {f['rounds']} "
             f"rounds x {f['runs']} runs; first token on a {f['prompt_tokens']}-token chat and a "
             f"{f['long_prompt_tokens']}-token prompt",
             f"CPU default precision: {f['default_precision']}",
             f"{'export':<{ew}} {'precision':<16} {'weights':<{ww}} {'size':>8} {'decode t/s':>10} {'1st token':>9} "
             f"{'1st (long)':>10} {'perplexity':>10} {'top-1 agree':>11}"]
    for r in f["exports"]:
        long = f"{r['ttft_long_ms']:>8.0f}ms" if r["ttft_long_ms"] is not None else f"{'-':>10}"
        lines.append(f"{r['export']:<{ew}} {precision(r):<16} {r['weights']:<{ww}} {r['size_mb']:>6.1f}MB "
                     f"{r['decode_tokens_per_s']:>10.1f} {r['ttft_ms']:>7.0f}ms {long} {r['perplexity']:>10.3f} "
                     f"{100 * r['top1_agreement']:>10.1f}%")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    import sys

    text = Path(args.text).read_text(encoding="utf-8") if args.text else \
        resources.files("phi3ov").joinpath("data/alice.txt").read_text(encoding="utf-8")
    log = (lambda *_: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    figures = compare([Path(f).expanduser().resolve() for f in args.folders],
                      Path(args.reference).expanduser().resolve() if args.reference else None,
                      text, args.max_text_tokens, args.runs, args.rounds, args.max_new_tokens, log,
                      parse_precisions(args.precision), args.long_prompt_tokens)
    print(json.dumps(figures) if args.json else table(figures))
    return 0
