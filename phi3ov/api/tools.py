"""Tools on the wire: `tools`, `tool_choice` and `parallel_tool_calls` checked, and calls in OpenAI's shape.

Served where the model's chat template takes tools and writes calls in `<tool_call>` tags (phi3ov/tool_calls.py):

    tool_choice "auto" (the default)   the tools go to the template; calls the model writes come back as calls
    tool_choice "none"                 the tools are left out of the prompt; the reply is text
    "required" or {"type": "function", "function": {"name"}}
                                       the reply is constrained to one call (of the named tool), its arguments
                                       following the tool's parameters schema
    parallel_tool_calls                accepted; a constrained reply is always one call

Refused with a 400 that says why: tools for a template without tool support (or with a call format this
server cannot read), the legacy `functions`/`function_call`, a constrained call together with
`response_format`, and `logprobs` with tools.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..engine import Engine
from ..tool_calls import Call, call_constraint, call_format, takes_tools
from .error_shapes import bad

CHOICES = ("auto", "none", "required")


def check_legacy(extra: dict[str, Any]) -> None:
    for name in ("functions", "function_call"):
        if extra.get(name) not in (None, [], {}):
            raise bad(name, f"`{name}` (the deprecated function calling API) is not supported: send `tools` and "
                      "`tool_choice` instead.", code="unsupported_parameter")


def parse_tools(extra: dict[str, Any], messages: list[dict[str, Any]], engine: Engine
                ) -> tuple[tuple[dict, ...], Any]:
    """(the tool definitions for the template, the constraint for a required call or None)."""
    check_legacy(extra)
    tools, choice = extra.get("tools"), extra.get("tool_choice")
    parallel = extra.get("parallel_tool_calls")
    uses_tools = any(m.get("role") == "tool" or m.get("tool_calls") for m in messages if isinstance(m, dict))
    if tools in (None, []) and choice in (None, "none") and parallel is None and not uses_tools:
        return (), None
    template = engine.chat_template
    param = "tools" if tools not in (None, []) else "tool_choice" if choice is not None else \
        "parallel_tool_calls" if parallel is not None else "messages"
    if not takes_tools(template):
        raise bad(param, f"Tools (`{param}`) are not supported for `{engine.name}`: its chat template does not take "
                  "tool definitions. Describe the tools in the system message instead, or constrain the reply with "
                  "`response_format`.", code="unsupported_parameter")
    if call_format(template) is None:
        raise bad(param, f"`{param}` is not supported for `{engine.name}`: its chat template takes tools, but writes "
                  "calls in a format this server cannot read (it reads Qwen2.5/Hermes-style `<tool_call>` JSON). "
                  "Constrain the reply with `response_format` instead.", code="unsupported_parameter")
    if parallel is not None and not isinstance(parallel, bool):
        raise bad("parallel_tool_calls", "`parallel_tool_calls` must be true or false.")
    functions = check_definitions(tools)
    if choice is None:
        choice = "auto" if functions else "none"
    if isinstance(choice, str):
        if choice not in CHOICES:
            raise bad("tool_choice", f'`tool_choice` must be "auto", "none", "required" or {{"type": "function", '
                      f'"function": {{"name": ...}}}}, got {choice!r}.')
        if choice != "none" and not functions:
            raise bad("tool_choice", f'`tool_choice` "{choice}" needs `tools`: send the tool definitions.')
        if choice == "none":
            return (), None
        definitions = tuple({"type": "function", "function": f} for f in functions)
        return definitions, call_constraint(functions) if choice == "required" else None
    if not isinstance(choice, dict) or choice.get("type") != "function" or \
            not isinstance(choice.get("function"), dict) or not isinstance(choice["function"].get("name"), str):
        raise bad("tool_choice", '`tool_choice` must be "auto", "none", "required" or {"type": "function", '
                  '"function": {"name": ...}}.')
    name = choice["function"]["name"]
    named = [f for f in functions if f["name"] == name]
    if not named:
        raise bad("tool_choice", f"`tool_choice` names `{name}`, which is not among `tools` "
                  f"({', '.join(f['name'] for f in functions) or 'none given'}).")
    return tuple({"type": "function", "function": f} for f in functions), call_constraint(named)


def check_definitions(tools: Any) -> list[dict[str, Any]]:
    """OpenAI's tool definitions: the `function` objects, checked."""
    if tools in (None, []):
        return []
    if not isinstance(tools, list):
        raise bad("tools", "`tools` must be a list of tool definitions.")
    functions, names = [], set()
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise bad(f"tools[{i}]", f'`tools[{i}]` must be {{"type": "function", "function": {{"name", '
                      '"description", "parameters"}}: only function tools are supported.')
        function = tool["function"]
        name = function.get("name")
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
            raise bad(f"tools[{i}].function.name", f"`tools[{i}].function.name` must be letters, digits, _ or -, "
                      f"got {name!r}.")
        if name in names:
            raise bad(f"tools[{i}].function.name", f"Two tools are named `{name}`: give each its own name.")
        names.add(name)
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise bad(f"tools[{i}].function.parameters", f"`tools[{i}].function.parameters` must be a JSON Schema "
                      "object.")
        functions.append({k: v for k, v in function.items() if k in ("name", "description", "parameters", "strict")})
    return functions


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def tool_call(call: Call, ident: str) -> dict[str, Any]:
    """A call in a chat.completion message."""
    return {"id": ident, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def call_deltas(call: Call, ident: str) -> list[dict[str, Any]]:
    """A call in chat.completion.chunk deltas: its id and name first, then its arguments."""
    return [{"tool_calls": [{"index": call.index, "id": ident, "type": "function",
                             "function": {"name": call.name, "arguments": ""}}]},
            {"tool_calls": [{"index": call.index, "function": {"arguments": call.arguments}}]}]
