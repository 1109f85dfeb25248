"""Execute every lesson and write it as HTML (plots embedded) plus an index page; with --slides,
also as a reveal.js deck from the same run (see tools/slides.py).

    python tools/book.py --out build/html [--slides build/slides] [--full] [notebooks ...]

FAST mode (COURSE_FAST=1) unless --full. Each page is standalone: nbconvert embeds every figure as
a base64 PNG. Pages and decks link to each other with relative links, so build/ can be copied or
served as is.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import slides
from nbconvert import HTMLExporter
from nbconvert.preprocessors import ExecutePreprocessor

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Lesson:
    """One built lesson: its book page, its deck (None without --slides) and its run time."""

    page: Path
    title: str
    seconds: float
    deck: Path | None = None


def title_of(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return "untitled"


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


def build(paths: list[Path], out: Path, full: bool, deck_dir: Path | None = None) -> list[Lesson]:
    """Execute each notebook once, then export it as a book page (and a deck with ``deck_dir``)."""
    os.environ["COURSE_FAST"] = "0" if full else "1"
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter()
    done = []
    for path in paths:
        start = time.perf_counter()
        nb = execute(path)
        name = path.relative_to(ROOT / "notebooks")
        page, deck = out / name.with_suffix(".html"), None
        if deck_dir is not None:
            deck = slides.write_deck(
                nb, deck_dir / name.with_suffix(".slides.html"), href(page, deck_dir / name.parent)
            )
            nb = slides.with_link(nb, "Slides for this lesson", href(deck, page.parent))
        body, _ = exporter.from_notebook_node(nb)
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(body, encoding="utf-8")
        seconds = time.perf_counter() - start
        done.append(Lesson(page, title_of(nb), seconds, deck))
        made = f"{page} and {deck}" if deck else f"{page}"
        print(f"{path.relative_to(ROOT)} -> {made} ({seconds:.0f} s)", flush=True)
    return done


def write_index(done: list[Lesson], out: Path, full: bool) -> Path:
    mode = "full" if full else "FAST"
    items = "\n".join(
        f'<li><a href="{href(lesson.page, out)}">{html.escape(lesson.title)}</a>'
        + (f' · <a href="{href(lesson.deck, out)}">slides</a>' if lesson.deck else "")
        + f" <small>({lesson.seconds:.0f} s, {mode})</small></li>"
        for lesson in done
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>The course</title></head>
<body><h1>Computer vision and diffusion models with PyTorch</h1>
<p>Every lesson below was executed ({mode} mode) when this book was built.</p>
<ol>
{items}
</ol></body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "html")
    parser.add_argument("--slides", type=Path, help="also write a reveal.js deck per lesson here")
    parser.add_argument("--full", action="store_true", help="full lessons instead of FAST mode")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args()
    paths = [p.resolve() for p in args.notebooks] or sorted(
        (ROOT / "notebooks").glob("[0-9]*.ipynb")
    )
    deck_dir = args.slides.resolve() if args.slides else None
    done = build(paths, args.out.resolve(), args.full, deck_dir)
    # keep the run times for `make bench` (which reports FAST and full times side by side)
    times = ROOT / "build" / "book_times.json"
    old = json.loads(times.read_text()) if times.exists() else {}
    mode = "full" if args.full else "fast"
    for lesson in done:
        old.setdefault(lesson.page.stem, {})[mode] = round(lesson.seconds, 1)
    times.parent.mkdir(exist_ok=True)
    times.write_text(json.dumps(old, indent=1, sort_keys=True))
    print(f"index: {write_index(done, args.out.resolve(), args.full)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
