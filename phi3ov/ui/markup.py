"""What the Chatbot shows for a message: its Markdown, with any HTML in it shown as text.

Messages and replies are Markdown (lists, code, tables render), but raw HTML in them is data:
`<img onerror=...>` must read as those characters, not become an element. Outside code, `<` and
`&` are written as entities, which Markdown shows as the characters themselves; inside code
blocks and code spans they are already literal and stay as they are. The conversation keeps the
text as it was typed or generated; only the display goes through here.
"""

from __future__ import annotations

import re

# A fenced block (``` or ~~~, to its closing fence or the end of a reply still streaming),
# or an inline code span.
CODE = re.compile(r"(?ms)^ {0,3}(`{3,}|~{3,})[^\n]*\n.*?(?:^ {0,3}\1[ \t]*$|\Z)|(`+)(?!`).+?(?<!`)\2(?!`)")
FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")  # a line that opens or closes a fenced block


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;")


def closed(markup: str) -> str:
    """`markup` with a fenced code block left open at its end (a reply cut or still streaming) closed, so that what
    the Chatbot adds after it (the length-limit note, Sources) renders as itself, not as code."""
    fence = None
    for line in markup.split("\n"):
        found = FENCE.match(line)
        if fence is None and found:
            fence = found.group(1)
        elif fence is not None and found and found.group(1)[0] == fence[0] and len(found.group(1)) >= len(fence) \
                and not found.group(2).strip():
            fence = None
    return markup if fence is None else f"{markup}\n{fence}"


def as_text_markup(markdown: str) -> str:
    """`markdown` with raw HTML outside code escaped, so it shows as text."""
    out, pos = [], 0
    for match in CODE.finditer(markdown):
        out.append(_escape(markdown[pos:match.start()]))
        out.append(match.group(0))
        pos = match.end()
    out.append(_escape(markdown[pos:]))
    return "".join(out)
