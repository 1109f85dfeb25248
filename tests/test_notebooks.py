"""Static checks of every committed notebook (nbval executes them separately in `make test`)."""

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import nbtools  # noqa: E402

NOTEBOOKS = nbtools.notebook_paths()
LESSONS = [p for p in NOTEBOOKS if p.parent.name == "notebooks"]
HARD_CODED_DEVICE = re.compile(
    r"""\.cuda\(|torch\.device\(\s*["']|\.to\(\s*["'](cuda|mps|cpu)|device\s*=\s*["']"""
)


def code_cells(path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_there_are_lessons():
    names = [p.stem for p in LESSONS]
    assert names[:2] == ["00_start_here", "01_image_representation"], names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_clean(path):
    """No outputs, no execution counts, no stray metadata, Colab cells generated from REPOSITORY."""
    assert nbtools.problems(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_hard_coded_device(path):
    for cell in code_cells(path):
        match = HARD_CODED_DEVICE.search(cell["source"])
        assert match is None, f"{path.name}: hard-coded device {match.group(0)!r}; use device()"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_shape(path):
    """Starts with what the learner will learn, imports course_utils, ends with exercises."""
    cells = json.loads(path.read_text())["cells"]
    assert "what you will learn" in cells[0]["source"].lower()
    assert any("course_utils" in c["source"] for c in code_cells(path))
    headings = [
        line
        for c in cells
        if c["cell_type"] == "markdown"
        for line in c["source"].splitlines()
        if line.startswith("#")
    ]
    assert "exercises" in headings[-1].lower() or any(
        "exercises" in h.lower() for h in headings[-3:]
    ), f"{path.name} should end with an Exercises section"


def test_colab_cell_installs_from_the_one_repository():
    """The repository appears once in the package; every notebook's badge and cell use it."""
    repo = nbtools.repository()
    for path in NOTEBOOKS:
        text = path.read_text()
        assert f"github/{repo}/blob/main/{path.relative_to(ROOT).as_posix()}" in text
        assert f"https://github.com/{repo}" in text


LOCAL_ONLY_PATH = re.compile(r"""["'](/(?!content\b)[A-Za-z]|~/|[A-Za-z]:\\|\.\./\.\.)""")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_ready(path):
    """Colab runs a notebook from /content/course/notebooks: it needs the badge in cell 1, the
    install cell as cell 2, and no path that only exists on the author's machine (an absolute
    path, a home directory, a path above the repository)."""
    cells = json.loads(path.read_text())["cells"]
    assert "colab.research.google.com/assets/colab-badge.svg" in cells[0]["source"]
    assert cells[1]["source"].startswith(nbtools.SETUP_MARK)
    assert 'if "google.colab" in sys.modules:' in cells[1]["source"]
    for cell in code_cells(path)[1:]:
        match = LOCAL_ONLY_PATH.search(cell["source"])
        assert match is None, (
            f"{path.name}: local-only path near {cell['source'][match.start() :][:40]!r}"
        )


def test_local_only_path_pattern():
    for bad in ['"/home/me/x.png"', "'~/data'", '"C:\\\\data"', '"../../x"', "'/tmp/a'"]:
        assert LOCAL_ONLY_PATH.search(bad), bad
    for fine in ['"/content/course"', '"../data/images"', '"a/b"', "x / 2", "'data/x'"]:
        assert not LOCAL_ONLY_PATH.search(fine), fine
