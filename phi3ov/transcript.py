"""Saved chats: a conversation as Markdown (to read) or JSON (to load back and reproduce).

No UI here: the UI hands over plain data and gets text or files back.

The JSON holds everything needed to reproduce a chat: the model, the system prompt, the
generation settings, and for each reply the options and seed it was generated with and its
figures. Only `role` and `content` of each message ever go back into a conversation; the
per-reply `generation` record is kept beside the message, never inside its text.

    {"format": "phi3ov-chat", "version": 1, "saved_at": "...", "model": {"name": ..., "device": ...},
     "system_prompt": "...", "settings": {"max_new_tokens": ..., ...},
     "messages": [{"role": "user", "content": "..."},
                  {"role": "assistant", "content": "...", "generation": {"seed": 42, "options": {...},
                   "stats": {...}, "finish_reason": "stop"}}]}
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import BadInput

FORMAT = "phi3ov-chat"
VERSION = 1
MAX_BYTES = 8 * 1024 * 1024
ROLES = ("user", "assistant")


@dataclass
class Transcript:
    messages: list[dict[str, Any]]  # {"role", "content"} and, on replies, an optional "generation" dict
    system_prompt: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    saved_at: str = ""

    @property
    def history(self) -> list[dict[str, str]]:
        """The conversation itself: role and content only, as a chat history."""
        return [{"role": m["role"], "content": m["content"]} for m in self.messages]

    @property
    def generations(self) -> dict[int, dict[str, Any]]:
        """Per-reply records by message index."""
        return {i: m["generation"] for i, m in enumerate(self.messages) if m.get("generation")}


def to_json(transcript: Transcript) -> str:
    data = {
        "format": FORMAT,
        "version": VERSION,
        "saved_at": transcript.saved_at or _now(),
        "model": dict(transcript.model),
        "system_prompt": transcript.system_prompt,
        "settings": dict(transcript.settings),
        "messages": [_message_out(m) for m in transcript.messages],
    }
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def to_markdown(transcript: Transcript) -> str:
    model = transcript.model.get("name") or "the model"
    lines = [f"# Chat with {model}", ""]
    meta = [f"Saved {transcript.saved_at or _now()}"]
    if transcript.model.get("device"):
        meta.append(f"on {transcript.model['device']}")
    lines += [" ".join(meta) + ".", ""]
    if transcript.system_prompt:
        lines += ["**System prompt:**", "", _quote(transcript.system_prompt), ""]
    if transcript.settings:
        lines += ["**Settings:** " + ", ".join(f"{k} {v}" for k, v in transcript.settings.items() if v is not None), ""]
    for m in transcript.messages:
        who = "You" if m["role"] == "user" else model
        lines += ["---", "", f"### {who}", "", m["content"].rstrip(), ""]
        gen = m.get("generation") or {}
        figures = _figures(gen)
        if figures:
            lines += [f"<sub>{figures}</sub>", ""]
    return "\n".join(lines).rstrip() + "\n"


def from_json(text: str | bytes) -> Transcript:
    """Parse and check a saved chat; raises BadInput saying what is wrong."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise BadInput(f"The file is too large for a saved chat ({len(text)} bytes; at most {MAX_BYTES}).")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput("The file is not UTF-8 text, so it is not a saved chat.",
                           "Choose a .json file saved with “Save chat”.") from None
    if len(text) > MAX_BYTES:
        raise BadInput(f"The file is too large for a saved chat (at most {MAX_BYTES} bytes).")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise BadInput(f"The file is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}).",
                       "Choose a .json file saved with “Save chat”.") from None
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise BadInput("The file is JSON but not a saved chat: it has no list of messages.",
                       "Choose a .json file saved with “Save chat”.")
    if data.get("format", FORMAT) != FORMAT:
        raise BadInput(f"The file is a {data.get('format')!r} file, not a saved phi3ov chat.")
    version = data.get("version", VERSION)
    if not isinstance(version, int) or version > VERSION:
        raise BadInput(f"The chat was saved by a newer phi3ov (format version {version!r}; this one reads {VERSION}).",
                       "Update phi3ov to load it.")
    system_prompt = data.get("system_prompt") or ""
    if not isinstance(system_prompt, str):
        raise BadInput("`system_prompt` in the file must be text.")
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(data["messages"]):
        if not isinstance(m, Mapping):
            raise BadInput(f"Message {i + 1} in the file is not an object with role and content.")
        role, content = m.get("role"), m.get("content")
        if role == "system" and isinstance(content, str) and not messages:
            system_prompt = system_prompt or content
            continue
        if role not in ROLES:
            raise BadInput(f"Message {i + 1} in the file has role {role!r}; a saved chat holds user and assistant messages.")
        if not isinstance(content, str):
            raise BadInput(f"Message {i + 1} in the file has no text content.")
        out: dict[str, Any] = {"role": role, "content": content}
        gen = m.get("generation")
        if role == "assistant" and isinstance(gen, Mapping):
            out["generation"] = dict(gen)
        messages.append(out)
    settings = {} if data.get("settings") is None else data["settings"]
    model = {} if data.get("model") is None else data["model"]
    if not isinstance(settings, Mapping) or not isinstance(model, Mapping):
        raise BadInput("`settings` and `model` in the file must be objects.")
    return Transcript(messages, system_prompt, dict(settings), dict(model), str(data.get("saved_at") or ""))


def save(transcript: Transcript, folder: Path, stem: str = "phi3ov-chat") -> tuple[Path, Path]:
    """Write `<stem>.md` and `<stem>.json` into `folder`, each atomically (temp file, then rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    transcript.saved_at = transcript.saved_at or _now()
    md = _write_atomic(folder / f"{stem}.md", to_markdown(transcript))
    js = _write_atomic(folder / f"{stem}.json", to_json(transcript))
    return md, js


def _write_atomic(path: Path, text: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _message_out(m: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m["role"], "content": m["content"]}
    if m.get("generation"):
        out["generation"] = dict(m["generation"])
    return out


def _figures(gen: Mapping[str, Any]) -> str:
    parts = []
    stats = gen.get("stats") or {}
    if stats.get("ttft_ms") is not None:
        parts.append(f"first token {stats['ttft_ms']:.0f} ms")
    if stats.get("tokens_per_s") is not None:
        parts.append(f"{stats['tokens_per_s']:.1f} tokens/s")
    if gen.get("seed") is not None:
        parts.append(f"seed {gen['seed']}")
    if gen.get("finish_reason") and gen["finish_reason"] != "stop":
        parts.append(str(gen["finish_reason"]))
    return " · ".join(parts)


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in text.strip().splitlines())


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
