"""The Gradio chat: the one subpackage that imports gradio.

    layout.py   the Blocks: components and how their events are wired
    chat.py     one reply: stream it into the Chatbot, its live and final figures
"""

from .layout import build_ui, launch_kwargs

__all__ = ["build_ui", "launch_kwargs"]
