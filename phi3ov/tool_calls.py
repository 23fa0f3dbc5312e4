"""Tool calls: which chat templates take tools, the constraint for a required call, and calls read back from replies.

A chat template that takes tool definitions (it reads `tools`) and asks for calls as Qwen2.5 and Hermes-style
models write them,

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

is served with tools. `ToolCallReader` reads such calls out of a reply, piece by piece as it streams or all at
once, the same way both times. It is strict: a block counts as a call only when it holds a JSON object with a
string `name` and an object `arguments`; anything else (a malformed or unfinished block) stays text. It is
written here because none of OpenVINO GenAI's parsers reads this format: `Llama3JsonToolParser` takes the span
from the first `{` to the last `}` (two calls fail to parse, and any JSON in plain text becomes a "call"), and
`VLLMParserWrapper` needs vLLM.

Random or small models seldom call a tool on their own; `tool_choice` "required" or a named function makes them:
`call_constraint` is a grammar that only lets the model write one call of one of the given tools, with arguments
that follow that tool's parameters schema (vLLM does the same for these choices).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .structured import TOOL_CALL_END, TOOL_CALL_START, Constraint

HERMES = "hermes"


def takes_tools(template: str) -> bool:
    """Whether a chat template reads tool definitions."""
    return re.search(r"\btools\b", template or "") is not None


def call_format(template: str) -> str | None:
    """The tool call format of a template that takes tools: "hermes", or None when this server cannot read it."""
    return HERMES if takes_tools(template) and TOOL_CALL_START in template else None


def call_constraint(functions: list[dict]) -> Constraint:
    """One call of one of these functions (OpenAI's `function` objects), its arguments following its schema."""
    options = [{"type": "object",
                "properties": {"name": {"const": f["name"]},
                               "arguments": f.get("parameters") or {"type": "object"}},
                "required": ["name", "arguments"], "additionalProperties": False} for f in functions]
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return Constraint("tool_call", json.dumps(schema))


@dataclass(frozen=True)
class Call:
    """One tool call read from a reply: the function's name and its arguments as JSON text."""

    index: int
    name: str
    arguments: str


def read_call(block: str) -> tuple[str, str] | None:
    """(name, arguments JSON) of the text between the tags, or None when it is not a well-formed call."""
    try:
        value = json.loads(block)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        return None
    arguments = value.get("arguments", {})
    if not isinstance(arguments, dict) or set(value) - {"name", "arguments"}:
        return None
    return value["name"], json.dumps(arguments, ensure_ascii=False)


class ToolCallReader:
    """Reads a reply's text as it streams: `feed(text)` and `end()` return what is now known, in order: text
    (str) and calls (Call). Text that could still be the start of a `<tool_call>` tag is held back until it is
    clear, and so is trailing whitespace (it may come before a call); whitespace around calls is left out. A
    reply without calls comes out as it went in."""

    def __init__(self) -> None:
        self.buffer = ""
        self.in_call = False
        self.calls = 0
        self.after_call = False  # no text since the latest call yet

    def feed(self, text: str) -> list[str | Call]:
        self.buffer += text
        out: list[str | Call] = []
        while True:
            if self.in_call:
                end = self.buffer.find(TOOL_CALL_END)
                if end < 0:
                    return out
                block, self.buffer = self.buffer[:end], self.buffer[end + len(TOOL_CALL_END):]
                self.in_call = False
                call = read_call(block)
                if call is None:  # not a call after all: it stays text
                    self._text(out, TOOL_CALL_START + block + TOOL_CALL_END)
                else:
                    out.append(Call(self.calls, *call))
                    self.calls += 1
                    self.after_call = True
                continue
            start = self.buffer.find(TOOL_CALL_START)
            if start >= 0:
                self._text(out, self.buffer[:start].rstrip())
                self.buffer = self.buffer[start + len(TOOL_CALL_START):]
                self.in_call = True
                continue
            ready = self.buffer[:len(self.buffer) - held_back(self.buffer)].rstrip()
            self._text(out, ready)
            self.buffer = self.buffer[len(ready):]
            return out

    def end(self) -> list[str | Call]:
        """The rest, once the reply is over: an unfinished block or a held-back tail is text."""
        rest = (TOOL_CALL_START if self.in_call else "") + self.buffer
        self.buffer, self.in_call = "", False
        out: list[str | Call] = []
        self._text(out, rest.rstrip() if self.calls else rest)
        return out

    def _text(self, out: list[str | Call], text: str) -> None:
        if self.after_call:
            text = text.lstrip()  # the newline after the previous call
        if text:
            self.after_call = False
            out.append(text)


def held_back(text: str) -> int:
    """How many characters at the end of `text` could be the beginning of `<tool_call>`."""
    for size in range(min(len(text), len(TOOL_CALL_START) - 1), 0, -1):
        if TOOL_CALL_START.startswith(text[-size:]):
            return size
    return 0


def read_reply(text: str) -> tuple[str, list[Call]]:
    """A whole reply's text (calls left out) and its calls, exactly as `ToolCallReader` streams them."""
    reader = ToolCallReader()
    items = reader.feed(text) + reader.end()
    return "".join(i for i in items if isinstance(i, str)), [i for i in items if isinstance(i, Call)]
