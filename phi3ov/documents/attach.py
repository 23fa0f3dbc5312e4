"""Documents attached to a message: what the prompt reads, what the chat shows (chips, Sources) and what the
conversation keeps for follow-ups.

A document that fits the room goes in whole; otherwise its passages are ranked against the question and the best
that fit go in, and the prompt says which ones they are (file, page, passage). The text goes inside the user
message it came with, before the question, and never changes afterwards: a follow-up's prompt starts with the same
tokens, so the prefix cache serves the document without reading it again. A follow-up about a document that was
too long to go in whole gets passages of its own, chosen for its question, among those not in the prompt yet.

Document text is message text: the engine defuses chat markers in it like in anything typed (special_tokens.py),
and the chat shows it as text (ui/markup.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import budget as budgets
from .extract import Document
from .passages import Passage, split
from .retrieve import rank

KEEP_CHARS = 300_000  # a document's text longer than this is not kept in the browser with the chat
Count = Callable[[str], int]


@dataclass
class Attachment:
    context: str  # what the prompt reads before the question ("" for none)
    documents: list[dict[str, Any]] = field(default_factory=list)  # the chips, and the passages kept for follow-ups
    sources: list[dict[str, Any]] = field(default_factory=list)  # what went into the prompt

    def record(self) -> dict[str, Any]:
        """What the message keeps (only the parts there are)."""
        out: dict[str, Any] = {}
        if self.context:
            out["context"] = self.context
        if self.documents:
            out["documents"] = self.documents
        if self.sources:
            out["sources"] = self.sources
        return out


def prompt_text(context: str | None, question: str) -> str:
    """A user message as the model reads it: its documents, then what was typed."""
    return f"{context}\n\n{question}" if context else question


def pages_of(document: Document) -> str:
    n = len(document.pages)
    return f"{n} page{'s' if n != 1 else ''}"


def chip(document: Document, tokens: int, whole: bool, passages: Sequence[Passage]) -> dict[str, Any]:
    kept = len(document.text) <= KEEP_CHARS
    out: dict[str, Any] = {"name": document.name, "kind": document.kind,
                           "pages": len(document.pages) if document.paged else None, "tokens": tokens, "whole": whole,
                           "kept": kept or whole}
    if not whole and kept:
        out["passages"] = [[p.page, p.index, p.text] for p in passages]
    return out


def whole_block(document: Document) -> str:
    return f"Attached document “{document.name}” ({pages_of(document)}), the whole document:\n\n{document.text}"


def passage_label(passage: Passage, paged: bool) -> str:
    where = f"page {passage.page}, " if paged else ""
    return f"[{passage.file}, {where}passage {passage.index}]"


def source(passage: Passage, paged: bool) -> dict[str, Any]:
    return {"file": passage.file, "page": passage.page if paged else None, "passage": passage.index,
            "text": passage.text}


def attach(documents: Sequence[Document], question: str, room: int, count: Count, embedder: Any = None) -> Attachment:
    """Documents just attached to the message `question`, given `room` tokens of the prompt (budget.room).

    All of them whole when they fit; otherwise the smallest go whole while they take at most half the room, and
    the others give the passages that fill what is left."""
    tokens = {d.name: count(d.text) for d in documents}
    whole: list[Document] = []
    if budgets.whole_fits(list(tokens.values()), room):
        whole = list(documents)
    else:
        for d in sorted(documents, key=lambda d: tokens[d.name]):
            if budgets.whole_fits([tokens[w.name] for w in [*whole, d]], room // 2):
                whole.append(d)
    names = {d.name for d in whole}
    rest = [d for d in documents if d.name not in names]
    left = room - sum(tokens[d.name] + budgets.LABEL_TOKENS for d in whole)
    passages = {d.name: split(d) for d in rest}
    ranked = rank([p for ps in passages.values() for p in ps], question, embedder) if rest else []
    relevant = [p for p, score in ranked if score > 0] or [p for p, _ in ranked]  # none shares a word: in order
    chosen = budgets.fill(relevant, count, left) if rest else []
    blocks = [whole_block(d) for d in documents if d.name in names]
    if rest:
        blocks.append(passage_blocks(rest, passages, chosen, "Attached"))
    sources = [{"file": d.name, "whole": True, "pages": len(d.pages) if d.paged else None} for d in whole]
    sources += [source(p, paged(rest, p.file)) for p in chosen]
    chips = [chip(d, tokens[d.name], d.name in names, passages.get(d.name, ())) for d in documents]
    return Attachment("\n\n".join(blocks), chips, sources)


def paged(documents: Iterable[Any], name: str) -> bool:
    for d in documents:
        if (d.name if isinstance(d, Document) else d.get("name")) == name:
            return d.paged if isinstance(d, Document) else d.get("pages") is not None
    return False


def passage_blocks(documents: Sequence[Any], passages: dict[str, list[Passage]], chosen: list[Passage],
                   how: str) -> str:
    """The prompt's text for chosen passages, each document introduced by what is there and what is not."""
    blocks = []
    for d in documents:
        name = d.name if isinstance(d, Document) else d["name"]
        mine = [p for p in chosen if p.file == name]
        total = len(passages.get(name) or ())
        is_paged = paged([d], name)
        pages = f"{len(d.pages) if isinstance(d, Document) else d['pages']} pages, " if is_paged else ""
        if not mine:
            blocks.append(f"{how} document “{name}” ({pages}{total} passages): too long to read whole here, and no "
                          "passage of it fitted for this question.")
            continue
        listed = ", ".join(str(p.index) for p in mine)
        head = (f"{how} document “{name}” ({pages}{total} passages) is too long to read whole here. Below are only "
                f"the {len(mine)} passages most relevant to the question (passages {listed}); the rest is left out.")
        blocks.append("\n\n".join([head, *(f"{passage_label(p, is_paged)}\n{p.text}" for p in mine)]))
    return "\n\n".join(blocks)


def kept_passages(messages: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, list[Passage]], set]:
    """From a conversation: the documents that went in as passages and were kept, their passages, and which
    passages are in the prompt already ((file, passage) pairs)."""
    documents: list[dict[str, Any]] = []
    passages: dict[str, list[Passage]] = {}
    used: set[tuple[str, int]] = set()
    for message in messages:
        for s in message.get("sources") or ():
            if s.get("passage") is not None:
                used.add((s["file"], s["passage"]))
        for d in message.get("documents") or ():
            if not d.get("whole") and d.get("passages") and d["name"] not in passages:
                documents.append(d)
                passages[d["name"]] = [Passage(d["name"], int(page), int(index), text)
                                       for page, index, text in d["passages"]]
    return documents, passages, used


def follow_up(messages: Sequence[dict[str, Any]], question: str, room: int, count: Count,
              embedder: Any = None) -> Attachment:
    """A message with no attachment of its own in a conversation that has documents too long to go in whole: more
    of their passages, the best for this question among those not in the prompt yet (none: an empty attachment)."""
    documents, passages, used = kept_passages(messages)
    if not documents:
        return Attachment("")
    fresh = [p for ps in passages.values() for p in ps if (p.file, p.index) not in used]
    chosen = budgets.fill((p for p, score in rank(fresh, question, embedder) if score > 0), count, room)
    if not chosen:
        return Attachment("")
    documents = [d for d in documents if any(p.file == d["name"] for p in chosen)]
    return Attachment(passage_blocks(documents, passages, chosen, "Earlier attached"), [],
                      [source(p, paged(documents, p.file)) for p in chosen])
