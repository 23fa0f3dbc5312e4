"""Reply's two readers, for a thread and for an event loop: the same pieces, figures, errors and stopping.

The runner here is a script of emits (the queue logic only); the real backends stream through both readers in
tests/engine (the thread), tests/api and tests/ui (the event loop)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from phi3ov.conversation import Fitted
from phi3ov.engine import Reply, Stats
from phi3ov.errors import GenerationFailed
from phi3ov.logprobs import Piece
from phi3ov.options import GenerationOptions

OPTIONS = GenerationOptions(max_new_tokens=3)


def fitted() -> Fitted:
    return Fitted(messages=[{"role": "user", "content": "Hi"}], prompt_tokens=1, dropped=0)


def stats(tokens: int) -> Stats:
    return Stats(ttft_ms=1.0, tokens_per_s=10.0, input_tokens=1, output_tokens=tokens, total_s=0.1)


def scripted(texts: list[str], fail: BaseException | None = None, gate: threading.Event | None = None):
    def run(emit, stop: threading.Event) -> Stats:
        for i, text in enumerate(texts):
            if stop.is_set():
                return stats(i)
            emit(Piece(text, [], 1))
            if gate is not None and i == 0:
                assert gate.wait(5), "the test never opened the gate"
        if fail is not None:
            raise fail
        return stats(len(texts))

    return run


def read_async(reply: Reply, limit: int | None = None) -> list[str]:
    async def main() -> list[str]:
        got = []
        async for piece in reply.apieces():
            got.append(piece.text)
            if limit is not None and len(got) >= limit:
                break
        return got

    return asyncio.run(asyncio.wait_for(main(), 10))


@pytest.mark.parametrize("reader", ["thread", "loop"])
def test_both_readers_give_the_text_figures_and_finish_reason(reader):
    reply = Reply(scripted(["a", "b", "c"]), fitted(), OPTIONS)
    texts = [p.text for p in reply.pieces()] if reader == "thread" else read_async(reply)
    assert "".join(texts) == "abc" == reply.text
    assert reply.stats.output_tokens == 3 and reply.tokens_so_far == 3
    assert reply.finish_reason == "length" and reply.client_ttft_ms is not None


@pytest.mark.parametrize("reader", ["thread", "loop"])
def test_a_backend_failure_is_a_domain_error_and_keeps_the_text(reader):
    reply = Reply(scripted(["a", "b"], fail=ValueError("boom\n  at the end")), fitted(), OPTIONS)
    with pytest.raises(GenerationFailed, match="ValueError: at the end"):
        list(reply.pieces()) if reader == "thread" else read_async(reply)
    assert reply.text == "ab"


@pytest.mark.parametrize("reader", ["thread", "loop"])
def test_leaving_the_stream_stops_the_backend(reader):
    gate = threading.Event()
    reply = Reply(scripted(["a", "b", "c"], gate=gate), fitted(), OPTIONS)
    if reader == "thread":
        stream = reply.pieces()
        assert next(stream).text == "a"
        stream.close()
    else:
        assert read_async(reply, limit=1) == ["a"]
    assert reply.stopped
    gate.set()


def test_a_reply_is_read_once():
    reply = Reply(scripted(["a"]), fitted(), OPTIONS)
    assert read_async(reply) == ["a"]
    with pytest.raises(RuntimeError, match="only once"):
        reply.pieces()
