"""`phi3ov chat`: the same engine in a terminal, streaming to stdout (handy over ssh)."""

from __future__ import annotations

import sys

from . import conversation
from .errors import Phi3ovError
from .options import GenerationOptions
from .settings import ServerSettings

HELP = "Commands: /clear starts over, /undo drops the last exchange, /quit leaves (or Ctrl-D)."


def chat(settings: ServerSettings, *, system_prompt: str | None = None, max_new_tokens: int | None = None,
         temperature: float | None = None) -> int:
    from .server import create_engine

    engine = create_engine(settings)
    options = GenerationOptions.parse(max_new_tokens=max_new_tokens, temperature=temperature)
    system = system_prompt if system_prompt is not None else settings.system_prompt
    history: list[dict] = []
    print(f"phi3ov chat with {engine.name} on {engine.device}. {HELP}", file=sys.stderr)
    while True:
        try:
            text = input("\n> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        command = text.strip().lower()
        if not command:
            continue
        if command in ("/quit", "/exit"):
            return 0
        if command == "/clear":
            history = []
            continue
        if command == "/undo":
            history = history[:-2]
            continue
        try:
            reply = engine.chat(conversation.build(system, history, text), options)
        except Phi3ovError as err:
            print(f"error: {err}", file=sys.stderr)
            continue
        if reply.fitted.notice:
            print(f"({reply.fitted.notice})", file=sys.stderr)
        try:
            for chunk in reply:
                sys.stdout.write(chunk)
                sys.stdout.flush()
        except KeyboardInterrupt:
            reply.stop()
            print("\n(stopped)", file=sys.stderr)
        except Phi3ovError as err:
            print(f"\nerror: {err}", file=sys.stderr)
        print()
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": reply.text}]
        if reply.stats:
            print(f"[{reply.stats.summary()}]", file=sys.stderr)
