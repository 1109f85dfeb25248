"""Rehearse a lesson in Google Colab on this machine: does it need anything the install cell omits?

    .venv/bin/python tools/colab_rehearsal.py [notebooks/00_start_here.ipynb] [--keep DIR]

In Colab, a lesson's second cell (written by ``tools/nbtools.py``) clones the course, runs
``pip install -q -e /content/course`` -- the package's own dependencies, none of the dev extras --
and moves into ``notebooks/``. Colab keeps its own PyTorch. Our ``.venv`` has far more (pytest,
nbformat, Jupyter...), so a lesson that quietly relies on one of those passes ``make test`` and
breaks in Colab. The rehearsal rebuilds Colab's situation and runs the lesson in it:

1. a fresh virtual environment holding only the pinned torch pair and what the pair itself
   requires: the files of those distributions are *hard-linked* from ``.venv`` (no download, next
   to no disk; pip deletes a file before it writes a new one, so ``.venv`` is never rewritten);
2. a stand-in for GitHub: a git repository of the working tree as it is now (tracked and
   untracked files that git does not ignore), so uncommitted work is rehearsed too;
3. a fake ``google.colab`` package, imported first as Colab's kernel does;
4. the lesson's code cells, in order, as one plain Python script (no Jupyter: nbclient would bring
   IPython with it and hide a missing dependency). The Colab cell runs unchanged except for the
   clone URL and ``/content/course``, which point into the rehearsal folder.

Its pip install comes from the package index (PyPI), so the first run downloads the course's
dependencies; pip's cache makes later runs quicker. ``tests/test_colab_rehearsal.py`` runs it.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbtools
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
# the work folder lives under build/: on the file system of .venv, so that hard links work
BUILD = ROOT / "build"
LESSON = ROOT / "notebooks" / "00_start_here.ipynb"
# the pinned torch/torchvision pair, written only in this file
TORCH_PINS = ROOT / "requirements-torch.txt"
FAKE_COLAB = (
    '"""Stand-in for Colab\'s own package: the install cell looks for it in sys.modules."""\n'
)


