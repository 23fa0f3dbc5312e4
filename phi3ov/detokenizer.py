"""Token ids in, text out, as soon as the text is certain: no tokens held back.

openvino_genai's TextStreamer holds back the text of the newest few tokens, because with some
tokenizers the text of a token can change once the next one is known. That delay is paid by
every reply's first visible text (three decode steps: ~40 ms on a small model, ~300 ms on
Phi-3-mini on a busy 2-core machine). This detokenizer decodes each new token together with a
few tokens of the reply before it (so SentencePiece's spaces and byte-level merges come out right)
and emits what the new token adds; only text that ends in an incomplete UTF-8 character (U+FFFD)
waits for the next token. The streamed pieces always join to `decode(reply ids)`, the text the
pipeline itself would return. The same scheme as vLLM's incremental decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REPLACEMENT = "\ufffd"
CONTEXT = 5  # tokens decoded before the new ones


@dataclass(frozen=True)
class TokenTexts:
    """What each token's text is, so most tokens need no tokenizer call: `pieces[id]`, its text after other text
    (None: the tokenizer decodes it), and `starts[id]`, its text at the start of a reply where that differs
    (SentencePiece drops a leading space there)."""

    pieces: list[str | None]
    starts: dict[int, str | None]

    def texts(self, ids: list[int], at_start: bool) -> list[str] | None:
        """The texts of `ids` following what was emitted (or opening the reply, `at_start`); None if one is
        not known."""
        out = []
        for n, i in enumerate(ids):
            piece = self.pieces[i] if 0 <= i < len(self.pieces) else None
            if at_start and n == 0 and piece is not None:
                piece = self.starts.get(i, piece)
            if piece is None:
                return None
            out.append(piece)
        return out


def token_texts(tokenizer: Any, checks: int = 200) -> TokenTexts | None:
    """The text each token adds wherever it stands after the first: `decode([a, id])` less `decode([a])` for an
    anchor token "a" (so SentencePiece's leading spaces come out as they do mid-text); None for a token whose text
    is a part of a character; and its text alone, `decode([id])`, for a reply's first token. None for the whole
    tokenizer when the table does not reproduce its own decode: on `checks` random token sequences and on real
    text in several scripts, every window of whole-character tokens must decode to its first token's text alone
    and the others' pieces. Built in a few batched calls (~0.2 s at load)."""
    import random

    try:
        size = len(tokenizer.get_vocab())
        anchor = [int(i) for i in tokenizer.encode("a", add_special_tokens=False).input_ids.data[0]]
    except Exception:  # noqa: BLE001 - a tokenizer this cannot read: every token is decoded by the tokenizer
        return None
    if len(anchor) != 1 or tokenizer.decode(anchor, skip_special_tokens=True) != "a":
        return None
    a = anchor[0]
    texts = tokenizer.decode([[a, i] for i in range(size)], skip_special_tokens=True)
    # Between two anchors too: a token ending in a part of a character shows there (a lone one at the end of a
    # text is dropped, not replaced). Empty pieces (special tokens, lone bytes) stay with the tokenizer.
    framed = tokenizer.decode([[a, i, a] for i in range(size)], skip_special_tokens=True)
    again = tokenizer.decode([a, a], skip_special_tokens=True)[1:]  # the anchor after text: "a", or " a"
    pieces = [t[1:] if t.startswith("a") and len(t) > 1 and REPLACEMENT not in t and f == t + again else None
              for t, f in zip(texts, framed, strict=True)]
    whole = [i for i, piece in enumerate(pieces) if piece is not None]
    if not whole:
        return None
    rng = random.Random(0)
    samples = [[rng.choice(whole) for _ in range(8)] for _ in range(checks)]
    for text in CHECK_TEXTS:
        ids = [int(i) for i in tokenizer.encode(text, add_special_tokens=False).input_ids.data[0]]
        samples += [ids[i:i + 8] for i in range(0, len(ids) - 1)
                    if all(pieces[j] is not None for j in ids[i:i + 8])]
    decoded = tokenizer.decode(samples, skip_special_tokens=True)
    alone = tokenizer.decode([[i] for i in range(size)], skip_special_tokens=True)
    for sample, text in zip(samples, decoded, strict=True):
        if text != alone[sample[0]] + "".join(pieces[i] for i in sample[1:]):
            return None
    # None: a token whose text alone is no whole character, which the tokenizer decodes when it opens a reply
    starts = {i: alone[i] if alone[i] and REPLACEMENT not in alone[i] else None for i in whole if alone[i] != pieces[i]}
    return TokenTexts(pieces, starts)


CHECK_TEXTS = ("Hello, world! It's a test: 3.14 (ok) - [yes]; \"quoted\" end.\n\n  Indented  code()  ",
               "مرحبا بالعالم، كيف حالك؟", "日本語のテキスト。", "Ça va? Naïve café, über.", " a , b . c ! d ? e 's")


class Detokenizer:
    """`push(ids) -> new text`; `end() -> any text still held`. With `texts` (token_texts), a token that opens the
    reply or follows text already emitted, and whose own text is whole characters, takes its text from the table:
    no call of the tokenizer (whose decode is an inference: ~0.5 ms a token on a busy CPU, serialized with the
    decode steps; 2-4 ms for a reply's first token, measured on Phi-3-mini's shape)."""

    def __init__(self, tokenizer: Any, texts: TokenTexts | None = None):
        self.tokenizer = tokenizer
        self.table = texts
        self.ids: list[int] = []
        self.prefix = 0  # ids[prefix:read] were decoded last time, as context
        self.read = 0  # the text of ids before this is emitted
        self.text = ""

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True) if ids else ""

    def _decode_both(self, context: list[int], ids: list[int]) -> tuple[str, str]:
        """`decode(context)` and `decode(ids)` in one call of the tokenizer (a third of the time of two)."""
        if not context:
            return "", self._decode(ids)
        before, after = self.tokenizer.decode([context, ids], skip_special_tokens=True)
        return before, after

    def push(self, ids: list[int]) -> str:
        at_start = not self.ids  # the reply's first tokens
        caught_up = self.read == len(self.ids)  # everything so far is emitted
        self.ids.extend(int(i) for i in ids)
        if caught_up and self.table is not None:
            known = self.table.texts(self.ids[self.read:], at_start)
            if known is not None:
                new = "".join(known)
                self.prefix, self.read = max(self.read - CONTEXT + 1, 0), len(self.ids)
                self.text += new
                return new
        before, after = self._decode_both(self.ids[self.prefix:self.read], self.ids[self.prefix:])
        if len(after) <= len(before) or after.endswith(REPLACEMENT) or not after.startswith(before):
            return ""  # nothing certain yet: wait for the next token
        self.prefix, self.read = max(self.read - CONTEXT + 1, 0), len(self.ids)
        new = after[len(before):]
        self.text += new
        return new

    def end(self) -> str:
        """The text not emitted yet (an incomplete character at the very end, say)."""
        whole = self._decode(self.ids)
        rest = whole[len(self.text):] if whole.startswith(self.text) else ""
        self.text += rest
        return rest
