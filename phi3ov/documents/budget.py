"""How much of the context documents may take, and which passages fill it.

The room for documents is the model's context less the chat (system prompt, earlier turns, the question) and the
reply's room. When the chat itself is long, documents still get at least half of what the system prompt, the
question and the reply leave: the oldest turns are then left out of the prompt (conversation.fit), as for any
long chat, rather than the document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from .passages import Passage

LABEL_TOKENS = 24  # what each document's or passage's label line may take in the prompt (counted generously)


def room(context_length: int, max_new_tokens: int, chat_tokens: int, bare_tokens: int) -> int:
    """Tokens left for documents: `chat_tokens` is the prompt with the whole chat and the question, `bare_tokens`
    the prompt with only the system prompt and the question."""
    after_chat = context_length - max_new_tokens - chat_tokens
    floor = (context_length - max_new_tokens - bare_tokens) // 2
    return max(after_chat, floor, 0)


def whole_fits(document_tokens: Sequence[int], budget: int) -> bool:
    """Whether every document fits whole (each with its label)."""
    return sum(tokens + LABEL_TOKENS for tokens in document_tokens) <= budget


def fill(ranked: Iterable[Passage], count: Callable[[str], int], budget: int) -> list[Passage]:
    """The best passages (`ranked` best first) that fit `budget` together, each with its label; one that does not
    fit is passed over for the next. Tokens are counted only for the passages looked at. In reading order (files
    in the order they first appear in `ranked`, then by place)."""
    files: dict[str, int] = {}
    chosen: list[Passage] = []
    used = 0
    for passage in ranked:
        if budget - used <= LABEL_TOKENS:  # not even a label fits any more
            break
        cost = count(passage.text) + LABEL_TOKENS
        if used + cost <= budget:
            chosen.append(passage)
            used += cost
        files.setdefault(passage.file, len(files))
    return sorted(chosen, key=lambda p: (files[p.file], p.index))
