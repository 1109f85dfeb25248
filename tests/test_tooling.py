"""The course's tooling: notebook housekeeping, the test summary, `make book` and `make lab`."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import nbtools  # noqa: E402


def make_notebook(path: Path) -> Path:
    nb = new_notebook(
        cells=[
            new_markdown_cell(f"# T\n\n{nbtools.BADGE_MARK}\n\nWhat you will learn"),
            new_code_cell(nbtools.SETUP_MARK),
            new_code_cell(
                "print(1)", execution_count=3, outputs=[new_output("stream", text="1\n")]
            ),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3"},
            "widgets": {"state": {}},
        },
    )
    nbformat.write(nb, path)
    return path


def test_strip_and_colab_cells(tmp_path, monkeypatch):
    monkeypatch.setattr(nbtools, "ROOT", tmp_path)
    path = make_notebook(tmp_path / "nb.ipynb")
    assert "has outputs" in " ".join(nbtools.problems(path))
    assert nbtools.main(["strip", str(path)]) == 0
    assert nbtools.problems(path) == []
    nb = json.loads(path.read_text())
    assert nb["cells"][2]["outputs"] == [] and nb["cells"][2]["execution_count"] is None
    assert set(nb["metadata"]) == {"kernelspec"}
    repo = nbtools.repository()
    assert f"colab.research.google.com/github/{repo}/blob/main/nb.ipynb" in nb["cells"][0]["source"]
    assert '"git", "clone", "--depth", "1", url' in nb["cells"][1]["source"]
    assert f"https://github.com/{repo}" in nb["cells"][1]["source"]
    compile(nb["cells"][1]["source"], "colab-cell", "exec")  # the install cell is valid Python


def test_notebook_without_markers_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(nbtools, "ROOT", tmp_path)
    path = tmp_path / "bad.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("# x"), new_code_cell("1")]), path)
    assert any("colab-badge" in p for p in nbtools.problems(path))


@pytest.mark.parametrize(
    "times, args, code, text",
    [
        ({"notebooks/a.ipynb": {"seconds": 12.0, "passed": True}}, [], 0, "a 12s"),
        ({"notebooks/a.ipynb": {"seconds": 130.0, "passed": True}}, [], 1, "OVER BUDGET"),
        ({"notebooks/b.ipynb": {"seconds": 5.0, "passed": False}}, [], 0, "b 5s FAILED"),
        (
            {"notebooks/a.ipynb": {"seconds": 12.0, "passed": True}},
            ["--workers", "2"],
            0,
            "(FAST, 2 at a time, sharing the cores, budget 120 s each, 12 s total): a 12s",
        ),
    ],
)
def test_summary_line(tmp_path, times, args, code, text):
    path = tmp_path / "times.json"
    path.write_text(json.dumps(times))
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "summary.py"), str(path), *args],
        capture_output=True,
        text=True,
    )
    assert out.returncode == code and text in out.stdout and out.stdout.count("\n") == 1


def test_summary_without_times_fails(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "summary.py"), str(tmp_path / "no")])
    assert out.returncode == 1


@pytest.mark.slow
def test_book_embeds_plots(tmp_path):
    """`make book` = tools/book.py: the lesson executed, its figures in its page of the book, and
    the book's front page lists it (tests/test_book.py checks the whole book, unexecuted)."""
    # its exercise cells record progress: keep that out of the learner's real cache
    env = {**os.environ, "COURSE_OFFLINE": "1", "COURSE_CACHE": str(tmp_path / "cache")}
    nb, out = ROOT / "notebooks" / "00_start_here.ipynb", tmp_path / "html"
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "book.py"), "--out", str(out), str(nb)],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    page = (out / "00_start_here.html").read_text()
    assert page.count('src="_images/') >= 3  # the run's figures, as files of the book
    assert len(list((out / "_images").glob("*.png"))) >= 3
    assert "Traceback" not in page
    index = (out / "index.html").read_text()
    assert 'href="00_start_here.html"' in index and "Start here" in index


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_lab_serves_jupyterlab():
    port, token = free_port(), "course-test-token"
    args = f"--no-browser --port={port} --ServerApp.ip=127.0.0.1 --IdentityProvider.token={token}"
    proc = subprocess.Popen(
        ["make", "-s", "lab", f"LAB_ARGS={args}"],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, body = time.time() + 90, ""
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/lab?token={token}", timeout=5
                ) as r:
                    body = r.read().decode()
                    break
            except OSError:
                time.sleep(1)
        assert "JupyterLab" in body, (
            f"no /lab page; make lab said:\n{proc.stdout.read() if proc.poll() is not None else ''}"
        )
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/contents?token={token}", timeout=5
        ) as r:
            listing = {item["name"] for item in json.load(r)["content"]}
        assert "00_start_here.ipynb" in listing  # it serves the notebooks/ folder
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_lesson_times_record_and_readme(tmp_path, monkeypatch):
    import lesson_times

    monkeypatch.setattr(lesson_times, "RECORD", tmp_path / "times.json")
    monkeypatch.setattr(lesson_times, "lessons", lambda: ["07_diffusion_ddpm", "10_flow"])
    run = tmp_path / "notebook_times.json"  # what `make test` writes (conftest.py)
    seconds = {
        "notebooks/07_diffusion_ddpm.ipynb": 28.74,
        "notebooks/10_flow.ipynb": 20.0,  # a failed run is no time
        "notebooks/solutions/07_diffusion_ddpm_solutions.ipynb": 3.0,
    }
    lesson_times.save_run_times(seconds, {"notebooks/10_flow.ipynb"}, path=run)
    flow = json.loads(run.read_text())["notebooks/10_flow.ipynb"]
    assert flow["seconds"] == 20.0 and flow["passed"] is False
    book = tmp_path / "book_times.json"  # what `make book FULL=1` writes (tools/book.py)
    lesson_times.save_book_times({"07_diffusion_ddpm": 1000.0}, "full", path=book)
    lesson_times.save_book_times({"07_diffusion_ddpm": 30.0}, "fast", path=book)
    assert lesson_times.read(book) == {"07_diffusion_ddpm": {"fast": 30.0, "full": 1000.0}}
    lesson_times.record(run, "fast", "cpu", "laptop")
    times = lesson_times.record(book, "full", "cpu", "laptop")
    assert times == {
        "07_diffusion_ddpm": {
            "fast_cpu": {
                "seconds": 28.7,
                "date": times["07_diffusion_ddpm"]["fast_cpu"]["date"],
                "machine": "laptop",
            },
            "full_cpu": {
                "seconds": 1000.0,
                "date": times["07_diffusion_ddpm"]["full_cpu"]["date"],
                "machine": "laptop",
            },
        }
    }
    readme = (
        "| 07 | [DDPM](x) | text | `diffusion` | old | old |\n| 10 | [F](y) | t | `p` | a | b |\n"
    )
    assert lesson_times.readme_text(readme, times) == (
        "| 07 | [DDPM](x) | text | `diffusion` | 29 s · 17 min | – · – |\n"
        "| 10 | [F](y) | t | `p` | – · – | – · – |\n"
    )


def test_readme_course_map_shows_the_recorded_lesson_times():
    import lesson_times

    assert lesson_times.problems() == []


def test_gpu_check_says_there_is_no_gpu_and_exits_0():
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}  # as on a CPU-only machine
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gpu_check.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "no CUDA GPU on this machine" in out.stdout
