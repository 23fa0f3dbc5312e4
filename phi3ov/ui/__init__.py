"""The Gradio chat: the one subpackage that imports gradio.

    layout.py   the Blocks: components and how their events are wired
    actions.py  what each button, box and list does
    chat.py     one reply: stream it into the Chatbot, its live and final figures
    store.py          the list of conversations the browser keeps
    markup.py   Markdown shown with raw HTML as text
    i18n.py     the interface strings in English and Arabic
    page.py     header, theme, css
"""

from .layout import build_ui
from .page import launch_kwargs

__all__ = ["build_ui", "launch_kwargs"]
