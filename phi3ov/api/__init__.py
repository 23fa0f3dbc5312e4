"""The OpenAI-compatible API, served beside the UI on the same port.

    POST /v1/chat/completions   streaming (server-sent events, ending in `data: [DONE]`) or not
    GET  /v1/models             the one model this server serves (with `max_model_len`)
    GET  /health                readiness, and how many replies are being generated right now

Requests are validated with the same ranges as the UI's sliders (settings.BOUNDS, via
GenerationOptions.parse without clamping); errors come back in OpenAI's shape
`{"error": {"message", "type", "param", "code"}}` with the status of the domain error.
Besides OpenAI's parameters, `top_k`, `repetition_penalty` and `ignore_eos` are accepted (as
OVMS and vLLM do), and `prompt_lookup` (false: no lookup for this reply, where the server runs
with --prompt-lookup); other OpenAI parameters that do not change a reply here (user, logit_bias...) are ignored.
Defaults are the app's own (settings.BOUNDS), not OpenAI's.

Unlike the chat UI, the API never leaves old messages out silently: a conversation that does
not fit the context is a 400 `context_length_exceeded`. The engine's blocking iteration runs
in worker threads, and a client that goes away stops its reply.
"""

from .errors import ApiError
from .limits import Counters, Slots
from .routes import create_router

__all__ = ["ApiError", "Counters", "Slots", "create_router"]
