"""`phi3ov bench`: speed figures, always as ratios against a baseline measured in the same run.

- app.py: one user, raw LLMPipeline vs. through the app (with a first-token breakdown)
- concurrency.py: N clients at once through the API vs. one after another
- peers.py: phi3ov vs. raw openvino-genai vs. llama.cpp on the same weights, in separate processes
- optimum.py: optimum-intel's OVModelForCausalLM on the same folder
"""

from .app import add_args, main

__all__ = ["add_args", "main"]
