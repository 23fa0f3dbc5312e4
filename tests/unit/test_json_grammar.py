"""JSON schemas as bounded EBNF (json_grammar.py): what is written, and what is left to XGrammar's compiler."""

from __future__ import annotations

import json
from typing import Literal, Optional

from pydantic import BaseModel, Field

from phi3ov.json_grammar import ANY_OBJECT_GRAMMAR, WS_MAX, schema_grammar
from phi3ov.structured import ANY_JSON_OBJECT, from_response_format


class Pet(BaseModel):
    name: str = Field(max_length=20)
    kind: Literal["cat", "dog"]
    tags: list[str] = Field(max_length=3)
    nick: Optional[str] = None  # noqa: UP045 - pydantic's anyOf with null


class Home(BaseModel):
    pets: list[Pet]
    owner: Optional[Home] = None  # noqa: UP045 - a $ref back to itself


def grammar_of(schema: dict) -> str:
    grammar = schema_grammar(json.dumps(schema))
    assert grammar is not None, schema
    return grammar


def test_pydantic_models_become_grammars_with_their_bounds():
    grammar = grammar_of(Pet.model_json_schema())
    assert '"\\"name\\"" ws ":" ws' in grammar and 'char{0,20}' in grammar
    assert '("\\"cat\\"" | "\\"dog\\"")' in grammar
    assert f"ws ::= [ \\n\\t]{{0,{WS_MAX}}}" in grammar and "[0-9]{0,15}" in grammar
    assert '(ws "," ws string){0,2}' in grammar  # at most 3 tags: the first, then up to 2 more
    home = grammar_of(Home.model_json_schema())  # recursion through $defs
    assert "d0 ::=" in home and home.count("d0") >= 2


def test_optional_members_may_be_left_out_but_required_ones_may_not():
    grammar = grammar_of({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
                          "required": ["b"]})
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines())
    top = rules[rules["root"]]
    first = rules[top.split()[2]]
    assert '"\\"a\\""' in first and '"\\"b\\""' in first and '""' not in first.split(" | ")  # b must come


def test_schemas_with_keywords_it_does_not_write_go_to_xgrammar():
    for schema in ({"type": "string", "pattern": "^a+$"}, {"type": "integer", "minimum": 3},
                   {"type": "string", "format": "date-time"}, {"allOf": [{"type": "string"}]},
                   {"type": "object", "properties": {"a": {}}, "additionalProperties": True}):
        assert schema_grammar(json.dumps(schema)) is None, schema
    assert schema_grammar("not json") is None


def test_json_mode_is_the_bounded_any_object_grammar():
    constraint = from_response_format({"type": "json_object"})
    assert constraint.text == ANY_JSON_OBJECT
    assert schema_grammar(ANY_JSON_OBJECT) == ANY_OBJECT_GRAMMAR
