"""Instructor mode (tools/slides.py): slide types from a lesson's structure, the lecture-script
tags, and the links between the book and the decks. Nothing here executes a lesson."""

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import book  # noqa: E402
import slides  # noqa: E402


class Deck(HTMLParser):
    """A deck's slides (top-level <section>s): for each, its text, speaker notes, links and
    number of sub-slides (nested <section>s)."""

    def __init__(self, page: str):
        super().__init__()
        self.slides, self.depth, self.notes = [], 0, 0
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.depth += 1
            if self.depth == 1:
                self.slides.append({"text": "", "notes": "", "links": [], "subslides": 0})
            else:
                self.slides[-1]["subslides"] += 1
        elif tag == "aside" and attrs.get("class") == "notes":
            self.notes += 1
        elif tag == "a" and self.depth:
            self.slides[-1]["links"].append(attrs.get("href"))

    def handle_endtag(self, tag):
        if tag == "section":
            self.depth -= 1
        elif tag == "aside" and self.notes:
            self.notes -= 1

    def handle_data(self, data):
        if self.depth:
            self.slides[-1]["notes" if self.notes else "text"] += data


def lesson(*cells):
    return new_notebook(
        cells=list(cells), metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}}
    )


def code(source, output="", tags=()):
    outputs = [new_output("stream", text=output)] if output else []
    return new_code_cell(source, outputs=outputs, metadata={"tags": list(tags)})


def deck_of(nb, tmp_path) -> str:
    return slides.write_deck(nb, tmp_path / "nb.slides.html", "nb.html").read_text()


def test_slide_types_follow_the_lesson_structure():
    nb = lesson(
        new_markdown_cell("# 99 · Title\n\nIntro.\n\n**What you will learn**\n\n- a thing"),
        code("# colab-setup: nothing to see"),
        new_markdown_cell("## 1 · First\n\nWhy we compute x."),
        code("x = 1", "1\n"),
        new_markdown_cell("What the 1 means."),
        new_markdown_cell("### A detail"),
        code("y = 2", "line\n" * 60),  # too long to share the slide with its heading
        new_markdown_cell("Closing words.\n\n## Exercises\n\n**Exercise 1.** Write `f`."),
        code("def f():\n    raise NotImplementedError"),
        code("lesson99.check_f(f)", "⏳ f: not attempted\n"),
        new_markdown_cell("Speak slowly here.", metadata={"tags": ["lecture-notes"]}),
        new_markdown_cell("Try this:\n\n```\n## not a heading\n```"),
    )
    cells = slides.prepared(nb).cells
    got = [
        (c.cell_type[0], c.source.split("\n")[0], c.metadata.slideshow.slide_type) for c in cells
    ]
    assert got == [
        ("m", "# 99 · Title", "slide"),
        ("m", "**What you will learn**", "subslide"),
        ("c", "# colab-setup: nothing to see", "skip"),
        ("m", "## 1 · First", "slide"),
        ("c", "x = 1", "-"),
        ("m", "What the 1 means.", "fragment"),
        ("m", "### A detail", "subslide"),
        ("c", "y = 2", "subslide"),
        ("m", "Closing words.", "subslide"),  # the slide above is full
        ("m", "## Exercises", "slide"),
        ("m", "**Exercise 1.** Write `f`.", "subslide"),
        ("c", "def f():", "-"),
        ("c", "lesson99.check_f(f)", "-"),
        ("m", "Speak slowly here.", "notes"),
        ("m", "Try this:", "fragment"),  # the fenced "## " line does not start a slide
    ]
    assert len({c.id for c in cells}) == len(cells)  # split cells keep unique ids
    assert nb.cells[0].source.startswith("# 99") and "slideshow" not in nb.cells[3].metadata


def test_lecture_tags(tmp_path):
    nb = lesson(
        new_markdown_cell("# 99 · Tags"),
        code("PLAIN_CODE", "PLAIN_OUTPUT"),
        code("SKIPPED_CODE", "SKIPPED_OUTPUT", tags=["lecture-skip"]),
        code("SOLUTION_CODE", "SOLUTION_OUTPUT", tags=["solution"]),
        code("PLOT_CODE", "PLOT_OUTPUT", tags=["lecture-hide-input"]),
        code("LOG_CODE", "LOG_OUTPUT", tags=["lecture-hide-output"]),
        code("lesson99.check_f(CHECK_CODE)", "CHECK_OUTPUT"),
        new_markdown_cell("NOTE_TEXT", metadata={"tags": ["lecture-notes"]}),
    )
    (slide,) = Deck(deck_of(nb, tmp_path)).slides
    shown = slide["text"]
    assert "PLAIN_CODE" in shown and "PLAIN_OUTPUT" in shown
    assert "SKIPPED" not in shown and "SOLUTION" not in shown
    assert "PLOT_OUTPUT" in shown and "PLOT_CODE" not in shown
    assert "LOG_CODE" in shown and "LOG_OUTPUT" not in shown
    assert "CHECK_CODE" in shown and "CHECK_OUTPUT" not in shown  # learners' progress stays off
    assert "NOTE_TEXT" in slide["notes"] and "NOTE_TEXT" not in shown


