"""A file in, its text out, page by page: PDF with pypdf, Word with python-docx, HTML with the standard
library's parser, and text, Markdown, CSV and source files as they are.

Every way a file can fail (a kind we do not read, too big, encrypted, corrupt, a scanned PDF with no text)
is a `BadDocument` that names the file and says what to do; nothing else is raised for a bad file.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePath

from ..errors import BadDocument

log = logging.getLogger(__name__)

DEFAULT_MAX_MB = 20.0  # --max-upload-mb
TEXT_KINDS = {".txt", ".md", ".markdown", ".rst", ".csv", ".tsv", ".log", ".json", ".jsonl", ".yaml", ".yml",
              ".toml", ".ini", ".cfg", ".xml", ".tex"}
SOURCE_KINDS = {".py", ".pyi", ".ipynb", ".js", ".mjs", ".ts", ".tsx", ".jsx", ".java", ".kt", ".scala", ".c",
                ".h", ".cc", ".cpp", ".hpp", ".cs", ".go", ".rs", ".rb", ".php", ".swift", ".m", ".r", ".jl",
                ".lua", ".pl", ".sh", ".bash", ".zsh", ".ps1", ".sql", ".css", ".scss", ".vue", ".svelte",
                ".dart", ".hs", ".ex", ".exs", ".erl", ".clj", ".el", ".vim", ".proto", ".gradle", ".cmake", ".mk"}
NAMED_KINDS = {".dockerfile", ".makefile"}  # files known by their whole name (Dockerfile, Makefile)
HTML_KINDS = {".html", ".htm", ".xhtml"}
KINDS = sorted(TEXT_KINDS | SOURCE_KINDS | HTML_KINDS | {".pdf", ".docx"})  # what the paperclip offers


@dataclass(frozen=True)
class Page:
    number: int  # from 1
    text: str


@dataclass(frozen=True)
class Document:
    name: str
    kind: str  # the file's extension, e.g. ".pdf"
    pages: tuple[Page, ...]

    @property
    def paged(self) -> bool:
        """Whether its pages are real pages (a PDF's), not one page standing for the whole file."""
        return self.kind == ".pdf"

    @property
    def text(self) -> str:
        return "\n\n".join(page.text for page in self.pages if page.text)


def kind_of(name: str) -> str:
    path = PurePath(name)
    if path.name.lower() in ("dockerfile", "makefile"):
        return "." + path.name.lower()
    return path.suffix.lower()


def check_size(name: str, size: int, max_mb: float = DEFAULT_MAX_MB) -> None:
    if size > max_mb * 2**20:
        raise BadDocument(f"“{name}” is {size / 2**20:.1f} MB, and this server takes files of at most {max_mb:g} MB.",
                          "Attach a smaller file, or a part of it (the server's --max-upload-mb sets the cap).")


def extract(name: str, data: bytes, max_mb: float = DEFAULT_MAX_MB) -> Document:
    """The text of the file `name` (its bytes `data`), page by page."""
    name = " ".join(PurePath(name or "file").name.split())[:200] or "file"
    check_size(name, len(data), max_mb)
    kind = kind_of(name)
    if kind == ".pdf":
        pages = pdf_pages(name, data)
    elif kind == ".docx":
        pages = [docx_text(name, data)]
    elif kind in HTML_KINDS:
        pages = [html_text(decoded(name, data))]
    elif kind in TEXT_KINDS or kind in SOURCE_KINDS or kind in NAMED_KINDS:
        pages = [decoded(name, data)]
    else:
        raise BadDocument(f"“{name}” is not a kind of file this chat reads.",
                          "Attach text, Markdown, PDF, Word (.docx), HTML, CSV or source files.")
    found = tuple(Page(i, text.strip()) for i, text in enumerate(pages, start=1))
    if not any(page.text for page in found):
        if kind == ".pdf":
            raise BadDocument(f"“{name}” has no text to read: it looks like a scanned PDF (pictures of pages).",
                              "Attach a PDF with a text layer (run it through OCR first), or paste its text.")
        raise BadDocument(f"“{name}” is empty.", "Attach a file with text in it.")
    return Document(name, kind, found)


def decoded(name: str, data: bytes) -> str:
    """Text files: UTF-8 (with or without a byte-order mark) or UTF-16 with one; binary files are refused."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    elif b"\x00" not in data[:8192]:
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            pass
    raise BadDocument(f"“{name}” is not text (it is not UTF-8, or it holds binary data).",
                      "Save it as UTF-8 text, or attach it as PDF or .docx.")


def pdf_pages(name: str, data: bytes) -> list[str]:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):  # an owner password alone still opens it
            raise FileNotDecryptedError("password")
        return [page.extract_text() or "" for page in reader.pages]
    except FileNotDecryptedError:
        raise BadDocument(f"“{name}” is encrypted: it needs a password to open.",
                          "Attach a copy saved without a password.") from None
    except (PdfReadError, Exception) as err:  # noqa: B014 - any failure inside the parser is a corrupt file
        if "crypt" in str(err).lower():  # e.g. an encryption pypdf needs cryptography for
            raise BadDocument(f"“{name}” is encrypted in a way this server cannot open.",
                              "Attach a copy saved without a password.") from None
        log.info("A PDF could not be read: %s: %s", type(err).__name__, err)
        raise BadDocument(f"“{name}” could not be read as a PDF: the file is damaged or not a PDF.",
                          "Open it and save it again as PDF, then attach it again.") from None


def docx_text(name: str, data: bytes) -> str:
    try:
        import docx

        document = docx.Document(io.BytesIO(data))
        lines = [paragraph.text for paragraph in document.paragraphs]
        for table in document.tables:
            for row in table.rows:
                lines.append(" | ".join(cell.text.strip() for cell in row.cells))
        return "\n".join(lines)
    except Exception as err:  # noqa: BLE001 - a zip that is not a Word file, a damaged one
        log.info("A Word file could not be read: %s: %s", type(err).__name__, err)
        raise BadDocument(f"“{name}” could not be read as a Word document (.docx): the file is damaged, "
                          "encrypted or of another kind.",
                          "Open it and save it again as .docx (Word 2007 or newer), then attach it again.") from None


class _TextOfHtml(HTMLParser):
    """The visible text of an HTML page (script, style and the head's metadata left out)."""

    SKIP = {"script", "style", "head", "noscript", "template", "svg"}
    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre",
              "blockquote", "table", "ul", "ol", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_text(page: str) -> str:
    parser = _TextOfHtml()
    parser.feed(page)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out)
