"""Build the book in another language from the same execution, or extract its catalogues.

``python book/_ext/build_lang.py gettext`` writes the message templates (``_build/gettext``);
``python book/_ext/build_lang.py html zh_CN`` builds the Chinese edition into ``_build/html/zh``
from ``locale/zh_CN/LC_MESSAGES`` (``make book`` runs it after the English build).

The English build executes the pages (jupyter-cache); this one only reads the cache: the code
cells of both editions are the same, so the cache answers every page, and a page whose English
build is missing makes this script stop rather than execute it. The Jupyter Book command line
cannot pass a language or a separate doctree folder (a gettext or Chinese build must not share
the English one), so the build goes through ``jupyter_book.sphinx.build_sphinx``. The Chinese
site is built next to the English one (``_build/html_zh``, so that the execution cache and the
labs' work folder stay under ``_build``) and copied to ``_build/html/zh``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "_build"
LANGUAGES = {"zh_CN": "zh"}  # language → folder of the edition under _build/html
SEARCH_BAR = {"zh_CN": "搜索本书……"}
#: myst-nb's buttons over hidden code ("Show code cell source")
CODE_PROMPTS = {"zh_CN": ("显示代码", "隐藏代码")}
#: the API reference is the package's docstrings: English in both editions
ENGLISH_ONLY = ("book/api",)


def _toc(language: str) -> Path:
    """``_toc.yml`` with its part captions translated (the table of contents is inserted after
    Sphinx translates a page, so its captions are translated here)."""
    from babel.messages.pofile import read_po

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    po = ROOT / "locale" / language / "LC_MESSAGES" / "book" / "intro.po"
    messages = {}
    if po.exists():
        with po.open("rb") as f:
            messages = {m.id: m.string for m in read_po(f) if m.id and m.string}
    for part in toc.get("parts", []):
        part["caption"] = messages.get(part["caption"], part["caption"])
    out = BUILD / f"_toc.{language}.yml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(toc, allow_unicode=True, sort_keys=False))
    return out


def _theme_options() -> dict:
    """The theme options Jupyter Book derives from ``_config.yml`` (kept when one is changed)."""
    from jupyter_book.config import get_final_config

    config, *_ = get_final_config(
        user_yaml=ROOT / "_config.yml", cli_config={"latex_individualpages": False},
        sourcedir=ROOT,
    )
    return dict(config.get("html_theme_options", {}))


def build(builder: str, outdir: Path, doctrees: Path, **overrides) -> None:
    from jupyter_book.sphinx import build_sphinx

    conf = {
        "external_toc_path": str(ROOT / "_toc.yml"),
        "latex_individualpages": False,
        "nitpicky": True,
        **overrides,
    }
    result = build_sphinx(
        str(ROOT),
        str(outdir),
        doctreedir=str(doctrees),
        noconfig=True,
        path_config=str(ROOT / "_config.yml"),
        confoverrides=conf,
        builder=builder,
        warningiserror=True,
        keep_going=True,
    )
    if result != 0:
        sys.exit(f"the {builder} build failed ({result!r}); its warnings are above")


def main(argv: list[str]) -> None:
    if argv[:1] == ["gettext"]:
        build("gettext", BUILD / "gettext", BUILD / ".doctrees-gettext", nb_execution_mode="cache")
        for page in ENGLISH_ONLY:  # no catalogue: these pages stay in English in every edition
            (BUILD / "gettext" / f"{page}.pot").unlink(missing_ok=True)
        return
    if len(argv) != 2 or argv[0] != "html" or argv[1] not in LANGUAGES:
        sys.exit(f"usage: build_lang.py gettext | build_lang.py html {{{','.join(LANGUAGES)}}}")
    language = argv[1]
    site = BUILD / f"html_{LANGUAGES[language]}"
    build(
        "html",
        site,
        BUILD / f".doctrees-{language}",
        language=language,
        external_toc_path=str(_toc(language)),
        html_search_options={"dict": str(ROOT / "locale" / language / "search_dict.txt")},
        html_theme_options={**_theme_options(), "search_bar_text": SEARCH_BAR[language]},
        nb_execution_mode="cache",
        nb_code_prompt_show=CODE_PROMPTS[language][0],
        nb_code_prompt_hide=CODE_PROMPTS[language][1],
    )
    dest = BUILD / "html" / LANGUAGES[language]
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(site, dest)
    print(f"the {language} edition: {dest.relative_to(ROOT)}/index.html")


if __name__ == "__main__":
    main(sys.argv[1:])
