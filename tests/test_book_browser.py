"""The built book as a reader sees it, offline: the HTML in ``_build/html`` opened in headless
Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright; no browser download).

The book is built once per test session by the ``built_book`` fixture (tests/conftest.py):
``jupyter-book build -n -W --keep-going .``, which executes every chapter and lab (hidden tests
included) through jupyter-cache and fails on the first error or warning.

Static checks (no browser): no page references a remote script, stylesheet, image or font; every
internal link and anchor resolves; no page publishes a hidden test or a lab's solution.

In the browser, for every page: it loads with no console error and no request leaving the machine;
every formula is typeset by the MathJax copy inside the build (no raw TeX left in the text); every
image and SVG figure has a non-zero rendered size; a screenshot goes to
``_build/screenshots/<page>.png``.  The search page finds "LoRA" and "迁移学习".

Without Chromium or Playwright the browser tests are skipped, unless ``CI`` is set: then they
fail (``make test`` installs Chromium where it is missing).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import tempfile
import threading
import urllib.parse
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from transferlab.grading.labs import secret_lines

ROOT = Path(__file__).parents[1]
CHROMIUM = os.environ.get("TRANSFERLAB_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REMOTE = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
CSS_URL = re.compile(r"""(?:@import\s+(?:url\()?|url\()\s*['"]?([^'")\s]+)""", re.IGNORECASE)
# what MathJax leaves behind when it did not run: delimiters or TeX commands in the text
RAW_TEX = re.compile(
    r"\\\(|\\\)|\\\[|\\\]|\$\$|\\(frac|sum|mathcal|hat|theta|lambda|left|right|operatorname)\b"
)


def _pages(html: Path) -> list[Path]:
    return sorted(
        p
        for p in html.rglob("*.html")
        if not any(part.startswith("_") for part in p.relative_to(html).parts)  # _static, ...
    )


def _redirect(page: Path) -> str | None:
    """Where a redirect page (the book's ``index.html``) sends the reader, or None."""
    meta = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser").find(
        "meta", attrs={"http-equiv": "Refresh"}
    )
    return meta["content"].split("url=", 1)[1] if meta else None


# --- static checks -----------------------------------------------------------------------------


def test_no_page_references_a_remote_script_stylesheet_image_or_font(built_book):
    html = built_book
    remote = []
    for page in _pages(html):
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        for tag, attr in (
            ("script", "src"),
            ("link", "href"),
            ("img", "src"),
            ("iframe", "src"),
            ("source", "src"),
            ("video", "src"),
            ("audio", "src"),
        ):
            for el in soup.find_all(tag):
                if tag == "link" and not {
                    "stylesheet",
                    "preload",
                    "icon",
                    "modulepreload",
                    "prefetch",
                } & set(el.get("rel", [])):
                    continue  # a plain hyperlink-like <link> (canonical, next, prev) loads nothing
                if (url := el.get(attr)) and REMOTE.match(url):
                    remote.append(f"{page.relative_to(html)}: <{tag} {attr}={url}>")
        for style in soup.find_all("style"):
            remote += [
                f"{page.relative_to(html)}: <style> {u}"
                for u in CSS_URL.findall(style.text)
                if REMOTE.match(u)
            ]
    for css in html.rglob("*.css"):
        remote += [
            f"{css.relative_to(html)}: {u}"
            for u in CSS_URL.findall(css.read_text(errors="replace"))
            if REMOTE.match(u)
        ]
    assert remote == [], "the book needs the network:\n" + "\n".join(remote[:40])


def test_the_math_renderer_is_served_from_the_build(built_book):
    html = built_book
    assert (html / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    assert list((html / "_static" / "mathjax" / "output" / "chtml" / "fonts").rglob("*.woff"))
    page = (html / "book" / "math.html").read_text(encoding="utf-8")
    assert 'src="../_static/mathjax/tex-mml-chtml.js' in page


def test_internal_links_and_anchors_resolve(built_book):
    html = built_book
    ids: dict[Path, set[str]] = {}

    def anchors(path: Path) -> set[str]:
        if path not in ids:
            soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
            ids[path] = {el["id"] for el in soup.find_all(id=True)} | {
                el["name"] for el in soup.find_all("a", attrs={"name": True})
            }
        return ids[path]

    broken = []
    for page in _pages(html):
        if (target := _redirect(page)) and not (page.parent / target).is_file():
            broken.append(f"{page.relative_to(html)}: redirects to {target} (no such file)")
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        for a in soup.find_all("a", href=True):
            href = a["href"]
            if REMOTE.match(href) or href.startswith(("mailto:", "javascript:", "data:")):
                continue
            url = urllib.parse.urlsplit(href)
            target = (page.parent / urllib.parse.unquote(url.path)).resolve() if url.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(html)}: {href} (no such file)")
            elif (
                url.fragment
                and target.suffix == ".html"
                and urllib.parse.unquote(url.fragment) not in anchors(target)
            ):
                broken.append(f"{page.relative_to(html)}: {href} (no such anchor)")
    assert broken == [], "\n".join(broken[:40])


def test_no_page_publishes_a_hidden_test_or_a_labs_solution(built_book):
    """A lab's page shows its stubs and public checks, and not one line of its solutions, even
    collapsed; no page shows a line of a hidden test; a chapter shows no lab's solution line
    outside a collapsed block (a line that is in a master's solutions or hidden tests and
    nowhere in the chapters, whose own exercises keep collapsed solutions for self-study)."""
    html = built_book
    chapters = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "book").glob("*.md"))
    secrets = {m.stem: secret_lines(m) for m in sorted((ROOT / "labs").glob("*.md"))}
    assert all(s["hidden"] and s["solution"] for s in secrets.values())
    found = []
    for page in _pages(html):
        rel = page.relative_to(html).as_posix()
        page_path = rel.removeprefix("zh/")  # the Chinese edition has the same pages
        lab = (
            page_path.removeprefix("labs/").removesuffix(".html")
            if page_path.startswith("labs/")
            else None
        )
        # a lab page: its own master's secrets; any other page: every lab's, but the chapters' code
        kinds = (
            secrets[lab]
            if lab
            else {
                kind: {
                    s
                    for lab_secrets in secrets.values()
                    for s in lab_secrets[kind]
                    if s not in chapters
                }
                for kind in ("hidden", "solution")
            }
        )
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        everything = soup.get_text()
        found += [f"{rel}: hidden test line {s!r}" for s in kinds["hidden"] if s in everything]
        if not lab:  # a chapter's exercises: collapsed solutions, for self-study
            for block in soup.find_all("details"):
                block.decompose()
        visible = soup.get_text()
        found += [f"{rel}: solution line {s!r}" for s in kinds["solution"] if s in visible]
    assert found == [], "\n".join(found[:20])
    for site in (html, html / "zh"):
        assert not (site / "_sources" / "labs").exists(), f"{site}: lab masters are published"


