"""The chat page: a side panel of conversations, the Chatbot, the composer, the settings.

Each browser session owns its conversations: the list lives in the browser (gr.BrowserState)
and a per-session `Session` state holds the open one and the reply in flight. Nothing about a
conversation is kept in module globals or in the engine.

A message's way: Enter/Send -> a check with no outputs (busy, too long: refused, nothing
changes) -> `accept` (queue=False: the message shows at once) -> `respond` streams the reply
into the Chatbot and puts the figures under it. Stop ends the reply within a token and keeps
what was written; Stop and discard drops it and puts the message back in the box.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr

from .. import conversation, documents
from ..engine import Engine
from ..errors import Phi3ovError
from ..options import BOUNDS, EXAMPLES, SEED_MAX
from ..settings import ServerSettings
from .actions import Actions
from .chat import Session, as_gradio_error, options_from, stream_reply
from .i18n import t
from .page import header_html
from .store import STORAGE_KEY, browser_key

log = logging.getLogger(__name__)
PRIVATE = dict(api_visibility="private")


class Parts:
    """The page's components, by name (handlers return {component: value})."""


def build_ui(engine: Engine, settings: ServerSettings | None = None, metrics: Any = None) -> gr.Blocks:
    settings = settings or ServerSettings()
    concurrency = engine.capabilities.max_concurrency
    c = Parts()

    with gr.Blocks(title="phi3ov chat", fill_height=True) as demo:
        c.session = gr.State(Session())
        c.store = gr.BrowserState(None, storage_key=STORAGE_KEY, secret=browser_key(settings.cache_dir))
        with gr.Sidebar(label=t("chats"), open=True, elem_id="sidebar", width=280):
            c.new = gr.Button(t("new_chat"), variant="secondary", size="sm", elem_id="new-chat")
            c.chats = gr.Radio([], value=None, show_label=False, container=False, elem_id="chats")
            c.title = gr.Textbox(label=t("title"), max_lines=1, elem_id="chat-title", info=t("title_info"))
            with gr.Row():
                c.delete = gr.Button(t("delete"), size="sm", variant="stop", elem_id="delete-chat")
                c.undo_delete = gr.Button(t("undo_delete"), size="sm", visible=False, elem_id="undo-delete")
        with gr.Row(elem_id="header-row", equal_height=True):
            c.header = gr.HTML(header_html(engine), elem_id="header")
            c.model = gr.Dropdown(engine.model_names(), value=engine.name, label=t("model"), elem_id="model",
                                  scale=0, min_width=240, visible=engine.capabilities.can_switch, interactive=True)
        c.chatbot = gr.Chatbot(
            label="Chat", show_label=False, height="60vh", buttons=["copy", "copy_all"],
            feedback_options=None, elem_id="chatbot", editable="user",
            examples=[{"text": e} for e in EXAMPLES], placeholder=t("chat_placeholder"),
            latex_delimiters=[{"left": "$$", "right": "$$", "display": True}],
        )
        with gr.Row(elem_id="variant-nav", visible=False) as c.variant_nav:
            c.older = gr.Button(t("older_reply"), size="sm", scale=0, min_width=36, elem_id="older-reply")
            c.variant_label = gr.Markdown("", elem_id="variant-label")
            c.newer = gr.Button(t("newer_reply"), size="sm", scale=0, min_width=36, elem_id="newer-reply")
        c.status = gr.Markdown("", elem_id="status")
        with gr.Row(equal_height=True, elem_id="composer"):
            # The paperclip and drag-and-drop attach files; their chips show in the box until it is sent.
            c.textbox = gr.MultimodalTextbox(
                placeholder=t("placeholder"), show_label=False, lines=1, max_lines=8, scale=6,
                autofocus=True, elem_id="message", container=False, sources=["upload"], file_count="multiple",
                file_types=list(documents.KINDS), submit_btn=False,
            )
            c.send = gr.Button(t("send"), variant="primary", scale=0, min_width=84, elem_id="send")
            c.stop = gr.Button(t("stop"), variant="stop", scale=0, min_width=84, elem_id="stop", visible=False)
            c.discard = gr.Button(t("stop_discard"), scale=0, min_width=84, elem_id="stop-discard", visible=False)
        with gr.Row(elem_id="actions"):
            c.regenerate = gr.Button(t("regenerate"), size="sm", elem_id="regenerate")
            c.cont = gr.Button(t("continue"), size="sm", elem_id="continue", visible=False)
            c.undo = gr.Button(t("undo"), size="sm", elem_id="undo")
            c.clear = gr.Button(t("clear"), size="sm", elem_id="clear")
            c.save = gr.Button(t("save"), size="sm", elem_id="save")
            c.load = gr.UploadButton(t("load"), size="sm", file_types=[".json"], file_count="single",
                                     type="binary", elem_id="load")
        with gr.Row(elem_id="downloads", visible=False) as c.downloads:
            c.save_md = gr.DownloadButton(t("download_md"), size="sm", elem_id="download-md")
            c.save_json = gr.DownloadButton(t("download_json"), size="sm", elem_id="download-json")
        with gr.Accordion(t("settings"), open=False, elem_id="settings"):
            c.system_prompt = gr.Textbox(settings.system_prompt, label=t("system_prompt"), lines=2,
                                         elem_id="system-prompt")
            c.sliders = [
                gr.Slider(b.minimum, b.maximum, value=b.default, step=b.step, label=t(name), info=b.info,
                          elem_id=name.replace("_", "-"))
                for name, b in BOUNDS.items()
            ]
            # A textbox, not gr.Number: an empty Number comes back from the browser as 0, a fixed seed.
            c.seed = gr.Textbox("", label=t("seed"), placeholder=t("seed_placeholder"), max_lines=1, elem_id="seed",
                                info=f"A whole number from 0 to {SEED_MAX} repeats a reply; empty: a new random "
                                "seed each reply (the figures show the seed used).")
            c.lookup = gr.Checkbox(
                engine.prompt_lookup, label=t("prompt_lookup"), elem_id="prompt-lookup",
                interactive=engine.prompt_lookup,
                info="Proposes up to 5 tokens copied from the chat and checks them in one step: much faster when "
                "the reply repeats the input (editing code, summaries). Off: at most one token a step. "
                + ("" if engine.prompt_lookup else "Start the server with --prompt-lookup to use it."))
            c.as_json = gr.Checkbox(False, label=t("reply_json"), elem_id="reply-json",
                                    info="The reply is constrained to JSON while it is generated, so it always parses.")
            c.schema = gr.Textbox("", label=t("json_schema"), lines=4, max_lines=16, visible=False,
                                  elem_id="json-schema", placeholder='{"type": "object", "properties": {...}}',
                                  info="Optional: a JSON Schema the reply must follow. Empty: any JSON object.")
        wire(demo, c, Actions(c, engine, settings, metrics), concurrency)
        gr.api(api_chat(engine, settings, metrics), api_name="chat", concurrency_limit=concurrency,
               concurrency_id="generate")
    return demo


