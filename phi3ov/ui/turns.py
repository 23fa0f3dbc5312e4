"""The conversation's turns as the Chatbot shows them, and the moves on a turn: take it back, find the reply cut at
the length limit, and the options to continue it with."""

from __future__ import annotations

from ..options import GenerationOptions
from ..structured import Constraint
from .attachments import chips, sources
from .markup import as_text_markup, closed
from .store import Chat

INTERRUPTED = "\n\n*⚠ Interrupted: the page closed before this reply finished.*"
CUT = "\n\n*✂ Stopped at the length limit. Continue writes more.*"
CUT_JSON = "\n\n*✂ Cut at the length limit: this JSON is not complete. Continue writes it with more room.*"


def cut_at_length(message: dict) -> bool:
    """A reply that ended at the length limit (max new tokens): it says so, and can be continued."""
    generation = message.get("generation")
    return message.get("role") == "assistant" and isinstance(generation, dict) \
        and generation.get("finish_reason") == "length"


def constrained(message: dict) -> bool:
    options = (message.get("generation") or {}).get("options")
    return isinstance(options, dict) and isinstance(options.get("constraint"), dict)


def shown(chat: Chat, in_flight: dict | None = None) -> list[dict[str, str]]:
    """The Chatbot's value for a conversation: a message with files shows their chips, a reply to it its Sources."""
    out, asked = [], None
    for m in chat["messages"]:
        text = closed(as_text_markup(m["content"]))  # what is added after it renders as itself
        if m["role"] == "user":
            text, asked = chips(m) + text, m
        if m.get("interrupted") and m is not in_flight:
            text += INTERRUPTED
        elif cut_at_length(m) and m is not in_flight:
            text += CUT_JSON if constrained(m) else CUT
        if m["role"] == "assistant" and m is not in_flight:
            text += sources(asked)
        out.append({"role": m["role"], "content": text})
    return out


def continued_options(cut: dict) -> GenerationOptions:
    """The options a cut reply was written with (its constraint and seed included), to continue it alike."""
    recorded = dict((cut.get("generation") or {}).get("options") or {})
    constraint = recorded.pop("constraint", None)
    recorded["seed"] = (cut.get("generation") or {}).get("seed", recorded.get("seed"))
    known = {"max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed", "stop",
             "prompt_lookup", "presence_penalty", "frequency_penalty"}
    values = {k: v for k, v in recorded.items() if k in known}
    if isinstance(constraint, dict):
        values["constraint"] = Constraint(str(constraint.get("kind")), str(constraint.get("text")))
    return GenerationOptions.parse(clamp=True, **values)


def take_last_turn(messages: list[dict]) -> str:
    """Remove the last reply(s) and the message they answer; returns that message's text."""
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()
    return messages.pop()["content"] if messages else ""


def remove(messages: list[dict], message: dict) -> None:
    """Remove this very message (not an equal one) if it is there."""
    for i, m in enumerate(messages):
        if m is message:
            del messages[i]
            return


def restore(message: dict, saved: dict) -> None:
    """Put a message back as it was saved (in place: the chat holds this very dict)."""
    message.clear()
    message.update(saved)
