"""The Chinese edition's catalogues (``locale/zh_CN/LC_MESSAGES``) are complete and keep the
markup of the English pages.

Sphinx shows the English text of an entry that is missing, empty or fuzzy, and silently drops
a number whose ``{glue:text}`` role a translation lost; so every entry of every catalogue is
checked here: translated, not fuzzy, and with the same glued numbers, formulas, inline code,
link targets and cross-reference targets as its English text. ``make i18n`` updates the
catalogues after an English page changes (README, "Translating the book"); this test then names
each entry to translate again.

``python tests/test_book_i18n.py locale/zh_CN/LC_MESSAGES/book/adapt.po`` prints the problems of
one catalogue (what a translator runs before committing).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
LOCALE = ROOT / "locale" / "zh_CN" / "LC_MESSAGES"
#: pages that stay in English in both editions: the API reference is the package's docstrings
ENGLISH_ONLY = {"book/api"}

GLUE = re.compile(r"\{glue(?::\w+)?\}`[^`]*`")
MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$")
CODE = re.compile(r"(?<!\})``[^`]+``|(?<![}`])`[^`]+`")
ROLE = re.compile(r"\{(?!glue)([\w:-]+)\}`([^`]*)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
CJK = re.compile(r"[\u3400-\u9fff]")
BLOCK_START = re.compile(r"^(\d+\.\s|[-*+]\s|#|%|>)")


def _target(role: str, text: str) -> str:
    m = re.search(r"<([^<>]+)>\s*$", text)
    target = m.group(1) if m else text
    if role == "term":
        target = target.lower()
    return f"{role}:{target.strip()}"


def _roles(text: str) -> Counter:
    return Counter(_target(r, t) for r, t in ROLE.findall(text))


def _code(text: str) -> list[str]:
    """Inline code spans, the roles taken out first (a role's backticks are not code)."""
    return CODE.findall(ROLE.sub(" ", GLUE.sub(" ", text)))


def _math(text: str) -> list[str]:
    """Formulas, inline code taken out first (``$HOME`` in code is not a formula)."""
    return MATH.findall(CODE.sub(" ", ROLE.sub(" ", GLUE.sub(" ", text))))


def _words(text: str) -> int:
    for pattern in (GLUE, MATH, ROLE, LINK):
        text = pattern.sub(" ", text)
    text = CODE.sub(" ", text)
    text = re.sub(r"\\[A-Za-z]+|\{[^{}]*\}", " ", text)  # a display formula's LaTeX
    return len(re.findall(r"[A-Za-z]{3,}", text))


def glossary_terms() -> set[str]:
    text = (ROOT / "book" / "glossary.md").read_text()
    block = text.split("```{glossary}", 1)[1].split("```", 1)[0]
    return {line.strip() for line in block.splitlines() if line and not line[0].isspace()}


def problems(po: Path) -> list[str]:
    """What is wrong with the entries of one catalogue (empty: nothing)."""
    from babel.messages.pofile import read_po

    with po.open("rb") as f:
        catalogue = read_po(f)
    terms = glossary_terms() if po.stem == "glossary" else set()
    found = []
    for m in catalogue:
        if not m.id:
            continue
        english, chinese = m.id, m.string or ""
        where = f"{po.relative_to(ROOT)}: {english[:70]!r}"
        if not chinese.strip():
            found.append(f"{where}: not translated")
            continue
        if m.fuzzy:
            found.append(f"{where}: fuzzy (check it against the English, then remove the flag)")
        for name, find in (
            ("glued value", GLUE.findall),
            ("formula", _math),
            ("inline code", _code),
            ("link target", LINK.findall),
        ):
            a, b = Counter(find(english)), Counter(find(chinese))
            if a != b:
                found.append(
                    f"{where}: {name}s differ: {sorted((a - b).elements())} missing, "
                    f"{sorted((b - a).elements())} added"
                )
        a, b = _roles(english), _roles(chinese)
        if a != b:
            found.append(
                f"{where}: cross-references differ: {sorted((a - b).elements())} "
                f"missing, {sorted((b - a).elements())} added (keep each target; write "
                "{term}`中文 <English term>` for a glossary term)"
            )
        if BLOCK_START.match(chinese):
            found.append(
                f"{where}: starts like a list or heading, which Sphinx would not apply "
                "(write 第 1 步： or １． instead of 1.)"
            )
        if english in terms or (po.name == "glue.po" and chinese == english):
            continue  # the glossary's terms and glued method names stay in English
        if _words(english) >= 2 and not CJK.search(chinese):
            found.append(f"{where}: no Chinese in the translation")
    return found


def catalogues() -> list[Path]:
    return sorted(
        p
        for p in LOCALE.rglob("*.po")
        if p.relative_to(LOCALE).with_suffix("").as_posix() not in ENGLISH_ONLY
    )


def test_every_page_has_a_catalogue():
    pages = {
        p.relative_to(ROOT).with_suffix("").as_posix()
        for d in ("book", "labs")
        for p in (ROOT / d).glob("*.md")
    }
    have = {p.relative_to(LOCALE).with_suffix("").as_posix() for p in catalogues()}
    assert pages - ENGLISH_ONLY - {"book/bibliography"} <= have, sorted(pages - have - ENGLISH_ONLY)


@pytest.mark.parametrize("po", catalogues(), ids=lambda p: p.relative_to(LOCALE).as_posix())
def test_every_entry_is_translated_and_keeps_the_markup(po):
    found = problems(po)
    assert not found, f"{len(found)} problem(s):\n" + "\n".join(found[:40])


def test_the_readme_command_keeps_the_catalogues_in_step_with_the_english_pages(built_book):
    """``make i18n``, as the README shows it, from the repository root (after the book build, so
    that it reads the execution cache): it extracts the English messages and updates the
    catalogues; a page changed without updating its catalogue leaves entries that the tests
    above then name."""
    import subprocess

    readme = (ROOT / "README.md").read_text()
    assert "make i18n   # extracts the English messages" in readme
    proc = subprocess.run(
        ["make", "i18n"], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = [f for po in catalogues() for f in problems(po)]
    assert not found, "the catalogues are behind the English pages:\n" + "\n".join(found[:20])


def test_the_check_finds_a_lost_number_and_an_untranslated_entry(tmp_path):
    po = tmp_path / "page.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "It closes {glue:text}`x:.0f` % of the gap, see {doc}`adapt`."\n'
        'msgstr "它缩小了差距，见 {doc}`adapt`。"\n\n'
        'msgid "Read the table."\nmsgstr ""\n\n'
        '#, fuzzy\nmsgid "Key takeaways"\nmsgstr "要点"\n',
        encoding="utf-8",
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = problems(po)
    finally:
        ROOT = saved
    assert any("glued value" in f for f in found)
    assert any("not translated" in f for f in found)
    assert any("fuzzy" in f for f in found)


if __name__ == "__main__":
    out = [p for arg in sys.argv[1:] for p in problems(Path(arg).resolve())]
    print("\n".join(out) or "no problems")
    sys.exit(1 if out else 0)
