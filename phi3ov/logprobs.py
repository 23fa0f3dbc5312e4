"""Log probabilities of generated tokens: the model's own log-softmax, with the most likely alternatives.

OpenVINO GenAI reports the log probability of the chosen token only (and after penalties and
temperature), so the top alternatives OpenAI's `top_logprobs` asks for cannot come from the pipeline.
`Scorer` runs the same model IR once more, token by token beside the reply: the prompt first, then each
generated token as it arrives, and takes `log_softmax(logits)` at every position. The values are the
model's raw distribution before any penalty, temperature, top-k/top-p or grammar constraint (vLLM's
default, "raw logprobs"), the same whichever engine generated the reply. The second copy of the model is
compiled at the first request that asks for log probabilities: it costs the model's memory once more and
roughly doubles the compute of that request.

`bytes` of a token are its exact UTF-8 bytes, read from the vocabulary (byte-level BPE or SentencePiece),
so tokens that split a character still add up to the text.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

from .detokenizer import Detokenizer, TokenTexts

PROMPT_CHUNK = 128  # prompt rows log-softmaxed at a time (50 MB of float64 at a 49k vocabulary)


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    bytes: list[int]
    logprob: float
    top: tuple[TokenLogprob, ...] = ()
    token_id: int = -1

    def openai(self) -> dict[str, Any]:
        """Chat completions' shape: token, logprob, bytes, top_logprobs."""
        return {"token": self.token, "logprob": self.logprob, "bytes": self.bytes,
                "top_logprobs": [{"token": t.token, "logprob": t.logprob, "bytes": t.bytes} for t in self.top]}


@dataclass(frozen=True)
class PromptToken:
    """One token of a prompt, scored: its log probability given the tokens before it (None for the first one,
    which nothing comes before), its rank there (1: the likeliest token) and the `top` likeliest tokens."""

    token_id: int
    token: str
    logprob: float | None
    rank: int | None
    top: tuple[TokenLogprob, ...] = ()

    def vllm(self) -> dict[str, dict[str, Any]] | None:
        """vLLM's `prompt_logprobs` entry: token id -> logprob, rank and text, for this token and the top ones."""
        if self.logprob is None:
            return None
        entry = {str(self.token_id): {"logprob": self.logprob, "rank": self.rank, "decoded_token": self.token}}
        for rank, alt in enumerate(self.top, 1):
            entry.setdefault(str(alt.token_id), {"logprob": alt.logprob, "rank": rank, "decoded_token": alt.token})
        return entry


@dataclass
class Piece:
    """Reply text as it streams, with the log probabilities of the tokens that made it (when asked)."""

    text: str
    logprobs: list[TokenLogprob] = field(default_factory=list)
    tokens: int = 0  # generated tokens behind this text (0 where the backend does not say)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, reversed: the character a vocabulary entry uses -> the byte it stands for."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


class TokenBytes:
    """Token id -> its bytes and its text as OpenAI shows it."""

    def __init__(self, tokenizer: Any):
        vocab = {int(i): (t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t))
                 for t, i in tokenizer.get_vocab().items()}
        byte_level = sum("Ġ" in t for t in vocab.values()) > sum("▁" in t for t in vocab.values())
        decoder = _byte_decoder()
        self._bytes: dict[int, bytes] = {}
        for token_id, text in vocab.items():
            if byte_level and all(ch in decoder for ch in text):
                raw = bytes(decoder[ch] for ch in text)
            elif not byte_level and len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
                raw = bytes([int(text[3:5], 16)])  # SentencePiece's byte fallback
            else:
                raw = text.replace("▁", " ").encode() if not byte_level else text.encode()
            self._bytes[token_id] = raw
        self.tokenizer = tokenizer

    def bytes_of(self, token_id: int) -> bytes:
        raw = self._bytes.get(token_id)
        return raw if raw is not None else self.tokenizer.decode([token_id]).encode()

    def text_of(self, token_id: int) -> str:
        raw = self.bytes_of(token_id)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:  # part of a character: OpenAI writes the bytes out
            return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)

    def entry(self, token_id: int, logprob: float, top: tuple[TokenLogprob, ...] = ()) -> TokenLogprob:
        return TokenLogprob(self.text_of(token_id), list(self.bytes_of(token_id)), logprob, top, token_id)


