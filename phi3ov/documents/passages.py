"""A document split into passages: whole paragraphs of about `words` words, never across a page, each with its
page and its place in the document (both from 1)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .extract import Document

PASSAGE_WORDS = 120
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Passage:
    file: str
    page: int
    index: int  # its place in the document, from 1
    text: str


def pieces(paragraph: str, words: int) -> list[str]:
    """A paragraph over `words` words, cut at sentence ends where it can be, else every `words` words."""
    if len(paragraph.split()) <= words:
        return [paragraph]
    out: list[str] = []
    current: list[str] = []
    for sentence in SENTENCE_END.split(paragraph):
        tokens = sentence.split()
        while len(tokens) > words:  # one sentence longer than a passage (a table row, code)
            if current:
                out.append(" ".join(current))
                current = []
            out.append(" ".join(tokens[:words]))
            tokens = tokens[words:]
        if current and len(current) + len(tokens) > words:
            out.append(" ".join(current))
            current = []
        current += tokens
    if current:
        out.append(" ".join(current))
    return out


def split(document: Document, words: int = PASSAGE_WORDS) -> list[Passage]:
    """The document's passages in reading order."""
    out: list[Passage] = []
    for page in document.pages:
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", page.text) if p.strip()]
        if document.paged:  # a PDF's lines are wrapped prose: a paragraph is one line of text
            paragraphs = [" ".join(p.split()) for p in paragraphs]
        elif len(paragraphs) == 1 and "\n" in paragraphs[0]:  # lines without blank lines between (CSV, code)
            paragraphs = [line for line in paragraphs[0].splitlines() if line.strip()]
        current: list[str] = []
        size = 0
        for paragraph in (piece for p in paragraphs for piece in pieces(p, words)):
            n = len(paragraph.split())
            if current and size + n > words:
                out.append(Passage(document.name, page.number, len(out) + 1, "\n".join(current)))
                current, size = [], 0
            current.append(paragraph)
            size += n
        if current:
            out.append(Passage(document.name, page.number, len(out) + 1, "\n".join(current)))
    return out
