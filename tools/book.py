"""Execute every notebook and write it as HTML (plots embedded) plus an index page.

    python tools/book.py --out build/html [--full] [notebooks ...]

FAST mode (COURSE_FAST=1) unless --full. Each page is standalone: nbconvert embeds every figure as
a base64 PNG, so the folder can be copied or served as is.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import time
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import ExecutePreprocessor

ROOT = Path(__file__).resolve().parent.parent


def title_of(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return "untitled"


def build(paths: list[Path], out: Path, full: bool) -> list[tuple[Path, str, float]]:
    os.environ["COURSE_FAST"] = "0" if full else "1"
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter()
    done = []
    for path in paths:
        start = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        ExecutePreprocessor(timeout=3600, kernel_name="python3").preprocess(
            nb, {"metadata": {"path": str(path.parent)}}
        )
        body, _ = exporter.from_notebook_node(nb)
        target = out / path.relative_to(ROOT / "notebooks").with_suffix(".html")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
        seconds = time.perf_counter() - start
        done.append((target, title_of(nb), seconds))
        print(f"{path.relative_to(ROOT)} -> {target} ({seconds:.0f} s)", flush=True)
    return done


def write_index(done: list[tuple[Path, str, float]], out: Path, full: bool) -> Path:
    mode = "full" if full else "FAST"
    items = "\n".join(
        f'<li><a href="{t.relative_to(out).as_posix()}">{html.escape(title)}</a>'
        f" <small>({s:.0f} s, {mode})</small></li>"
        for t, title, s in done
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
    parser.add_argument("--full", action="store_true", help="full lessons instead of FAST mode")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args()
    paths = [p.resolve() for p in args.notebooks] or sorted(
        (ROOT / "notebooks").glob("[0-9]*.ipynb")
    )
    done = build(paths, args.out.resolve(), args.full)
    # keep the run times for `make bench` (which reports FAST and full times side by side)
    times = ROOT / "build" / "book_times.json"
    old = json.loads(times.read_text()) if times.exists() else {}
    mode = "full" if args.full else "fast"
    for target, _, seconds in done:
        old.setdefault(target.stem, {})[mode] = round(seconds, 1)
    times.parent.mkdir(exist_ok=True)
    times.write_text(json.dumps(old, indent=1, sort_keys=True))
    print(f"index: {write_index(done, args.out.resolve(), args.full)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
