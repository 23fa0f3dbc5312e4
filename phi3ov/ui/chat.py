"""One reply in the chat: stream it into the Chatbot, its live and final figures, and what a saved
chat keeps about it."""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from ..engine import Engine, Reply, decode_speed
from ..errors import BadOptions, Phi3ovError
from ..options import GenerationOptions
from ..structured import ANY_JSON_OBJECT, Constraint
from .store import Chat, Store, new_chat

log = logging.getLogger(__name__)
LIVE_FIGURES_INTERVAL_S = 0.5


class Session:
    """Per-browser-session state: the open conversation, the list it belongs to, the reply in flight."""

    def __init__(self) -> None:
        self.store = Store()
        self.chat: Chat = new_chat()  # the open conversation (listed once it has a message)
        self.reply: Reply | None = None
        self.pending: str | None = None  # the message accepted, its reply not started yet
        self.checked: tuple[list, GenerationOptions, Any] | None = None  # what check_message fitted, for the reply
        self.attached: dict[str, Any] | None = None  # what check_message read of the message's files, for accept
        self.discard = False  # "Stop and discard" was pressed for the reply in flight
        self.cut: dict[str, Any] | None = None  # Continue: the cut reply as it was, until its continuation ends
        self.variants: list[dict[str, Any]] = []  # earlier replies to the message being answered again
        self.deleted: Chat | None = None  # the last deleted conversation, until Undo or the next action
        self.folder: Path | None = None  # where this session's saved chats are written

    def __deepcopy__(self, memo: dict) -> Session:  # gr.State copies its initial value per session
        return Session()

    @property
    def busy(self) -> bool:
        return self.reply is not None or self.pending is not None


def options_from(*, max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed,
                 prompt_lookup: bool = True, as_json: bool = False, schema: str = "") -> GenerationOptions:
    """The options from the settings panel's values, by name (clamped to the sliders' ranges where needed)."""
    return GenerationOptions.parse(
        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
        repetition_penalty=repetition_penalty, seed=None if seed in (None, "") else seed,
        prompt_lookup=bool(prompt_lookup), constraint=json_constraint(schema) if as_json is True else None,
    )


def json_constraint(schema: str | None) -> Constraint:
    """"Reply as JSON": any JSON object, or one that follows the schema typed in the settings."""
    text = (schema or "").strip()
    if not text:
        return Constraint("json_schema", ANY_JSON_OBJECT)
    try:
        value = json.loads(text)
    except ValueError as err:
        raise BadOptions(f"The JSON schema is not valid JSON ({err.msg}, line {err.lineno}).",
                         "Fix it in Settings, or empty the box for any JSON object.") from None
    if not isinstance(value, dict):
        raise BadOptions("The JSON schema must be a JSON object, such as "
                         '{"type": "object", "properties": {"name": {"type": "string"}}}.')
    return Constraint("json_schema", json.dumps(value))


def as_gradio_error(err: Phi3ovError) -> gr.Error:
    # Expected traffic, not a bug: one line, no traceback, and never the message's text.
    log.info("Refused in the chat: %s (%s)", type(err).__name__, err.code)
    return gr.Error(str(err), title=type(err).__name__.replace("Error", "") or "Error", print_exception=False)


def busy_status(text: str) -> str:
    return f'<span class="phi3ov-busy">{html.escape(text)}</span>'


def stream_reply(engine: Engine, messages: list[dict], options: GenerationOptions, session: Session | None = None,
                 metrics: Any = None, continuation: bool = False, fitted: Any = None,
                 interval: float = 0.0) -> Iterator[tuple[str, str, Reply]]:
    """Stream a reply to `messages` (system prompt first, the user's message last), or with `continuation`
    more of the last message (a reply cut at the length limit). `interval` (seconds): the text that comes
    within it after an update goes in the next one (each update re-sends the chat; see Reply.pieces).

    Yields (text so far, status line, reply); the last yield has the whole text and the figures. A continued
    reply's text starts with what it continues (`reply.prefix`).
    """
    try:
        reply = engine.continue_reply(messages, options) if continuation else engine.chat(messages, options, fitted)
    except Phi3ovError as err:
        raise as_gradio_error(err) from None
    if session is not None:
        session.reply = reply
    notice = reply.fitted.notice
    if notice:
        gr.Warning(notice)
    answer, live = reply.prefix, LiveFigures(engine, reply)
    try:
        pieces = reply.pieces(interval)  # the prompt is read while the status line below is sent
        yield "", busy_status(f"Processing prompt ({reply.fitted.prompt_tokens} tokens)…"), reply
        for piece in pieces:
            if piece.text:
                answer += piece.text
                yield answer, busy_status(live.update(answer)), reply
    except Phi3ovError as err:
        raise as_gradio_error(err) from None
    finally:
        reply.stop()  # left early (a closed page): the generation stops too; after the end it changes nothing
        if session is not None and session.reply is reply:
            session.reply = None
        if metrics is not None:
            metrics.reply_done(reply)
    yield answer, figures(reply), reply


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
            # The backend's count where it keeps one: a tokenizer call is an inference that can wait for a step
            tokens = self.reply.tokens_so_far or self.engine.count_text(answer[len(self.reply.prefix):])
            parts = ["Generating…", f"first token {self.reply.client_ttft_ms or 0:.0f} ms", f"{tokens} tokens"]
            if speed := decode_speed(tokens, self.first, now):
                parts.append(f"{speed:.1f} tokens/s")
            self.text = " · ".join(parts)
        return self.text


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
        parts.append("stopped at the length limit: Continue writes more")
    text = " · ".join(parts)
    if reply.fitted.notice:
        text += f"\n\n⚠️ {reply.fitted.notice}"
    return text
