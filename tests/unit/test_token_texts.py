"""The table of token texts on a tokenizer that decodes as SentencePiece does: a reply's first token opens
without the leading space it has mid-text, from the table, with no call of the tokenizer."""

from __future__ import annotations

from types import SimpleNamespace

from phi3ov.detokenizer import Detokenizer, token_texts


class SentencePieceLike:
    """"▁" is a space; encoding puts one before the text and decoding drops a text's leading space."""

    VOCAB = ["<unk>", "▁a", "▁the", "▁sea", "▁is", "▁calm", ".", "s", "▁", "b", "\n"]

    def __init__(self) -> None:
        self.calls = 0

    def get_vocab(self) -> dict[str, int]:
        return {piece: i for i, piece in enumerate(self.VOCAB)}

    def encode(self, text: str, add_special_tokens: bool = False) -> SimpleNamespace:
        rest, ids = "▁" + text.replace(" ", "▁"), []
        while rest:
            match = max((p for p in self.VOCAB[1:] if rest.startswith(p)), key=len, default=None)
            if match is None:  # not in this vocabulary: left out
                rest = rest[1:]
                continue
            ids.append(self.VOCAB.index(match))
            rest = rest[len(match):]
        return SimpleNamespace(input_ids=SimpleNamespace(data=[ids]))

    def _text(self, ids: list[int]) -> str:
        text = "".join(self.VOCAB[i] for i in ids if i).replace("▁", " ")
        return text[1:] if text.startswith(" ") else text

    def decode(self, ids, skip_special_tokens: bool = True):
        self.calls += 1
        return [self._text(seq) for seq in ids] if ids and isinstance(ids[0], list) else self._text(ids)


def test_a_replys_first_token_opens_without_its_space_and_from_the_table():
    tokenizer = SentencePieceLike()
    table = token_texts(tokenizer)
    assert table is not None and table.pieces[2] == " the" and table.starts[2] == "the"
    ids = tokenizer.encode("the sea is calm.").input_ids.data[0]
    tokenizer.calls = 0
    detokenizer = Detokenizer(tokenizer, table)
    pieces = [detokenizer.push([i]) for i in ids]
    assert pieces == ["the", " sea", " is", " calm", "."] and "".join(pieces) == tokenizer.decode(ids)
    assert tokenizer.calls == 1  # only the check above: every token, the first too, came from the table


def test_a_token_whose_text_alone_is_empty_opens_through_the_tokenizer():
    tokenizer = SentencePieceLike()
    table = token_texts(tokenizer)
    space = tokenizer.VOCAB.index("▁")
    assert table.pieces[space] == " " and table.starts[space] is None  # alone it decodes to nothing
    ids = [space, tokenizer.VOCAB.index("▁the")]
    detokenizer = Detokenizer(tokenizer, table)
    assert "".join(detokenizer.push([i]) for i in ids) + detokenizer.end() == tokenizer.decode(ids) == " the"


def test_several_tokens_at_once_open_a_reply_from_the_table():
    tokenizer = SentencePieceLike()
    table = token_texts(tokenizer)
    ids = tokenizer.encode("the seas.").input_ids.data[0]
    tokenizer.calls = 0
    assert Detokenizer(tokenizer, table).push(ids) == "the seas." and tokenizer.calls == 0
