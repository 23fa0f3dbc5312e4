"""The engine: a conversation and generation options in, a stream of text out.

    base.py      Engine (the one interface every caller uses), Reply (a stream of text), Stats
    openvino.py  what the OpenVINO GenAI engines share: device check, cached pipelines, chat template,
                 token counts, generation config
    local.py     LocalEngine: one LLMPipeline, one generation at a time (`--engine single`)

The batching engine (the default) is phi3ov/batching.py, the remote one phi3ov/remote.py.
"""

from .base import Capabilities, Emit, Engine, Reply, Runner, Stats
from .local import LocalEngine
from .openvino import OpenVINOEngine, check_device, default_properties, get_pipeline, load_failed

__all__ = ["Capabilities", "Emit", "Engine", "LocalEngine", "OpenVINOEngine", "Reply", "Runner", "Stats", "check_device",
           "default_properties", "get_pipeline", "load_failed"]
