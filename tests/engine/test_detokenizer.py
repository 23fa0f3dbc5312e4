"""The streaming detokenizer on the real tokenizers: pieces join to the pipeline's own text, at once."""

from __future__ import annotations

import pytest

from phi3ov.detokenizer import Detokenizer, token_texts

TEXTS = ["Héllo wörld! 日本語のテキスト 🎉🎉 and code: def f(x):\n    return x  # done. Ça va?",
         " a leading space", "a\n\n  b . , end", "مرحبا بالعالم، كيف حالك؟ السلام عليكم"]


@pytest.fixture(scope="module")
def tokenizer(bundled_ref):
    import openvino_genai as ov_genai

    return ov_genai.Tokenizer(str(bundled_ref.path))


@pytest.fixture(scope="module")
def table(tokenizer):
    return token_texts(tokenizer)


@pytest.mark.parametrize("use_table", [False, True], ids=["tokenizer", "table"])
@pytest.mark.parametrize("text", TEXTS)
def test_pieces_join_to_the_decoded_reply_token_by_token(tokenizer, table, text, use_table):
    ids = [int(i) for i in tokenizer.encode(text, add_special_tokens=False).input_ids.data[0]]
    detokenizer = Detokenizer(tokenizer, table if use_table else None)
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


class Counting:
    """The real tokenizer, counting its decode calls (or, `wrong`, decoding sequences of several tokens wrongly)."""

    def __init__(self, tokenizer, wrong: bool = False):
        self.tokenizer, self.wrong, self.calls = tokenizer, wrong, 0

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def decode(self, ids, **kwargs):
        self.calls += 1
        out = self.tokenizer.decode(ids, **kwargs)
        if self.wrong and ids and isinstance(ids[0], list):
            return [text + "!" if len(seq) > 3 else text for seq, text in zip(ids, out, strict=True)]
        return out


def test_the_table_spares_the_tokenizer_for_whole_character_tokens(tokenizer, table):
    assert table is not None and sum(p is not None for p in table.pieces) > 0.9 * len(table.pieces)
    ids = [int(i) for i in tokenizer.encode("The sea is calm and blue today, and the boats are out.",
                                            add_special_tokens=False).input_ids.data[0]]
    counting = Counting(tokenizer)
    detokenizer = Detokenizer(counting, table)
    text = "".join(detokenizer.push([i]) for i in ids)
    assert text == tokenizer.decode(ids) and counting.calls == 0  # the first token's text is in the table too


def test_a_table_that_does_not_reproduce_the_tokenizer_is_not_used(tokenizer):
    assert token_texts(Counting(tokenizer, wrong=True)) is None
