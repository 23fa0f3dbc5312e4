"""The engine: a conversation and generation options in, a stream of text out.

    base.py       Engine (the one interface every caller uses, with its declared Capabilities)
    reply.py      Reply (a stream of text, for a thread or an event loop), Stats
    genai.py      what the OpenVINO GenAI engines share: device check, cached pipelines, chat template,
                  token counts, generation config, continuing a reply
    local.py      LocalEngine: one LLMPipeline, one generation at a time (`--engine single`)
    batched.py    BatchedEngine: one ContinuousBatchingPipeline, many replies at once (the default)
    remote.py     RemoteEngine: any OpenAI-compatible server (`--backend openai`: OVMS, vLLM)
    switching.py  SwitchableEngine: the served engine, replaced by the model menu

Heavy packages (openvino_genai, openai) are imported when an engine is built, not here.
"""

from .base import Capabilities, Engine
from .batched import BatchedEngine
from .genai import (
    OpenVINOEngine,
    check_device,
    default_properties,
    get_pipeline,
    load_failed,
    model_properties,
)
from .local import LocalEngine
from .remote import RemoteEngine
from .reply import Emit, Reply, Runner, Stats, decode_speed
from .switching import SwitchableEngine, switchable

__all__ = ["BatchedEngine", "Capabilities", "Emit", "Engine", "LocalEngine", "OpenVINOEngine", "RemoteEngine", "Reply",
           "Runner", "Stats", "SwitchableEngine", "decode_speed", "switchable", "check_device",
           "default_properties", "get_pipeline", "load_failed", "model_properties"]
