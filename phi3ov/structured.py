"""Structured output: a reply constrained to a JSON schema, a regular expression or an EBNF grammar.

OpenVINO GenAI constrains decoding with XGrammar (`StructuredOutputConfig`): at every step only the tokens
that keep the text inside the grammar can be chosen, so a JSON reply always parses, and with a schema it
validates (until max_tokens cuts it short: then finish_reason is "length").

A grammar XGrammar cannot compile must be refused before it reaches the batching pipeline: there it fails
inside `step()`, which leaves every reply in that step broken. `GrammarChecker` compiles each constraint
first on a stand-in model (one that takes token ids and answers zero logits over the served model's
vocabulary) with the served model's own tokenizer: the same compiler, the same vocabulary, none of the
model's weights, about a millisecond per check.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

from .errors import BadOptions
from .json_grammar import schema_grammar

KINDS = ("json_schema", "regex", "grammar", "tool_call")
# A tool call as Qwen2.5 and Hermes-style templates write it, around a JSON object that the schema constrains.
TOOL_CALL_START, TOOL_CALL_END = "<tool_call>", "</tool_call>"
ANY_JSON_OBJECT = '{"type": "object"}'  # OpenAI's {"type": "json_object"}: any JSON object


@dataclass(frozen=True)
class Constraint:
    """What the reply must match: `kind` is one of KINDS, `text` the schema (JSON text), regex or grammar.

    "tool_call" is a JSON schema too, for the object written between `<tool_call>` and `</tool_call>` (each on its own line).
    """

    kind: str
    text: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadOptions(f"Unknown constraint kind {self.kind!r}; use one of {', '.join(KINDS)}.")
        if not isinstance(self.text, str) or not self.text.strip():
            raise BadOptions(f"The {self.kind} constraint is empty.")

    def config(self) -> Any:
        """The openvino_genai.StructuredOutputConfig for this constraint."""
        import openvino_genai as ov_genai

        config = ov_genai.StructuredOutputConfig
        grammar = schema_grammar(self.text) if self.kind in ("json_schema", "tool_call") else None
        if self.kind == "tool_call":  # the JSON, with whitespace and digits bounded where json_grammar.py can
            call = config.EBNF(grammar) if grammar is not None else config.JSONSchema(self.text)
            return config(compound_grammar=config.Concat(config.ConstString(TOOL_CALL_START + "\n"), call,
                                                          config.ConstString("\n" + TOOL_CALL_END)))
        if grammar is not None:
            return config(grammar=grammar)
        return config(**{self.kind: self.text})

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def from_response_format(value: Any) -> Constraint | None:
    """The constraint for OpenAI's `response_format` (None for plain text); BadOptions when malformed."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise BadOptions('`response_format` must be an object with a `type`: "text", "json_object" or "json_schema".')
    kind = value["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return Constraint("json_schema", ANY_JSON_OBJECT)
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise BadOptions('`response_format.json_schema` must be an object: {"name": ..., "schema": {...}}.')
        schema = spec.get("schema")
        if schema is None:
            return Constraint("json_schema", ANY_JSON_OBJECT)
        if not isinstance(schema, dict):
            raise BadOptions("`response_format.json_schema.schema` must be a JSON Schema object.")
        return Constraint("json_schema", json.dumps(schema))
    raise BadOptions(f'Unknown `response_format` type {kind!r}: use "text", "json_object" or "json_schema".')


def compiler_message(err: Exception) -> str:
    """XGrammar's own words, without the C++ source location in front of them."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[-1] if lines else type(err).__name__
    text = re.sub(r"^.*?\.(?:cc|cpp|hpp|h):\d+:\s*", "", text)
    text = re.sub(r"^Check '.*?' failed at .*?:\s*", "", text)
    text = text.strip() or type(err).__name__
    return text if text.endswith((".", "!", "?")) else text + "."


class GrammarChecker:
    """Compiles constraints with XGrammar for one tokenizer, away from the serving pipeline."""

    PASSED_KEPT = 256  # constraints that compiled, remembered so that a request's second check costs nothing

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._pipeline: Any = None
        self._lock = threading.Lock()
        self._passed: OrderedDict[Constraint, None] = OrderedDict()  # the edge checks, then the engine: compiled once

    def _stand_in(self) -> Any:
        import numpy as np
        import openvino as ov
        import openvino_genai as ov_genai
        from openvino import opset13 as op

        inputs = []
        for name, rank, kind in (("input_ids", 2, ov.Type.i64), ("attention_mask", 2, ov.Type.i64),
                                 ("position_ids", 2, ov.Type.i64), ("beam_idx", 1, ov.Type.i32)):
            param = op.parameter([-1] * rank, kind, name=name)
            param.output(0).set_names({name})
            inputs.append(param)
        vocab = max(int(i) for i in self.tokenizer.get_vocab().values()) + 1
        shape = op.concat([op.shape_of(inputs[0]), op.constant(np.array([vocab], dtype=np.int64))], 0)
        logits = op.broadcast(op.constant(np.array(0.0, dtype=np.float32)), shape)
        logits.output(0).set_names({"logits"})
        model = ov.Model([logits], inputs, "grammar_check")
        xml, weights = _serialize(model)
        config = ov_genai.GenerationConfig()
        config.eos_token_id = self.tokenizer.get_eos_token_id()
        return ov_genai.LLMPipeline(xml, weights, self.tokenizer, "CPU", config)

    def check(self, constraint: Constraint) -> None:
        """Raise BadOptions, in XGrammar's words, when the constraint does not compile."""
        import numpy as np
        import openvino as ov
        import openvino_genai as ov_genai

        with self._lock:
            if constraint in self._passed:
                self._passed.move_to_end(constraint)
                return
        if constraint.kind in ("json_schema", "tool_call"):
            try:
                json.loads(constraint.text)
            except ValueError as err:
                raise BadOptions(f"The JSON schema is not valid JSON: {err}.") from None
        config = ov_genai.GenerationConfig()
        config.max_new_tokens = 1
        config.eos_token_id = self.tokenizer.get_eos_token_id()
        config.structured_output_config = constraint.config()
        one = ov.Tensor(np.ones((1, 1), dtype=np.int64))
        with self._lock:
            if self._pipeline is None:
                self._pipeline = self._stand_in()
            try:
                self._pipeline.generate(ov_genai.TokenizedInputs(one, one), config)
            except RuntimeError as err:
                what = {"json_schema": "JSON schema", "regex": "regular expression", "grammar": "grammar",
                        "tool_call": "tool's parameters schema"}
                raise BadOptions(f"The {what[constraint.kind]} cannot be used to constrain the reply: "
                                 f"{compiler_message(err)}",
                                 "Fix it, or leave it out for a free-form reply.") from None
            self._passed[constraint] = None
            if len(self._passed) > self.PASSED_KEPT:
                self._passed.popitem(last=False)


def _serialize(model: Any) -> tuple[str, Any]:
    """An openvino.Model as IR text and its weights tensor, for LLMPipeline's in-memory constructor."""
    import tempfile
    from pathlib import Path

    import numpy as np
    import openvino as ov

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.xml"
        ov.save_model(model, str(path), compress_to_fp16=False)
        xml = path.read_text()
        weights = np.fromfile(path.with_suffix(".bin"), dtype=np.uint8)
    return xml, ov.Tensor(weights)
