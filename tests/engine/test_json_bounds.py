"""JSON mode ends: whitespace between tokens and a number's digits are bounded by the grammar (structured.py),
so a small model cannot fill max_tokens with spaces or digits. The prompts below invite exactly that (each
made the unbounded grammar run on: 40 spaces, 144 digits to the length limit, 62 decimals); what is asserted
holds whatever the model writes."""

from __future__ import annotations

import json
import re

import jsonschema

from phi3ov.options import GenerationOptions
from phi3ov.structured import from_response_format

JSON_MODE = from_response_format({"type": "json_object"})
BOUNDED = GenerationOptions(temperature=0, max_new_tokens=150, constraint=JSON_MODE)


def test_whitespace_after_a_brace_is_bounded_even_when_the_prompt_teaches_40_spaces(engine):
    text = "".join(engine.complete(("{" + " " * 40 + '"a": 1}\n') * 12, BOUNDED))
    assert len(re.match(r"\{(\s*)", text).group(1)) <= 16


def test_a_numbers_digits_are_bounded_even_when_the_prompt_teaches_60_of_them(engine):
    text = "".join(engine.complete(('{\n  "n": ' + "1" * 60 + "\n}\n") * 8, BOUNDED))
    if number := re.match(r'\{\s*"n"\s*:\s*-?(\d+)(?:\.(\d+))?', text):
        assert all(len(part or "") <= 16 for part in number.groups())


def test_a_numbers_decimals_are_bounded_even_when_the_prompt_teaches_62_of_them(engine):
    pi = "3.14159265358979323846264338327950288419716939937510582097494459"
    text = "".join(engine.complete(('{"pi": ' + pi + "}\n") * 6, BOUNDED))
    if number := re.match(r'\{\s*"pi"\s*:\s*-?(\d+)(?:\.(\d+))?', text):
        assert all(len(part or "") <= 16 for part in number.groups())


def test_json_mode_compiles_the_bounded_grammar(engine):
    config = JSON_MODE.config()
    assert "{0,16}" in config.grammar and not config.json_schema
    engine.check_options(GenerationOptions(constraint=JSON_MODE))  # XGrammar takes it


def test_schema_replies_validate_and_their_numbers_are_bounded(engine):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "n": {"type": "integer"}, "tags": {"type": "array", "maxItems": 3,
                                                                                  "items": {"type": "string",
                                                                                            "maxLength": 20}}},
              "required": ["name", "n", "tags"]}
    constraint = from_response_format({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert "{0,16}" in constraint.config().grammar
    text = "".join(engine.complete(('{"name": "ones", "n": ' + "1" * 60 + ', "tags": []}\n') * 6,
                                   GenerationOptions(temperature=0, max_new_tokens=200, constraint=constraint)))
    number = re.search(r'"n"\s*:\s*-?(\d+)', text)
    assert number is None or len(number.group(1)) <= 16
    if text.rstrip().endswith("}"):  # the whole object: it follows the schema
        jsonschema.validate(json.loads(text), schema)
