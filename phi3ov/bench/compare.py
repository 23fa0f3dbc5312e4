"""`phi3ov compare EXPORT...`: pick a weight format from figures, not folklore.

For several exports of one model (the seed's flags, all-int4, int8, group sizes, the GGUF's own
layout...) it prints, side by side:

- size on disk and the weights by element type,
- decode tokens/s and first token (raw LLMPipeline, each export in its own process, interleaved rounds,
  the same prompt token ids for all),
- perplexity on a bundled text (Alice's Adventures in Wonderland, chapter 1, public domain),
  from the model's own logits: one forward pass over the text, log-softmax, mean negative
  log-likelihood of each next token,
- top-1 agreement with a reference export (by default the first int8 one): the share of positions
  where both predict the same next token. Agreement says how much a format changes answers;
  perplexity says whether it changes them for the worse.
"""

from __future__ import annotations

import argparse
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import BadOptions


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="+", metavar="EXPORT", help="OpenVINO model folders of the same model.")
    parser.add_argument("--reference", help="The export others are compared with for top-1 agreement "
                        "(default: the first whose weights are mostly int8, else the first given).")
    parser.add_argument("--text", help="A UTF-8 text file for perplexity (default: the bundled one).")
    parser.add_argument("--max-text-tokens", type=int, default=512, help="Tokens of the text used (default 512).")
    parser.add_argument("--runs", type=int, default=3, help="Timed runs per round (default 3).")
    parser.add_argument("--rounds", type=int, default=2, help="Interleaved rounds for the speed figures (default 2).")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="Greedy tokens per timed run (default 128).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of a table.")


def text_ids(folder: Path, text: str, limit: int) -> list[int]:
    import openvino_genai as ov_genai

    ids = ov_genai.Tokenizer(str(folder)).encode(text, add_special_tokens=False).input_ids.data[0]
    return [int(i) for i in ids[:limit]]


def logits(folder: Path, ids: list[int]) -> Any:
    """The model's next-token logits at every position of `ids` ([len(ids), vocab], float32)."""
    import numpy as np
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(str(folder / "openvino_model.xml"), "CPU",
                                  {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"})
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

    request.reset_state()
    out = run(ids, 0)
    if out.shape[0] == len(ids):
        return out
    # A model that returns the last position only: feed the text one token at a time.
    request.reset_state()
    return np.stack([run([token], i)[-1] for i, token in enumerate(ids)])


def quality(out: Any, ids: list[int]) -> tuple[float, Any]:
    """(perplexity of the text, the predicted next token at each position)."""
    import numpy as np

    shifted = out - out.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    nll = -log_probs[np.arange(len(ids) - 1), ids[1:]]
    return math.exp(float(nll.mean())), out.argmax(axis=-1)


def folder_size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.glob("openvino_model.bin")) / 2**20


def compare(folders: list[Path], reference: Path | None, text: str, max_text_tokens: int, runs: int,
            rounds: int, max_new_tokens: int, log=print) -> dict[str, Any]:
    from .peers import Contender, run, weight_format

    for folder in folders:
        if not (folder / "openvino_model.xml").exists():
            raise BadOptions(f"{folder} is not an OpenVINO model folder (no openvino_model.xml).",
                             "Pass folders written by `phi3ov export` or optimum-cli.")
    formats = {f: weight_format(f) for f in folders}
    if reference is None:
        reference = next((f for f in folders if formats[f].split(" ")[1] in ("u8", "i8")), folders[0])
    ids = text_ids(reference, text, max_text_tokens)
    predictions: dict[Path, Any] = {}
    perplexity: dict[Path, float] = {}
    for folder in dict.fromkeys([reference, *folders]):
        log(f"quality: {folder}")
        folder_ids = text_ids(folder, text, max_text_tokens)
        if folder_ids != ids:
            raise BadOptions(f"{folder} tokenizes the text differently from {reference}: not the same model.")
        perplexity[folder], predictions[folder] = quality(logits(folder, ids), ids)
    contenders = [Contender("openvino-genai LLMPipeline", folder.name, "openvino", folder) for folder in folders]
    speed = run(contenders, folder=folders[0], n=max_new_tokens, runs=runs, rounds=rounds, log=log)
    rows = []
    for folder, peer in zip(folders, speed["peers"], strict=True):
        agreement = float((predictions[folder] == predictions[reference]).mean())
        rows.append({"export": folder.name, "path": str(folder), "weights": formats[folder],
                     "size_mb": round(folder_size_mb(folder), 1),
                     "decode_tokens_per_s": peer["decode_tokens_per_s"], "ttft_ms": peer["ttft_ms"],
                     "perplexity": round(perplexity[folder], 3), "top1_agreement": round(agreement, 4),
                     "reference": folder == reference})
    return {"text_tokens": len(ids), "reference": str(reference), "max_new_tokens": max_new_tokens,
            "runs": runs, "rounds": rounds, "exports": rows}


def table(f: dict[str, Any]) -> str:
    lines = [f"{f['text_tokens']} tokens of text for perplexity; top-1 agreement with {Path(f['reference']).name}; "
             f"speed: {f['max_new_tokens']} greedy tokens, medians of {f['rounds']} rounds x {f['runs']} runs",
             f"{'export':<22} {'weights':<34} {'size':>8} {'decode t/s':>10} {'1st token':>9} {'perplexity':>10} "
             f"{'top-1 agree':>11}"]
    for r in f["exports"]:
        lines.append(f"{r['export']:<22} {r['weights']:<34} {r['size_mb']:>6.1f}MB {r['decode_tokens_per_s']:>10.1f} "
                     f"{r['ttft_ms']:>7.0f}ms {r['perplexity']:>10.3f} {100 * r['top1_agreement']:>10.1f}%")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    import sys

    text = Path(args.text).read_text(encoding="utf-8") if args.text else \
        resources.files("phi3ov").joinpath("data/alice.txt").read_text(encoding="utf-8")
    log = (lambda *_: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    figures = compare([Path(f).expanduser().resolve() for f in args.folders],
                      Path(args.reference).expanduser().resolve() if args.reference else None,
                      text, args.max_text_tokens, args.runs, args.rounds, args.max_new_tokens, log)
    print(json.dumps(figures) if args.json else table(figures))
    return 0