# --- in the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """A headless Debian Chromium, or a skip (a failure when ``CI`` is set) naming what is
    missing."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the Python package playwright is not installed (pip install -e '.[dev]')"
    if problem is None and not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        problem = (
            f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set TRANSFERLAB_CHROMIUM)"
        )
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test cannot run: {problem}")
        pytest.skip(problem)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    with sync_playwright() as pw:
        # a fresh profile folder (Playwright passes it as --user-data-dir)
        browser = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=FLAGS,
            headless=True,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            yield browser
        finally:
            browser.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def served(built_book):
    """The built book on a local HTTP port (as a static host serves it): its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request log in the test output
        pass


def _open(context, url: str):
    """A new tab on ``url`` with its console errors, page errors and off-machine requests recorded;
    requests that would leave the machine are aborted (the book must not need them)."""
    page = context.new_page()
    page.set_default_timeout(60_000)
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    def route(r):
        host = urllib.parse.urlsplit(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            r.continue_()
        else:
            problems.append(f"remote request: {r.request.url}")
            r.abort()

    page.route("**/*", route)
    page.goto(url, wait_until="load")
    return page, problems


TYPESET = (
    "async () => {\n"
    "  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {"
    " await MathJax.startup.promise; }\n"
    "  const math = [...document.querySelectorAll('.math')];\n"
    "  const raw = math.filter(m => !m.querySelector('mjx-container')"
    " && !m.closest('mjx-container'))\n"
    "                  .map(m => m.textContent.slice(0, 80));\n"
    "  return {count: math.length, raw: raw, mathjax: !!(window.MathJax && MathJax.version)};\n"
    "}"
)

FIGURES = (
    "() => {\n"
    "  document.querySelectorAll('details').forEach(d => d.open = true);"
    "   // collapsed outputs too\n"
    "  const main = document.querySelector('article') || document.body;\n"
    "  return [...main.querySelectorAll('img, svg')]\n"
    "    .filter(el => !(el.classList && el.classList.contains('svg-inline--fa'))"
    " && !el.closest('mjx-container') && !el.closest('button') && !el.closest('summary')\n"
    "                  && !el.closest('.headerlink') && !el.closest('a.copybtn')"
    " && !el.closest('.toggle-button'))\n"
    "    .map(el => { const r = el.getBoundingClientRect();\n"
    "                 return {tag: el.tagName,"
    " src: el.getAttribute('src') || el.id || el.className.baseVal || '',\n"
    "                         w: r.width, h: r.height,"
    " loaded: el.tagName !== 'IMG' || (el.complete && el.naturalWidth > 0)}; });\n"
    "}"
)

TEXT = (
    "() => {\n"
    "  const main = (document.querySelector('article') || document.body).cloneNode(true);\n"
    "  main.querySelectorAll("
    "'pre, code, mjx-container, .MathJax, script, style, mjx-assistive-mml'"
    ").forEach(e => e.remove());\n"
    "  return main.innerText;\n"
    "}"
)


def test_every_page_loads_offline_with_typeset_math_and_visible_figures(
    built_book, served, browser
):
    html = built_book
    shots = html.parent / "screenshots"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    failures, formulas, figures, drawn = [], 0, 0, set()
    for path in _pages(html):
        if _redirect(path):
            continue  # index.html: checked by test_internal_links_and_anchors_resolve
        rel = path.relative_to(html).as_posix()
        page, problems = _open(browser, f"{served}/{rel}")
        try:
            math = page.evaluate(TYPESET)
            page.wait_for_load_state("networkidle")
            formulas += math["count"]
            if math["count"] and not math["mathjax"]:
                problems.append("formulas on the page, but MathJax did not load")
            problems += [f"formula not typeset: {t!r}" for t in math["raw"][:5]]
            text = page.evaluate(TEXT)
            problems += [
                f"raw TeX in the text: {m.group(0)!r} in "
                f"...{text[max(0, m.start() - 40) : m.end() + 40]!r}..."
                for m in list(RAW_TEX.finditer(text))[:3]
            ]
            page.screenshot(
                path=str(shots / (rel.replace("/", "__").removesuffix(".html") + ".png"))
            )
            for fig in page.evaluate(FIGURES):
                figures += 1
                if not fig["loaded"] or fig["w"] <= 0 or fig["h"] <= 0:
                    problems.append(f"figure not rendered: {fig}")
                elif fig["w"] >= 500:  # a conceptual figure at a legible width
                    drawn.add(Path(fig["src"]).name)
        finally:
            page.close()
        failures += [f"{rel}: {p}" for p in problems]
    assert failures == [], "\n".join(failures[:60])
    assert formulas > 100, f"only {formulas} formulas in the whole book: is math still marked up?"
    assert figures > 10, f"only {figures} figures in the whole book"
    # every conceptual figure of book/figures/ (vector graphics) is on a page, drawn wide
    authored = {p.name for p in (Path(__file__).parents[1] / "book" / "figures").glob("*.svg")}
    assert len(authored) >= 6 and authored <= drawn, sorted(authored - drawn)
    assert len(list(shots.glob("*.png"))) == len([p for p in _pages(html) if not _redirect(p)])


@pytest.mark.parametrize(
    "query, expected",
    [
        ("LoRA", "book/distill.html"),
        ("迁移学习", "book/glossary.html"),
        ("zh/迁移学习", "book/concepts.html"),  # the Chinese edition's own search (jieba words)
        ("zh/微调", "book/finetune.html"),
    ],
)
def test_the_search_page_finds(built_book, served, browser, query, expected):
    edition, _, query = query.rpartition("/")
    search = f"{edition}/search.html" if edition else "search.html"
    page, problems = _open(browser, f"{served}/{search}?q={urllib.parse.quote(query)}")
    try:
        page.wait_for_selector("#search-results ul.search li", timeout=30_000)
        links = page.eval_on_selector_all(
            "#search-results ul.search li a", "as => as.map(a => a.getAttribute('href'))"
        )
    finally:
        page.close()
    assert problems == []
    assert any(expected in (href or "") for href in links), f"{query!r} found only {links}"


#: the least share of Chinese characters among the letters of a page of the Chinese edition
#: (prose only: code, formulas and outputs left out). Measured on the first build: 0.58 to 0.85
#: on the chapters and labs (method names, symbols and English identifiers make up the rest);
#: a page left in English by accident is below 0.05.
CJK_SHARE = 0.4
#: pages that stay in English in both editions (the API reference is the package's docstrings)
ENGLISH_ONLY = ("book/api.html",)
#: pages Sphinx generates (indexes, search) and the list of references (titles of papers)
GENERATED = ("search.html", "genindex.html", "py-modindex.html", "book/bibliography.html")

CHINESE = (
    "() => {\n"
    "  const main = (document.querySelector('article') || document.body).cloneNode(true);\n"
    "  main.querySelectorAll('pre, code, mjx-container, .MathJax, script, style, .cell_output,"
    " mjx-assistive-mml').forEach(e => e.remove());\n"
    "  const text = main.innerText;\n"
    "  const untranslated = [...document.querySelectorAll('article .untranslated')]\n"
    "    .map(e => e.innerText.trim()).filter(t => /[A-Za-z]{3,}/.test(t));\n"
    "  return {cjk: (text.match(/[\\u3400-\\u9fff]/g) || []).length,\n"
    "          latin: (text.match(/[A-Za-z]/g) || []).length, untranslated: untranslated};\n"
    "}"
)


def test_the_chinese_edition_reads_in_chinese_and_links_back(built_book, served, browser):
    """Every page of ``_build/html/zh`` is mostly Chinese prose, has no untranslated paragraph
    (Sphinx marks them when a catalogue lacks an entry), and links to its English page, which
    links back to it."""
    html = built_book / "zh"
    assert (html / "index.html").is_file(), "the Chinese edition was not built (build_lang.py)"
    failures = []
    for path in _pages(html):
        rel = path.relative_to(html).as_posix()
        if _redirect(path) or rel in ENGLISH_ONLY or rel in GENERATED:
            continue
        soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
        link = soup.select_one("p.other-edition a")
        if link is None or not (path.parent / link["href"]).resolve().is_file():
            failures.append(f"{rel}: no working link to the English page")
        english = built_book / rel
        back = BeautifulSoup(english.read_text(encoding="utf-8"), "html.parser").select_one(
            "p.other-edition a"
        )
        if back is None or (english.parent / back["href"]).resolve() != path.resolve():
            failures.append(f"{rel}: the English page does not link here")
        page, problems = _open(browser, f"{served}/zh/{rel}")
        try:
            found = page.evaluate(CHINESE)
        finally:
            page.close()
        share = found["cjk"] / max(1, found["cjk"] + found["latin"])
        if share < CJK_SHARE:
            failures.append(f"{rel}: only {share:.2f} of its letters are Chinese")
        failures += [f"{rel}: untranslated: {t[:80]!r}" for t in found["untranslated"][:3]]
        failures += [f"{rel}: {p}" for p in problems]
    assert failures == [], "\n".join(failures[:40])


def test_a_cjk_font_is_installed_for_the_browser():
    """Debian's fonts-noto-cjk, installed with chromium by the Makefile: without a CJK font the
    Chinese edition (and the glossary's 中文) renders as empty boxes."""
    import subprocess

    fonts = subprocess.run(
        ["fc-list", ":charset=4e2d 6587"], capture_output=True, text=True, check=False
    ).stdout
    assert fonts.strip(), "no font covers 中文: apt-get install fonts-noto-cjk (make browser)"
