"""phi3ov: chat with Phi-3 and other small LLMs on Intel hardware with OpenVINO GenAI."""

__version__ = "0.1.0"
