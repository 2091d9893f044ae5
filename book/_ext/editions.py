"""Sphinx extension: each page links to the same page in the other edition of the book.

The English edition is ``_build/html``, the Chinese one ``_build/html/zh``
(``book/_ext/build_lang.py``), with the same file names, so the link is a relative path: from
``book/adapt.html`` to ``zh/book/adapt.html`` and back. It stands at the top of each page.

Enabled in ``_config.yml`` (``sphinx: local_extensions: {editions: book/_ext}``).
"""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx

#: the other edition of each language: (its folder relative to the English site, link text)
OTHER = {"en": ("zh", "中文版"), "zh_CN": ("", "English edition")}


def counterpart(docname: str, language: str) -> str:
    """The relative URL of ``docname`` in the other edition."""
    up = "../" * docname.count("/")
    if language == "zh_CN":
        return "../" + up + docname + ".html"
    return up + OTHER["en"][0] + "/" + docname + ".html"


def add_link(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    if app.builder.format != "html":
        return
    language = app.config.language if app.config.language in OTHER else "en"
    text = OTHER[language][1]
    link = nodes.reference("", text, refuri=counterpart(docname, language), internal=False)
    para = nodes.paragraph("", "", link, classes=["other-edition"])
    para["translatable"] = False
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is not None:
        title = next(iter(section.findall(nodes.title)), None)
        section.insert(section.index(title) + 1 if title is not None else 0, para)


def setup(app: Sphinx) -> dict:
    app.connect("doctree-resolved", add_link)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
