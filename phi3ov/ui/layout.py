"""The Gradio Blocks chat. The one module that imports gradio.

Each browser session owns its conversation: it lives in the Chatbot's value (sent by the
browser with every event) and a per-session `Session` state for the reply in flight and the
figures of past replies. Nothing about a conversation is kept in module globals or in the engine.

A message's way: Enter/Send -> `accept` (queue=False: the message shows at once; empty or
over-long messages stop here with the text kept) -> `respond` streams the reply into the
Chatbot and puts the figures under it. Stop sets the reply's stop flag: the backend ends
within a token, the partial reply stays. Saving and loading go through transcript.py.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from .. import conversation, transcript
from ..engine import Engine
from ..errors import Phi3ovError
from ..settings import BOUNDS, EXAMPLES, SEED_MAX, GenerationOptions, ServerSettings
from .chat import Session, as_gradio_error, options_from, stream_reply, without_reply

log = logging.getLogger(__name__)
ASSETS = Path(__file__).resolve().parents[2] / "assets"
PLACEHOLDER = "Type a message (Enter sends, Shift+Enter adds a line)"
PRIVATE = dict(api_visibility="private")


def build_ui(engine: Engine, settings: ServerSettings | None = None, metrics: Any = None) -> gr.Blocks:
    settings = settings or ServerSettings()
    concurrency = getattr(engine, "max_concurrency", 1)
    model_info = {"name": engine.name, "device": engine.device, "context_length": engine.context_length}

    with gr.Blocks(title="phi3ov chat", fill_height=True) as demo:
        session = gr.State(Session())
        gr.HTML(header_html(engine), elem_id="header")
        chatbot = gr.Chatbot(
            label="Chat", show_label=False, height="60vh", buttons=["copy", "copy_all"],
            feedback_options=None, elem_id="chatbot",
            examples=[{"text": e} for e in EXAMPLES], placeholder="Ask anything. Replies stream as they are generated.",
            latex_delimiters=[{"left": "$$", "right": "$$", "display": True}],
        )
        status = gr.Markdown("", elem_id="status")
        with gr.Row(equal_height=True, elem_id="composer"):
            textbox = gr.Textbox(
                placeholder=PLACEHOLDER, show_label=False, lines=1, max_lines=8, scale=6,
                autofocus=True, elem_id="message", container=False,
            )
            send = gr.Button("Send", variant="primary", scale=0, min_width=84, elem_id="send")
            stop = gr.Button("Stop", variant="stop", scale=0, min_width=84, elem_id="stop", visible=False)
        with gr.Row(elem_id="actions"):
            regenerate = gr.Button("↻ Regenerate", size="sm", elem_id="regenerate")
            undo = gr.Button("↶ Undo", size="sm", elem_id="undo")
            clear = gr.Button("✕ Clear", size="sm", elem_id="clear")
            save = gr.Button("⤓ Save chat", size="sm", elem_id="save")
            load = gr.UploadButton("⤒ Load chat", size="sm", file_types=[".json"], file_count="single",
                                   type="binary", elem_id="load")
        with gr.Row(elem_id="downloads", visible=False) as downloads:
            save_md = gr.DownloadButton("Markdown", size="sm", elem_id="download-md")
            save_json = gr.DownloadButton("JSON (reload or reproduce)", size="sm", elem_id="download-json")
        with gr.Accordion("Settings", open=False, elem_id="settings"):
            system_prompt = gr.Textbox(settings.system_prompt, label="System prompt", lines=2, elem_id="system-prompt")
            sliders = [
                gr.Slider(b.minimum, b.maximum, value=b.default, step=b.step, label=b.label, info=b.info,
                          elem_id=name.replace("_", "-"))
                for name, b in BOUNDS.items()
            ]
            # A textbox, not gr.Number: an empty Number comes back from the browser as 0, a fixed seed.
            seed = gr.Textbox("", label="Seed", placeholder="random", max_lines=1, elem_id="seed",
                              info=f"A whole number from 0 to {SEED_MAX} repeats a reply; empty: a new random "
                              "seed each reply (the figures show the seed used).")
            lookup = gr.Checkbox(
                engine.prompt_lookup, label="Prompt lookup", elem_id="prompt-lookup", interactive=engine.prompt_lookup,
                info="Proposes up to 5 tokens copied from the chat and checks them in one step: much faster when "
                "the reply repeats the input (editing code, summaries). Off: at most one token a step. "
                + ("" if engine.prompt_lookup else "Start the server with --prompt-lookup to use it."))
        generation_inputs = [system_prompt, *sliders, seed, lookup]
        working, idle = (gr.update(visible=False), gr.update(visible=True)), (gr.update(visible=True),
                                                                               gr.update(visible=False))

        def refuse_while_busy(sess: Session, what: str) -> None:
            if sess.busy:
                raise gr.Error(f"A reply is still being written: press Stop, then {what}.", title="Busy",
                               print_exception=False)

        def check_message(text: str, history: list[dict], system: str, *values: Any) -> None:
            """Refuse a message that cannot be sent (busy, too long). No outputs, so nothing is lost."""
            *numbers, sess = values
            refuse_while_busy(sess, "send again")
            if (text or "").strip():
                try:
                    messages = conversation.build(system, history, text)
                    conversation.check_size(messages, settings.max_messages, settings.max_message_chars)
                    engine.prepare(messages, options_from(*numbers))
                except Phi3ovError as err:
                    raise as_gradio_error(err) from None

        def accept(text: str, history: list[dict], sess: Session):
            """Show the message at once (an empty one is refused with a hint)."""
            if not (text or "").strip():
                gr.Warning("Type a message first.")
                return gr.update(), history, *idle
            sess.pending = text
            return "", [*history, {"role": "user", "content": text}], *working

        def respond(history: list[dict], system: str, *values: Any):
            *numbers, sess = values
            if sess.pending is None:  # nothing was accepted (empty message), or stopped while waiting
                return
            sess.pending = None
            try:
                options = options_from(*numbers)
            except Phi3ovError as err:
                raise as_gradio_error(err) from None
            yield from stream_reply(engine, history, system, options, sess, metrics)

        def stop_reply(sess: Session):
            sess.pending = None  # a reply still waiting in line never starts
            if sess.reply is not None:
                sess.reply.stop()

        def rewind(history: list[dict], sess: Session):
            """Drop the last reply so it can be generated again."""
            history = without_reply(history)
            if not history:
                gr.Warning("There is no message to answer again.")
                return history, *idle
            sess.pending = conversation.text_of(history[-1]["content"])
            return history, *working

        def undo_last(history: list[dict], sess: Session):
            history = without_reply(history)
            text = conversation.text_of(history.pop()["content"]) if history else ""
            return history, text, ""

        def clear_chat(sess: Session):
            sess.generations.clear()
            return [], "", "", gr.update(visible=False)

        def on_example(evt: gr.SelectData, history: list[dict], sess: Session):
            if sess.busy:  # examples show only on an empty chat, so this is a rare race
                gr.Warning("A reply is still being written: press Stop first.")
                return gr.update(), gr.update(), gr.update()
            text = evt.value["text"] if isinstance(evt.value, dict) else str(evt.value)
            sess.pending = text
            return [*history, {"role": "user", "content": text}], *working

        def save_chat(history: list[dict], system: str, *values: Any):
            *numbers, sess = values
            if not history:
                raise gr.Error("The chat is empty: there is nothing to save yet.", title="Nothing to save",
                               print_exception=False)
            messages = []
            for i, m in enumerate(conversation.normalize(history)):
                entry: dict[str, Any] = dict(m)
                generation = sess.generation_at(i, m["content"]) if m["role"] == "assistant" else None
                if generation:
                    entry["generation"] = generation
                messages.append(entry)
            try:
                chat_settings = options_from(*numbers).as_dict()
            except Phi3ovError as err:
                raise as_gradio_error(err) from None
            saved = transcript.Transcript(messages, system or "", chat_settings, model_info)
            if sess.folder is None:
                sess.folder = Path(tempfile.mkdtemp(prefix="phi3ov-chat-"))
            shutil.rmtree(sess.folder, ignore_errors=True)
            md, js = transcript.save(saved, sess.folder, stem=f"phi3ov-chat-{time.strftime('%Y%m%d-%H%M%S')}")
            return gr.update(visible=True), str(md), str(js)

        def read_chat(data: bytes, sess: Session) -> transcript.Transcript:
            """Check an uploaded file; a bad one is refused here, before anything on screen changes."""
            refuse_while_busy(sess, "load a chat")
            try:
                return transcript.from_json(data or b"")
            except Phi3ovError as err:
                raise gr.Error(f"Could not load this chat: {err} The current chat is unchanged.",
                               title="Not a saved chat", print_exception=False) from None

        def load_chat(loaded: transcript.Transcript, sess: Session):
            sess.generations = {i: {"text": loaded.messages[i]["content"], "generation": g}
                                for i, g in loaded.generations.items()}
            values = []  # the saved settings where they are valid; the others stay as they are
            for name in BOUNDS:
                try:
                    values.append(getattr(GenerationOptions.parse(clamp=True, **{name: loaded.settings[name]}), name))
                except (KeyError, Phi3ovError):
                    values.append(gr.update())
            try:
                value = GenerationOptions.parse(seed=loaded.settings.get("seed")).seed
                values.append("" if value is None else str(value))
            except Phi3ovError:
                values.append(gr.update())
            note = f"Loaded a chat of {len(loaded.messages)} messages"
            if loaded.model.get("name"):
                note += f" with {loaded.model['name']}"
            gr.Info(note + ".")
            return (loaded.history, loaded.system_prompt or settings.system_prompt, *values,
                    note + (f", saved {loaded.saved_at.replace('T', ' ').replace('+00:00', ' UTC')}." if loaded.saved_at else "."))

        respond_io = dict(inputs=[chatbot, *generation_inputs, session], outputs=[chatbot, status],
                          concurrency_limit=concurrency, concurrency_id="generate", **PRIVATE)
        to_idle = dict(fn=lambda: idle, inputs=None, outputs=[send, stop], queue=False, **PRIVATE)
        quick = dict(queue=False, **PRIVATE)
        # Each action first runs a check with no outputs: a refusal shows a toast and changes nothing.
        # Checks go through the queue: an error raised outside it reaches the page as a bare HTTP 500.
        check = dict(concurrency_limit=None, **PRIVATE)
        for trigger in (textbox.submit, send.click):
            (trigger(check_message, [textbox, chatbot, *generation_inputs, session], None, **check)
             .success(accept, [textbox, chatbot, session], [textbox, chatbot, send, stop], **quick)
             .success(respond, **respond_io).then(**to_idle))
        chatbot.example_select(on_example, [chatbot, session], [chatbot, send, stop], **quick).success(
            respond, **respond_io).then(**to_idle)
        (regenerate.click(lambda s: refuse_while_busy(s, "regenerate"), [session], None, **check)
         .success(rewind, [chatbot, session], [chatbot, send, stop], **quick)
         .success(respond, **respond_io).then(**to_idle))
        stop.click(stop_reply, [session], None, **quick)
        undo.click(lambda s: refuse_while_busy(s, "undo"), [session], None, **check).success(
            undo_last, [chatbot, session], [chatbot, textbox, status], **quick)
        clear.click(lambda s: refuse_while_busy(s, "clear"), [session], None, **check).success(
            clear_chat, [session], [chatbot, textbox, status, downloads], **quick)
        save.click(save_chat, [chatbot, *generation_inputs, session], [downloads, save_md, save_json], **PRIVATE)
        uploaded = gr.State()
        load.upload(read_chat, [load, session], [uploaded], **PRIVATE).success(
            load_chat, [uploaded, session], [chatbot, system_prompt, *sliders, seed, status], **PRIVATE)

        def chat(message: str, history: list[dict], system_prompt: str = settings.system_prompt,
                 max_new_tokens: float = BOUNDS["max_new_tokens"].default,
                 temperature: float = BOUNDS["temperature"].default, top_p: float = BOUNDS["top_p"].default,
                 top_k: float = BOUNDS["top_k"].default,
                 repetition_penalty: float = BOUNDS["repetition_penalty"].default,
                 seed: int | None = None, ignore_eos: bool = False) -> Iterator[list[dict]]:
            """Send `message` after `history` and stream the updated history (for gradio_client).

            `ignore_eos` generates exactly max_new_tokens tokens (for benchmarks)."""
            try:
                text = conversation.text_of(message)
                options = options_from(max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed)
                if ignore_eos is True:
                    options = dataclasses.replace(options, ignore_eos=True)
            except Phi3ovError as err:
                raise as_gradio_error(err) from None
            if not text.strip():
                raise gr.Error("The message is empty: type a message first.", print_exception=False)
            history = [*(history or []), {"role": "user", "content": text}]
            try:
                conversation.check_size(conversation.build(system_prompt, history), settings.max_messages,
                                        settings.max_message_chars)
            except Phi3ovError as err:
                raise as_gradio_error(err) from None
            for value, _status in stream_reply(engine, history, system_prompt, options, metrics=metrics):
                yield value

        gr.api(chat, api_name="chat", concurrency_limit=concurrency, concurrency_id="generate")
    return demo


def header_html(engine: Engine) -> str:
    logo = ASSETS / "logo.svg"
    img = ""
    if logo.exists():
        import base64

        img = f'<img alt="" src="data:image/svg+xml;base64,{base64.b64encode(logo.read_bytes()).decode()}">'
    return (
        f'<div class="phi3ov-header">{img}<div><h1>phi3ov</h1>'
        f'<span class="phi3ov-model">{html.escape(engine.name)} · {html.escape(engine.device)} · '
        f"{engine.context_length} tokens of context</span></div></div>"
    )


def launch_kwargs() -> dict[str, Any]:
    """Theme, css and favicon for `launch()` (Gradio 6 takes them there)."""
    css = (ASSETS / "style.css").read_text() if (ASSETS / "style.css").exists() else None
    kwargs: dict[str, Any] = {"theme": gr.themes.Soft(primary_hue="blue"), "css": css}
    if (ASSETS / "head.html").exists():
        kwargs["head"] = (ASSETS / "head.html").read_text()
    if (ASSETS / "logo.svg").exists():
        kwargs["favicon_path"] = str(ASSETS / "logo.svg")
    return kwargs
