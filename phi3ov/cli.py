"""`phi3ov serve | chat | bench | compare | export | download | doctor`.

Flags are read here, at the edge, and turned into settings; each command then calls the
package. Heavy modules (openvino_genai, gradio, optimum) are imported inside the commands so
`phi3ov --help` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import Phi3ovError


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        help="OpenVINO model folder, .gguf file or Hugging Face repo id (env PHI3OV_MODEL). "
        "Default: ./model/phi3-instruct/int4 if it exists, else the bundled SmolLM2-135M-Instruct.",
    )
    parser.add_argument("--device", help="CPU (default), GPU, NPU or AUTO (env PHI3OV_DEVICE).")


def add_serve_args(parser: argparse.ArgumentParser) -> None:
    add_model_args(parser)
    parser.add_argument("--host", help="Address to listen on (default 127.0.0.1: this machine only).")
    parser.add_argument("--port", type=int, help="Port (default 7860).")
    parser.add_argument("--share", action="store_true", default=None, help="Also open a temporary public gradio.live link.")
    parser.add_argument("--open", dest="inbrowser", action="store_true", default=None,
                        help="Open the chat in the web browser once it is ready (make run does).")
    parser.add_argument("--auth", help="USER:PASSWORD required to open the UI (recommended with --share).")
    parser.add_argument("--api-key", help="Key that API clients must send as a Bearer token (env PHI3OV_API_KEY).")
    parser.add_argument("--allow-no-api-key", action="store_true", default=None,
                        help="Serve the API without a key even when listening beyond loopback.")
    parser.add_argument("--backend", choices=["local", "openai"], help="local: OpenVINO GenAI here (default); "
                        "openai: any OpenAI-compatible server, e.g. OpenVINO Model Server (needs --base-url).")
    parser.add_argument("--base-url", help="With --backend openai: the server's URL, e.g. http://ovms:8000/v3.")
    parser.add_argument("--remote-model", help="With --backend openai: the model name on that server.")
    parser.add_argument("--remote-api-key", help="With --backend openai: the key that server wants "
                        "(env PHI3OV_REMOTE_API_KEY).")
    parser.add_argument("--engine", choices=["batched", "single"], help="batched: many replies at once from one "
                        "ContinuousBatchingPipeline (default); single: one LLMPipeline, one reply at a time "
                        "(env PHI3OV_ENGINE).")
    parser.add_argument("--ov-config", action="append", metavar="KEY=VALUE", help="An OpenVINO property for the "
                        "pipeline, e.g. INFERENCE_PRECISION_HINT=f32; repeatable (env PHI3OV_OV_CONFIG, comma-separated).")
    parser.add_argument("--prompt-lookup", action="store_true", default=None,
                        help="Prompt-lookup decoding: propose tokens copied from the chat and check them in one "
                        "step; much faster for replies that repeat the input (editing code, summaries) "
                        "(env PHI3OV_PROMPT_LOOKUP=1).")
    parser.add_argument("--deterministic", action="store_true", default=None,
                        help="Reproducible replies: a greedy or seeded reply is the same token for token whether it is "
                        "asked alone, asked again or among others, on this machine and model (no prefix cache, one reply "
                        "computed at a time; others wait their turn) (env PHI3OV_DETERMINISTIC=1).")
    parser.add_argument("--max-num-seqs", type=int, help="Replies generated at once (continuous batching; default 8).")
    parser.add_argument("--request-timeout", type=float, help="Seconds one reply may take (default 600; 0: no "
                        "limit); then it ends with finish_reason \"timeout\" and keeps its text.")
    parser.add_argument("--drain-seconds", type=float, help="On SIGTERM or Ctrl-C, how long replies in flight may "
                        "finish before the server exits (default 5).")
    parser.add_argument("--max-queue", type=int, help="API requests that may wait for a free slot beyond "
                        "--max-num-seqs (default 64); past that a 429 with Retry-After.")
    parser.add_argument("--max-body-mb", type=float, help="Largest API request body in MB (default 4; 413 beyond).")
    parser.add_argument("--max-messages", type=int, help="Most messages in one request or chat (default 512).")
    parser.add_argument("--max-message-chars", type=int, help="Most characters in one message (default 100000).")
    parser.add_argument("--max-batched-tokens", type=int, help="Tokens processed in one continuous-batching step "
                        "(default 1024; longer prompts are split into chunks of this size between decode steps).")
    parser.add_argument("--kv-cache-gb", type=float, help="Most memory the continuous-batching KV cache may take, in GB "
                        "(default: enough for --max-num-seqs whole contexts, at most 2 GB or a quarter of the free memory).")
    parser.add_argument("--models-dir", type=Path, help="More model folders for the model menu (env PHI3OV_MODELS_DIR).")
    parser.add_argument("--models", action="append", help="The model menu lists only these names or folders "
                        "(comma-separated or repeated; env PHI3OV_MODELS; default: every model found).")
    parser.add_argument("--cors-origin", action="append", metavar="ORIGIN", help="Let web pages from this origin "
                        "(e.g. https://app.example.com) call the API from a browser; repeatable or comma-separated "
                        "(env PHI3OV_CORS_ORIGIN). Default: no cross-origin access.")
    parser.add_argument("--log-prompts", action="store_true", default=None, help="Log each request's messages "
                        "(one INFO line, JSON). Default: logs never contain message text (env PHI3OV_LOG_PROMPTS=1).")
    parser.add_argument("--context-length", type=int, help="Use at most this many tokens of the model's context "
                        "(env PHI3OV_CONTEXT_LENGTH; default: the model's own). Older turns are trimmed to fit.")


def settings_from(args: argparse.Namespace):
    from .settings import ServerSettings, parse_auth

    overrides = {key: getattr(args, key, None) for key in (
        "model", "device", "host", "port", "share", "api_key", "allow_no_api_key", "backend",
        "base_url", "remote_model", "inbrowser", "max_num_seqs", "max_batched_tokens", "max_queue", "max_body_mb", "max_messages",
        "max_message_chars", "request_timeout", "drain_seconds", "kv_cache_gb", "context_length",
        "remote_api_key", "engine", "prompt_lookup", "deterministic", "log_prompts", "models_dir")}
    if getattr(args, "models", None):
        from .settings import parse_models

        overrides["models"] = parse_models(args.models)
    if getattr(args, "ov_config", None):
        from .settings import parse_ov_config

        overrides["ov_config"] = parse_ov_config(args.ov_config)
    if getattr(args, "cors_origin", None):
        from .settings import parse_origins

        overrides["cors_origins"] = parse_origins(args.cors_origin)
    if getattr(args, "auth", None):
        overrides["auth"] = parse_auth(args.auth)
    return ServerSettings.from_env(**overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    serve(settings_from(args))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from .terminal import chat

    return chat(settings_from(args), system_prompt=args.system, max_new_tokens=args.max_new_tokens,
                temperature=args.temperature)


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phi3ov", description="Chat with small LLMs on Intel hardware (OpenVINO GenAI).")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log more.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="Serve the chat UI and the OpenAI-compatible API.")
    add_serve_args(serve)
    serve.set_defaults(func=cmd_serve)

    chat = sub.add_parser("chat", help="Chat in the terminal (streams to stdout).")
    add_serve_args(chat)
    chat.add_argument("--system", help="System prompt.")
    chat.add_argument("--max-new-tokens", type=int, help="Longest reply in tokens (default 1024).")
    chat.add_argument("--temperature", type=float, help="0 for greedy (default 0.7).")
    chat.set_defaults(func=cmd_chat)

    bench = sub.add_parser("bench", help="Measure speed: raw pipeline vs. through the app.")
    add_model_args(bench)
    from .bench import add_args as add_bench_args

    add_bench_args(bench)
    bench.set_defaults(func=cmd_bench)

    compare = sub.add_parser("compare", help="Compare exports of one model: size, speed, perplexity, agreement.")
    from .bench import compare as compare_module

    compare_module.add_args(compare)
    compare.set_defaults(func=compare_module.main)

    from . import doctor, export

    export.register_cli(sub)  # export, download
    doctor.register_cli(sub)
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
