"""Instructor mode: turn an executed lesson into a reveal.js deck (nbconvert's SlidesExporter).

    make slides                             # = python tools/book.py --slides build/slides
    python tools/slides.py offline          # once, online: what decks load, for decks offline

The committed notebooks keep only ``tags`` in their cell metadata, so the slide of each cell is not
stored in them: it is computed here, at conversion time, from the lesson's structure.

How a lesson becomes slides (a lecture moves right from section to section, down within one):

1. Markdown cells are split before every ``## `` and ``### `` heading and every paragraph that
   starts with ``**Exercise`` or ``**What you will learn`` (code fences are left alone), so each
   of these starts a cell, and a slide, of its own.
2. The title cell and every ``## `` section is a *slide*; ``### ``, "What you will learn" and each
   exercise is a *sub-slide*. The ``# colab-setup`` cell is *skipped*.
3. Everything else follows on the current slide: a code cell under the text that explains it, and
   the text that reads a result after the code as a *fragment* (shown on the next key press, so the
   class looks at the plot before reading the answer). A cell that would not fit on the slide
   (estimated from its lines and the size of its figures) starts a *sub-slide*; a cell taller
   than a whole slide scrolls.

The lecture-script tags, set by an instructor in JupyterLab (property inspector, "Cell tags"):

- ``lecture-skip``: the cell is not in the deck (a detour, a long training loop);
- ``solution``: not in the deck either: a cell the class works out live;
- ``lecture-hide-input``: only the cell's output is shown (a plot without its plotting code);
- ``lecture-hide-output``: only the code is shown (a long log, a progress bar);
- ``lecture-notes``: a markdown cell that becomes speaker notes (press ``s`` in the deck).

Exercise checker cells (``lessonNN.check_...``) are shown without their output: on a fresh run it
says "not attempted", which is the learners' business, not the lecture's. The book ignores these
tags: it shows the whole lesson (all but the Colab install cell, which only Colab runs).

Decks load reveal.js, require.js, jQuery, MathJax and the widget manager (progress bars) from a
CDN, like nbconvert itself. After ``python tools/slides.py offline`` (npm, network once) they load
local copies from ``build/slides/vendor/`` and need no network.
"""

from __future__ import annotations

import argparse
import base64
import copy
import math
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import jinja2
import nbtools
from nbconvert import SlidesExporter
from nbconvert.preprocessors import TagRemovePreprocessor
from nbformat import NotebookNode

ROOT = Path(__file__).resolve().parent.parent
SLIDE = re.compile(r"## ")
SUBSLIDE = re.compile(r"### |\*\*Exercise\b|\*\*What you will learn")
CHECKER = re.compile(r"\blesson\d+\.check_\w+\(")
TAGS = TagRemovePreprocessor(
    remove_cell_tags={"lecture-skip", "solution"},
    remove_input_tags={"lecture-hide-input"},
    remove_all_outputs_tags={"lecture-hide-output"},
)
# A 16:9 deck of 1280 x 720 px (reveal.js scales it to the screen), wide enough for the course's
# 100-character code lines; headings and margins take ~140 px of its height.
DECK_WIDTH, DECK_HEIGHT = 1280, 720
SLIDE_HEIGHT, CHARS_PER_LINE, LINE_PX, WIDTH_PX = DECK_HEIGHT - 140, 100, 28, DECK_WIDTH - 80
# Pinned versions of what nbconvert's reveal template loads (jQuery 2.0.3 is not on npm; the
# template configures MathJax 2).
VENDOR = {
    "reveal.js": "4.0.2",
    "requirejs": "2.1.10",
    "jquery": "2.2.4",
    "mathjax": "2.7.7",
    "@jupyter-widgets/html-manager": "1.0.13",  # draws the progress bars of the lessons that train
}
# nbconvert's reveal template with three changes. Headings keep their case: the "white" theme, the
# one whose font ships with reveal.js (so it works offline), capitalises them, and a capital
# epsilon is not an epsilon. Mermaid, a JavaScript module for diagrams (no lesson draws one) that
# no browser loads from a file:// deck, is not imported. And RequireJS looks for modules in
# vendor/, where the widget manager (progress bars) finds its fonts once fetched.
DECK_TEMPLATE = jinja2.DictLoader(
    {
        "deck.html.j2": """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}
{{ super() }}
<script>require.config({baseUrl: "vendor/"});</script>
{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}
<style>.reveal .slides :is(h1, h2, h3, h4, h5, h6) { text-transform: none; }</style>
{%- endblock html_head_css -%}"""
    }
)


def split_markdown(cell: NotebookNode) -> list[NotebookNode]:
    """Cut a markdown cell before each line that starts a slide or sub-slide (rule 1)."""
    parts, fenced = [[]], False
    for line in cell.source.splitlines():
        fenced ^= line.startswith("```")
        if not fenced and (SLIDE.match(line) or SUBSLIDE.match(line)) and any(parts[-1]):
            parts.append([])
        parts[-1].append(line)
    pieces = []
    for index, lines in enumerate(parts):
        piece = copy.deepcopy(cell)
        piece.source = "\n".join(lines).strip()
        if index and "id" in cell:  # cell ids must stay unique
            piece.id = f"{cell.id}-{index}"
        pieces.append(piece)
    return pieces


def png_height(b64: str) -> float:
    """Displayed height in px of a base64 PNG, scaled down to the slide's width."""
    header = base64.b64decode(b64[:44])  # the IHDR chunk holds width and height at bytes 16-24
    width, height = int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
    return height * min(1.0, WIDTH_PX / max(width, 1))


def text_height(text: str) -> float:
    return LINE_PX * sum(max(1, math.ceil(len(ln) / CHARS_PER_LINE)) for ln in text.splitlines())


