"""The seed's own runtime, measured: optimum-intel's `OVModelForCausalLM.generate`.

`phi3ov bench --compare` calls `measure_optimum` on the same folder and prompt as the
OpenVINO GenAI figures, so the README can show what the streaming pipeline gains. The time to
first token is taken from a transformers streamer (the first `put` after the prompt); decode
speed is the tokens after the first divided by the time after the first. Greedy decoding.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from ..engine.reply import decode_speed
from ..errors import ExportFailed, ModelNotServable

OPTIMUM_FILES = ("config.json", "openvino_model.xml")


def measure_optimum(folder: Path, prompt_messages: list[dict], max_new_tokens: int, runs: int) -> dict:
    """Median `ttft_ms` and `tokens_per_s` of `runs` greedy generations (after one warm-up)."""
    folder = Path(folder)
    missing = [f for f in OPTIMUM_FILES if not (folder / f).exists()]
    if missing:
        raise ModelNotServable(
            f"optimum-intel cannot load {folder}: it has no {', '.join(missing)} "
            "(a folder converted from a .gguf by OpenVINO GenAI has none).",
            "Compare on an optimum export: `phi3ov export SOURCE OUT`, then `phi3ov bench --compare --model OUT`.",
        )
    try:
        from optimum.intel import OVModelForCausalLM
        from transformers import AutoTokenizer
        from transformers.generation.streamers import BaseStreamer
    except ImportError as err:
        raise ExportFailed(f"--compare needs optimum-intel and transformers ({err}).",
                           "Install the export extra: `make setup-test`.") from None

    class FirstTokenClock(BaseStreamer):
        """Notes when generated tokens arrive; the first `put` holds the prompt."""

        def __init__(self) -> None:
            self.prompt_seen = False
            self.first: float | None = None
            self.tokens = 0

        def put(self, value) -> None:
            if not self.prompt_seen:
                self.prompt_seen = True
                return
            if self.first is None:
                self.first = time.perf_counter()
            self.tokens += int(value.numel())

        def end(self) -> None:
            pass

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = OVModelForCausalLM.from_pretrained(
        folder, device="CPU", ov_config={"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "CACHE_DIR": ""})
    load_s = time.perf_counter() - started
    inputs = tokenizer.apply_chat_template(prompt_messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    eos = model.generation_config.eos_token_id
    settings = {"max_new_tokens": max_new_tokens, "do_sample": False, "eos_token_id": eos,
                "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else
                (eos[0] if isinstance(eos, list) else eos)}

    ttfts, speeds, counts = [], [], []
    for i in range(runs + 1):  # the first run warms up and is not counted
        clock = FirstTokenClock()
        t0 = time.perf_counter()
        model.generate(**inputs, streamer=clock, **settings)
        t1 = time.perf_counter()
        if i == 0 or clock.first is None:
            continue
        ttfts.append((clock.first - t0) * 1000)
        speeds.append(decode_speed(clock.tokens, clock.first, t1))
        counts.append(clock.tokens)
    return {
        "runtime": "optimum-intel OVModelForCausalLM.generate",
        "ttft_ms": statistics.median(ttfts) if ttfts else float("nan"),
        "tokens_per_s": statistics.median(speeds) if speeds else float("nan"),
        "output_tokens": int(statistics.median(counts)) if counts else 0,
        "input_tokens": int(inputs["input_ids"].shape[1]),
        "runs": len(ttfts),
        "load_s": load_s,
    }
