"""Reply's two readers, for a thread and for an event loop: the same pieces, figures, errors and stopping.

The runner here is a script of emits (the outbox logic only); the real backends stream through both readers in
tests/engine (the thread), tests/api and tests/ui (the event loop)."""

from __future__ import annotations

import asyncio
import threading
import time

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


def paced(shown: list[str], before_b: float = 0.0, after_b: float = 0.0):
    """Emits "a" and waits until the reader has shown it; `before_b` s later "b"; with `after_b` that long later
    "c" and "d" (else it first waits until "b" is shown); then the end."""

    def until_shown(count: int) -> None:
        deadline = time.monotonic() + 5
        while len(shown) < count:
            assert time.monotonic() < deadline, f"the reader never showed piece {count}: {shown}"
            time.sleep(0.002)

    def run(emit, stop: threading.Event) -> Stats:
        emit(Piece("a", [], 1))
        until_shown(1)
        time.sleep(before_b)
        emit(Piece("b", [], 1))
        if after_b:
            time.sleep(after_b)  # a reader that does not hold has taken "b" alone by then
        else:
            until_shown(2)
        emit(Piece("c", [], 1))
        emit(Piece("d", [], 1))
        return stats(4)

    return run


def read(reply: Reply, reader: str, interval: float, shown: list[str]) -> list[str]:
    """The reply's pieces as the reader shows them, within a bound: a reader that held the end would fail it."""
    if reader == "loop":
        async def main() -> None:
            async for piece in reply.apieces(interval):
                shown.append(piece.text)

        asyncio.run(asyncio.wait_for(main(), 5))
        return shown
    done = threading.Thread(target=lambda: [shown.append(p.text) for p in reply.pieces(interval)], daemon=True)
    done.start()
    done.join(5)
    assert not done.is_alive(), f"the reader was still waiting 5 s on: {shown}"
    return shown


@pytest.mark.parametrize("reader", ["thread", "loop"])
def test_what_comes_within_the_interval_goes_in_one_piece_and_neither_the_first_nor_the_end_waits(reader):
    """An interval of 60 s: "a" is shown at once (the backend waits for that), "b", then 0.2 s later "c" "d", come
    while the reader holds and go out together when the end comes, long before the interval is over."""
    shown: list[str] = []
    reply = Reply(paced(shown, after_b=0.2), fitted(), GenerationOptions(max_new_tokens=9))
    assert read(reply, reader, 60.0, shown) == ["a", "bcd"]
    assert reply.text == "abcd" and reply.tokens_so_far == 4 and reply.finish_reason == "stop"


@pytest.mark.parametrize("reader", ["thread", "loop"])
def test_a_token_after_the_interval_is_shown_without_waiting_for_the_next(reader):
    """"b" comes 0.6 s after "a", past a 0.3 s interval: it is shown alone (the backend waits to see it shown
    before it emits more), and "c" "d" right after it go together."""
    shown: list[str] = []
    reply = Reply(paced(shown, before_b=0.6), fitted(), GenerationOptions(max_new_tokens=9))
    assert read(reply, reader, 0.3, shown) == ["a", "b", "cd"]


@pytest.mark.parametrize("reader", ["thread", "loop"])
def test_a_token_held_within_the_interval_is_shown_when_no_other_comes(reader):
    """"b" comes right after "a" is shown, within a 0.3 s interval, and nothing more until "b" is shown: the
    reader sends it by itself one interval later, not at the next token or the end."""
    shown: list[str] = []
    reply = Reply(paced(shown), fitted(), GenerationOptions(max_new_tokens=9))
    assert read(reply, reader, 0.3, shown) == ["a", "b", "cd"]
