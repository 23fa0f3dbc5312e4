"""LocalEngine: one LLMPipeline in this process, one generation at a time, in arrival order."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ..conversation import Fitted
from ..models import ModelRef
from ..options import GenerationOptions
from .base import Capabilities
from .genai import FairLock, OpenVINOEngine, get_pipeline
from .reply import Emit, Runner, Stats


class LocalEngine(OpenVINOEngine):
    """OpenVINO GenAI in this process: one LLMPipeline, one generation at a time, in order."""

    def __init__(self, model: ModelRef, device: str = "CPU", properties: dict[str, str] | None = None,
                 cache_dir: Path | None = None, prompt_lookup: bool = False, deterministic: bool = False,
                 context_length: int | None = None):
        props = self._properties(model, device, properties, cache_dir, prompt_lookup)
        # One reply at a time already; deterministic mode also turns the prefix cache off (see get_pipeline).
        self.capabilities = Capabilities(max_concurrency=1, can_continue=True, can_tokenize=True,
                                         deterministic=deterministic)
        self._load(model, device, lambda dev: get_pipeline(model.path, dev, props, prefix_caching=not deterministic),
                   context_length)
        self._lock = FairLock()

    def _runner_for(self, prompt_ids: list[int], fitted: Fitted, options: GenerationOptions) -> Runner:
        import numpy as np
        import openvino as ov
        import openvino_genai as ov_genai

        from .streamer import Streamer  # imports openvino_genai: only once an engine runs

        config, seed = self.generation_config(options)
        ids = np.array([prompt_ids], dtype=np.int64)
        inputs = ov_genai.TokenizedInputs(ov.Tensor(ids), ov.Tensor(np.ones_like(ids)))

        def run(emit: Emit, stop: threading.Event) -> Stats:
            with self._lock:
                started = time.perf_counter()
                if stop.is_set():  # stopped while waiting in line
                    return Stats(0.0, 0.0, fitted.prompt_tokens, 0, 0.0, seed)
                streamer = Streamer(emit, stop, self.reply_tokens(prompt_ids, options), self.fault)
                result = self.pipeline.generate(inputs, config, streamer)
                total = time.perf_counter() - started
            if streamer.error is not None:
                raise streamer.error
            metrics = result.perf_metrics
            return Stats(
                ttft_ms=float(metrics.get_ttft().mean),
                tokens_per_s=float(metrics.get_throughput().mean),
                input_tokens=int(metrics.get_num_input_tokens()),
                output_tokens=int(metrics.get_num_generated_tokens()),
                total_s=total,
                seed=None if options.greedy else seed,
            )

        return run
