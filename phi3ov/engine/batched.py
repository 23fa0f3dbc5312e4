"""Many replies at once from one OpenVINO GenAI ContinuousBatchingPipeline.

`BatchedEngine` has the same interface as `LocalEngine` (chat -> Reply), but instead of one
generation at a time it adds each reply to one `ContinuousBatchingPipeline` as a request and a
single driver thread calls `step()` while any request is unfinished: every step advances all
running replies by a token, so a second user does not wait for the first one's whole reply.

    reply worker (one per reply)            driver thread (one per engine)
    encode prompt, submit request   ---->   add_request -> GenerationHandle
                                            step(); read each handle's new token ids, turn
                                            them into text (detokenizer.py) and emit it to
    wait for the end mark; the figures <--  the Reply; then an end mark on the request's queue

A reply alone (nothing else running or waiting) goes on the pipeline's own `generate()` loop instead, which
releases the GIL, so its text is sent while the pipeline computes; when a second reply arrives it is handed over
to the steps above (solo.py).

With log probabilities asked for, the ids go to the reply worker instead, which scores and decodes them (so the
scoring never delays the other replies' steps).

Stop (the UI's button, a dropped HTTP client) sets the reply's stop event; the driver then calls
`handle.stop()` for that request only, so the others keep running. Prefix caching is on: the
next turn of a chat reuses the KV cache of the history it shares with the previous turn.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import re
import threading
import time
from pathlib import Path
from typing import Any

from ..conversation import Fitted
from ..errors import EngineNotReady, GenerationFailed
from ..models import ModelRef, read_info
from ..options import GenerationOptions
from .base import Capabilities
from .genai import OpenVINOEngine, capped_context, load_failed
from .reply import Emit, Runner, Stats, decode_speed

log = logging.getLogger(__name__)

_END = object()  # a request's last queue item when it finished normally
# ContinuousBatchingPipeline.step() holds the GIL for the whole step (its binding does not release it), so no other
# Python thread runs meanwhile: text emitted after a step reaches the page or the HTTP client only once the next
# step is over, a decode step late. After a step that gave a reply its first text the driver sleeps this long, so
# the readers (the API's or Gradio's threads, then their event loop) send it first: on Phi-3-mini's widths the API's
# first token came 25-35 ms earlier for 1 ms once per reply.
HANDOFF_S = 0.001


class _Request:
    """One reply inside the pipeline: what to generate, and the queue its token ids go to."""

    def __init__(self, prompt_ids: list[int], config: Any, stop: threading.Event, tokens: Any = None,
                 emit: Emit | None = None, alone: bool = False):
        import numpy as np
        import openvino as ov

        self.prompt_ids = list(prompt_ids)
        self.input_ids = ov.Tensor(np.array([prompt_ids], dtype=np.int64))
        self.config = config
        self.max_new_tokens = config.max_new_tokens
        self.alone = alone  # may start alone on the pipeline's own loop (solo.py)
        self.stop = stop
        # With `tokens` (ReplyTokens) and `emit`, the driver turns new ids into text and emits it itself (see _read);
        # `out` then only carries the end. Otherwise `out` carries lists of token ids, then _END or an exception.
        self.tokens, self.emit = tokens, emit
        self.out: queue.SimpleQueue = queue.SimpleQueue()
        self.handle: Any = None
        self.submitted = time.perf_counter()
        self.first: float | None = None  # when the first token arrived
        self.last: float | None = None  # when the latest token arrived
        self.generated = 0  # tokens read so far
        self.steps = 0  # steps that gave it tokens
        self.shown = False  # some of its text has been emitted

    def end(self) -> None:
        self.out.put(_END)

    def fail(self, err: BaseException) -> None:
        """End this reply with `err`: stop it in the pipeline (freed at the next step) and tell its reader."""
        if self.handle is not None:
            with contextlib.suppress(Exception):
                self.handle.stop()
        self.out.put(GenerationFailed(f"Generation failed: {type(err).__name__}: {err}",
                                      "The text so far is kept; try again."))


KV_BLOCK_TOKENS = 32  # the CPU plugin's KV cache block
KV_SHARE_OF_MEMORY = 0.25  # by default the KV cache may take at most this share of the memory available at start
KV_DEFAULT_CEILING_GB = 2.0  # ... and at most this much (prefix caching keeps blocks until the ceiling)


def kv_bytes_per_token(folder: Path) -> int:
    """Bytes of KV cache one token takes in f16 (an upper bound: the CPU keeps it in u8 by default).

    Read from the stateful IR's cache variables (`variable_shape="?,heads,?,head_size"` per layer, K and V).
    """
    total = 0
    with open(Path(folder) / "openvino_model.xml", encoding="utf-8") as xml:
        for line in xml:
            match = _VARIABLE.search(line)
            if match:
                total += int(match[1]) * int(match[2]) * 2
    return total


_VARIABLE = re.compile(r'variable_id="past_key_values[^"]*"[^>]*variable_shape="\?,(\d+),\?,(\d+)"')


def kv_cache_blocks(folder: Path, max_num_seqs: int, context_length: int, kv_cache_gb: float | None) -> int:
    """KV cache blocks for `max_num_seqs` replies of a whole context each, within the memory allowed.

    The budget is `kv_cache_gb` when given, else 2 GB or a quarter of the memory available now, whichever
    is less; a model whose cache variables cannot be read is costed as a 4096-wide, 32-layer one. With
    prefix caching on, finished replies' blocks stay for reuse until this ceiling: the server's memory
    grows to it and stops there.
    """
    per_token = kv_bytes_per_token(folder) or 2 * 32 * 4096 * 2
    budget = kv_cache_gb * 2**30 if kv_cache_gb else min(KV_DEFAULT_CEILING_GB * 2**30,
                                                          KV_SHARE_OF_MEMORY * available_memory())
    tokens = min(max_num_seqs * context_length, int(budget // per_token))
    blocks = max(tokens // KV_BLOCK_TOKENS, 1)
    log.info("KV cache: up to %d blocks (%d tokens, %.2f GB in f16) for %d replies of %d tokens", blocks,
             blocks * KV_BLOCK_TOKENS, blocks * KV_BLOCK_TOKENS * per_token / 2**30, max_num_seqs, context_length)
    return blocks


def kv_cache_too_small() -> GenerationFailed:
    return GenerationFailed("The prompt does not fit into the KV cache of the batching engine.",
                            "Start the server with a larger --kv-cache-gb, or shorten the conversation.")


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable), or 8 GiB where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


class BatchedEngine(OpenVINOEngine):
    """OpenVINO GenAI in this process: up to `max_num_seqs` replies generated together."""

    def __init__(self, model: ModelRef, device: str = "CPU", *, max_num_seqs: int = 8, kv_cache_gb: float | None = None,
                 max_batched_tokens: int = 1024,
                 properties: dict[str, str] | None = None, cache_dir: Path | None = None,
                 prompt_lookup: bool = False, deterministic: bool = False, context_length: int | None = None):
        import openvino_genai as ov_genai

        props = self._properties(model, device, properties, cache_dir, prompt_lookup)
        scheduler = ov_genai.SchedulerConfig()
        # Blocks are allocated as requests need them, up to this many (see kv_cache_blocks).
        context = capped_context(read_info(model.path).context_length, context_length)  # the KV cache for the cap
        scheduler.num_kv_blocks = kv_cache_blocks(model.path, max_num_seqs, context, kv_cache_gb)
        scheduler.cache_size = 0
        scheduler.max_num_seqs = max_num_seqs
        scheduler.max_num_batched_tokens = max(max_batched_tokens, max_num_seqs)
        # Deterministic mode: no prefix cache (a cached prompt's last token is computed another way) and one
        # reply in the pipeline at a time (a batch of several rounds differently from one alone).
        scheduler.enable_prefix_caching = not deterministic
        self.scheduler_config = scheduler
        self.capabilities = Capabilities(max_concurrency=max_num_seqs, can_continue=True, can_tokenize=True,
                                         deterministic=deterministic)

        def make_pipeline(device: str) -> Any:
            started = time.perf_counter()
            try:
                pipeline = ov_genai.ContinuousBatchingPipeline(str(model.path), scheduler, device, props)
            except RuntimeError as err:
                raise load_failed(model.path, device, err) from None
            log.info("Loaded %s on %s for continuous batching in %.1f s", model.path, device,
                     time.perf_counter() - started)
            return pipeline

        self._load(model, device, make_pipeline, context_length)
        held = scheduler.num_kv_blocks * KV_BLOCK_TOKENS
        if held < self.context_length:  # what one conversation can have here, said where the context is said
            log.warning("The KV cache holds %d tokens, less than the model's context of %d: one conversation gets "
                        "at most %d here (longer ones are trimmed or retrieved to fit). Raise --kv-cache-gb for more.",
                        held, self.context_length, held)
            self.context_length = held
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._active: dict[int, _Request] = {}
        self._ids = itertools.count()
        self._closed = False
        self._first_text = False  # the last step gave a reply its first text (see HANDOFF_S)
        self._alone: _Request | None = None  # the reply on the pipeline's own loop (solo.py), if one is
        self.handovers = 0  # replies moved from their own loop into the driver's steps
        self._stepping = threading.Lock()  # held by the driver around each step; see exclusive()
        self._driver = threading.Thread(target=self._drive, name="phi3ov-batching", daemon=True)
        self._driver.start()

    def _model_config(self) -> Any:
        return self.pipeline.get_config()

    def exclusive(self) -> threading.Lock:
        """`with engine.exclusive():` the driver makes no step meanwhile (to drive the pipeline directly)."""
        return self._stepping

    @property
    def running(self) -> int | None:
        """Replies waiting for or inside the pipeline right now."""
        with self._cond:
            return len(self._pending) + len(self._active) + (self._alone is not None)

    def _runner_for(self, prompt_ids: list[int], fitted: Fitted, options: GenerationOptions) -> Runner:
        from .solo import can_run_alone

        config, seed = self.generation_config(options)

        def run(emit: Emit, stop: threading.Event) -> Stats:
            tokens = self.reply_tokens(prompt_ids, options)  # text at once, no tokens held back
            # Text is made in the driver, between steps (scoring log probabilities stays here, off the driver).
            direct = tokens.session is None
            request = _Request(prompt_ids, config, stop, tokens if direct else None, emit if direct else None,
                               alone=can_run_alone(options, direct, self.prompt_lookup))
            self._submit(request)

            while (item := self._next(request)) is not _END:
                if isinstance(item, BaseException):
                    raise item
                if piece := tokens.push(item):
                    emit(piece)
            if rest := tokens.end():
                emit(rest)
            generated, steps = request.generated, request.steps
            first = request.first or time.perf_counter()
            last = request.last or first
            return Stats(
                ttft_ms=(first - request.submitted) * 1000 if request.first else 0.0,
                tokens_per_s=decode_speed(generated, first, last),
                input_tokens=fitted.prompt_tokens,
                output_tokens=generated,
                total_s=time.perf_counter() - request.submitted,
                seed=None if options.greedy else seed,
                steps=steps,
            )

        return run

    def _submit(self, request: _Request) -> None:
        with self._cond:
            if self._closed:
                raise EngineNotReady("The engine has been shut down.", "Restart the server.")
            self._pending.append(request)
            self._cond.notify()

    def _next(self, request: _Request) -> Any:
        while True:
            try:
                return request.out.get(timeout=1.0)
            except queue.Empty:
                if not self._driver.is_alive():
                    return EngineNotReady("The batching engine stopped unexpectedly.", "Restart the server.")

    # -- the driver thread ---------------------------------------------------------------------

    def _drive(self) -> None:
        while True:
            with self._cond:
                while not (self._pending or self._active or self._closed):
                    self._cond.wait()
                if self._closed:
                    break
                new = self._admissible()
            with self._stepping:
                # (a request stopped or failed in the last steps may still be in the pipeline until a step frees it)
                if len(new) == 1 and new[0].alone and not self._active and not self.pipeline.has_non_finished_requests():
                    self._run_alone(new[0])
                    continue
                self._admit_and_step(new)
            if self._first_text:
                self._first_text = False
                time.sleep(HANDOFF_S)
        self._shutdown()

    def _run_alone(self, request: _Request) -> None:
        """One reply and nothing else to do: on the pipeline's own loop until it ends or another reply comes
        (solo.py); handed over, it waits first in line for the next step."""
        from .solo import run_alone

        def handover() -> bool:  # in the streamer's thread, once a token
            return self._closed or (bool(self._pending) and not self.capabilities.deterministic)

        self._alone = request
        try:
            if run_alone(self.pipeline, request, handover, self.fault, self.stop_token_ids):
                self.handovers += 1
                with self._cond:
                    self._pending.insert(0, request)
        finally:
            self._alone = None

    def _admissible(self) -> list[_Request]:
        """The waiting requests to add now (under self._cond): all of them, or in deterministic mode one, and
        only once the pipeline is empty, so every reply is computed alone."""
        if not self.capabilities.deterministic:
            new, self._pending = self._pending, []
            return new
        while self._pending and self._pending[0].stop.is_set():  # stopped while waiting: never started
            self._pending.pop(0).out.put(_END)
        return [self._pending.pop(0)] if self._pending and not self._active else []

    def _admit_and_step(self, new: list[_Request]) -> None:
        for request in new:
            try:
                request.handle = self.pipeline.add_request(next(self._ids), request.input_ids, request.config)
            except Exception as err:  # noqa: BLE001 - this request fails, the others go on
                request.out.put(GenerationFailed(f"The request was refused by the pipeline: {err}"))
                continue
            self._active[id(request)] = request
        try:
            self._step()
        except Exception as err:  # noqa: BLE001 - the replies in this step fail; the driver goes on
            log.exception("A continuous batching step failed: %d replies in it fail", len(self._active))
            for request in self._active.values():
                request.fail(err)
            self._active.clear()

    def _step(self) -> None:
        for key, request in list(self._active.items()):
            if request.stop.is_set():
                request.handle.stop()  # keeps what was generated; the pipeline frees it at the next step
                request.out.put(_END)
                del self._active[key]
        if self.pipeline.has_non_finished_requests():
            self.pipeline.step()
        if self.fault is not None and self._active:
            self.fault.check(max(r.generated for r in self._active.values()), ("step_after_tokens",))
        now = time.perf_counter()
        for key, request in list(self._active.items()):
            try:
                finished = self._read(request, now)
            except Exception as err:  # noqa: BLE001 - this reply fails, the others in the step go on
                log.exception("A reply failed in a continuous batching step")
                request.fail(err)
                finished = True
            if finished:
                del self._active[key]

    def _read(self, request: _Request, now: float) -> bool:
        """Pass on a request's new token ids; True when it has finished (its end mark is sent)."""
        import openvino_genai as ov_genai

        handle = request.handle
        if handle.can_read():
            for output in handle.read().values():  # one sequence per request (no beam search)
                if output.generated_ids:
                    request.generated += len(output.generated_ids)
                    request.steps += 1
                    if self.fault is not None:
                        self.fault.check(request.generated, ("after_tokens",))
                    request.first = request.first or now
                    request.last = now
                    if request.tokens is None:
                        request.out.put(list(output.generated_ids))
                    elif piece := request.tokens.push(list(output.generated_ids)):
                        request.emit(piece)
                        self._first_text = self._first_text or not request.shown
                        request.shown = True
        status = handle.get_status()
        if status == ov_genai.GenerationStatus.RUNNING:
            return False
        if status == ov_genai.GenerationStatus.IGNORED:
            request.out.put(kv_cache_too_small())
        else:
            request.out.put(_END)
        return True

    def _shutdown(self) -> None:
        closed = EngineNotReady("The engine was shut down while generating.", "Restart the server.")
        with self._cond:
            waiting, self._pending = self._pending, []
        for request in [*waiting, *self._active.values()]:
            if request.handle is not None:
                request.handle.stop()
            request.out.put(closed)
        self._active.clear()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._driver.join(timeout=10)
