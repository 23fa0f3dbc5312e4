"""--embedding-model: passages ranked by a real openvino_genai.TextEmbeddingPipeline as well as by BM25. The model is
a tiny one built here (tests/support/tiny_embedding.py: the bundled tokenizer, a random vector per token), so
texts that share tokens are similar, even where they share no whole word."""

from __future__ import annotations

import pytest
from support.documents import long_pdf
from support.tiny_embedding import build

from phi3ov.documents import attach, extract, rank, split
from phi3ov.documents.embed import Embedder
from phi3ov.errors import BadOptions

QUESTION = "secret launch code"


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return Embedder(build(tmp_path_factory.mktemp("embedding")))


@pytest.fixture(scope="module")
def minutes():
    return extract("minutes.pdf", long_pdf(pages=12, fact_page=10))


def test_texts_sharing_tokens_are_more_similar(embedder):
    near, far = embedder.similarities(["the launch code is 7719", "the ferries in winter"], "launch code 7719")
    assert near > far and embedder.similarities([], "anything") == []


def test_the_fused_ranking_puts_the_fact_first(embedder, minutes):
    passages = split(minutes)
    similar = embedder.similarities([p.text for p in passages], QUESTION)
    assert passages[max(range(len(passages)), key=similar.__getitem__)].page == 10  # the embedding alone
    ranked = rank(passages, QUESTION, embedder)
    assert ranked[0][0].page == 10 and "7719" in ranked[0][0].text
    assert all(score > 0 for _, score in ranked)  # the embedding ranks every passage


def test_attach_with_the_embedding_puts_the_fact_in(embedder, minutes):
    def words(text: str) -> int:
        return len(text.split())

    got = attach([minutes], QUESTION, room=200, count=words, embedder=embedder)
    assert any(s["page"] == 10 and "7719" in s["text"] for s in got.sources)


def test_a_folder_that_is_not_an_embedding_model_is_refused_at_start(tmp_path):
    with pytest.raises(BadOptions, match=r"--embedding-model .* is not an OpenVINO text-embedding model folder: "
                                         r"openvino_model.xml, openvino_tokenizer.xml missing"):
        Embedder(tmp_path)
