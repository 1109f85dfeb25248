"""Execute every lesson once and publish the run twice: as a book (Sphinx) and, with --slides, as
reveal.js decks (tools/slides.py).

    python tools/book.py [--out build/html] [--slides build/slides] [--full] [--offline] [nb ...]

1. Each notebook (the lessons, then their solutions) runs once, in FAST mode (COURSE_FAST=1)
   unless --full. The executed copy is saved in build/executed/, the book's source folder.
2. With --slides, each lesson's deck is written from that same executed notebook; the deck and
   the book page link to each other with relative links, so build/ can be copied or served as is.
3. sphinx-build turns build/executed/ into the book in build/html/, configured by
   book_config/conf.py: MyST-NB renders the saved outputs and executes nothing, so every plot
   comes from step 1.

Notebooks executed by an earlier run stay in build/executed/: rebuilding one lesson
(``python tools/book.py notebooks/03_object_detection.ipynb``) keeps the other pages. With
--offline, MathJax and the widget manager (progress bars) are unpacked into the book once (npm,
network once): it then needs no network.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import lesson_times
import nbformat
import nbtools
import slides
from nbconvert.preprocessors import ExecutePreprocessor

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book_config"  # the book's Sphinx configuration (conf.py) and front page (index.md)
# What --offline unpacks into the book's _static/ folder (book_config/conf.py uses it once there):
# MathJax, and the widget manager that draws the progress bars of the lessons that train.
OFFLINE = {"mathjax": "3.2.2", "requirejs": "2.3.4", "@jupyter-widgets/html-manager": "1.0.13"}


@dataclass
class Lesson:
    """One executed notebook: its page in the book, its deck (None without --slides, and for
    solutions) and its run time."""

    page: Path
    seconds: float
    deck: Path | None = None


def notebooks() -> list[Path]:
    """Every lesson in course order, then every solutions notebook: the book's table of contents."""
    return sorted(NOTEBOOKS.glob("[0-9]*.ipynb")) + sorted(NOTEBOOKS.glob("solutions/*.ipynb"))


def href(target: Path, start: Path) -> str:
    """The relative link from the page in folder ``start`` to ``target``."""
    return Path(os.path.relpath(target, start)).as_posix()


def execute(path: Path) -> nbformat.NotebookNode:
    """Run every cell of the notebook at ``path``, in its folder, and return it with outputs."""
    nb = nbformat.read(path, as_version=4)
    ExecutePreprocessor(timeout=3600, kernel_name="python3").preprocess(
        nb, {"metadata": {"path": str(path.parent)}}
    )
    return nb


def without_badge(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` without its "Open in Colab" badge: every book page has a Colab button
    instead, and the badge is an image from the web, broken offline (in the decks too)."""
    nb = copy.deepcopy(nb)
    title = nb.cells[0]
    title.source = "\n".join(s for s in title.source.split("\n") if nbtools.BADGE_MARK not in s)
    return nb


def for_the_book(nb: nbformat.NotebookNode, deck_href: str | None) -> nbformat.NotebookNode:
    """The executed notebook as its page shows it: the Colab install cell hidden (MyST-NB's
    ``remove-cell`` tag; the downloaded notebook keeps it) and a link to the lesson's deck."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith(nbtools.SETUP_MARK):
            cell.metadata.setdefault("tags", []).append("remove-cell")
    return slides.with_link(nb, "Slides for this lesson", deck_href) if deck_href else nb


def build(
    paths: list[Path], out: Path, full: bool, deck_dir: Path | None, source: Path
) -> list[Lesson]:
    """Execute each notebook once; save it into ``source`` for the book whose pages go to
    ``out``, and write each lesson's deck into ``deck_dir`` (None: no decks)."""
    os.environ["COURSE_FAST"] = "0" if full else "1"
    done = []
    for path in paths:
        start = time.perf_counter()
        nb = without_badge(execute(path))
        name = path.relative_to(NOTEBOOKS)  # 03_object_detection.ipynb, solutions/03_..._solutions
        page, deck = out / name.with_suffix(".html"), None
        if deck_dir is not None and name.parent == Path("."):  # a deck per lesson, not solutions
            deck = slides.write_deck(
                nb, deck_dir / name.with_suffix(".slides.html"), href(page, deck_dir)
            )
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(for_the_book(nb, deck and href(deck, page.parent)), source / name)
        seconds = time.perf_counter() - start
        done.append(Lesson(page, seconds, deck))
        made = f"{source / name} and {deck}" if deck else f"{source / name}"
        print(f"{path.relative_to(ROOT)} -> {made} ({seconds:.0f} s)", flush=True)
    return done


def write_site(source: Path, out: Path) -> Path:
    """Run Sphinx on the executed notebooks in ``source``, writing the book into ``out``."""
    shutil.copyfile(BOOK / "index.md", source / "index.md")
    command = ["-b", "html", "-q", "-c", BOOK, "-d", source / ".doctrees", source, out]
    subprocess.run([sys.executable, "-m", "sphinx", *map(str, command)], check=True)
    return out / "index.html"


def fetch_offline(out: Path) -> Path:
    """Unpack OFFLINE into the book's ``_static/`` folder (npm, network once), once."""
    static = out / "_static"
    if not all((static / name / "package.json").exists() for name in OFFLINE):
        slides.npm_unpack(OFFLINE, static)
    return static


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "html")
    parser.add_argument("--slides", type=Path, help="also write a reveal.js deck per lesson here")
    parser.add_argument("--full", action="store_true", help="full lessons instead of FAST mode")
    parser.add_argument("--offline", action="store_true", help="MathJax etc. in the book (npm)")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: lessons, then solutions")
    args = parser.parse_args()
    out, paths = args.out.resolve(), [p.resolve() for p in args.notebooks] or notebooks()
    source = out.parent / "executed"
    if args.offline:
        print(f"MathJax and the widget manager in {fetch_offline(out)}")
    deck_dir = args.slides.resolve() if args.slides else None
    done = build(paths, out, args.full, deck_dir, source)
    # the run times, for `make bench` and the course map (build/book_times.json)
    seconds = {lesson.page.stem: lesson.seconds for lesson in done}
    lesson_times.save_book_times(seconds, "full" if args.full else "fast")
    print(f"book: {write_site(source, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