def torch_pins() -> list[Requirement]:
    """The pinned torch pair, as ``requirements-torch.txt`` writes it (``torch==2.14.1``...)."""
    lines = (line.split("#")[0].strip() for line in TORCH_PINS.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def torch_closure() -> list[metadata.Distribution]:
    """The torch pair's distributions in this environment, and everything they require, recursively.

    This is what ``pip install -r requirements-torch.txt`` puts into an empty environment: torch,
    torchvision, their CUDA libraries (through extras such as ``cuda-toolkit[cublas,...]``),
    numpy, pillow, sympy... Requirements whose marker does not hold here are left out.
    """
    found: dict[str, metadata.Distribution] = {}
    todo = [(pin.name, frozenset()) for pin in torch_pins()]
    done: set[tuple[str, frozenset]] = set()
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if (key, extras) in done:
            continue
        done.add((key, extras))
        dist = found.setdefault(key, metadata.distribution(name))
        for line in dist.requires or []:
            req = Requirement(line)
            # a requirement counts when its marker holds for no extra or for an extra we asked for
            if req.marker is None or any(
                req.marker.evaluate({"extra": extra}) for extra in {"", *extras}
            ):
                todo.append((req.name, frozenset(req.extras)))
    return sorted(found.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def site_packages(python: Path) -> Path:
    """The site-packages folder of the environment whose interpreter is ``python``."""
    out = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def link_file(src: Path, dest: Path) -> None:
    """Hard-link ``src`` to ``dest``; copy it where a link is impossible (another file system)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def torch_only_venv(venv: Path) -> Path:
    """A new virtual environment with only :func:`torch_closure` in it; returns its python.

    Each distribution's RECORD lists its files, dist-info included, so pip in the new environment
    sees torch as installed -- as it does in Colab -- and leaves it alone. Files outside
    site-packages (console scripts such as ``torchrun``) are not needed and not linked.
    """
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = venv / "bin" / "python"
    target = site_packages(python)
    for dist in torch_closure():
        base = Path(dist.locate_file(""))
        for file in dist.files or []:
            if file.parts[0] != ".." and (base / file).is_file():
                link_file(base / file, target / file)
    colab = target / "google" / "colab" / "__init__.py"  # no google/__init__.py: a namespace
    colab.parent.mkdir(parents=True, exist_ok=True)
    colab.write_text(FAKE_COLAB)
    return python


def snapshot(dest: Path) -> str:
    """The working tree as it is now, committed into a new repository at ``dest``; its clone URL.

    The real repository is only read (``git ls-files``), never changed. Files git ignores (the
    venv, ``build/``) are left out, as they would be on GitHub.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():  # a tracked file deleted from the working tree is not part of it
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel, follow_symlinks=False)
    git = ["git", "-C", str(dest), "-c", "user.name=rehearsal", "-c", "user.email=rehearsal@local"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A", "-f"], check=True)
    subprocess.run(
        [*git, "-c", "commit.gpgsign=false", "commit", "-q", "-m", "snapshot"], check=True
    )
    # file:// rather than a bare path: git ignores --depth 1 (used by the cell) for local paths
    return dest.resolve().as_uri()


def colab_cell(source: str, url: str, course: Path) -> str:
    """The install cell, pointed at the snapshot (``url``) and at ``course`` for /content/course."""
    github = f"https://github.com/{nbtools.repository()}"
    if not source.startswith(nbtools.SETUP_MARK) or github not in source:
        raise ValueError("cell 2 is not the Colab install cell that tools/nbtools.py writes")
    return source.replace(github, url).replace("/content/course", str(course))


def lesson_script(notebook: Path, url: str, course: Path) -> tuple[str, list[str]]:
    """A notebook's code cells as one Python script, and the IPython magics it had to skip.

    The script first imports ``google.colab``, as Colab's kernel does before any cell runs.
    """
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    parts = ["import google.colab  # Colab's kernel has imported it before the first cell\n"]
    skipped = []
    for number, cell in enumerate(cells, start=1):
        source = "".join(cell["source"])
        if number == 1:
            source = colab_cell(source, url, course)
        lines = []
        for line in source.splitlines():
            code = line.lstrip()
            if code.startswith(("%", "!")):  # a magic or shell escape: plain Python cannot run it
                skipped.append(code)
                line = f"{line[: len(line) - len(code)]}pass  # skipped: {code}"
            lines.append(line)
        parts.append(f"# --- code cell {number}\n" + "\n".join(lines) + "\n")
    return "\n".join(parts), skipped


def clean_env(python: Path, cache: Path) -> dict[str, str]:
    """This process's environment, minus what would let the new venv see ``.venv`` (PYTHONPATH, its
    ``bin/`` on PATH), plus the lesson's settings: FAST, offline, a private cache, no display."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSE_")}
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE"):
        env.pop(name, None)
    ours = str(Path(sys.prefix) / "bin")
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != ours]
    env["PATH"] = os.pathsep.join([str(python.parent), *path])
    env.update(COURSE_FAST="1", COURSE_OFFLINE="1", COURSE_CACHE=str(cache), MPLBACKEND="Agg")
    return env


@dataclass
class Rehearsal:
    """Everything set up for one lesson; :meth:`run` plays it."""

    python: Path  # the torch-only venv's interpreter
    script: Path  # the lesson as a plain script
    course: Path  # where the Colab cell clones the course: /content/course in Colab
    env: dict[str, str]
    skipped: list[str]  # IPython magics the script could not run

    def run(self, **kwargs) -> subprocess.CompletedProcess:
        cmd = [self.python, self.script]
        return subprocess.run(cmd, cwd=self.script.parent, env=self.env, **kwargs)


def prepare(notebook: Path, work: Path) -> Rehearsal:
    """Build the torch-only venv, the snapshot and the lesson script in the folder ``work``."""
    python = torch_only_venv(work / "venv")
    url = snapshot(work / "github")
    course = work / "content" / "course"
    script, skipped = lesson_script(notebook, url, course)
    (work / "lesson.py").write_text(script)
    return Rehearsal(python, work / "lesson.py", course, clean_env(python, work / "cache"), skipped)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebook", nargs="?", type=Path, default=LESSON)
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    BUILD.mkdir(exist_ok=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="colab-rehearsal-", dir=BUILD))
    work.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        rehearsal = prepare(args.notebook.resolve(), work)
        print(f"torch-only venv, snapshot, script: {time.perf_counter() - start:.1f} s")
        print("skipped magics:", rehearsal.skipped or "none")
        start = time.perf_counter()
        code = rehearsal.run().returncode
        print(f"lesson (install included): exit {code}, {time.perf_counter() - start:.1f} s")
        return code
    finally:
        if not args.keep:
            shutil.rmtree(work)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
