"""Colab rehearsal: lesson 00 runs with nothing but what the Colab install cell installs.

`tools/colab_rehearsal.py` builds the situation of a fresh Colab runtime: a virtual environment
holding only the pinned torch pair (hard-linked from .venv), a fake ``google.colab``, and the working
tree as a git repository standing in for GitHub. The lesson's own Colab cell then clones and
pip-installs the course from the package index, and the lesson runs as a plain script. A lesson
that needs a package only .venv has (pytest, nbformat, IPython...) fails here.

The pip install needs PyPI: without it the test is skipped. It takes about a minute once pip's
cache holds the course's dependencies.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from importlib.metadata import distributions
from pathlib import Path

import pytest
import torch
import torchvision
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import colab_rehearsal  # noqa: E402

pytestmark = pytest.mark.slow

LESSON = ROOT / "notebooks" / "00_start_here.ipynb"
# What .venv has and a fresh Colab-like environment must not: the package itself, its non-torch
# dependencies (before the install cell), the dev extras and Jupyter's kernel machinery.
ABSENT = [
    "course_utils",
    "diffusers",
    "matplotlib",
    "scipy",
    "skimage",
    "sklearn",
    "pytest",
    "nbformat",
    "nbclient",
    "IPython",
    "ipywidgets",
]
# In the fresh environment: which modules import, and where torch comes from.
PROBE = """
import importlib, json, sys
names = json.loads(sys.argv[1])
ok = {}
for name in names:
    try:
        importlib.import_module(name)
        ok[name] = True
    except ImportError:
        ok[name] = False
import torch, torchvision
print(json.dumps({"imports": ok, "torch": torch.__version__, "torchvision": torchvision.__version__,
                  "torch_file": torch.__file__}))
"""
LESSON_TIMEOUT_S = 480  # install included; about 60 s with a warm pip cache


def pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def probe(rehearsal: colab_rehearsal.Rehearsal) -> dict:
    out = subprocess.run(
        [rehearsal.python, "-c", PROBE, json.dumps(ABSENT)],
        cwd=rehearsal.script.parent,  # not the repository: `import course_utils` would find it
        env=rehearsal.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def staged():
    """The prepared rehearsal, and what its environment holds before the Colab cell runs."""
    if not pypi_reachable():
        pytest.skip(
            "PyPI (https://pypi.org) is not reachable: the Colab cell's pip install needs it"
        )
    colab_rehearsal.BUILD.mkdir(exist_ok=True)
    # Under build/, not /tmp: the hard links need .venv's file system. Removed afterwards, because a
    # kept link would keep the old torch files on disk after .venv is rebuilt.
    work = Path(tempfile.mkdtemp(prefix="colab-rehearsal-", dir=colab_rehearsal.BUILD))
    try:
        prepared = colab_rehearsal.prepare(LESSON, work)
        yield prepared, probe(prepared)
    finally:
        shutil.rmtree(work)


def dev_extras(requirements: list[str]) -> set[str]:
    """The names among ``requirements`` that only the ``dev`` extra asks for."""
    reqs = [Requirement(line) for line in requirements]
    return {
        canonicalize_name(r.name)
        for r in reqs
        if r.marker and r.marker.evaluate({"extra": "dev"}) and not r.marker.evaluate({"extra": ""})
    }


def test_torch_only_environment(staged):
    rehearsal, before = staged
    assert before["imports"] == {name: False for name in ABSENT}, "the fresh venv sees .venv"
    pins = {pin.name: pin.specifier for pin in colab_rehearsal.torch_pins()}
    assert pins["torch"].contains(before["torch"]) and before["torch"] == torch.__version__
    assert pins["torchvision"].contains(before["torchvision"])
    assert before["torchvision"] == torchvision.__version__
    site = Path(before["torch_file"]).parent.parent
    assert site.is_relative_to(rehearsal.python.parent.parent)  # its own site-packages...
    assert (site / "google" / "colab" / "__init__.py").is_file()  # ...with the fake Colab
    # ...whose torch files are .venv's own (hard links), not copies
    assert os.path.samefile(before["torch_file"], torch.__file__)


def test_lesson_runs_as_in_colab(staged):
    rehearsal, _ = staged
    assert not rehearsal.course.exists()  # the Colab cell itself must clone the course
    result = rehearsal.run(capture_output=True, text=True, timeout=LESSON_TIMEOUT_S)
    tail = (result.stdout[-3000:] + "\n--- stderr\n" + result.stderr[-6000:]).strip()
    assert result.returncode == 0, f"lesson 00 failed in the Colab rehearsal:\n{tail}"
    assert rehearsal.skipped == [], f"IPython magics a plain script cannot run: {rehearsal.skipped}"
    # the lesson saw Colab, and imported the course from the clone the cell made
    assert "Colab : True" in result.stdout
    assert f"course_utils : {rehearsal.course / 'course_utils' / '__init__.py'}" in result.stdout
    assert (rehearsal.course / ".git").is_dir()
    # the install kept the environment's torch, as Colab keeps its own: still .venv's files...
    site = colab_rehearsal.site_packages(rehearsal.python)
    assert os.path.samefile(site / "torch" / "__init__.py", torch.__file__)
    # ...and brought the course's dependencies, none of its dev extras
    dists = {canonicalize_name(d.metadata["Name"]): d for d in distributions(path=[str(site)])}
    assert {"course-utils", "diffusers", "matplotlib"} <= dists.keys()
    dev = dev_extras(dists["course-utils"].requires)
    assert dev and not dists.keys() & dev, f"dev extras installed: {sorted(dists.keys() & dev)}"