def wire(demo: gr.Blocks, c: Parts, do: Actions, concurrency: int) -> None:
    """Connect the events. A check with no outputs runs first where a refusal must change nothing;
    checks go through the queue (an error raised outside it reaches the page as a bare HTTP 500)."""
    # The settings reach a handler as one {component: value} dict (inputs given as a set), read by name.
    generation = {c.system_prompt, *c.sliders, c.seed, c.lookup, c.as_json, c.schema, c.session}
    view = [c.chats, c.title, c.chatbot, c.variant_nav, c.variant_label, c.undo_delete, c.header, c.model, c.cont]
    every = [*view, c.store, c.status, c.textbox, c.send, c.stop, c.discard, c.system_prompt, *c.sliders, c.seed,
             c.as_json, c.schema, c.downloads]
    respond = dict(fn=do.respond, inputs=generation, outputs=every,
                   concurrency_limit=concurrency, concurrency_id="generate", **PRIVATE)
    to_idle = dict(fn=lambda: do.buttons(False), inputs=None, outputs=[c.send, c.stop, c.discard],
                   queue=False, **PRIVATE)
    quick = dict(outputs=every, queue=False, **PRIVATE)
    check = dict(concurrency_limit=None, **PRIVATE)

    gr.on([c.textbox.submit, c.send.click], do.check_message, generation | {c.textbox}, None, **check) \
        .success(do.accept, generation | {c.textbox}, **quick).success(**respond).then(**to_idle)
    c.chatbot.example_select(do.example, [c.session], **quick).success(**respond).then(**to_idle)
    c.chatbot.edit(do.edit, [c.session], **quick).success(**respond).then(**to_idle)
    c.regenerate.click(do.regenerate, [c.session], **quick).success(**respond).then(**to_idle)
    c.cont.click(do.continue_reply, [c.session], **quick).success(**respond).then(**to_idle)
    c.stop.click(do.stop, [c.session], None, queue=False, **PRIVATE)
    c.discard.click(do.discard_reply, [c.session], **quick)
    c.undo.click(do.undo, [c.session], **quick)
    gr.on([c.clear.click, c.chatbot.clear], do.clear, [c.session], **quick)
    c.older.click(lambda s: do.show_variant(-1, s), [c.session], **quick)
    c.newer.click(lambda s: do.show_variant(1, s), [c.session], **quick)
    c.new.click(do.new, [c.session], **quick)
    c.chats.input(do.switch, [c.chats, c.session], **quick)
    c.title.submit(do.rename, [c.title, c.session], **quick)
    c.delete.click(do.delete, [c.session], **quick)
    c.undo_delete.click(do.undo_delete, [c.session], **quick)
    c.save.click(do.save, generation, [c.downloads, c.save_md, c.save_json], **PRIVATE)
    uploaded = gr.State()
    c.load.upload(do.read, [c.load, c.session], [uploaded], **PRIVATE).success(
        do.load, [uploaded, c.session], **quick)
    demo.load(do.restore, [c.store, c.session], every, **PRIVATE)
    c.as_json.change(lambda on: gr.update(visible=on), [c.as_json], [c.schema], queue=False, **PRIVATE)
    c.model.focus(do.model_choices, None, [c.model], queue=False, **PRIVATE)
    c.model.input(do.pick_model, [c.model, c.session], [c.status], **check).success(
        do.switch_model, [c.model, c.session], every, concurrency_limit=1, concurrency_id="switch", **PRIVATE)


def api_chat(engine: Engine, settings: ServerSettings, metrics: Any):
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
            options = options_from(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                   repetition_penalty=repetition_penalty, seed=seed)
            if ignore_eos is True:
                options = dataclasses.replace(options, ignore_eos=True)
        except Phi3ovError as err:
            raise as_gradio_error(err) from None
        if not text.strip():
            raise gr.Error("The message is empty: type a message first.", print_exception=False)
        history = [*(history or []), {"role": "user", "content": text}]
        try:
            messages = conversation.build(system_prompt, history)
            conversation.check_size(messages, settings.max_messages, settings.max_message_chars)
        except Phi3ovError as err:
            raise as_gradio_error(err) from None
        for answer, _status, _reply in stream_reply(engine, messages, options, metrics=metrics,
                                                    interval=settings.stream_interval / 1000):
            yield [*history, {"role": "assistant", "content": answer}] if answer else history

    return chat
