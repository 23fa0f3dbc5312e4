"""Files attached in the chat: read them (phi3ov/documents), fit them to the context with the message they came
with, and show them: a chip per file in the message, "Sources" under the reply.

A user message with documents keeps, beside what was typed (`content`), what the prompt reads before it
(`context`), its files (`documents`: name, pages, tokens, and the passages of a long one, for follow-ups) and what
went into the prompt (`sources`). The chat shows `content` with the chips; the model reads `context` then
`content` (`prompt_messages`), always the same text for that message, so a follow-up starts from the prefix cache.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import conversation, documents
from ..engine import Engine
from ..errors import BadDocument
from ..options import GenerationOptions

SHOWN_PASSAGE_CHARS = 400  # a passage under Sources is shown up to this long
CHIPS = re.compile(r'\A<div class="phi3ov-chips">.*?</div>\n\n', re.S)


def typed(value: Any) -> tuple[str, list[str]]:
    """The composer's text and the paths of the files attached in it."""
    if isinstance(value, dict):
        files = [str(f.get("path") if isinstance(f, dict) else f) for f in value.get("files") or ()]
        return str(value.get("text") or ""), files
    return str(value or ""), []


def prompt_messages(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as the model reads it: each message's documents before its text."""
    out = []
    for m in messages:
        if m.get("context"):
            m = {**m, "content": documents.prompt_text(m["context"], m["content"])}
        out.append(m)
    return out


def read_files(paths: Sequence[str], max_mb: float) -> list[documents.Document]:
    """The attached files' text; the first that cannot be read is refused with its reason (BadDocument)."""
    found: list[documents.Document] = []
    for path in paths:
        name = Path(path).name
        try:
            documents.check_size(name, os.path.getsize(path), max_mb)
            data = Path(path).read_bytes()
        except OSError:
            raise BadDocument(f"“{name}” could not be read on the server: the upload did not arrive whole.",
                              "Attach it again.") from None
        document = documents.extract(name, data, max_mb)
        if any(d.name == document.name for d in found):
            raise BadDocument(f"“{name}” is attached twice.", "Remove one of them.")
        found.append(document)
    return found


def prepare(engine: Engine, system: str, chat: list[dict[str, Any]], text: str, paths: Sequence[str],
            options: GenerationOptions, max_mb: float, embedder: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What the new message `text` keeps about its files (or, in a chat with long documents, about the passages
    chosen for it), and the conversation as the model will read it."""
    files = read_files(paths, max_mb)
    messages = conversation.build(system, prompt_messages(chat), text)
    if not files and not any(m.get("documents") for m in chat):
        return {}, messages
    max_new = engine.capped(options).max_new_tokens
    head = messages[:1] if messages[0]["role"] == "system" else []
    room = documents.room(engine.context_length, max_new, engine.count_tokens(messages),
                          engine.count_tokens([*head, messages[-1]]))
    if files:
        attached = documents.attach(files, text, room, engine.count_text, embedder)
    else:
        attached = documents.follow_up(chat, text, room, engine.count_text, embedder)
    messages[-1] = {"role": "user", "content": documents.prompt_text(attached.context, text)}
    return attached.record(), messages


def without_chips(text: str) -> str:
    """A message's text as edited in the Chatbot, without the chips shown above it."""
    return CHIPS.sub("", text, count=1)


def chip(d: dict[str, Any]) -> str:
    parts = [html.escape(str(d.get("name")))]
    if d.get("pages"):
        parts.append(f"{d['pages']} page{'s' if d['pages'] != 1 else ''}")
    parts.append(f"{int(d.get('tokens') or 0):,} tokens")
    parts.append("whole" if d.get("whole") else "passages")
    note = "" if d.get("kept", True) else (' <span class="phi3ov-chip-note">too big to keep with the chat: attach it '
                                           "again to ask about other parts</span>")
    return f'<span class="phi3ov-chip" title="{html.escape(str(d.get("name")))}">{" · ".join(parts)}{note}</span>'


def chips(message: dict[str, Any]) -> str:
    """The chips above a user message (empty for a message without files)."""
    found = message.get("documents") or ()
    if not found:
        return ""
    return f'<div class="phi3ov-chips">{"".join(chip(d) for d in found)}</div>\n\n'


def sources(message: dict[str, Any] | None) -> str:
    """"Sources" under a reply: what the prompt held of the documents of the message it answers."""
    found = (message or {}).get("sources") or ()
    if not found:
        return ""
    items = []
    for s in found:
        name = f"<b>{html.escape(str(s.get('file')))}</b>"
        if s.get("whole"):
            pages = f", {s['pages']} page{'s' if s['pages'] != 1 else ''}" if s.get("pages") else ""
            items.append(f'<li class="phi3ov-source">{name}: the whole document{pages}</li>')
            continue
        where = f", page {s['page']}" if s.get("page") else ""
        text = " ".join(str(s.get("text") or "").split())
        if len(text) > SHOWN_PASSAGE_CHARS:
            text = text[:SHOWN_PASSAGE_CHARS - 1].rstrip() + "…"
        items.append(f'<li class="phi3ov-source">{name}{where}, passage {s.get("passage")}: '
                     f'<q>{html.escape(text)}</q></li>')
    return f'\n\n<div class="phi3ov-sources"><b>Sources</b><ul>{"".join(items)}</ul></div>'