def test_a_real_lesson_becomes_one_slide_per_section(tmp_path):
    nb = nbformat.read(ROOT / "notebooks" / "07_diffusion_ddpm.ipynb", as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    sections = re.findall(r"^## (.*)", re.sub(r"```.*?```", "", markdown, flags=re.S), re.M)
    assert "Exercises" in sections and len(sections) > 8  # several sections share a cell
    page = slides.write_deck(nb, tmp_path / "slides" / "07.slides.html", "../html/07.html")
    deck = Deck(page.read_text())
    assert len(deck.slides) == len(sections) + 1  # the title, then one slide per "## " section
    title = deck.slides[0]
    assert "07 · Diffusion models" in title["text"] and "../html/07.html" in title["links"]
    for slide, section in zip(deck.slides[1:], sections, strict=True):
        assert section in slide["text"]
    assert sum(s["subslides"] for s in deck.slides) > len(deck.slides)  # it moves down as well
    assert "colab-setup" not in page.read_text()


def test_decks_use_the_local_copies_once_fetched(tmp_path):
    nb = lesson(new_markdown_cell("# 99 · Offline"))
    page = deck_of(nb, tmp_path)
    assert (
        "https://unpkg.com/reveal.js" in page and "cdnjs.cloudflare.com/ajax/libs/mathjax" in page
    )
    for name in slides.VENDOR:  # what `python tools/slides.py offline` unpacks
        (tmp_path / "vendor" / name).mkdir(parents=True)
        (tmp_path / "vendor" / name / "package.json").write_text("{}")
    nb.metadata.widgets = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    page = deck_of(nb, tmp_path)  # with a progress bar's widgets
    assert '"vendor/reveal.js/dist/reveal.js"' in page and "vendor/requirejs/require.js" in page
    assert 'src="vendor/mathjax/MathJax.js?config=' in page
    assert "'vendor/@jupyter-widgets/html-manager/dist/embed-amd.js'" in page
    assert not re.findall(r'(?:src|href)="https?://', page), "the deck loads nothing from the web"
    assert "fonts.googleapis.com" not in page and "mermaid" not in page


def test_headings_keep_their_case(tmp_path):
    """The deck's theme ("white", offline-able) capitalises headings: the deck keeps their case."""
    page = deck_of(lesson(new_markdown_cell("# 99 · The ε-prediction")), tmp_path)
    assert "dist/theme/white.css" in page
    assert ".reveal .slides :is(h1, h2, h3, h4, h5, h6) { text-transform: none; }" in page


def test_book_and_decks_link_each_other(tmp_path, monkeypatch):
    """`make slides`: one execution (replaced here by reading the notebook) gives the book's
    source notebook and the deck, each linking to the other (tests/test_book.py builds the book)."""
    monkeypatch.setenv("COURSE_FAST", "1")  # build() sets it; monkeypatch restores it
    monkeypatch.setattr(book, "execute", lambda path: nbformat.read(path, as_version=4))
    path = ROOT / "notebooks" / "00_start_here.ipynb"
    out, deck_dir, source = tmp_path / "html", tmp_path / "slides", tmp_path / "executed"
    (done,) = book.build([path], out, full=False, deck_dir=deck_dir, source=source)
    assert done.page == out / "00_start_here.html"
    assert done.deck == deck_dir / "00_start_here.slides.html"
    title = nbformat.read(source / "00_start_here.ipynb", as_version=4).cells[0].source
    assert '<a href="../slides/00_start_here.slides.html">Slides for this lesson</a>' in title
    assert "colab-badge" not in title  # the book page has its own Colab button
    links = Deck(done.deck.read_text()).slides[0]["links"]
    assert links.count("../html/00_start_here.html") == 1
    assert not any("colab" in link for link in links)  # nor does the deck show the badge