class Scorer:
    """A second compiled copy of the model that reads a reply's tokens and gives their log-softmax."""

    def __init__(self, xml_path: str, device: str, properties: dict[str, Any], tokenizer: Any):
        self.xml_path, self.device, self.properties = xml_path, device, properties
        self.tokens = TokenBytes(tokenizer)
        self._compiled: Any = None
        self._lock = threading.Lock()

    def _model(self) -> Any:
        with self._lock:
            if self._compiled is None:
                import openvino as ov

                core = ov.Core()
                model = core.read_model(self.xml_path)
                self._inputs = {i.get_any_name() for i in model.inputs}
                self._compiled = core.compile_model(model, self.device, self.properties)
            return self._compiled

    def session(self, prompt_ids: list[int]) -> ScoringSession:
        session = ScoringSession(self, self._model().create_infer_request())
        session.logits = session.feed(list(prompt_ids))[-1]
        return session

    def prompt(self, ids: list[int], top: int, chunk: int = PROMPT_CHUNK) -> list[PromptToken]:
        """Every prompt token's log probability given the ones before it, from one pass over the whole prompt
        (the logits of a prompt read in pieces round differently in bf16); the log-softmax is then taken
        `chunk` rows at a time, so only the model's own logits tensor is held whole."""
        session = ScoringSession(self, self._model().create_infer_request())
        logits = session.feed(list(ids), as_float64=False)
        scored = [PromptToken(ids[0], self.tokens.text_of(ids[0]), None, None)]
        for start in range(0, len(ids) - 1, chunk):
            end = min(start + chunk, len(ids) - 1)  # the last row predicts past the prompt
            scored += self._scored(logits[start:end].astype("float64"), ids[start + 1:end + 1], top)
        return scored

    def _scored(self, rows: Any, targets: list[int], top: int) -> list[PromptToken]:
        """log_softmax of each row, read at its target token, with the target's rank and the top tokens."""
        import numpy as np

        if not targets:
            return []
        shifted = rows - rows.max(axis=1, keepdims=True)
        logprobs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        at = np.arange(len(targets))
        chosen = logprobs[at, targets]
        ranks = (logprobs > chosen[:, None]).sum(axis=1) + 1
        best = None
        if top:
            best = np.argpartition(-logprobs, top - 1, axis=1)[:, :top]
            order = np.argsort(-np.take_along_axis(logprobs, best, axis=1), axis=1, kind="stable")
            best = np.take_along_axis(best, order, axis=1)
        out = []
        for i, token_id in enumerate(targets):
            alternatives = () if best is None else tuple(
                self.tokens.entry(int(j), float(logprobs[i, j])) for j in best[i])
            out.append(PromptToken(int(token_id), self.tokens.text_of(int(token_id)), float(chosen[i]),
                                   int(ranks[i]), alternatives))
        return out


class ScoringSession:
    """One reply's scoring: feed the prompt once, then score and feed each generated token in order."""

    def __init__(self, scorer: Scorer, request: Any):
        self.scorer, self.request, self.position = scorer, request, 0
        self.request.reset_state()
        self.logits: Any = None

    def feed(self, ids: list[int], as_float64: bool = True) -> Any:
        """Read these tokens after the ones fed so far; the logits at each of their positions (float64 rows,
        or the request's own float32 tensor)."""
        import numpy as np

        n = len(ids)
        inputs = {"input_ids": np.array([ids], dtype=np.int64),
                  "attention_mask": np.ones((1, self.position + n), dtype=np.int64)}
        names = self.scorer._inputs
        if "position_ids" in names:
            inputs["position_ids"] = np.arange(self.position, self.position + n, dtype=np.int64)[None]
        if "beam_idx" in names:
            inputs["beam_idx"] = np.zeros(1, dtype=np.int32)
        self.request.infer(inputs)
        self.position += n
        rows = self.request.get_tensor("logits").data[0]
        return rows.astype(np.float64) if as_float64 else rows

    def score(self, ids: list[int], top: int) -> list[TokenLogprob]:
        """The log probability of each of these generated tokens (and the `top` most likely), then feed them."""
        import numpy as np

        entries = []
        for token_id in ids:
            shifted = self.logits - self.logits.max()
            logprobs = shifted - math.log(float(np.exp(shifted).sum()))
            alternatives: tuple[TokenLogprob, ...] = ()
            if top:
                best = np.argpartition(-logprobs, top - 1)[:top]
                best = best[np.argsort(-logprobs[best], kind="stable")]
                alternatives = tuple(self.scorer.tokens.entry(int(i), float(logprobs[i])) for i in best)
            entries.append(self.scorer.tokens.entry(int(token_id), float(logprobs[token_id]), alternatives))
            self.logits = self.feed([int(token_id)])[-1]
        return entries


class ReplyTokens:
    """Generated token ids in, `Piece`s out: the text at once (see detokenizer.py), with log probabilities
    of the tokens when a scoring session is given. Stop tokens (the end of the turn) have no text and no entry."""

    def __init__(self, tokenizer: Any, session: ScoringSession | None = None, top: int = 0,
                 hidden: set[int] | None = None, texts: TokenTexts | None = None):
        self.detokenizer = Detokenizer(tokenizer, texts)
        self.session, self.top, self.hidden = session, top, hidden or set()
        self.pending: list[TokenLogprob] = []
        self.counted = 0  # tokens read since the last Piece

    def push(self, ids: list[int]) -> Piece | None:
        if self.session is not None:
            self.pending += self.session.score([i for i in ids if i not in self.hidden], self.top)
        self.counted += len(ids)
        text = self.detokenizer.push(ids)
        if not text:
            return None
        return self._piece(text)

    def end(self) -> Piece | None:
        rest = self.detokenizer.end()
        if not rest and not self.pending and not self.counted:
            return None
        return self._piece(rest)

    def _piece(self, text: str) -> Piece:
        piece = Piece(text, self.pending, self.counted)
        self.pending, self.counted = [], 0
        return piece
