"""Chat with your documents: files in, the text the prompt reads out. No model needed here (token counts come
from the caller), and nothing here imports the UI or the API.

    extract.py   a file -> its text, page by page (pypdf, python-docx, the standard library), or a clear error
    passages.py  a document -> passages of about 120 words, each with its page and place
    retrieve.py  passages ranked against a question (BM25, the bm25s library; fused with embed.py's ranking)
    embed.py     --embedding-model: similarity by an OpenVINO text-embedding model (TextEmbeddingPipeline)
    budget.py    the room documents have in the context, and the passages that fill it
    attach.py    what a message's documents put in the prompt, its chips and its Sources
"""

from .attach import Attachment, attach, follow_up, prompt_text
from .budget import room
from .extract import DEFAULT_MAX_MB, KINDS, Document, Page, check_size, extract
from .passages import Passage, split
from .retrieve import rank

__all__ = ["DEFAULT_MAX_MB", "KINDS", "Attachment", "Document", "Page", "Passage", "attach", "check_size", "extract",
           "follow_up", "prompt_text", "rank", "room", "split"]
