"""The page around the chat: its header, theme, css, favicon and interface strings."""

from __future__ import annotations

import base64
import functools
import html
from pathlib import Path
from typing import Any

import gradio as gr

from ..engine import Engine
from .i18n import I18N

ASSETS = Path(__file__).resolve().parents[2] / "assets"


@functools.cache
def logo_img() -> str:
    """The logo as an inline image, read once (the header is re-sent with many events)."""
    logo = ASSETS / "logo.svg"
    if not logo.exists():
        return ""
    return f'<img alt="" src="data:image/svg+xml;base64,{base64.b64encode(logo.read_bytes()).decode()}">'


def header_html(engine: Engine) -> str:
    img = logo_img()
    return (
        f'<div class="phi3ov-header">{img}<div><h1>phi3ov</h1>'
        f'<span class="phi3ov-model">{html.escape(engine.name)} · {html.escape(engine.device)} · '
        f"{engine.context_length} tokens of context"
        + (' · <span class="phi3ov-deterministic" title="Started with --deterministic: a greedy or seeded reply is '
           'the same whether asked alone, again or among others; replies are computed one at a time.">'
           "reproducible replies</span>" if engine.capabilities.deterministic else "")
        + "</span></div></div>"
    )


def launch_kwargs() -> dict[str, Any]:
    """Theme, css and favicon for `launch()` (Gradio 6 takes them there)."""
    css = (ASSETS / "style.css").read_text() if (ASSETS / "style.css").exists() else None
    kwargs: dict[str, Any] = {"theme": gr.themes.Soft(primary_hue="blue"), "css": css, "i18n": I18N}
    if (ASSETS / "head.html").exists():
        kwargs["head"] = (ASSETS / "head.html").read_text()
    if (ASSETS / "logo.svg").exists():
        kwargs["favicon_path"] = str(ASSETS / "logo.svg")
    return kwargs
