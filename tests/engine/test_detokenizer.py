"""The streaming detokenizer on the real tokenizers: pieces join to the pipeline's own text, at once."""

from __future__ import annotations

import pytest

from phi3ov.detokenizer import Detokenizer

TEXTS = ["Héllo wörld! 日本語のテキスト 🎉🎉 and code: def f(x):\n    return x  # done. Ça va?",
         " a leading space", "a\n\n  b . , end", "مرحبا بالعالم، كيف حالك؟ السلام عليكم"]


@pytest.fixture(scope="module")
def tokenizer(bundled_ref):
    import openvino_genai as ov_genai

    return ov_genai.Tokenizer(str(bundled_ref.path))


@pytest.mark.parametrize("text", TEXTS)
def test_pieces_join_to_the_decoded_reply_token_by_token(tokenizer, text):
    ids = [int(i) for i in tokenizer.encode(text, add_special_tokens=False).input_ids.data[0]]
    detokenizer = Detokenizer(tokenizer)
    pieces = [detokenizer.push([i]) for i in ids] + [detokenizer.end()]
    assert "".join(pieces) == tokenizer.decode(ids)
    assert pieces[0], "the first token's text comes out at once, not tokens later"
    assert all(not piece.startswith("\ufffd") and "\ufffd" not in piece for piece in pieces)


def test_several_tokens_at_once_and_an_incomplete_character_waits(tokenizer):
    ids = [int(i) for i in tokenizer.encode("🎉 ok", add_special_tokens=False).input_ids.data[0]]
    assert len(ids) >= 3  # the emoji is several byte tokens
    detokenizer = Detokenizer(tokenizer)
    assert detokenizer.push(ids[:1]) == ""  # a part of the emoji's bytes: nothing certain yet
    assert detokenizer.push(ids[1:]) + detokenizer.end() == tokenizer.decode(ids)


def test_text_comes_tokens_earlier_than_with_genai_text_streamer(tokenizer):
    import openvino_genai as ov_genai

    ids = [int(i) for i in tokenizer.encode("The sea is calm and blue today.", add_special_tokens=False).input_ids.data[0]]
    seen: list[str] = []
    streamer = ov_genai.TextStreamer(tokenizer, lambda text: seen.append(text) or ov_genai.StreamingStatus.RUNNING)
    theirs = ours = None
    detokenizer = Detokenizer(tokenizer)
    for n, token in enumerate(ids):
        streamer.write([token])
        if theirs is None and seen:
            theirs = n
        if detokenizer.push([token]) and ours is None:
            ours = n
    assert ours == 0 and (theirs is None or theirs > ours)