def cell_height(cell: NotebookNode) -> float:
    """A rough estimate of the px a cell takes on a slide: enough to decide when to move down."""
    if cell.cell_type != "code":
        return text_height(cell.source)
    hidden = cell.metadata.get("transient", {}).get("remove_source", False)
    px = 0 if hidden else text_height(cell.source) + 20
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if "image/png" in data:
            px += png_height(data["image/png"])
        elif "text/html" in data:
            px += LINE_PX * data["text/html"].count("<tr")
        else:
            px += text_height(out.get("text", "") or data.get("text/plain", ""))
    return px


def slide_types(cells: list[NotebookNode]) -> list[str]:
    """The reveal.js slide type of each cell (rules 2 and 3); cells must be split already."""
    kinds, used, previous = [], 0.0, None
    for index, cell in enumerate(cells):
        markdown, height = cell.cell_type == "markdown", cell_height(cell)
        if "lecture-notes" in cell.metadata.get("tags", []):
            kinds.append("notes")
            continue
        if cell.cell_type == "code" and cell.source.startswith(nbtools.SETUP_MARK):
            kinds.append("skip")
            continue
        if index == 0 or markdown and SLIDE.match(cell.source):
            kind = "slide"
        elif markdown and SUBSLIDE.match(cell.source) or used + height > SLIDE_HEIGHT:
            kind = "subslide"
        elif markdown and previous == "code":
            kind = "fragment"
        else:
            kind = "-"
        kinds.append(kind)
        used = height if kind in {"slide", "subslide"} else used + height
        previous = cell.cell_type
    return kinds


def with_link(nb: NotebookNode, text: str, href: str) -> NotebookNode:
    """A copy of ``nb`` with a link under its title line (how the book and the decks meet).

    The link is written in HTML, not as ``[text](href)``: the book's Markdown parser (MyST) takes a
    relative Markdown link for a file of the book and would copy the deck into the book's
    downloads; an HTML link reaches the page as it is, in the book and in the deck alike.
    """
    nb = copy.deepcopy(nb)
    title, _, rest = nb.cells[0].source.partition("\n")
    nb.cells[0].source = f'{title}\n\n<a href="{href}">{text}</a>\n{rest}'
    return nb


def prepared(nb: NotebookNode) -> NotebookNode:
    """A copy of ``nb`` with its cells split, the lecture tags applied and slide types set."""
    nb = copy.deepcopy(nb)
    nb.cells = [
        piece
        for cell in nb.cells
        for piece in (split_markdown(cell) if cell.cell_type == "markdown" else [cell])
    ]
    for cell in nb.cells:
        if cell.cell_type == "code" and CHECKER.search(cell.source):
            cell.metadata.setdefault("tags", []).append("lecture-hide-output")
    nb, _ = TAGS.preprocess(nb, {})
    for cell, kind in zip(nb.cells, slide_types(nb.cells), strict=True):
        cell.metadata.slideshow = {"slide_type": kind}
    return nb


def exporter(deck_dir: Path) -> SlidesExporter:
    """nbconvert's exporter, with the local copies of what it loads when they were fetched."""
    options = dict(
        reveal_width=str(DECK_WIDTH),
        reveal_height=str(DECK_HEIGHT),
        reveal_scroll=True,  # a cell taller than the slide scrolls instead of being cut off
        reveal_number="c/t",
        reveal_theme="white",
        extra_loaders=[DECK_TEMPLATE],
        template_file="deck.html.j2",
    )
    if all((deck_dir / "vendor" / name / "package.json").exists() for name in VENDOR):
        options.update(
            reveal_url_prefix="vendor/reveal.js",
            require_js_url="vendor/requirejs/require.js",
            jquery_url="vendor/jquery/dist/jquery.min.js",
            mathjax_url="vendor/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
            widget_renderer_url="vendor/@jupyter-widgets/html-manager/dist/embed-amd.js",
        )
    return SlidesExporter(exclude_input_prompt=True, exclude_output_prompt=True, **options)


def write_deck(nb: NotebookNode, deck: Path, book_href: str) -> Path:
    """Write the executed lesson ``nb`` as a deck whose title slide links to ``book_href``."""
    nb = prepared(with_link(nb, "Read this lesson in the book", book_href))
    body, _ = exporter(deck.parent).from_notebook_node(nb)
    deck.parent.mkdir(parents=True, exist_ok=True)
    deck.write_text(body, encoding="utf-8")
    return deck


def npm_unpack(packages: dict[str, str], dest: Path) -> Path:
    """Unpack the npm packages ``{name: version}`` into ``dest/<name>`` (network once)."""
    with tempfile.TemporaryDirectory() as tmp:
        specs = [f"{name}@{version}" for name, version in packages.items()]
        subprocess.run(
            ["npm", "pack", "--silent", *specs], cwd=tmp, check=True, stdout=subprocess.DEVNULL
        )
        for name, version in packages.items():
            # "@scope/name" is packed as "scope-name-<version>.tgz"
            tgz = Path(tmp) / f"{name.removeprefix('@').replace('/', '-')}-{version}.tgz"
            with tarfile.open(tgz) as tar:
                members = tar.getmembers()
                for member in members:  # npm packs everything under package/
                    member.name = member.name.removeprefix("package/")
                tar.extractall(dest / name, members=members, filter="data")
    return dest


def fetch_offline(slides_dir: Path) -> Path:
    """Unpack the pinned packages the decks load into ``slides_dir/vendor`` (network once)."""
    return npm_unpack(VENDOR, slides_dir / "vendor")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["offline"])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "slides")
    args = parser.parse_args()
    print(f"reveal.js, require.js, jQuery, MathJax, html-manager in {fetch_offline(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
