"""The OpenAI-compatible API, served beside the UI on the same port.

    POST /v1/chat/completions   streaming (server-sent events, ending in `data: [DONE]`) or not    chat.py
    POST /v1/completions        the legacy text API: a raw prompt continued                       completions.py
    POST /tokenize, /detokenize token counts before sending, as vLLM offers them                   tokens.py
    GET  /v1/models             the one model this server serves (with `max_model_len`)
    GET  /health, /metrics      readiness and replies running; Prometheus figures               routes.py

Requests are validated with the same ranges as the UI's sliders (options.BOUNDS, via
GenerationOptions.parse without clamping; options.py); errors come back in OpenAI's shape
`{"error": {"message", "type", "param", "code"}}` with the status of the domain error (error_shapes.py).
Besides OpenAI's parameters (penalties, `response_format` for structured output, `logprobs`), `top_k`,
`repetition_penalty`, `ignore_eos`, vLLM's `guided_json`/`guided_regex`/`guided_grammar` and `prompt_lookup`
are accepted; tool calls where the chat template takes tools (tools.py). A parameter that cannot be honoured
here (`logit_bias`, tools for a template without them, `n` > 1...) is a 400 saying so,
never silently dropped. Defaults are the app's own (options.BOUNDS), not OpenAI's.

Unlike the chat UI, the API never leaves old messages out silently: a conversation that does
not fit the context is a 400 `context_length_exceeded`. The engine's blocking iteration runs
in worker threads, and a client that goes away stops its reply (replies.py).
"""

from .error_shapes import ApiError
from .limits import Counters, Slots
from .routes import create_router

__all__ = ["ApiError", "Counters", "Slots", "create_router"]
