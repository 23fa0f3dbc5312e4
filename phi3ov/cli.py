"""`phi3ov serve | chat | bench | compare | eval | export | download | doctor`.

Flags are read here, at the edge, and turned into settings (the serve flags come from the one table in
settings.py); each command then calls the package. Heavy modules (openvino_genai, gradio, optimum) are imported inside the commands so
`phi3ov --help` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .errors import Phi3ovError


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve
    from .settings import from_args

    serve(from_args(args))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from .settings import from_args
    from .terminal import chat

    return chat(from_args(args), system_prompt=args.system, max_new_tokens=args.max_new_tokens,
                temperature=args.temperature)


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phi3ov", description="Chat with small LLMs on Intel hardware (OpenVINO GenAI).")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log more.")
    sub = parser.add_subparsers(dest="command", required=True)

    from .settings import add_flags

    serve = sub.add_parser("serve", help="Serve the chat UI and the OpenAI-compatible API.")
    add_flags(serve)
    serve.set_defaults(func=cmd_serve)

    chat = sub.add_parser("chat", help="Chat in the terminal (streams to stdout).")
    add_flags(chat)
    chat.add_argument("--system", help="System prompt.")
    chat.add_argument("--max-new-tokens", type=int, help="Longest reply in tokens (default 1024).")
    chat.add_argument("--temperature", type=float, help="0 for greedy (default 0.7).")
    chat.set_defaults(func=cmd_chat)

    bench = sub.add_parser("bench", help="Measure speed: raw pipeline vs. through the app.")
    add_flags(bench, only=("model", "device"))
    from .bench import add_args as add_bench_args

    add_bench_args(bench)
    bench.set_defaults(func=cmd_bench)

    compare = sub.add_parser("compare", help="Compare exports of one model: size, speed, perplexity, agreement.")
    from .bench import compare as compare_module

    compare_module.add_args(compare)
    compare.set_defaults(func=compare_module.main)

    evaluate = sub.add_parser("eval", help="Measure quality with lm-evaluation-harness against a launched server.")
    from .eval import run as eval_module

    eval_module.add_args(evaluate)
    evaluate.set_defaults(func=eval_module.main)

    from . import commands

    commands.register(sub)  # export, download, doctor
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    for noisy in ("httpx", "httpx2"):  # not a line per request
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except Phi3ovError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
