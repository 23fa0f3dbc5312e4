"""Conversations kept in the browser, newest first.

The list lives in the browser's local storage (gr.BrowserState, encrypted with a key kept in the
cache folder so a restarted server can still read it); the server holds a session's copy only
while its page is open. What comes back from a browser is checked like any other input: entries
that are not conversations are dropped, never trusted.

A conversation:

    {"id", "title", "created", "updated", "system_prompt", "settings": {...},
     "messages": [{"role": "user" | "assistant", "content": str,
                   "interrupted": bool,        # the page went away while this reply streamed
                   "context", "documents", "sources": ...,  # a user message's files (ui/attachments.py)
                   "generation": {...},        # seed, options and figures (for Save chat)
                   "variants": [{"content", "generation"}], "variant": int}]}   # Regenerate keeps these
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

STORAGE_KEY = "phi3ov-conversations"
MAX_CHATS = 200
MAX_STORE_CHARS = 2_500_000  # local storage holds about 5 M characters per site; leave room
TITLE_CHARS = 48
Chat = dict[str, Any]


def browser_key(cache_dir: Path) -> str:
    """The key that encrypts the list in the browser: made once, kept in the cache folder."""
    path = cache_dir / "browser-state.key"
    try:
        key = path.read_text().strip()
        if len(key) >= 32:
            return key
    except OSError:
        pass
    key = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    os.replace(tmp, path)
    return key


def title_of(text: str) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def new_chat(system_prompt: str = "", settings: dict[str, Any] | None = None) -> Chat:
    now = time.time()
    return {"id": uuid.uuid4().hex[:12], "title": "", "created": now, "updated": now,
            "system_prompt": system_prompt, "settings": dict(settings or {}), "messages": []}


def _message(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or raw.get("role") not in ("user", "assistant") or not isinstance(raw.get("content"), str):
        return None
    msg: dict[str, Any] = {"role": raw["role"], "content": raw["content"]}
    if raw.get("interrupted") is True:
        msg["interrupted"] = True
    if isinstance(raw.get("generation"), dict):
        msg["generation"] = raw["generation"]
    if raw["role"] == "user":
        msg.update(_attached(raw))
    variants = raw.get("variants")
    if (isinstance(variants, list) and len(variants) > 1
            and all(isinstance(v, dict) and isinstance(v.get("content"), str) for v in variants)
            and isinstance(raw.get("variant"), int) and 0 <= raw["variant"] < len(variants)):
        msg["variants"], msg["variant"] = variants, raw["variant"]
    return msg


def _attached(raw: dict) -> dict[str, Any]:
    """A user message's documents as the browser sent them back: well-formed entries only (see ui/attachments.py)."""
    out: dict[str, Any] = {}
    if isinstance(raw.get("context"), str) and raw["context"]:
        out["context"] = raw["context"]
    docs = [d for d in raw.get("documents") or [] if isinstance(d, dict) and isinstance(d.get("name"), str)
            and isinstance(d.get("tokens"), int) and (d.get("pages") is None or isinstance(d.get("pages"), int))]
    for d in docs:
        passages = d.get("passages")
        if passages is not None and not (isinstance(passages, list) and all(
                isinstance(p, list) and len(p) == 3 and isinstance(p[0], int) and isinstance(p[1], int)
                and isinstance(p[2], str) for p in passages)):
            d.pop("passages")
    if docs:
        out["documents"] = docs
    found = [x for x in raw.get("sources") or [] if isinstance(x, dict) and isinstance(x.get("file"), str)
             and (x.get("whole") is True or (isinstance(x.get("passage"), int) and isinstance(x.get("text"), str)))]
    if found:
        out["sources"] = found
    return out


def _chat(raw: Any) -> Chat | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not isinstance(raw.get("messages"), list):
        return None
    messages = [m for m in map(_message, raw["messages"]) if m is not None]
    number = lambda key: raw[key] if isinstance(raw.get(key), (int, float)) else 0.0  # noqa: E731
    return {"id": raw["id"][:64], "title": str(raw.get("title") or "")[:200],
            "created": number("created"), "updated": number("updated"),
            "system_prompt": raw["system_prompt"] if isinstance(raw.get("system_prompt"), str) else "",
            "settings": raw["settings"] if isinstance(raw.get("settings"), dict) else {}, "messages": messages}


def forget_passages(chats: list[Chat]) -> bool:
    """Make room: the passages kept of the oldest long document go (what went into the prompt stays, and its chip
    says to attach it again to ask about other parts). False when there is none left to forget."""
    for chat in reversed(chats):
        for message in chat["messages"]:
            for document in message.get("documents") or ():
                if document.pop("passages", None) is not None:
                    document["kept"] = False
                    return True
    return False


class Store:
    """One browser's conversations (the session's working copy of what its local storage holds)."""

    def __init__(self, chats: list[Chat] | None = None, open_id: str | None = None):
        self.chats = list(chats or [])
        self.open_id = open_id
        self.chars = 0  # the size of the list at the last dump (what each write sends to the browser)

    @classmethod
    def load(cls, value: Any) -> Store:
        """What the browser sent; anything that is not a conversation is dropped."""
        if not isinstance(value, dict) or not isinstance(value.get("chats"), list):
            return cls()
        chats, seen = [], set()
        for chat in map(_chat, value["chats"]):
            if chat is not None and chat["id"] not in seen:
                seen.add(chat["id"])
                chats.append(chat)
        open_id = value.get("open") if isinstance(value.get("open"), str) else None
        return cls(chats, open_id)

    def dump(self) -> dict[str, Any]:
        """What the browser keeps: the newest chats that fit its storage (the open one always)."""
        self.chats.sort(key=lambda c: c["updated"], reverse=True)
        del self.chats[MAX_CHATS:]
        while True:  # too big: long documents' kept passages go first, then the oldest chats
            self.chars = len(json.dumps(self.chats, ensure_ascii=False))
            if self.chars <= MAX_STORE_CHARS or not (forget_passages(self.chats) or self.drop_oldest()):
                break
        return {"version": 1, "open": self.open_id, "chats": self.chats}

    def drop_oldest(self) -> bool:
        """Drop the oldest chat that is not open; False when the open one is all there is."""
        if len(self.chats) <= 1:
            return False
        self.chats.remove(next(c for c in reversed(self.chats) if c["id"] != self.open_id))
        return True

    def get(self, chat_id: str | None) -> Chat | None:
        return next((c for c in self.chats if c["id"] == chat_id), None)

    def listing(self) -> list[tuple[str, str]]:
        """(title, id) pairs, newest first."""
        return [(c["title"] or "New chat", c["id"]) for c in sorted(self.chats, key=lambda c: -c["updated"])]

    def keep(self, chat: Chat) -> None:
        """Add `chat` to the list (if it is not there yet), mark it updated and open."""
        chat["updated"] = time.time()
        if self.get(chat["id"]) is None:
            self.chats.append(chat)
        self.open_id = chat["id"]

    def remove(self, chat_id: str) -> Chat | None:
        chat = self.get(chat_id)
        if chat is not None:
            self.chats.remove(chat)
            if self.open_id == chat_id:
                self.open_id = None
        return chat

    def newest(self) -> Chat | None:
        return max(self.chats, key=lambda c: c["updated"], default=None)
