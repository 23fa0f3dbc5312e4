"""The passages most relevant to a question, by BM25 (the `bm25s` library: word statistics, no model).

English stop words are left out of both sides. A question that shares no word with the passages ranks them in
reading order, so a choice is always made and always the same for the same question.
"""

from __future__ import annotations

from collections.abc import Sequence

from .passages import Passage


def rank(passages: Sequence[Passage], question: str) -> list[tuple[Passage, float]]:
    """Every passage with its score, best first (ties in reading order)."""
    if not passages:
        return []
    scores = bm25_scores([p.text for p in passages], question)
    order = sorted(range(len(passages)), key=lambda i: (-scores[i], i))
    return [(passages[i], scores[i]) for i in order]


def bm25_scores(texts: list[str], question: str) -> list[float]:
    import bm25s

    corpus = bm25s.tokenize(texts, stopwords="en", show_progress=False)
    if not corpus.vocab:
        return [0.0] * len(texts)
    query = bm25s.tokenize([question], stopwords="en", show_progress=False, return_ids=False)[0]
    known = [word for word in query if word in corpus.vocab]
    if not known:
        return [0.0] * len(texts)
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    return [float(s) for s in retriever.get_scores(known)]
