"""Chat messages in, model input out.

One way in for every caller: `normalize` flattens Gradio / OpenAI messages (content may be a
string or a list of `{"type": "text", "text": ...}` parts, and OpenAI `file` parts, whose
documents become their extracted text, see phi3ov/documents/) into plain `{"role", "content"}`
dicts; `fit` drops the oldest turns until the prompt plus the reply budget fits the context,
always keeping the system prompt and the newest message. The model's own chat template does
all formatting (see phi3ov/engine/genai.py); nothing here writes a prompt format by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import BadDocument, BadInput, ContextOverflow

ROLES = ("system", "user", "assistant")
Message = dict[str, Any]  # role and content (text); an assistant's tool_calls, a tool result's tool_call_id


def text_of(content: Any) -> str:
    """The text of one message's content: a string, a text part, or a list of text and `file` parts (each document's
    text comes first, then the message's text)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        content = [content]
    if isinstance(content, (list, tuple)):
        texts, files = [], []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, Mapping) and part.get("type") == "file":
                files.append(file_text(part.get("file")))
            else:
                kind = part.get("type", "unknown") if isinstance(part, Mapping) else type(part).__name__
                raise BadInput(
                    f"This model reads text only; the message holds a {kind!r} part.",
                    "Send the message as text, or documents as `file` parts.",
                )
        if files:  # documents first, then the question: the same place in the prompt as the chat puts them
            return DocumentText.of(files, "\n".join(texts))
        return "\n".join(texts)
    raise BadInput(f"Message content must be text, got {type(content).__name__}.", "Send the message as text.")


class DocumentText(str):
    """A message's text made of documents (whole) and a question, which keeps what it was made of: when the whole
    text does not fit the context, `fit` puts in the passages most relevant to the question instead."""

    documents: tuple[Any, ...] = ()
    question: str = ""

    @classmethod
    def of(cls, documents: list[Any], question: str) -> DocumentText:
        from .documents.attach import prompt_text, whole_block

        text = cls(prompt_text("\n\n".join(whole_block(d) for d in documents), question))
        text.documents, text.question = tuple(documents), question
        return text


def file_text(file: Any) -> Any:
    """An OpenAI `file` content part ({"filename", "file_data": "data:<type>;base64,..."}): the document, its text
    extracted (documents/extract.py)."""
    import base64
    import binascii

    from .documents.extract import extract

    if not isinstance(file, Mapping):
        raise BadDocument("A `file` part needs a `file` object with `filename` and `file_data`.")
    if file.get("file_id") and not file.get("file_data"):
        raise BadDocument("This server has no files API, so a `file_id` cannot be read.",
                          "Send the file itself as `file_data` (a data URL: data:<type>;base64,...).")
    name, data = file.get("filename"), file.get("file_data")
    if not isinstance(name, str) or not name.strip():
        raise BadDocument("A `file` part needs its `filename` (its extension says how to read it, e.g. report.pdf).")
    if not isinstance(data, str) or not data:
        raise BadDocument(f"The `file` part “{name}” has no `file_data`.",
                          "Send the file as a data URL: data:<type>;base64,...")
    head, comma, body = data.partition(",")
    if not comma or not head.startswith("data:") or not head.endswith(";base64"):
        head, body = "", data  # bare base64, as some clients send it
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BadDocument(f"The `file_data` of “{name}” is not base64.",
                          "Send it as a data URL: data:<type>;base64,<the file's bytes in base64>.") from None
    return extract(name, raw)


def normalize(messages: Iterable[Mapping[str, Any]], tools: bool = False) -> list[Message]:
    """Plain role/content dicts. UI-only messages (with a metadata title) are left out. With `tools` (the API,
    for a template that takes them), tool results and an assistant's `tool_calls` are kept too."""
    roles = (*ROLES, "tool") if tools else ROLES
    out: list[Message] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping):
            raise BadInput(f"Message {i} is not an object with role and content.")
        metadata = msg.get("metadata") or {}
        if isinstance(metadata, Mapping) and metadata.get("title"):
            continue  # a notice shown in the chat, not part of the conversation
        role = msg.get("role")
        if role not in roles:
            raise BadInput(f"Message {i} has role {role!r}; use one of {', '.join(roles)}.")
        message: Message = {"role": role, "content": text_of(msg.get("content"))}
        if tools and role == "assistant" and msg.get("tool_calls"):
            message["tool_calls"] = tool_calls_of(msg["tool_calls"], i)
        if role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise BadInput(f"Message {i} is a tool result without its `tool_call_id`.",
                               "Send the id of the tool call it answers.")
            message["tool_call_id"] = call_id
        out.append(message)
    return out


def tool_calls_of(calls: Any, i: int) -> list[dict[str, Any]]:
    """An assistant message's tool calls in OpenAI's shape, arguments read from their JSON text (chat templates
    write them with `tojson`)."""
    import json

    if not isinstance(calls, list):
        raise BadInput(f"Message {i}: `tool_calls` must be a list.")
    out = []
    for call in calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name:
            raise BadInput(f"Message {i}: each tool call needs `function.name`.",
                           'Send tool calls as {"id", "type": "function", "function": {"name", "arguments"}}.')
        arguments = function.get("arguments") or "{}"
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                raise BadInput(f"Message {i}: the arguments of the call to `{name}` are not JSON.",
                               "Send `arguments` as the JSON text of an object, as the model wrote it.") from None
        if not isinstance(arguments, dict):
            raise BadInput(f"Message {i}: the arguments of the call to `{name}` must be a JSON object.")
        out.append({"id": str(call.get("id") or ""), "type": "function",
                    "function": {"name": name, "arguments": arguments}})
    return out


