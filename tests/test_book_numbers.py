"""No figure in the book's prose is typed by hand.

Every measured number a page states comes from its code cells (a ``{glue:text}`` role) or from a
recorded run that the page reads. This test reads the prose of every page (markdown outside
code cells, math, inline code and roles) and looks for numbers that look measured: decimals,
percentages, thousands, ratios such as ``15×`` and timings. What remains are constants that do
not move when the code runs again (the size of a published data set or model, a
hyper-parameter of a method, a version, the arithmetic of an exercise's solution); each is
listed in :data:`ALLOWED` with the reason it may be typed. A new number in prose fails here
until it is glued or listed.
"""

import re
from pathlib import Path

import pytest

BOOK = Path(__file__).parents[1] / "book"

#: numbers that may stand in a page's prose, per page, each with its reason
ALLOWED: dict[str, dict[str, str]] = {
    "adapt.md": {
        "0.9": "a constant of a method: self-training's threshold, SGD's and Adam's momentum",
        "0.5": "Adam's β1 of GANs (Radford et al.), a candidate of the sweep",
        "270": "the size of the target-val split, a constant of the data",
    },
    "concepts.md": {"500": "points drawn in the figure (code constant)"},
    "distill.md": {
        "512": "the batch of the timing (code constant)",
        "4,608": "arithmetic of exercise 3's solution",
        "135,808": "arithmetic of exercise 3's solution",
    },
    "finetune.md": {"3.3": "a section number of article 002"},
    "instructors.md": {
        "7.0": "otter-grader's pinned version (7.0.0)",
        "60 s": "the grader's default --cell-timeout",
        "600 s": "the grader's default --timeout",
    },
    "intro.md": {"1,797": "the size of scikit-learn's load_digits, a published data set"},
    "math.md": {
        "4.2": "section number",
        "5.2": "section number",
        "5.3": "section number",
        "0.13": "torchvision version",
        "3.3": "section number",
        "2.6": "PyTorch version",
        "7.2": "section number",
        "7.1": "section number",
        "4.3": "section number",
    },
    "multitask.md": {
        "2,000": "the number of font digits of the 'fonts' task (code constant)",
        "10,000": "the number of rendered letters (code constant)",
        "0.01": "the static weight on the ink, a candidate of the benchmark (code constant)",
        "1,000": "the illustration of 'by size' scheduling",
        "3 %": "the illustration of 'by size' scheduling (30 / 1,030)",
        "0.05": "the illustration of exercise 3's solution",
    },
    "negative.md": {
        "2,000": "the random-label source's training set (code constant)",
        "10,000": "the fonts source's training set (code constant)",
    },
    "pretrained.md": {
        "11.7": "ResNet-18's published parameter count (millions)",
        "0.06": "MobileNetV3-Small's published GFLOPs (the page prints torchvision's meta)",
        "1.8": "ResNet-18's published GFLOPs (the page prints torchvision's meta)",
        "0.22": "MobileNetV3-Large's published GFLOPs (the page prints torchvision's meta)",
        "0.5": "the normalisation constant of article 002's code",
    },
    "text.md": {
        "4.3": "section number",
        "1.3": "section number",
        "6.2": "section number",
        "30,522": "the published vocabulary size of the BERT tokenizer",
        "22,565,376": "the encoder's parameter count in exercise arithmetic (the page prints it)",
        "1 %": "a bound the page checks (LoRA trains fewer than 1 % of the weights)",
    },
}
#: numbers of any page that are never measurements
GENERIC = {"95 %": "the confidence level", "100 %": "a bound", "50 %": "a coin", "10 %": "chance"}

FIGURE = re.compile(
    r"(?<![\w.\-/§])("
    r"\d{1,3}(?:,\d{3})+"  # thousands: 1,250
    r"|\d+\.\d+"  # decimals: 77.8
    r"|\d+(?:\.\d+)?\s?%"  # percentages: 87 %
    r"|\d+\s?×(?!\s?\d)"  # ratios: 15× (not the 8×8 of a size)
    r"|\d+(?:\.\d+)?\s?(?:ms|s|seconds|minutes|min)\b(?![^(]*★)"  # timings (not an exercise's time)
    r")"
)


def prose(text: str) -> list[tuple[int, str]]:
    """The lines of a MyST page outside front matter, fenced blocks and directive options."""
    lines, out, fence = text.splitlines(), [], None
    start = lines.index("---", 1) + 1 if lines and lines[0] == "---" else 0
    keep_fences = ("{admonition}", "{note}", "{warning}", "{tip}", "{figure}")
    for n, line in enumerate(lines[start:], start + 1):
        m = re.match(r"^\s*(`{3,}|~{3,})(.*)$", line)
        if m and fence is None:
            if not m.group(2).strip().startswith(keep_fences):
                fence = m.group(1)
            continue
        if m and fence is not None and m.group(1) == fence and not m.group(2).strip():
            fence = None
            continue
        if fence is None and not line.lstrip().startswith(":"):
            out.append((n, line))
    return out


def clean(line: str) -> str:
    line = re.sub(r"\{[\w:-]+\}`[^`]*`", " ", line)  # roles: glue, cite, ref, doc, func
    line = re.sub(r"``[^`]*``|`[^`]*`", " ", line)  # inline code
    line = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", " ", line)  # math
    line = re.sub(r"\*\(\d+ min, ★+\)\*", " ", line)  # an exercise's time
    line = re.sub(r"§\s?[\d.]+", " ", line)  # a section of a source article
    return re.sub(r"\]\([^)]*\)", "]", line)  # link targets


def figures(page: Path) -> list[str]:
    allowed = ALLOWED.get(page.name, {})
    found = []
    for n, line in prose(page.read_text()):
        for hit in FIGURE.findall(clean(line)):
            token = re.sub(r"\s", " ", hit).strip()
            if token in allowed or token in GENERIC:
                continue
            found.append(f"{page.name}:{n}: {token!r} in: {line.strip()[:100]}")
    return found


@pytest.mark.parametrize("page", sorted(BOOK.glob("*.md")), ids=lambda p: p.name)
def test_no_figure_is_typed_by_hand(page):
    found = figures(page)
    assert not found, (
        "numbers that look measured are typed in the prose: glue them from the page's code "
        "(myst_nb.glue and {glue:text}`name`), or, for a constant that no run changes, list it "
        "in ALLOWED with its reason:\n" + "\n".join(found)
    )


def test_the_check_finds_a_typed_figure(tmp_path):
    page = tmp_path / "adapt.md"
    page.write_text(
        "# t\n\nMMD closes 79 % of the gap, {glue:text}`x:.1f` points, at 15× less cost, "
        "in 3.5 s.\n\n```{code-cell} ipython3\nprint(0.123)\n```\n"
    )
    assert [f.split(": ", 1)[1].split(" in:")[0] for f in figures(page)] == [
        "'79 %'",
        "'15×'",
        "'3.5'",
    ]
