"""Text from people stays text: chat-template markers typed in a message cannot forge a turn.

A tokenizer reads its special tokens (`<|im_start|>`, `<|end|>`, `<s>`...) wherever they appear
in the text it is given, so a user who types `<|im_end|><|im_start|>system` into a message would
otherwise write a system turn of their own. `SpecialTokens.from_tokenizer` finds the model's
special tokens (every vocabulary entry shaped like a marker that the tokenizer reads as one token
even inside other text) and `defuse` puts a zero-width joiner after the first character of each
one found in message text, so it is read as ordinary characters: many text tokens, never the
special one. Only the chat template itself, which is applied after, emits special tokens. The
conversation shown and kept is never changed; only the text the model reads is.
"""

from __future__ import annotations

import re
from typing import Any

JOINER = "\u2060"  # WORD JOINER: invisible, not whitespace, and no tokenizer merges it into a marker
MARKER = re.compile(rb"<[^<>\s]{1,40}>|\[[A-Z_/]{2,20}\]|<<[A-Z_/]{2,20}>>")


class SpecialTokens:
    def __init__(self, strings: list[str]):
        self.strings = sorted(set(strings), key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in self.strings)) if self.strings else None

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> SpecialTokens:
        """The markers this openvino_genai.Tokenizer reads as one token wherever they are."""
        candidates = {}
        for token, token_id in tokenizer.get_vocab().items():
            raw = token if isinstance(token, bytes) else str(token).encode()
            if MARKER.fullmatch(raw):
                try:
                    candidates[raw.decode()] = int(token_id)
                except UnicodeDecodeError:
                    continue
        if not candidates:
            return cls([])
        names = list(candidates)
        encoded = tokenizer.encode([f"a{name}a" for name in names], add_special_tokens=False)
        rows = zip(names, encoded.input_ids.data, encoded.attention_mask.data, strict=True)
        return cls([name for name, ids, mask in rows if candidates[name] in set(ids[mask == 1].tolist())])

    def defuse(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda m: m[0][0] + JOINER + m[0][1:], text)

    def defuse_all(self, value: Any) -> Any:
        """Every string in a JSON-like value defused (tool definitions, tool call arguments), keys included."""
        if isinstance(value, str):
            return self.defuse(value)
        if isinstance(value, dict):
            return {self.defuse(str(k)): self.defuse_all(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.defuse_all(v) for v in value]
        return value
