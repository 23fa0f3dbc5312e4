"""One reply in the chat: stream it into the Chatbot, its live and final figures, and what a saved
chat keeps about it."""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from .. import conversation
from ..engine import Engine, Reply
from ..errors import Phi3ovError
from ..settings import GenerationOptions

log = logging.getLogger(__name__)
UPDATE_INTERVAL_S = 0.033
LIVE_FIGURES_INTERVAL_S = 0.5


class Session:
    """Per-browser-session state: the reply in flight, the message being answered, past figures."""

    def __init__(self) -> None:
        self.reply: Reply | None = None
        self.pending: str | None = None
        self.generations: dict[int, dict[str, Any]] = {}  # chat index -> {"text", "generation"}
        self.folder: Path | None = None  # where this session's saved chats are written

    def __deepcopy__(self, memo: dict) -> Session:  # gr.State copies its initial value per session
        return Session()

    @property
    def busy(self) -> bool:
        return self.reply is not None or self.pending is not None

    def generation_at(self, index: int, text: str) -> dict[str, Any] | None:
        """The figures recorded for the reply at `index`, if that reply is still the same text."""
        entry = self.generations.get(index)
        return entry["generation"] if entry and entry["text"] == text else None


def options_from(max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed,
                 prompt_lookup: bool = True) -> GenerationOptions:
    return GenerationOptions.parse(
        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
        repetition_penalty=repetition_penalty, seed=None if seed in (None, "") else seed,
        prompt_lookup=bool(prompt_lookup),
    )


def as_gradio_error(err: Phi3ovError) -> gr.Error:
    # Expected traffic, not a bug: one line, no traceback, and never the message's text.
    log.info("Refused in the chat: %s (%s)", type(err).__name__, err.code)
    return gr.Error(str(err), title=type(err).__name__.replace("Error", "") or "Error", print_exception=False)


def busy_status(text: str) -> str:
    return f'<span class="phi3ov-busy">{html.escape(text)}</span>'


def stream_reply(engine: Engine, history: list[dict], system_prompt: str, options: GenerationOptions,
                 session: Session | None = None, metrics: Any = None) -> Iterator[tuple[list[dict], str]]:
    """Stream a reply to the last (user) message of `history`: yields (history, status).

    `history` is never mutated; each yield is a new list with the growing reply at its end.
    """
    messages = conversation.build(system_prompt, history)
    try:
        reply = engine.chat(messages, options)
    except Phi3ovError as err:
        raise as_gradio_error(err) from None
    if session is not None:
        session.reply = reply
    notice = reply.fitted.notice
    if notice:
        gr.Warning(notice)
    yield history, busy_status(f"Processing prompt ({reply.fitted.prompt_tokens} tokens)…")
    answer, shown_at, live = "", 0.0, LiveFigures(engine, reply)
    try:
        for chunk in reply:
            answer += chunk
            # Each update re-sends the chat, so send at most ~30 a second: the text still flows,
            # and the server's work per update does not take CPU from generation.
            if time.monotonic() - shown_at >= UPDATE_INTERVAL_S:
                shown_at = time.monotonic()
                yield [*history, {"role": "assistant", "content": answer}], busy_status(live.update(answer))
    except Phi3ovError as err:
        raise as_gradio_error(err) from None
    finally:
        if session is not None and session.reply is reply:
            session.reply = None
        if metrics is not None:
            metrics.reply_done(reply)
    final = [*history, {"role": "assistant", "content": answer}] if answer else history
    if session is not None and answer:
        session.generations[len(history)] = {"text": answer, "generation": generation_record(reply)}
    yield final, figures(reply)


class LiveFigures:
    """The status line while a reply streams: first token, tokens so far and speed, twice a second."""

    def __init__(self, engine: Engine, reply: Reply):
        self.engine, self.reply = engine, reply
        self.first = time.monotonic()  # replaced by the first update, which comes with the first text
        self.counted_at, self.text = 0.0, "Generating…"

    def update(self, answer: str) -> str:
        now = time.monotonic()
        if not self.counted_at:
            self.first = now
        if now - self.counted_at >= LIVE_FIGURES_INTERVAL_S:
            self.counted_at = now
            tokens = self.engine.count_text(answer)
            parts = ["Generating…", f"first token {self.reply.client_ttft_ms or 0:.0f} ms", f"{tokens} tokens"]
            if now > self.first and tokens > 1:
                parts.append(f"{(tokens - 1) / (now - self.first):.1f} tokens/s")
            self.text = " · ".join(parts)
        return self.text


def without_reply(history: list[dict]) -> list[dict]:
    """A copy of the history without its trailing assistant message(s)."""
    history = list(history)
    while history and history[-1]["role"] == "assistant":
        history.pop()
    return history


def generation_record(reply: Reply) -> dict[str, Any]:
    """What a saved chat keeps about one reply, so it can be generated again."""
    stats = reply.stats
    return {
        "seed": stats.seed if stats else None,
        "options": reply.options.as_dict(),
        "stats": stats.as_dict() if stats else None,
        "finish_reason": reply.finish_reason,
        "trimmed_messages": reply.fitted.dropped,
    }


def figures(reply: Reply) -> str:
    parts = []
    if reply.stats:
        parts.append(reply.stats.summary())
        if reply.stats.seed is not None:
            parts.append(f"seed {reply.stats.seed}")
    if reply.finish_reason == "timeout":
        parts.append(f"stopped after {reply.timeout_s:g} s (the server's --request-timeout)")
    elif reply.finish_reason == "cancelled":
        parts.append("stopped")
    elif reply.finish_reason == "length":
        parts.append("reached max new tokens")
    text = " · ".join(parts)
    if reply.fitted.notice:
        text += f"\n\n⚠️ {reply.fitted.notice}"
    return text
