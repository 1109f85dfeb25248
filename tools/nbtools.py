"""Notebook housekeeping for the course: Colab cells, stripping, checks.

    python tools/nbtools.py colab     # (re)write the Colab badge + install cell of every notebook
    python tools/nbtools.py strip     # remove outputs, execution counts and noisy metadata
    python tools/nbtools.py check     # exit 1 if a notebook is unstripped or its Colab cells are stale

The repository name lives in one place, ``course_utils.REPOSITORY``; this script reads it from the
source file so that it works before the package is installed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PACKAGE_INIT = ROOT / "course_utils" / "__init__.py"
BADGE_MARK = "<!-- colab-badge -->"
SETUP_MARK = "# colab-setup"
KEEP_METADATA = {"kernelspec", "language_info"}


def repository() -> str:
    text = PACKAGE_INIT.read_text()
    return re.search(r'^REPOSITORY = "([^"]+)"', text, re.M).group(1)


def notebook_paths() -> list[Path]:
    return sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def badge_line(path: Path) -> str:
    rel = path.relative_to(ROOT).as_posix()
    url = f"https://colab.research.google.com/github/{repository()}/blob/main/{rel}"
    img = "https://colab.research.google.com/assets/colab-badge.svg"
    # The marker goes after the link: a line that *starts* with an HTML comment is an HTML block in
    # Markdown (JupyterLab, GitHub, nbconvert), which would show the badge as raw text.
    return f"[![Open In Colab]({img})]({url}) {BADGE_MARK}"


def setup_source() -> str:
    return f"""{SETUP_MARK}: runs only in Google Colab, where it fetches and installs the course.
# Colab's own PyTorch is kept; elsewhere (`make lab`) this cell does nothing.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    if not os.path.isdir("/content/course"):
        url = "https://github.com/{repository()}"
        subprocess.run(["git", "clone", "--depth", "1", url, "/content/course"], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "-e", "/content/course"], check=True
    )
    sys.path.insert(0, "/content/course")
    os.chdir("/content/course/notebooks")"""


def _source(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def with_colab_cells(nb: dict, path: Path) -> dict:
    """Return ``nb`` with its badge line and setup cell regenerated (they must already be marked)."""
    cells = nb["cells"]
    first, second = cells[0], cells[1]
    if first["cell_type"] != "markdown" or BADGE_MARK not in _source(first):
        raise ValueError(f"{path}: cell 1 must be markdown containing {BADGE_MARK!r}")
    if second["cell_type"] != "code" or not _source(second).startswith(SETUP_MARK):
        raise ValueError(f"{path}: cell 2 must be a code cell starting with {SETUP_MARK!r}")
    lines = _source(first).split("\n")
    first["source"] = "\n".join(badge_line(path) if BADGE_MARK in ln else ln for ln in lines)
    second["source"] = setup_source()
    return nb


def stripped(nb: dict) -> dict:
    """Return ``nb`` without outputs, execution counts and non-essential metadata."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in {"tags"}}
        cell["source"] = _source(cell)
    nb["metadata"] = {k: v for k, v in nb.get("metadata", {}).items() if k in KEEP_METADATA}
    return nb


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def problems(path: Path) -> list[str]:
    """What is wrong with a committed notebook (empty list = fine)."""
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    out = []
    if any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"):
        out.append("has outputs (run `make strip`)")
    try:
        fresh = dump(with_colab_cells(stripped(load(path)), path))
        if fresh != text:
            out.append("is not stripped or its Colab cells are stale (run `make strip`)")
    except ValueError as err:
        out.append(str(err))
    return out


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "check"
    paths = [Path(p).resolve() for p in argv[1:]] or notebook_paths()
    if cmd in {"colab", "strip"}:
        for path in paths:
            path.write_text(dump(with_colab_cells(stripped(load(path)), path)), encoding="utf-8")
        return 0
    if cmd == "check":
        bad = [f"{p.relative_to(ROOT)}: {msg}" for p in paths for msg in problems(p)]
        print("\n".join(bad) or f"{len(paths)} notebooks clean")
        return 1 if bad else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
