"""What each button, box and list in the chat does. layout.py builds the components and wires them here.

Every handler works on the session's open conversation (`Session.chat`), never on what the
Chatbot sends back: the Chatbot only shows the conversation (with raw HTML as text, see
markup.py). Each change is also handed to the browser's local storage (the `store` output),
so a reload, a closed tab or a restarted server finds the list and the open chat as they were;
a reply in flight is written there about once a second, marked interrupted until it ends.
Handlers return {component: value} for what they change.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from .. import conversation, transcript
from ..documents.embed import embedder
from ..engine import Engine
from ..errors import Phi3ovError
from ..options import BOUNDS, GenerationOptions
from ..settings import ServerSettings
from ..structured import ANY_JSON_OBJECT
from .attachments import prepare, prompt_messages, typed, without_chips
from .chat import Session, as_gradio_error, busy_status, generation_record, options_from, stream_reply
from .page import header_html
from .store import Chat, Store, new_chat, title_of
from .turns import continued_options, cut_at_length, remove, restore, shown, take_last_turn

SAVE_EVERY_S = 1.0  # a reply in flight is written to the browser this often at most
SAVE_CHARS_PER_S = 200_000  # and at most about this much of the list a second


class Actions:
    def __init__(self, c: Any, engine: Engine, settings: ServerSettings, metrics: Any = None):
        self.c, self.engine, self.settings, self.metrics = c, engine, settings, metrics
        # --embedding-model: checked now (a wrong folder stops the server at start), loaded on first use
        folder = settings.embedding_model if settings is not None else None
        self.embedder = embedder(folder, settings.device) if folder else None

    # -- what the page shows -------------------------------------------------------------------
    def view(self, sess: Session) -> dict:
        c, chat = self.c, sess.chat
        listed = sess.store.get(chat["id"]) is not None
        last = chat["messages"][-1] if chat["messages"] else {}
        variants = last.get("variants") or []
        return {c.chats: gr.update(choices=sess.store.listing(), value=chat["id"] if listed else None),
                c.title: chat["title"], c.chatbot: shown(chat, sess.reply and last),
                c.variant_nav: gr.update(visible=len(variants) > 1),
                c.variant_label: f"{last.get('variant', 0) + 1} / {len(variants)}" if variants else "",
                c.undo_delete: gr.update(visible=sess.deleted is not None),
                c.header: header_html(self.engine), c.model: gr.update(value=self.engine.name),
                c.cont: gr.update(visible=bool(last) and cut_at_length(last) and not sess.busy
                                  and self.engine.capabilities.can_continue)}

    def saved(self, sess: Session) -> dict:
        return {self.c.store: sess.store.dump()}

    def buttons(self, working: bool) -> dict:
        c = self.c
        return {c.send: gr.update(visible=not working), c.stop: gr.update(visible=working),
                c.discard: gr.update(visible=working)}

    def settings_of(self, chat: Chat) -> dict:
        """The system prompt and settings a conversation was last answered with (valid ones only)."""
        c, values = self.c, chat.get("settings") or {}
        out: dict = {c.system_prompt: chat.get("system_prompt") or self.settings.system_prompt}
        for name, slider in zip(BOUNDS, c.sliders, strict=True):
            with contextlib.suppress(KeyError, Phi3ovError):  # a missing or invalid value: the slider stays
                out[slider] = getattr(GenerationOptions.parse(clamp=True, **{name: values[name]}), name)
        constraint = values.get("constraint")
        schema = constraint.get("text") if isinstance(constraint, dict) else None
        out[c.as_json] = isinstance(schema, str)
        out[c.schema] = "" if not isinstance(schema, str) or schema == ANY_JSON_OBJECT else schema
        if "seed" in values:
            try:
                seed = GenerationOptions.parse(seed=values["seed"]).seed
                out[c.seed] = "" if seed is None else str(seed)
            except Phi3ovError:
                pass
        return out

    def open(self, sess: Session, chat: Chat) -> dict:
        sess.chat = chat
        if sess.store.get(chat["id"]) is not None:
            sess.store.open_id = chat["id"]
        return {**self.view(sess), **self.settings_of(chat), **self.saved(sess), self.c.status: ""}

    # -- the list --------------------------------------------------------------------------------
    def restore(self, value: Any, sess: Session) -> dict:
        """Page load: the browser's list, and the conversation that was open."""
        sess.store = Store.load(value)
        chat = sess.store.get(sess.store.open_id) or sess.store.newest() or new_chat(self.settings.system_prompt)
        return self.open(sess, chat)

    def refuse_while_busy(self, sess: Session, what: str) -> None:
        if sess.busy:
            raise gr.Error(f"A reply is still being written: press Stop, then {what}.", title="Busy",
                           print_exception=False)

    def new(self, sess: Session) -> dict:
        self.refuse_while_busy(sess, "start a new chat")
        sess.deleted = None
        sess.store.open_id = None
        return self.open(sess, new_chat(self.settings.system_prompt))

    def switch(self, chat_id: str, sess: Session) -> dict:
        chat = sess.store.get(chat_id)
        if sess.busy or chat is None:
            gr.Warning("A reply is still being written: press Stop, then switch." if sess.busy
                       else "That chat is no longer in the list.")
            return self.view(sess)
        sess.deleted = None
        return self.open(sess, chat)

    def rename(self, title: str, sess: Session) -> dict:
        title = " ".join((title or "").split())[:200]
        if not title:
            gr.Warning("A chat needs a title: type one, then press Enter.")
        else:
            sess.chat["title"] = title
        return {**self.view(sess), **self.saved(sess)}

    def delete(self, sess: Session) -> dict:
        self.refuse_while_busy(sess, "delete")
        removed = sess.store.remove(sess.chat["id"])
        if removed is None:  # a new chat not in the list yet: just empty it
            sess.chat["messages"].clear()
            return self.view(sess)
        sess.deleted = removed
        gr.Info(f"Deleted “{removed['title'] or 'New chat'}”. Undo delete brings it back.")
        return self.open(sess, sess.store.newest() or new_chat(self.settings.system_prompt))

    def undo_delete(self, sess: Session) -> dict:
        if sess.busy or sess.deleted is None:
            return self.view(sess)
        chat, sess.deleted = sess.deleted, None
        sess.store.keep(chat)
        return self.open(sess, chat)

    # -- sending and answering ---------------------------------------------------------------------
    def read_settings(self, data: dict) -> tuple[str, GenerationOptions]:
        """The system prompt and the generation options, each read from its own component (never by position)."""
        c = self.c
        sliders = {name: data[slider] for name, slider in zip(BOUNDS, c.sliders, strict=True)}
        return data[c.system_prompt], options_from(**sliders, seed=data[c.seed], prompt_lookup=data[c.lookup],
                                                   as_json=data[c.as_json], schema=data[c.schema])

    def check_message(self, data: dict) -> None:
        """Refuse a message that cannot be sent (busy, too long, a file that cannot be read). No outputs, so
        nothing is lost: the chat, the typed text and the attached files stay as they are."""
        (text, files), sess = typed(data[self.c.textbox]), data[self.c.session]
        self.refuse_while_busy(sess, "send again")
        sess.attached = None
        if files and not text.strip():
            raise gr.Error("Type a question about the attached file, then send it with the file.",
                           title="No question", print_exception=False)
        if text.strip():
            try:
                system, options = self.read_settings(data)
                typed_only = conversation.build(system, sess.chat["messages"], text)
                conversation.check_size(typed_only, self.settings.max_messages, self.settings.max_message_chars)
                self.engine.check_options(options)  # e.g. a JSON schema the grammar compiler rejects
                attached, messages = prepare(self.engine, system, sess.chat["messages"], text, files, options,
                                             self.settings.max_upload_mb, self.embedder)
                sess.checked = (messages, options, self.engine.prepare(messages, options))  # respond reuses it
                sess.attached = attached
            except Phi3ovError as err:
                raise as_gradio_error(err) from None

    def accept(self, data: dict) -> dict:
        """Show the message at once and keep it (an empty one is refused with a hint)."""
        (text, _files), sess = typed(data[self.c.textbox]), data[self.c.session]
        if not text.strip():
            gr.Warning("Type a message first.")
            return {}
        chat = sess.chat
        if chat["messages"]:
            chat["messages"][-1].pop("variants", None)  # the reply now answered stays as it is shown
            chat["messages"][-1].pop("variant", None)
        attached, sess.attached = sess.attached or {}, None  # what check_message read of its files
        chat["messages"].append({"role": "user", "content": text, **attached})
        system, options = self.read_settings(data)  # checked by check_message just before
        chat["title"] = chat["title"] or title_of(text)
        chat["system_prompt"] = system or ""
        chat["settings"] = options.as_dict()
        return {self.c.textbox: "", **self.answer(sess, text)}

    def answer(self, sess: Session, text: str) -> dict:
        """The conversation ends with the user's `text`: queue its reply."""
        sess.deleted, sess.discard, sess.pending = None, False, text
        sess.store.keep(sess.chat)
        running = self.engine.running or 0
        waiting = running >= self.engine.capabilities.max_concurrency
        status = busy_status(f"Waiting for a free slot: {running} replies are being written…") if waiting else ""
        return {**self.view(sess), **self.saved(sess), **self.buttons(True), self.c.status: status}

    def respond(self, data: dict) -> Iterator[dict]:
        sess = data[self.c.session]
        if sess.pending is None:  # nothing was accepted, or stopped while waiting
            return
        sess.pending = None
        c, chat, cut = self.c, sess.chat, sess.cut
        try:
            system = data[c.system_prompt]
            options = continued_options(cut) if cut else self.read_settings(data)[1]
        except Phi3ovError as err:
            sess.cut = None
            raise as_gradio_error(err) from None
        if cut:  # Continue: the cut reply is the one that grows
            bot = chat["messages"][-1]
            bot["interrupted"] = True
        else:
            bot = {"role": "assistant", "content": "", "interrupted": True}
        saved_at, status, reply = time.monotonic(), "", None
        try:
            messages = conversation.build(system, prompt_messages(chat["messages"]))
            checked, sess.checked = sess.checked, None
            fitted = checked[2] if checked and not cut and checked[:2] == (messages, options) else None
            for answer, status, reply in stream_reply(self.engine, messages, options, sess,  # noqa: B007
                                                      self.metrics, continuation=cut is not None, fitted=fitted,
                                                      interval=self.settings.stream_interval / 1000):
                if answer and not sess.discard and not any(m is bot for m in chat["messages"]):
                    chat["messages"].append(bot)
                bot["content"] = answer
                out = {c.chatbot: shown(chat, bot), c.status: status}
                # Each write sends the whole list to the browser: a long list is written less often.
                if time.monotonic() - saved_at >= max(SAVE_EVERY_S, sess.store.chars / SAVE_CHARS_PER_S):
                    saved_at = time.monotonic()
                    out.update(self.saved(sess))
                yield out
        except gr.Error:
            if cut and len(bot["content"]) < len(cut["content"]):  # a JSON written again fell short: keep the cut one
                restore(bot, cut)
            bot.pop("interrupted", None)  # what was written stays, as a finished (failed) reply
            sess.variants, sess.cut = [], None
            yield {c.chatbot: shown(chat), **self.saved(sess)}
            raise
        bot.pop("interrupted", None)
        if cut and (sess.discard or len(bot["content"]) < len(cut["content"])):
            # Discarded, or a JSON reply written again stopped short of the cut one: the cut reply stays as it was.
            restore(bot, cut)
            sess.discard, status = False, ""
        elif sess.discard:
            remove(chat["messages"], bot)
            sess.discard = False
            status = ""
        elif bot["content"]:
            bot["generation"] = generation_record(reply)
            if cut:
                bot["generation"]["continued"] = int((cut.get("generation") or {}).get("continued") or 0) + 1
            if sess.variants:
                bot["variants"] = [*sess.variants, {"content": bot["content"], "generation": bot["generation"]}]
                bot["variant"] = len(bot["variants"]) - 1
        elif sess.variants:  # stopped before any text: the earlier reply comes back
            old = sess.variants[-1]
            chat["messages"].append({"role": "assistant", **old, "variants": sess.variants,
                                     "variant": len(sess.variants) - 1} if len(sess.variants) > 1
                                    else {"role": "assistant", **old})
        sess.variants, sess.cut = [], None
        sess.store.keep(chat)
        yield {**self.view(sess), **self.saved(sess), c.status: status}

    def continue_reply(self, sess: Session) -> dict:
        """Continue: the last reply, cut at the length limit, is written on with the settings it had."""
        self.refuse_while_busy(sess, "continue")
        messages = sess.chat["messages"]
        if not messages or not cut_at_length(messages[-1]):
            gr.Warning("Only a reply that stopped at the length limit can be continued.")
            return self.view(sess)
        sess.cut = copy.deepcopy(messages[-1])
        sess.variants = []
        return self.answer(sess, messages[-1]["content"])

    def stop(self, sess: Session) -> None:
        sess.pending = None  # a reply still waiting in line never starts
        if sess.reply is not None:
            sess.reply.stop()

    def discard_reply(self, sess: Session) -> dict:
        """Stop and discard: the reply goes, the message goes back into the box."""
        if not sess.busy:
            return {}
        sess.discard, sess.pending = True, None
        if sess.reply is not None:
            sess.reply.stop()
        if sess.cut is not None:  # a continuation: only what it added goes (respond puts the cut reply back)
            return {**self.view(sess), self.c.status: ""}
        text = take_last_turn(sess.chat["messages"])
        sess.variants = []
        return {self.c.textbox: text, **self.view(sess), **self.saved(sess), self.c.status: ""}

    def regenerate(self, sess: Session) -> dict:
        """Answer the last message again; the reply it had stays reachable (‹ 1/2 ›)."""
        self.refuse_while_busy(sess, "regenerate")
        messages = sess.chat["messages"]
        if messages and messages[-1]["role"] == "assistant":
            old = messages.pop()
            sess.variants = old.get("variants") or [{"content": old["content"], "generation": old.get("generation")}]
        if not messages:
            gr.Warning("There is no message to answer again.")
            return {}
        return self.answer(sess, messages[-1]["content"])

    def show_variant(self, step: int, sess: Session) -> dict:
        messages = sess.chat["messages"]
        last = messages[-1] if messages else {}
        if sess.busy or len(last.get("variants") or []) < 2:
            return self.view(sess)
        last["variant"] = min(max(last["variant"] + step, 0), len(last["variants"]) - 1)
        chosen = last["variants"][last["variant"]]
        last["content"], last["generation"] = chosen["content"], chosen.get("generation")
        return {**self.view(sess), **self.saved(sess)}

    def edit(self, evt: gr.EditData, sess: Session) -> dict:
        """A user message edited in place: the turns after it go, and it is answered again."""
        messages = sess.chat["messages"]
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        text = without_chips(evt.value if isinstance(evt.value, str) else conversation.text_of(evt.value))
        if sess.busy or not isinstance(index, int) or not 0 <= index < len(messages) \
                or messages[index]["role"] != "user" or not text.strip():
            gr.Warning("Press Stop first." if sess.busy else "Only a message you wrote can be edited, and not to empty.")
            return self.view(sess)  # the Chatbot shows the conversation as it was
        attached = {k: messages[index][k] for k in ("context", "documents", "sources") if k in messages[index]}
        del messages[index:]
        messages.append({"role": "user", "content": text, **attached})  # its files stay with it
        sess.variants = []
        return self.answer(sess, text)

    def undo(self, sess: Session) -> dict:
        self.refuse_while_busy(sess, "undo")
        text = take_last_turn(sess.chat["messages"])
        return {**self.view(sess), **self.saved(sess), self.c.textbox: text, self.c.status: ""}

    def clear(self, sess: Session) -> dict:
        if sess.busy:  # the Chatbot's own Clear has already emptied the screen: show the chat again
            gr.Warning("A reply is still being written: press Stop, then clear.")
            return self.view(sess)
        sess.chat["messages"].clear()
        return {**self.view(sess), **self.saved(sess), self.c.textbox: "", self.c.status: "",
                self.c.downloads: gr.update(visible=False)}

    def example(self, evt: gr.SelectData, sess: Session) -> dict:
        if sess.busy:  # examples show only on an empty chat, so this is a rare race
            gr.Warning("A reply is still being written: press Stop first.")
            return {}
        text = evt.value["text"] if isinstance(evt.value, dict) else str(evt.value)
        sess.chat["messages"].append({"role": "user", "content": text})
        sess.chat["title"] = sess.chat["title"] or title_of(text)
        return self.answer(sess, text)

    # -- the model menu --------------------------------------------------------------------------
    def model_choices(self) -> dict:
        return {self.c.model: gr.update(choices=self.engine.model_names(), value=self.engine.name)}

    def pick_model(self, name: str, sess: Session) -> dict:
        """Refuse at once what cannot switch; otherwise say that the model is loading."""
        if name == self.engine.name:
            return {}
        self.refuse_while_busy(sess, "switch models")
        gr.Info(f"Loading {name}… The conversation stays as it is.")
        return {self.c.status: busy_status(f"Loading {name}…")}

    def switch_model(self, name: str, sess: Session) -> dict:
        if name != self.engine.name:
            try:
                seconds = self.engine.switch(name)
            except Phi3ovError as err:
                gr.Warning(f"{err} Still serving {self.engine.name}.")
                return {**self.view(sess), self.c.status: ""}
            gr.Info(f"Now serving {name} (loaded in {seconds:.1f} s).")
        return {**self.view(sess), self.c.status: ""}

    # -- saved files -------------------------------------------------------------------------------
    def save(self, data: dict) -> dict:
        sess = data[self.c.session]
        messages = [{k: v for k, v in m.items() if k in ("role", "content", "generation") and v is not None}
                    for m in sess.chat["messages"]]
        if not messages:
            raise gr.Error("The chat is empty: there is nothing to save yet.", title="Nothing to save",
                           print_exception=False)
        try:
            system, options = self.read_settings(data)
            chat_settings = options.as_dict()
        except Phi3ovError as err:
            raise as_gradio_error(err) from None
        model = {"name": self.engine.name, "device": self.engine.device, "context_length": self.engine.context_length}
        saved = transcript.Transcript(messages, system or "", chat_settings, model)
        if sess.folder is None:
            sess.folder = Path(tempfile.mkdtemp(prefix="phi3ov-chat-"))
        shutil.rmtree(sess.folder, ignore_errors=True)
        md, js = transcript.save(saved, sess.folder, stem=f"phi3ov-chat-{time.strftime('%Y%m%d-%H%M%S')}")
        return {self.c.downloads: gr.update(visible=True), self.c.save_md: str(md), self.c.save_json: str(js)}

    def read(self, data: bytes, sess: Session) -> transcript.Transcript:
        """Check an uploaded file; a bad one is refused here, before anything on screen changes."""
        self.refuse_while_busy(sess, "load a chat")
        try:
            return transcript.from_json(data or b"")
        except Phi3ovError as err:
            raise gr.Error(f"Could not load this chat: {err} The current chat is unchanged.",
                           title="Not a saved chat", print_exception=False) from None

    def load(self, loaded: transcript.Transcript, sess: Session) -> dict:
        """A saved chat opens as a new conversation in the list."""
        chat = new_chat(loaded.system_prompt or self.settings.system_prompt, loaded.settings)
        chat["messages"] = [{k: v for k, v in m.items() if k in ("role", "content", "generation")}
                            for m in loaded.messages]
        first = next((m["content"] for m in loaded.messages if m["role"] == "user"), "")
        chat["title"] = title_of(first) or "Loaded chat"
        sess.store.keep(chat)
        note = f"Loaded a chat of {len(loaded.messages)} messages"
        if loaded.model.get("name"):
            note += f" with {loaded.model['name']}"
        gr.Info(note + ".")
        when = loaded.saved_at.replace("T", " ").replace("+00:00", " UTC") if loaded.saved_at else ""
        return {**self.open(sess, chat), self.c.status: note + (f", saved {when}." if when else ".")}
