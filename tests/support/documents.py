"""Files for the document tests, made in the test: PDFs with fpdf2 (one string per page, or a page with no text
at all), an encrypted PDF with pypdf, a .docx with python-docx."""

from __future__ import annotations

import io

FACT = "The secret launch code of the Zanzibar lighthouse is 7719."
FILLER = ("The committee met again to discuss the budget for the harbour works, the repair of the old sea wall and "
          "the schedule of the ferries during the winter months. ")


def pdf(pages: list[str]) -> bytes:
    """A PDF with a text layer: one page per string (an empty string: a page with no text, like a scan)."""
    from fpdf import FPDF

    doc = FPDF()
    doc.set_font("Helvetica", size=11)
    for text in pages:
        doc.add_page()
        if text:
            doc.multi_cell(0, 6, text)
    return bytes(doc.output())


def long_pdf(pages: int = 12, fact_page: int = 10) -> bytes:
    """Pages of minutes about the harbour, with FACT on `fact_page` only."""
    texts = []
    for n in range(1, pages + 1):
        text = f"Minutes of meeting {n}. " + FILLER * 6
        if n == fact_page:
            text += "\n\n" + FACT
        texts.append(text)
    return pdf(texts)


def encrypted_pdf(text: str = "A secret.") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf([text]))))
    writer.encrypt(user_password="s3cret", owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx(paragraphs: list[str], table: list[list[str]] | None = None) -> bytes:
    import docx as python_docx

    document = python_docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, cell in enumerate(row):
                grid.cell(r, c).text = cell
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
