"""One reply alone in the batching pipeline, on the pipeline's own loop (`generate()`), handed over to the
stepping driver when a second reply arrives.

`ContinuousBatchingPipeline.step()` holds the GIL for the whole step (its Python binding does not release
it), so while the driver steps, nothing else in the process runs: each token's text, and the HTTP or page work
that sends it, waits for the step to end and then delays the next one. `generate()` releases the GIL and calls
its streamer from a thread of its own, so a reply alone decodes at the bare pipeline's speed while its text is
sent in the meantime (docs/performance.md, section 9).

    driver: generate([prompt], [config], streamer)  ->  streamer (its own thread): ids -> text -> emit
            a second reply is waiting?  ->  the streamer says STOP after this token; the pipeline keeps
            the reply's KV cache in the prefix cache, and the reply goes back to the driver as a request
            for prompt + tokens so far, the tokens left: both replies then run in the same steps.

Only replies whose continuation is the same as if they had never paused go this way (`can_run_alone`): no
grammar (it would start over), no presence or frequency penalty (they count generated tokens only; the
repetition penalty counts the prompt too), no stop strings (one could straddle the pause), no log
probabilities (scored off the driver) and no prompt lookup.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import openvino as ov
import openvino_genai as ov_genai

from ..faults import Fault, InjectedFault
from ..options import GenerationOptions

log = logging.getLogger(__name__)


def can_run_alone(options: GenerationOptions, direct: bool, prompt_lookup: bool) -> bool:
    """Whether a reply may start on `generate()` and continue in the driver's steps with the same result."""
    return (direct and not prompt_lookup and options.constraint is None and not options.stop
            and not options.presence_penalty and not options.frequency_penalty)


class AloneStreamer(ov_genai.StreamerBase):
    """The reply's token ids, turned into text and emitted as they come; STOP when stopped or handed over.

    The pipeline calls it from C++: an exception escaping it would abort the process, so none escapes (kept in
    `error`, raised to the reply once `generate` has returned)."""

    def __init__(self, request: Any, handover: Callable[[], bool], fault: Fault | None):
        super().__init__()
        self.request, self.handover, self.fault = request, handover, fault
        self.error: BaseException | None = None
        self.handed_over = False
        self.taken = 0  # ids written to this streamer and turned into text

    def write(self, token: Any) -> ov_genai.StreamingStatus:
        request = self.request
        if request.stop.is_set() or self.error is not None or self.handed_over:
            return ov_genai.StreamingStatus.STOP
        try:
            ids = token if isinstance(token, list) else [token]
            take(request, ids)
            self.taken += len(ids)
            if self.fault is not None:
                self.fault.check(request.generated)
            if self.handover():
                self.handed_over = True
                return ov_genai.StreamingStatus.STOP
        except BaseException as err:  # noqa: BLE001 - raised to the reply after generate returns
            self.error = err
            return ov_genai.StreamingStatus.STOP
        return ov_genai.StreamingStatus.RUNNING

    def end(self) -> None:
        pass


def take(request: Any, ids: list[int]) -> None:
    """Count a reply's new ids (one step each: no prompt lookup here) and emit their text."""
    now = time.perf_counter()
    request.generated += len(ids)
    request.steps += len(ids)
    request.first = request.first or now
    request.last = now
    if piece := request.tokens.push(ids):
        request.emit(piece)
        request.shown = True


def run_alone(pipeline: Any, request: Any, handover: Callable[[], bool], fault: Fault | None,
              stop_ids: set[int]) -> bool:
    """Generate `request` alone until it ends or `handover()` says another reply waits.

    Returns True when the reply was handed over and goes on in the driver's steps (its prompt, config and
    figures are updated for that); otherwise its end mark or error is on its queue."""
    streamer = AloneStreamer(request, handover, fault)
    try:
        results = pipeline.generate([request.input_ids], [request.config], streamer)
    except Exception as err:  # noqa: BLE001 - this reply fails; the driver goes on
        log.exception("A continuous batching step failed: the reply in it fails")
        request.fail(err)
        return False
    if streamer.error is not None:
        if isinstance(streamer.error, InjectedFault) and fault is not None and fault.kind == "step_after_tokens":
            log.error("A continuous batching step failed: the reply in it fails (%s)", streamer.error)
        request.fail(streamer.error)
        return False
    ids = [int(i) for i in results[0].m_generation_ids[0]] if results and results[0].m_generation_ids else []
    try:
        if rest := ids[streamer.taken:]:  # made in the steps before STOP took effect
            take(request, rest)
    except Exception as err:  # noqa: BLE001 - this reply fails; the driver goes on
        request.fail(err)
        return False
    if not ids and not request.stop.is_set():  # the scheduler ignored it: the prompt does not fit the KV cache
        from .batched import kv_cache_too_small

        request.out.put(kv_cache_too_small())
        return False
    ended = (request.stop.is_set() or not streamer.handed_over or request.generated >= request.max_new_tokens
             or (bool(ids) and ids[-1] in stop_ids and not request.config.ignore_eos))
    if ended:
        request.end()
        return False
    request.prompt_ids += ids
    request.input_ids = ov.Tensor(np.array([request.prompt_ids], dtype=np.int64))
    request.config.max_new_tokens = request.max_new_tokens - request.generated
    request.config.min_new_tokens = max(0, request.config.min_new_tokens - len(ids))
    log.debug("A reply alone was handed over to the driver after %d tokens", request.generated)
    return True
