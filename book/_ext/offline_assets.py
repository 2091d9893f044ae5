"""Sphinx extension: the built book needs no network.

Sphinx loads MathJax from a CDN by default, so a book opened offline shows raw ``$...$``.  This
extension serves MathJax 3 from the build itself: it copies the files of the PyPI package
``django-static-mathjax`` (MathJax 3.2.2, a plain copy of MathJax's ``es5`` folder; declared in
``pyproject.toml``'s ``book`` extra) into ``_build/html/_static/mathjax`` and points
``mathjax_path`` at them.  ``tests/test_book_browser.py`` checks that no page references a remote
script, stylesheet or font.

Enabled in ``_config.yml`` (``sphinx: local_extensions: {offline_assets: book/_ext}``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError

#: where the copy lives, relative to ``_static``; the entry point MathJax loads everything else from
MATHJAX_DIR = "mathjax"
MATHJAX_ENTRY = "tex-mml-chtml.js"  # the component Sphinx's CDN default also uses


def mathjax_source() -> Path:
    """MathJax's ``es5`` folder inside the installed ``django-static-mathjax`` package."""
    try:
        import mathjax  # the module django-static-mathjax installs
    except ImportError as exc:
        raise ExtensionError(
            "offline math needs MathJax's files: pip install django-static-mathjax "
            "(part of transferlab's 'book' extra: pip install -e '.[book]')") from exc
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (es5 / MATHJAX_ENTRY).is_file():
        raise ExtensionError(f"no {MATHJAX_ENTRY} in {es5}: reinstall django-static-mathjax")
    return es5


def _use_local_mathjax(app: Sphinx, config: Config) -> None:
    mathjax_source()  # fail early, with the install command, when the package is missing
    config.mathjax_path = f"{MATHJAX_DIR}/{MATHJAX_ENTRY}"  # relative: under _static/


def _thebe_on(app: Sphinx) -> bool:
    launch = app.config.html_theme_options.get("launch_buttons") or {}
    return bool(launch.get("thebe"))


def _clean_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Each script once (sphinx-thebe registers its inline settings twice: a console error,
    "Identifier 'THEBE_JS_URL' has already been declared"); no thebe at all while the book has
    no live-code button (its settings name a CDN copy of thebe, which an offline book cannot use)."""
    # pydata-sphinx-theme logs a console error on every page when the light/dark mode is empty
    # (as sphinx-book-theme leaves it): follow the reader's system setting
    context["default_mode"] = context.get("default_mode") or "auto"
    seen, kept = set(), []
    for script in context.get("script_files", []):
        key = (str(script), tuple(sorted(getattr(script, "attributes", {}).items())))
        thebe = "thebe" in str(script) or "THEBE_JS_URL" in str(getattr(script, "attributes", {}).get("body", ""))
        if key in seen or (thebe and not _thebe_on(app)):
            continue
        seen.add(key)
        kept.append(script)
    context["script_files"] = kept
    if not _thebe_on(app):
        context["css_files"] = [css for css in context.get("css_files", []) if "thebe" not in str(css)]


def _copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    es5 = mathjax_source()
    # the entry point and the folders it loads on demand (fonts, TeX extensions, menu, speech),
    # not the other combined bundles (about 15 MB that no page loads)
    bundles = {p.name for p in es5.glob("*.js")} - {MATHJAX_ENTRY}
    shutil.copytree(es5, Path(app.outdir) / "_static" / MATHJAX_DIR, dirs_exist_ok=True,
                    ignore=lambda folder, names: bundles & set(names) if Path(folder) == es5 else set())


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _use_local_mathjax, priority=900)
    app.connect("html-page-context", _clean_scripts, priority=900)  # after the themes' own handlers
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
