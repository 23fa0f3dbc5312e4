"""The chat's interface strings in English and Arabic, chosen by the browser's language (gr.I18n).

Message text is never translated: each message sets its own direction from its text (see
assets/head.html), so Arabic reads right to left beside English in either interface language.
"""

from __future__ import annotations

import gradio as gr

EN = {
    "chats": "Chats",
    "model": "Model",
    "new_chat": "+ New chat",
    "title": "Title",
    "title_info": "Enter renames this chat.",
    "delete": "Delete chat",
    "undo_delete": "↶ Undo delete",
    "placeholder": "Type a message (Enter sends, Shift+Enter adds a line)",
    "chat_placeholder": "Ask anything. Replies stream as they are generated.",
    "send": "Send",
    "stop": "Stop",
    "stop_discard": "Stop and discard",
    "regenerate": "↻ Regenerate",
    "undo": "↶ Undo",
    "continue": "→ Continue",
    "clear": "✕ Clear",
    "save": "⤓ Save chat",
    "load": "⤒ Load chat",
    "download_md": "Markdown",
    "download_json": "JSON (reload or reproduce)",
    "settings": "Settings",
    "system_prompt": "System prompt",
    "seed": "Seed",
    "seed_placeholder": "random",
    "prompt_lookup": "Prompt lookup",
    "reply_json": "Reply as JSON",
    "json_schema": "JSON schema",
    "older_reply": "‹",
    "newer_reply": "›",
    "max_new_tokens": "Max new tokens",
    "temperature": "Temperature",
    "top_p": "Top-p",
    "top_k": "Top-k",
    "repetition_penalty": "Repetition penalty",
}

AR = {
    "chats": "المحادثات",
    "model": "النموذج",
    "new_chat": "+ محادثة جديدة",
    "title": "العنوان",
    "title_info": "اضغط Enter لإعادة تسمية المحادثة.",
    "delete": "حذف المحادثة",
    "undo_delete": "↶ تراجع عن الحذف",
    "placeholder": "اكتب رسالة (Enter للإرسال، Shift+Enter لسطر جديد)",
    "chat_placeholder": "اسأل عن أي شيء. تظهر الردود أثناء كتابتها.",
    "send": "إرسال",
    "stop": "إيقاف",
    "stop_discard": "إيقاف وتجاهل",
    "regenerate": "↻ إعادة التوليد",
    "undo": "↶ تراجع",
    "continue": "→ متابعة",
    "clear": "✕ مسح",
    "save": "⤓ حفظ المحادثة",
    "load": "⤒ تحميل محادثة",
    "download_md": "Markdown",
    "download_json": "JSON (لإعادة التحميل أو التكرار)",
    "settings": "الإعدادات",
    "system_prompt": "موجّه النظام",
    "seed": "البذرة",
    "seed_placeholder": "عشوائية",
    "prompt_lookup": "البحث في الموجّه",
    "reply_json": "الرد بصيغة JSON",
    "json_schema": "مخطط JSON",
    "older_reply": "‹",
    "newer_reply": "›",
    "max_new_tokens": "أقصى عدد من الرموز الجديدة",
    "temperature": "درجة الحرارة",
    "top_p": "Top-p",
    "top_k": "Top-k",
    "repetition_penalty": "عقوبة التكرار",
}

assert EN.keys() == AR.keys(), "every interface string needs both languages"

I18N = gr.I18n(en=EN, ar=AR)


def t(key: str):
    """The interface string `key`, translated in the browser."""
    return I18N(key)
