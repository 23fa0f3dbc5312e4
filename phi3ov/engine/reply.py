"""A reply: a backend's callback turned into a stream of text, for a thread or for an event loop.

A worker thread runs the backend, which posts text into an outbox (outbox.py); the worker always posts one
final item (done, or the exception), so the consumer is never left waiting. `reply.stop()`, or closing the
stream, sets a stop event that the backend checks between tokens.

Two ways to read the same reply, once:

    for piece in reply.pieces(): ...          # a thread (the UI, the terminal chat, the benchmark)
    async for piece in reply.apieces(): ...   # an event loop (the API): the worker wakes the loop itself,
                                              # with no thread-pool hop per piece

Either takes an `interval`: what comes in that time after a piece is sent as one piece (outbox.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from ..conversation import Fitted
from ..errors import GenerationFailed, Phi3ovError
from ..logprobs import Piece, PromptToken
from ..options import GenerationOptions
from .outbox import Outbox
from .workers import DEADLINES, WORKERS, Deadline


@dataclass(frozen=True)
class Stats:
    """Figures of one reply. Backend figures where the backend reports them."""

    ttft_ms: float  # time to first token
    tokens_per_s: float  # decode speed after the first token
    input_tokens: int
    output_tokens: int
    total_s: float
    seed: int | None = None
    steps: int | None = None  # pipeline steps that produced tokens (fewer than tokens when lookup pays off)

    def summary(self) -> str:
        return (
            f"first token {self.ttft_ms:.0f} ms · {self.tokens_per_s:.1f} tokens/s · "
            f"{self.input_tokens} prompt + {self.output_tokens} generated tokens · {self.total_s:.2f} s"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decode_speed(tokens: int, first: float, last: float) -> float:
    """Decode speed: the tokens after the first over the time from the first to the last (0 where undefined)."""
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


Emit = Callable[[str | Piece], None]  # text, or text with the log probabilities of its tokens
Runner = Callable[[Emit, threading.Event], Stats]

_DONE = object()


class Reply:
    """One streaming reply. Iterate once (`pieces`, `apieces` or the reply itself); read the figures afterwards."""

    def __init__(self, run: Runner, fitted: Fitted, options: GenerationOptions, timeout_s: float | None = None):
        self._run = run
        self.timeout_s = timeout_s  # the reply is stopped this long after it starts (None: no limit)
        self.timed_out = False
        self.fitted = fitted
        self.options = options
        self.text = ""
        self.logprobs: list = []  # TokenLogprob of each generated token, when options.logprobs
        self.tokens_so_far = 0  # generated tokens streamed so far, where the backend counts them
        self.stats: Stats | None = None
        self.finish_reason: str | None = None  # "stop", "length", "cancelled" or "timeout"
        self._stop = threading.Event()
        self._started = False
        self._outcome: list[Any] = []  # the backend's Stats, or what it raised
        self._timer: Deadline | None = None
        self._began = 0.0
        self.client_ttft_ms: float | None = None  # as seen by the consumer, queueing included
        self.prefix = ""  # a continued reply: the text it goes on from (the streamed text comes after it)
        self.prompt_logprobs: list[PromptToken] | None = None  # each prompt token scored, when options ask for it

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Ask the backend to stop; it ends within a token and the text so far is kept."""
        self._stop.set()

    def _time_out(self) -> None:
        self.timed_out = True
        self._stop.set()

    def __iter__(self) -> Iterator[str]:
        return (piece.text for piece in self.pieces() if piece.text)

    def pieces(self, interval: float = 0.0) -> Iterator[Piece]:
        """The reply as Pieces: text with the log probabilities of its tokens (empty unless asked for).

        `interval` (seconds): what comes within it of a piece is held, to go in the next (outbox.py: the first
        token and the end never wait). The generation starts now, not at the first
        `next()`: a consumer that sends something first (a status line, an SSE head) does so while the prompt
        is read. One that never iterates must `stop()` the reply."""
        self._claim()
        outbox = Outbox(_DONE, interval)
        self._start(outbox.post)
        return self._stream(outbox)

    def apieces(self, interval: float = 0.0) -> AsyncIterator[Piece]:
        """`pieces` for an event loop: call it inside the loop that iterates it (the generation starts now)."""
        self._claim()
        outbox = Outbox(_DONE, interval, asyncio.get_running_loop())

        def post(item: Any) -> None:  # in the worker thread
            if not outbox.post(item):  # the loop is closed: nobody reads this reply any more
                self._stop.set()

        self._start(post)
        return self._astream(outbox)

    def _claim(self) -> None:
        if self._started:
            raise RuntimeError("A reply can be iterated only once.")
        self._started = True

    def _stream(self, outbox: Outbox) -> Iterator[Piece]:
        try:
            while True:
                # What is ready as one piece: one chunk when the consumer keeps up, all the queued ones joined
                # when it fell behind or held them (`interval`), so a slow consumer costs one update, not one a token.
                pending = outbox.take()
                if (piece := self._take(pending)) is not None:
                    yield piece
                if pending[-1] is _DONE:
                    break
            self._finish()
        finally:
            self._close()

    async def _astream(self, outbox: Outbox) -> AsyncIterator[Piece]:
        try:
            while True:
                pending = await outbox.atake()
                if (piece := self._take(pending)) is not None:
                    yield piece
                if pending[-1] is _DONE:
                    break
            self._finish()
        finally:
            self._close()

    def _start(self, post: Callable[[Any], None]) -> None:
        """The backend on a worker thread, and the --request-timeout deadline."""

        def work() -> None:
            try:
                self._outcome.append(self._run(post, self._stop))
            except BaseException as err:  # noqa: BLE001 - re-raised in the consumer
                self._outcome.append(err)
            finally:
                post(_DONE)

        self._began = time.perf_counter()
        WORKERS.run(work)  # an idle thread: nothing here waits for a new thread to be scheduled (workers.py)
        if self.timeout_s:
            self._timer = DEADLINES.add(self.timeout_s, self._time_out)

    def _take(self, pending: list[Any]) -> Piece | None:
        """The queued chunks as one Piece (None when they hold nothing to show), added to the reply."""
        items = [item if isinstance(item, Piece) else Piece(item) for item in pending if item is not _DONE]
        tokens = sum(item.tokens for item in items)
        self.tokens_so_far += tokens
        text = "".join(item.text for item in items)
        logprobs = [entry for item in items for entry in item.logprobs]
        if not text and not logprobs:
            return None
        if self.client_ttft_ms is None and text:
            self.client_ttft_ms = (time.perf_counter() - self._began) * 1000
        self.text += text
        self.logprobs += logprobs
        return Piece(text, logprobs, tokens)

    def _finish(self) -> None:
        """After the last chunk: the backend's figures and the finish reason, or what it raised, as a domain error."""
        result = self._outcome[0] if self._outcome else GenerationFailed("The generation ended without a result.")
        if isinstance(result, BaseException):
            if isinstance(result, Phi3ovError):
                raise result
            detail = [line for line in str(result).splitlines() if line.strip()] or [""]
            raise GenerationFailed(
                f"Generation failed: {type(result).__name__}: {detail[-1].strip()}",
                "The text so far is kept; try again, or lower “max new tokens”.",
            ) from result
        self.stats = result
        if self.timed_out:
            self.finish_reason = "timeout"
        elif self._stop.is_set():
            self.finish_reason = "cancelled"
        elif result.output_tokens >= self.options.max_new_tokens:
            self.finish_reason = "length"
        else:
            self.finish_reason = "stop"

    def _close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._stop.set()  # a closed stream (Stop button, dropped client) stops the backend
