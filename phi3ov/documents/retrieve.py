"""The passages most relevant to a question, by BM25 (the `bm25s` library: word statistics, no model), and with
`--embedding-model` by an embedding's similarity too (embed.py), the two rankings fused.

English stop words are left out of both sides. A question that shares no word with the passages ranks them in
reading order, so a choice is always made and always the same for the same question.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .passages import Passage

RRF_K = 60  # reciprocal rank fusion's usual constant


def rank(passages: Sequence[Passage], question: str, embedder: Any = None) -> list[tuple[Passage, float]]:
    """Every passage with its score, best first (ties in reading order). With an `embedder` (embed.py), BM25's ranks
    and the embedding's are fused (reciprocal rank fusion), and every passage scores above 0: the embedding ranks
    them all."""
    if not passages:
        return []
    texts = [p.text for p in passages]
    scores = bm25_scores(texts, question)
    if embedder is not None:
        scores = fused(scores, embedder.similarities(texts, question))
    order = sorted(range(len(passages)), key=lambda i: (-scores[i], i))
    return [(passages[i], scores[i]) for i in order]


def fused(bm25: list[float], similarity: list[float], k: int = RRF_K) -> list[float]:
    """Reciprocal rank fusion: each item scores 1 / (k + its place) in the similarity ranking, plus as much in
    BM25's where BM25 finds it relevant at all (above 0)."""
    out = [0.0] * len(bm25)
    for scores, counted in ((similarity, False), (bm25, True)):
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        for place, i in enumerate(order, start=1):
            if not counted or scores[i] > 0:
                out[i] += 1 / (k + place)
    return out


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
