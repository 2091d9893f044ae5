"""Sphinx extension: glued numbers and words in translated pages (the Chinese edition).

Sphinx translates a page by parsing each translated paragraph again, on its own, where myst-nb
cannot see the page's glued values: a ``{glue:text}`` role of a translation would vanish with a
warning. This extension replaces the role inside translations only (English pages keep
myst-nb's own): it reads the value from the page's glue file (written when the page was parsed,
before Sphinx translates it), formats it like myst-nb, and translates a glued *string* (a
verdict such as "a gain whose interval excludes zero") through
``locale/<language>/LC_MESSAGES/glue.po``. A string with words and no translation there is a
warning, so no English sentence enters the translated edition unnoticed.

It also keeps the API reference (the package's docstrings) in English: those nodes are marked
untranslatable.

Enabled in ``_config.yml`` (``sphinx: local_extensions: {glue_i18n: book/_ext}``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform

_CATALOGUES: dict[str, dict[str, str]] = {}


def glue_strings(env) -> dict[str, str]:
    """``{english: translation}`` of the glued strings, from ``glue.po`` of the build's language."""
    language = env.config.language or "en"
    if language not in _CATALOGUES:
        from babel.messages.pofile import read_po

        table: dict[str, str] = {}
        for folder in env.config.locale_dirs:
            po = Path(env.srcdir, folder, language, "LC_MESSAGES", "glue.po")
            if po.is_file():
                env.note_dependency(str(po))
                with po.open("rb") as f:
                    table.update({m.id: m.string for m in read_po(f) if m.id and m.string})
        _CATALOGUES[language] = table
    return _CATALOGUES[language]


def _role_class():
    from myst_nb.core.variables import format_plain_text
    from myst_nb.ext.glue.roles import PasteTextRole
    from myst_nb.ext.glue.utils import glue_warning

    class TranslatedPasteTextRole(PasteTextRole):
        """``{glue:text}`key:fmt``` that also works inside a translated paragraph."""

        def run(self):
            translated = str(self.document.current_source or "").endswith("<translated>")
            if not translated or "::" in self.text:
                return super().run()
            env = self.document.settings.env
            key, sep, fmt = self.text.rpartition(":")
            if not sep:
                key, fmt = self.text, "s"
            parts = env.docname.split("/")
            path = Path(env.mystnb_config.output_folder, *parts[:-1], parts[-1] + ".glue.json")
            data = json.loads(path.read_text(encoding="utf8")) if path.is_file() else {}
            if key not in data or "text/plain" not in data[key].get("data", {}):
                message = f"No key {key!r} in the glue data of {env.docname!r} (translated message)"
                return [], [glue_warning(message, self.document, self.line)]
            plain = data[key]["data"]["text/plain"]
            text = format_plain_text(plain, fmt)
            if plain[:1] in "'\"" and re.search(r"[A-Za-z]{2,}", text):
                table = glue_strings(env)
                items = text.split(", ")
                if text not in table and len(items) > 1 and all(i in table for i in items):
                    table = {**table, text: "、".join(table[i] for i in items)}  # a list of names
                if text not in table:
                    message = (
                        f"the glued string {text!r} ({key!r}) has no translation in "
                        f"glue.po of {env.config.language}: add it there"
                    )
                    return [], [glue_warning(message, self.document, self.line)]
                text = table[text]
            node = nodes.inline(text, text, classes=["pasted-text"])
            self.set_source_info(node)
            return [node], []

    return TranslatedPasteTextRole


class KeepDocstringsInEnglish(SphinxTransform):
    """The API reference is the package's docstrings: it stays in English in every edition."""

    default_priority = 10  # before Sphinx's Locale transform (20)

    def apply(self, **kwargs) -> None:
        for node in self.document.findall(nodes.Element):
            if "docstring of " in str(node.source or ""):
                node["translatable"] = False


def setup(app: Sphinx) -> dict:
    app.setup_extension("myst_nb")
    app.add_role_to_domain("glue", "text", _role_class()(), override=True)
    app.add_transform(KeepDocstringsInEnglish)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
