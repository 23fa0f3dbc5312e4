"""The Gradio Blocks chat. The one module that imports gradio.

Each browser session owns its conversation: it lives in the Chatbot's value (sent by the
browser with every event) and a per-session `Session` state for the reply in flight. Nothing
about a conversation is kept in module globals or in the engine.

A message's way: Enter/Send -> `accept` (queue=False: the message shows at once; empty or
over-long messages stop here with the text kept) -> `respond` streams the reply into the
Chatbot and puts the figures under it. Stop sets the reply's stop flag: the backend ends
within a token, the partial reply stays.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from . import conversation
from .engine import Engine, Reply
from .errors import Phi3ovError
from .settings import BOUNDS, EXAMPLES, SEED_MAX, GenerationOptions, ServerSettings

log = logging.getLogger(__name__)
ASSETS = Path(__file__).resolve().parent.parent / "assets"
PLACEHOLDER = "Type a message (Enter sends, Shift+Enter adds a line)"


class Session:
    """Per-browser-session state: the reply in flight and the message being answered."""

    def __init__(self) -> None:
        self.reply: Reply | None = None
        self.pending: str | None = None

    def __deepcopy__(self, memo: dict) -> Session:  # gr.State copies its initial value per session
        return Session()


def options_from(max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed) -> GenerationOptions:
    return GenerationOptions.parse(
        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
        repetition_penalty=repetition_penalty, seed=None if seed in (None, "") else seed,
    )


def as_gradio_error(err: Phi3ovError) -> gr.Error:
    return gr.Error(str(err), title=type(err).__name__.replace("Error", "") or "Error", print_exception=False)


def stream_reply(engine: Engine, history: list[dict], system_prompt: str, options: GenerationOptions,
                 session: Session | None = None) -> Iterator[tuple[list[dict], str]]:
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
    waiting = f"⏳ Processing prompt ({reply.fitted.prompt_tokens} tokens)…"
    yield history, waiting
    answer = ""
    try:
        for chunk in reply:
            answer += chunk
            yield [*history, {"role": "assistant", "content": answer}], "✍️ Generating…"
    except Phi3ovError as err:
        raise as_gradio_error(err) from None
    finally:
        if session is not None and session.reply is reply:
            session.reply = None
    final = [*history, {"role": "assistant", "content": answer}] if answer else history
    yield final, figures(reply)


def figures(reply: Reply) -> str:
    parts = []
    if reply.stats:
        parts.append(reply.stats.summary())
        if reply.stats.seed is not None:
            parts.append(f"seed {reply.stats.seed}")
    if reply.finish_reason == "cancelled":
        parts.append("stopped")
    elif reply.finish_reason == "length":
        parts.append("reached max new tokens")
    text = " · ".join(parts)
    if reply.fitted.notice:
        text += f"\n\n⚠️ {reply.fitted.notice}"
    return text


def build_ui(engine: Engine, settings: ServerSettings | None = None) -> gr.Blocks:
    settings = settings or ServerSettings()
    concurrency = getattr(engine, "max_concurrency", 1)

    with gr.Blocks(title="phi3ov chat", fill_height=True) as demo:
        session = gr.State(Session())
        gr.HTML(
            f'<div class="phi3ov-header"><h1>phi3ov</h1>'
            f'<span class="phi3ov-model">{_escape(engine.name)} · {_escape(engine.device)} · '
            f"{engine.context_length} tokens of context</span></div>"
        )
        chatbot = gr.Chatbot(
            label="Chat", show_label=False, height="60vh", buttons=["copy", "copy_all"],
            feedback_options=None, elem_id="chatbot",
            examples=[{"text": e} for e in EXAMPLES], placeholder="Ask anything. Replies stream as they are generated.",
            latex_delimiters=[{"left": "$$", "right": "$$", "display": True}],
        )
        status = gr.Markdown("", elem_id="status")
        with gr.Row(equal_height=True):
            textbox = gr.Textbox(
                placeholder=PLACEHOLDER, show_label=False, lines=1, max_lines=8, scale=6,
                autofocus=True, elem_id="message", container=False,
            )
            send = gr.Button("Send", variant="primary", scale=1, min_width=80, elem_id="send")
            stop = gr.Button("Stop", variant="stop", scale=1, min_width=80, elem_id="stop")
        with gr.Row():
            regenerate = gr.Button("🔄 Regenerate", size="sm", elem_id="regenerate")
            undo = gr.Button("↩️ Undo", size="sm", elem_id="undo")
            clear = gr.Button("🗑️ Clear", size="sm", elem_id="clear")
        with gr.Accordion("Settings", open=False, elem_id="settings"):
            system_prompt = gr.Textbox(settings.system_prompt, label="System prompt", lines=2, elem_id="system-prompt")
            sliders = [
                gr.Slider(b.minimum, b.maximum, value=b.default, step=b.step, label=b.label, info=b.info,
                          elem_id=name.replace("_", "-"))
                for name, b in BOUNDS.items()
            ]
            seed = gr.Number(None, label="Seed", info=f"0–{SEED_MAX}; empty for a new random seed each reply "
                             "(the figures show the seed used).", precision=0, minimum=0, maximum=SEED_MAX,
                             elem_id="seed")
        generation_inputs = [system_prompt, *sliders, seed]

        def accept(text: str, history: list[dict], system: str, *values: Any):
            """Show the message at once, or refuse it (empty, too long) with the text kept."""
            *numbers, sess = values
            sess.pending = None
            text = text or ""
            if not text.strip():
                gr.Warning("Type a message first.")
                return gr.update(), history
            try:
                engine.prepare(conversation.build(system, history, text), options_from(*numbers))
            except Phi3ovError as err:
                raise as_gradio_error(err) from None
            sess.pending = text
            return "", [*history, {"role": "user", "content": text}]

        def respond(history: list[dict], system: str, *values: Any):
            *numbers, sess = values
            if sess.pending is None:  # nothing was accepted (empty message)
                return
            sess.pending = None
            try:
                options = options_from(*numbers)
            except Phi3ovError as err:
                raise as_gradio_error(err) from None
            yield from stream_reply(engine, history, system, options, sess)

        def stop_reply(sess: Session):
            if sess.reply is not None:
                sess.reply.stop()

        def rewind(history: list[dict], sess: Session):
            """Drop the last reply so it can be generated again."""
            history = list(history)
            while history and history[-1]["role"] == "assistant":
                history.pop()
            if not history:
                sess.pending = None
                gr.Warning("There is no message to answer again.")
                return history
            sess.pending = conversation.text_of(history[-1]["content"])
            return history

        def undo_last(history: list[dict], sess: Session):
            history = list(history)
            while history and history[-1]["role"] == "assistant":
                history.pop()
            text = conversation.text_of(history.pop()["content"]) if history else ""
            return history, text, ""

        def on_example(evt: gr.SelectData, history: list[dict], sess: Session):
            text = evt.value["text"] if isinstance(evt.value, dict) else str(evt.value)
            sess.pending = text
            return [*history, {"role": "user", "content": text}]

        respond_io = dict(inputs=[chatbot, *generation_inputs, session], outputs=[chatbot, status],
                          concurrency_limit=concurrency, concurrency_id="generate", api_visibility="private")
        for trigger in (textbox.submit, send.click):
            (
                trigger(accept, [textbox, chatbot, *generation_inputs, session], [textbox, chatbot], queue=False,
                        api_visibility="private")
                .success(respond, **respond_io)
            )
        chatbot.example_select(on_example, [chatbot, session], [chatbot], queue=False, api_visibility="private").then(
            respond, **respond_io
        )
        regenerate.click(rewind, [chatbot, session], [chatbot], queue=False, api_visibility="private").then(
            respond, **respond_io
        )
        stop.click(stop_reply, [session], None, queue=False, api_visibility="private")
        undo.click(undo_last, [chatbot, session], [chatbot, textbox, status], queue=False, api_visibility="private")
        clear.click(lambda: ([], "", ""), None, [chatbot, textbox, status], queue=False, api_visibility="private")

        def chat(message: str, history: list[dict], system_prompt: str = settings.system_prompt,
                 max_new_tokens: float = BOUNDS["max_new_tokens"].default,
                 temperature: float = BOUNDS["temperature"].default, top_p: float = BOUNDS["top_p"].default,
                 top_k: float = BOUNDS["top_k"].default,
                 repetition_penalty: float = BOUNDS["repetition_penalty"].default,
                 seed: int | None = None) -> Iterator[list[dict]]:
            """Send `message` after `history` and stream the updated history (for gradio_client)."""
            text = conversation.text_of(message) if not isinstance(message, str) else message
            if not text.strip():
                raise gr.Error("The message is empty: type a message first.", print_exception=False)
            try:
                options = GenerationOptions.parse(
                    max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                    repetition_penalty=repetition_penalty, seed=seed)
            except Phi3ovError as err:
                raise as_gradio_error(err) from None
            history = [*(history or []), {"role": "user", "content": text}]
            for value, _status in stream_reply(engine, history, system_prompt, options):
                yield value

        gr.api(chat, api_name="chat", concurrency_limit=concurrency, concurrency_id="generate")
    return demo


def _escape(text: str) -> str:
    import html

    return html.escape(str(text))


def launch_kwargs() -> dict[str, Any]:
    """Theme and css for `launch()` (Gradio 6 takes them there)."""
    css = (ASSETS / "style.css").read_text() if (ASSETS / "style.css").exists() else None
    return {"theme": gr.themes.Soft(primary_hue="blue"), "css": css}
