"""Sphinx extension: what a course book tells its readers about time, generated at build time.

- Every executed page (chapters and labs) gets a line under its title: how long its code took to
  run when this copy of the book was built, on how many CPU cores (myst-nb's execution data, the
  numbers of the ``{nb-exec-table}`` on the page "Running the course").
- The directive ``{course-syllabus}`` (page "Syllabus") writes the table of units in the order of
  ``_toc.yml``: prerequisites (given in the directive's body, one ``page: page, page`` line per
  unit), reading time (prose words at 200 words a minute), measured execution time, and their sum.

Enabled in ``_config.yml`` (``sphinx: local_extensions: {course_pages: book/_ext}``).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import yaml
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

WORDS_PER_MINUTE = 200
RUNNING_PAGE = "book/running"
_FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.MULTILINE | re.DOTALL)
_FRONT = re.compile(r"\A---\n.*?\n---\n", re.DOTALL)


def build_cores() -> int:
    """The CPU cores the build could use (what "measured on N cores" means)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cores_text() -> str:
    """How the pages were run: with several cores, one page per core, each on one thread
    (extension ``parallel_pages``)."""
    n = build_cores()
    return f"{n} CPU cores, one page per core" if n > 1 else "1 CPU core"


def reading_minutes(source: str) -> int:
    """Minutes to read a page's prose (code cells and front matter left out), at least 1."""
    prose = _FENCE.sub(" ", _FRONT.sub("", source))
    return max(1, math.ceil(len(re.findall(r"\w+", prose)) / WORDS_PER_MINUTE))


def runtime(env, docname: str) -> float | None:
    """Seconds that the page's code took when it was executed (from the cache or this build)."""
    from myst_nb.sphinx_ import NbMetadataCollector

    data = NbMetadataCollector.get_doc_data(env).get(docname, {}).get("exec_data") or {}
    return data.get("runtime") if data.get("succeeded", True) else None


def toc_units(srcdir: Path) -> list[tuple[str, str]]:
    """``[(part caption, docname)]`` in the order of ``_toc.yml``."""
    toc = yaml.safe_load((srcdir / "_toc.yml").read_text(encoding="utf-8"))
    return [(part.get("caption", ""), ch["file"]) for part in toc.get("parts", []) for ch in part.get("chapters", [])]


def _chinese(app: Sphinx) -> bool:
    """The Chinese edition (``book/_ext/build_lang.py``): these generated lines in Chinese."""
    return (app.config.language or "").startswith("zh")


def _link(app: Sphinx, fromdoc: str, todoc: str, text: str) -> nodes.reference:
    return nodes.reference("", text, internal=True, refuri=app.builder.get_relative_uri(fromdoc, todoc))


class SyllabusNode(nodes.General, nodes.Element):
    """Placeholder, replaced by the table once every page has been executed."""


class CourseSyllabus(SphinxDirective):
    has_content = True

    def run(self) -> list[nodes.Node]:
        prerequisites = {}
        for line in self.content:
            if line.strip():
                unit, _, needs = line.partition(":")
                prerequisites[unit.strip()] = [n.strip() for n in needs.split(",") if n.strip()]
        node = SyllabusNode()
        node["prerequisites"] = prerequisites
        return [node]


def _fmt_minutes(minutes: float) -> str:
    return f"{math.ceil(minutes)} min"


def _syllabus_table(app: Sphinx, docname: str, prerequisites: dict[str, list[str]]) -> nodes.Node:
    env, srcdir = app.env, Path(app.srcdir)
    zh = _chinese(app)
    header = (["单元", "先修", "阅读", "运行代码", "合计"] if zh
              else ["Unit", "Prerequisites", "Reading", "Running the code", "Time"])
    table = nodes.table(classes=["colwidths-auto"])
    group = nodes.tgroup(cols=len(header))
    table += group
    group += [nodes.colspec(colwidth=1) for _ in header]
    head = nodes.thead()
    group += head
    head += nodes.row("", *[nodes.entry("", nodes.paragraph(text=h)) for h in header])
    body = nodes.tbody()
    group += body
    total = 0.0
    for caption, unit in toc_units(srcdir):
        if caption not in ("Chapters", "Labs"):
            continue
        read = reading_minutes((srcdir / f"{unit}.md").read_text(encoding="utf-8"))
        seconds = runtime(env, unit)
        minutes = read + (seconds or 0) / 60
        total += minutes
        title = env.titles[unit].astext() if unit in env.titles else unit
        needs = nodes.paragraph()
        for i, need in enumerate(prerequisites.get(unit, [])):
            if i:
                needs += nodes.Text(", ")
            needs += _link(app, docname, need, env.titles[need].astext() if need in env.titles else need)
        if not prerequisites.get(unit):
            needs += nodes.Text("无" if zh else "none")
        cells = [nodes.paragraph("", "", _link(app, docname, unit, title)), needs,
                 nodes.paragraph(text=_fmt_minutes(read)),
                 nodes.paragraph(text=("未执行" if zh else "not executed") if seconds is None else f"{seconds:.0f} s"),
                 nodes.paragraph(text=_fmt_minutes(minutes))]
        body += nodes.row("", *[nodes.entry("", c) for c in cells])
    cores = f"{build_cores()} 个 CPU 核，每核一页" if build_cores() > 1 else "1 个 CPU 核"
    note = nodes.paragraph(text=(
        f"阅读按每分钟 {WORDS_PER_MINUTE} 个英文词计（只计正文）；运行代码的时间为构建本书这一份时的实测值"
        f"（{cores}），基准已缓存。实验需要更久：还要加上完成练习的时间。合计：约 {total / 60:.1f} 小时。"
    ) if zh else (
        f"Reading at {WORDS_PER_MINUTE} words a minute (prose only); running the code as measured when this "
        f"copy of the book was built ({cores_text()}), with the benchmarks cached. Labs take "
        f"longer: add the time to write the exercises. In all: about {total / 60:.1f} h."))
    return nodes.container("", table, note, classes=["course-syllabus"])


def _resolve(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    for node in list(doctree.findall(SyllabusNode)):
        node.replace_self(_syllabus_table(app, docname, node["prerequisites"]))
    seconds = runtime(app.env, docname)
    if seconds is None or docname == RUNNING_PAGE:
        return
    title = next(iter(doctree.findall(nodes.title)), None)
    if title is None:
        return
    line = nodes.paragraph(classes=["execution-time"])
    if _chinese(app):
        cores = f"{build_cores()} 个 CPU 核，每核一页" if build_cores() > 1 else "1 个 CPU 核"
        line += nodes.emphasis(text=f"构建本书时，本页代码运行了 {seconds:.0f} 秒（{cores}；见")
        line += _link(app, docname, RUNNING_PAGE, "运行课程")
        line += nodes.emphasis(text="）。")
    else:
        line += nodes.emphasis(text=f"This page's code ran in {seconds:.0f} s when the book was built "
                                    f"({cores_text()}; see ")
        line += _link(app, docname, RUNNING_PAGE, "Running the course")
        line += nodes.emphasis(text=").")
    section = title.parent
    section.insert(section.index(title) + 1, line)


def _always_rewrite(app: Sphinx, env) -> list[str]:
    """The pages that summarise the others are rewritten whenever any page was re-read."""
    return [d for d in ("book/syllabus", RUNNING_PAGE) if d in env.all_docs]


def setup(app: Sphinx) -> dict:
    app.add_node(SyllabusNode)
    app.connect("env-updated", _always_rewrite)
    app.add_directive("course-syllabus", CourseSyllabus)
    app.connect("doctree-resolved", _resolve)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
