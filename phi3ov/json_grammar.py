"""JSON, and JSON schemas, as XGrammar EBNF grammars that bound what could run on forever.

XGrammar's own JSON schema compiler (what OpenVINO GenAI uses for `json_schema`) lets any amount of whitespace
sit between two tokens and any number of digits make a number, and GenAI exposes none of its options: a small
model, above all in bf16, can then write spaces or digits until max_tokens. Here the same JSON is written as
EBNF with at most WS_MAX whitespace characters between two tokens and DIGITS_MAX digits in a number's whole
part and in its fraction. Strings stay as long as the schema allows (`maxLength`): their length is the reply's.

`schema_grammar` covers what structured output schemas use (pydantic's, OpenAI's strict ones): `type` (one or
several), `properties` (written in their order, `required` ones always, the others optionally), `items`,
`minItems`/`maxItems`, `minLength`/`maxLength`, `enum`, `const`, `anyOf`/`oneOf`, `$ref` to `#/$defs` or
`#/definitions`, and `additionalProperties` false (an object with no `properties` is any object). A schema
with anything else that constrains values (`pattern`, `format`, `minimum`, `uniqueItems`, `allOf`, ...) gives
None, and the caller hands the schema to XGrammar as it is: right first, bounded where it can be.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

WS_MAX = 16
DIGITS_MAX = 16

# Keywords that only describe (kept out of the grammar) and those the grammar below honours.
DESCRIBING = {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
              "readOnly", "writeOnly", "$defs", "definitions", "strict", "name"}
HONOURED = {"type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
            "minLength", "maxLength", "enum", "const", "anyOf", "oneOf", "$ref"}

BASE_RULES = f"""ws ::= [ \\n\\t]{{0,{WS_MAX}}}
value ::= object | array | string | number | "true" | "false" | "null"
object ::= "{{" ws "}}" | "{{" ws member (ws "," ws member)* ws "}}"
member ::= string ws ":" ws value
array ::= "[" ws "]" | "[" ws value (ws "," ws value)* ws "]"
string ::= "\\"" char* "\\""
char ::= [^"\\\\\\x00-\\x1f] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{{4}})
integer ::= "-"? ("0" | [1-9] [0-9]{{0,{DIGITS_MAX - 1}}})
number ::= integer ("." [0-9]{{1,{DIGITS_MAX}}})? ([eE] [-+]? [0-9]{{1,3}})?
boolean ::= "true" | "false"
null ::= "null"
"""

ANY_OBJECT_GRAMMAR = "root ::= object\n" + BASE_RULES


class Unsupported(Exception):
    """The schema uses something this grammar does not write: XGrammar's own compiler takes it."""


def literal(text: str) -> str:
    """An EBNF string literal for this exact text."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def json_literal(value: Any) -> str:
    return literal(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def repeat(rule: str, low: int, high: int | None) -> str:
    if high is None:
        return f"{rule}{{{low},}}" if low else f"{rule}*"
    return f"{rule}{{{low},{high}}}"


class SchemaGrammar:
    """Rules written one per subschema; `$ref`s to definitions become rules of their own (so recursion works)."""

    def __init__(self, root: dict[str, Any]):
        self.root = root
        self.rules: list[str] = []
        self.refs: dict[str, str] = {}

    def new(self, body: str) -> str:
        name = f"s{len(self.rules)}"
        self.rules.append(f"{name} ::= {body}")
        return name

    def grammar(self) -> str:
        top = self.rule(self.root)
        return "\n".join([f"root ::= {top}", *self.rules]) + "\n" + BASE_RULES

    def rule(self, schema: Any) -> str:
        """The name of a rule (or an inline expression) for this subschema."""
        if schema is True or schema == {}:
            return "value"
        if not isinstance(schema, dict):
            raise Unsupported("a schema that is not an object")
        unknown = set(schema) - DESCRIBING - HONOURED
        if unknown:
            raise Unsupported(", ".join(sorted(unknown)))
        if "$ref" in schema:
            return self.ref(schema["$ref"])
        if "const" in schema:
            return json_literal(schema["const"])
        if "enum" in schema:
            return "(" + " | ".join(json_literal(v) for v in schema["enum"]) + ")"
        for key in ("anyOf", "oneOf"):
            if key in schema:
                rest = {k: v for k, v in schema.items() if k != key and k not in DESCRIBING}
                if rest:
                    raise Unsupported(f"{key} beside other keywords")
                return self.new(" | ".join(self.rule(s) for s in schema[key]))
        kinds = schema.get("type", "object" if "properties" in schema else "array" if "items" in schema else "any")
        if isinstance(kinds, list):
            return self.new(" | ".join(self.rule({**schema, "type": kind}) for kind in kinds))
        return self.typed(kinds, schema)

    def ref(self, ref: Any) -> str:
        if not isinstance(ref, str):
            raise Unsupported("$ref")
        if ref not in self.refs:
            for prefix in ("#/$defs/", "#/definitions/"):
                if ref.startswith(prefix) and ref[len(prefix):] in self.root.get(prefix[2:-1], {}):
                    name = f"d{len(self.refs)}"
                    self.refs[ref] = name
                    self.rules.append(f"{name} ::= {self.rule(self.root[prefix[2:-1]][ref[len(prefix):]])}")
                    break
            else:
                raise Unsupported(f"$ref {ref}")
        return self.refs[ref]

    def typed(self, kind: str, schema: dict[str, Any]) -> str:
        if kind == "any":
            return "value"
        if kind in ("integer", "number", "boolean", "null"):
            return kind
        if kind == "string":
            low, high = schema.get("minLength", 0), schema.get("maxLength")
            return "string" if (low, high) == (0, None) else self.new(f'"\\"" {repeat("char", low, high)} "\\""')
        if kind == "array":
            return self.array(schema)
        if kind == "object":
            return self.object(schema)
        raise Unsupported(f"type {kind}")

    def array(self, schema: dict[str, Any]) -> str:
        item = self.rule(schema.get("items", {}))
        low, high = schema.get("minItems", 0), schema.get("maxItems")
        if high == 0:
            return self.new('"[" ws "]"')
        more = repeat(f'(ws "," ws {item})', max(low - 1, 0), None if high is None else high - 1)
        some = f'"[" ws {item} {more} ws "]"'
        return self.new(some if low > 0 else f'"[" ws "]" | {some}')

    def object(self, schema: dict[str, Any]) -> str:
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        if not properties:
            if extra is False:
                return self.new('"{" ws "}"')
            if extra not in (True, {}, None):
                raise Unsupported("additionalProperties with a schema")
            return "object"
        if extra not in (False, None):  # names beyond the properties: XGrammar's compiler writes those
            raise Unsupported("additionalProperties beside properties")
        required = set(schema.get("required", []))
        if not required <= set(properties):
            raise Unsupported("required names a property that is not there")
        members = [(f'{literal(json.dumps(name, ensure_ascii=False))} ws ":" ws {self.rule(sub)}', name in required)
                   for name, sub in properties.items()]
        return self.new(f'"{{" ws {self.members(members, 0, True, {})} ws "}}"')

    def members(self, members: list[tuple[str, bool]], start: int, first: bool, done: dict) -> str:
        """Members `start`.. in their order: the required ones always, the optional ones or not, commas between
        (a rule per (start, first), so optional members cost rules in proportion, not in combination)."""
        if (start, first) in done:
            return done[start, first]
        comma = "" if first else 'ws "," ws '
        choices = []
        for j in range(start, len(members)):
            body, required = members[j]
            choices.append(f"{comma}{body} {self.members(members, j + 1, False, done)}")
            if required:  # no member after a required one can come before it
                break
        if not any(required for _, required in members[start:]):
            choices.append('""')
        done[start, first] = self.new(" | ".join(choices))
        return done[start, first]


@lru_cache(maxsize=256)
def schema_grammar(schema_text: str) -> str | None:
    """The EBNF grammar for this JSON schema, or None where XGrammar's own compiler must take it. Remembered:
    each reply's generation config asks again for the same schema."""
    try:
        schema = json.loads(schema_text)
        return SchemaGrammar(schema).grammar() if isinstance(schema, dict) else None
    except (Unsupported, ValueError, RecursionError):
        return None