def build(system_prompt: str | None, history: Iterable[Mapping[str, Any]], user_text: str | None = None) -> list[Message]:
    """The conversation for one reply: system prompt, earlier turns, the new user message."""
    messages = normalize(history)
    messages = [m for m in messages if m["role"] != "system"]
    if system_prompt and system_prompt.strip():
        messages.insert(0, {"role": "system", "content": system_prompt.strip()})
    if user_text is not None:
        messages.append({"role": "user", "content": user_text})
    return messages


@dataclass(frozen=True)
class Fitted:
    messages: list[Message]
    prompt_tokens: int
    dropped: int  # how many earlier messages were left out to fit
    retrieved: str | None = None  # documents too long to go whole: what went in instead

    @property
    def notice(self) -> str | None:
        said = [self.retrieved] if self.retrieved else []
        if self.dropped:
            noun = "message" if self.dropped == 1 else "messages"
            said.append(f"The {self.dropped} oldest {noun} no longer fit the model's context and were left out of "
                        "the prompt.")
        return " ".join(said) or None


def fit(
    messages: list[Message],
    count_tokens: Callable[[list[Message]], int],
    context_length: int,
    max_new_tokens: int,
) -> Fitted:
    """Drop the oldest turns until the prompt plus `max_new_tokens` fits `context_length`.

    The system prompt (if first) and the newest message are always kept. `count_tokens` must
    return the exact templated prompt length; the count is monotonic in the number of dropped
    messages, so a binary search finds the fewest drops with O(log n) tokenizations.
    """
    if not messages:
        raise BadInput("There is no message to answer.", "Type a message first.")
    if not messages[-1]["content"].strip():
        raise BadInput("The message is empty.", "Type a message first.")
    budget = context_length - max_new_tokens
    head = messages[:1] if messages[0]["role"] == "system" else []
    newest = messages[-1]["content"]
    if isinstance(newest, DocumentText) and count_tokens(head + messages[-1:]) > budget:
        retrieved = retrieve(head, messages[-1], count_tokens, budget)
        if retrieved is not None:
            fitted = fit([*messages[:-1], retrieved[0]], count_tokens, context_length, max_new_tokens)
            return Fitted(fitted.messages, fitted.prompt_tokens, fitted.dropped, retrieved[1])
    middle = messages[len(head) : -1]
    last = messages[-1:]

    def candidate(drop: int) -> list[Message]:
        rest = middle[drop:]
        # Never start the kept history with an assistant turn: drop it with its user message.
        while rest and rest[0]["role"] == "assistant":
            rest = rest[1:]
        return head + rest + last

    full = count_tokens(messages)
    if full <= budget:
        return Fitted(messages, full, 0)
    minimal = count_tokens(head + last)
    if minimal > budget:
        raise ContextOverflow(
            f"This message is too long for the model: with the system prompt it takes {minimal} tokens, "
            f"and the context holds {context_length} tokens including the {max_new_tokens} reserved for the reply.",
            "Shorten the message, or lower “max new tokens”. Your text is kept.",
        )
    lo, hi = 1, len(middle)  # hi always fits (it is head + last)
    while lo < hi:
        mid = (lo + hi) // 2
        if count_tokens(candidate(mid)) <= budget:
            hi = mid
        else:
            lo = mid + 1
    kept = candidate(lo)
    return Fitted(kept, count_tokens(kept), len(messages) - len(kept))


def retrieve(head: list[Message], message: Message, count_tokens: Callable[[list[Message]], int],
             budget: int) -> tuple[Message, str] | None:
    """The newest message with, instead of its whole documents, the passages most relevant to its question that
    fit `budget` with `head` (the system prompt); None when not even the question leaves room."""
    from .documents.attach import attach, prompt_text

    text: DocumentText = message["content"]
    empty = count_tokens([*head, {**message, "content": ""}])
    room = budget - count_tokens([*head, {**message, "content": text.question}]) - 8  # the blank lines between

    def count(piece: str) -> int:
        return count_tokens([*head, {**message, "content": piece}]) - empty

    if room <= 0:
        return None
    attached = attach(list(text.documents), text.question, room, count)
    passages = [s for s in attached.sources if not s.get("whole")]
    names = sorted({s["file"] for s in passages})
    note = (f"{', '.join(names)} did not fit the context whole: the {len(passages)} passage"
            f"{'s' if len(passages) != 1 else ''} most relevant to the question went in instead.")
    return {**message, "content": prompt_text(attached.context, text.question)}, note


def check_size(messages: list[Message], max_messages: int, max_chars: int) -> None:
    """Refuse a conversation over the server's caps before any tokenizing work."""
    check_count(messages, max_messages)
    check_lengths(messages, max_chars)


def check_count(messages: list, max_messages: int) -> None:
    """Too many messages (checkable on raw ones, before any per-message work)."""
    if len(messages) > max_messages:
        raise BadInput(f"The conversation is too long: {len(messages)} messages, and this server takes at most "
                       f"{max_messages}.",
                       "Start a new chat, or leave out older messages.")


def check_lengths(messages: list[Message], max_chars: int) -> None:
    """A message longer than the cap (on normalized messages)."""
    for i, message in enumerate(messages):
        text = message["content"]
        typed = text.question if isinstance(text, DocumentText) else text  # documents: capped by the body's size
        if len(typed) > max_chars:
            raise BadInput(f"Message {i + 1} is too long: {len(typed)} characters, and this server "
                           f"takes at most {max_chars} per message.", "Shorten it, or send it in parts.")
