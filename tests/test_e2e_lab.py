"""End to end: `make lab` and the book in a real browser, as a learner uses them.

The test starts JupyterLab with `make lab` on a free localhost port, opens two lessons in headless
Chromium (Debian's `chromium`, driven by Playwright's Python package; Playwright downloads no
browser), runs every cell and checks what the learner would see: every code cell ran, none raised,
and every cell that draws a figure shows it as a decoded image. Then it builds the book and the
deck of lesson 00 (`make slides` for one lesson, with the decks' offline copies of reveal.js,
MathJax...), serves them on localhost and checks them in the browser: no console error, every
image decoded, the next-page link, the search and the deck's arrow key work. Screenshots go to
`build/e2e/`.

It needs Chromium and Playwright (`sudo apt-get install chromium`, `pip install playwright`; or
`CHROMIUM=/path/to/chromium`). Without them the test is skipped, unless `COURSE_E2E_REQUIRED=1`
(set by `make test-e2e`) turns the skip into a failure. The book's part also needs npm the first
time (`make slides-offline`), when build/slides/vendor/ is missing.
"""

import functools
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import slides  # noqa: E402

SHOTS = ROOT / "build" / "e2e"
# 00 is the quickest lesson; 03 draws twelve figures and is the quickest of the lessons with many
# plots (FAST mode, build/notebook_times.json: 03 8.7 s, 02 11.1 s, 01 31.0 s).
LESSONS = ["00_start_here", "03_object_detection"]
INSTALL = (
    "Install Chromium and Playwright's Python package (Playwright downloads no browser here): "
    "`sudo apt-get install chromium` (Debian/Ubuntu) or `brew install --cask chromium` (macOS), "
    "then `.venv/bin/pip install playwright`; set CHROMIUM=/path/to/chromium if it lives elsewhere."
)
# Minutes, not seconds: the machine may be busy, but a hung lab must still fail, not hang.
SERVER_TIMEOUT_S = 120
RUN_TIMEOUT_MS = 240_000
MAX_SHOT_HEIGHT = 32_000  # pixels: a whole lesson, in a PNG that image viewers still open

# A cell "draws a figure" when a line at the top level (not inside an `if` or a loop, which may
# not run) creates one: `fig, ax = plt.subplots(...)`, `plt.figure(...)`, `fig = plot.show_images(
# ...)`. Jupyter's inline backend shows every figure a cell creates, so each such cell must end
# with at least one image; cells that draw conditionally are not counted (a lower bound).
FIGURE_LINE = re.compile(r"^(?:\w[\w, ]*=\s*)?(?:plt\.(?:subplots|figure)|plot\.\w+)\(", re.M)

# Lab user settings for the test only (a temporary JUPYTERLAB_SETTINGS_DIR):
# - windowing "none" attaches every cell to the page; by default Lab skips rendering cells that
#   are off screen, and their images would never load; no blank space after the last cell, so
#   the notebook's scroll height is the lesson's height (for the full-page screenshot);
# - no autosave, so running the lesson never writes outputs into the committed notebook;
# - no "Would you like to get notified about official Jupyter news?" pop-up over the lesson.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "scrollPastEnd": False},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"},
}


def unavailable(reason: str, install: str = INSTALL):
    """Skip (or, under `make test-e2e`, fail) with the reason and how to install what is missing."""
    message = f"{reason}. {install}"
    if os.environ.get("COURSE_E2E_REQUIRED") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium (the system's, never a downloaded one), closed after the module."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        unavailable(f"no Chromium at {path}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the Python package playwright is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path)
        yield browser
        browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`make lab` on a free port with a random token; yields its base URL and token.

    The server runs in its own process group, killed in the teardown whatever happens, so no
    server outlives a failing test. Its settings, workspaces, runtime files and the lessons'
    cache live in a temporary folder, away from the learner's own.
    """
    tmp = tmp_path_factory.mktemp("lab")
    for plugin, settings in LAB_SETTINGS.items():
        path = tmp / "settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    env = os.environ | {
        "COURSE_FAST": "1",
        "COURSE_OFFLINE": "1",
        "COURSE_CACHE": str(tmp / "cache"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
    }
    port, token = free_port(), secrets.token_hex(16)
    args = " ".join(
        [
            f"--no-browser --ServerApp.ip=127.0.0.1 --port={port} --ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            # quiet and deterministic: no news feed, no update check, both of which would fetch
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, to run commands
        ]
    )
    log = tmp / "lab.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["make", "-s", "lab", f"LAB_ARGS={args}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"make lab did not serve {url}; its log:\n{log.read_text()}")
                time.sleep(0.5)
        yield url, token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def figure_cells(notebook: dict) -> list[int]:
    """Indices of the code cells that draw a figure at the top level (see FIGURE_LINE)."""
    return [
        i
        for i, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and FIGURE_LINE.search(cell["source"])
    ]


def test_figure_cells_are_found():
    """The figure count the end-to-end test relies on: top-level figures only."""
    cells = [
        "fig, ax = plt.subplots(figsize=(6, 3))\nax.plot(x)",
        "fig = plot.show_images(batch, ncols=8)",
        "plt.figure()",
        "if errors:\n    fig = plot.show_images(errors)",  # may not run: not counted
        "print(plt.subplots)",
    ]
    notebook = {"cells": [{"cell_type": "code", "source": s} for s in cells]}
    notebook["cells"].append({"cell_type": "markdown", "source": "plt.figure()"})
    assert figure_cells(notebook) == [0, 1, 2]


# JavaScript run in the page. The current widget is the lesson's notebook panel once it opened.
KERNEL_IDLE = """name => {
    const panel = window.jupyterapp?.shell.currentWidget;
    return panel?.context?.path.endsWith(name) && panel.context.isReady
        && panel.sessionContext.session?.kernel?.status === "idle";
}"""
RUN_ALL = """() => {
    // The command's promise settles when the last cell finished, or one raised.
    window.e2eRun = undefined;
    window.jupyterapp.commands.execute("notebook:run-all-cells").then(
        ok => { window.e2eRun = {ok}; }, error => { window.e2eRun = {error: String(error)}; });
}"""
RUN_DONE = """() => window.e2eRun !== undefined
    && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === "idle" """
NOTEBOOK = "window.jupyterapp.shell.currentWidget.content"
IMAGES = f"""() => [...{NOTEBOOK}.node.querySelectorAll(".jp-Cell")].map(cell =>
    [...cell.querySelectorAll(".jp-OutputArea-output img")].map(img =>
        img.complete ? img.naturalWidth : -1))"""


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_runs_in_jupyterlab(chromium, lab, lesson):
    url, token = lab
    path = ROOT / "notebooks" / f"{lesson}.ipynb"
    expected = figure_cells(json.loads(path.read_text()))
    assert expected, f"{lesson} draws no figure at the top level: pick another lesson"

    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    # A workspace of its own, so the page shows this lesson alone.
    page.goto(f"{url}/lab/workspaces/{lesson}/tree/{lesson}.ipynb?token={token}")
    page.wait_for_function(KERNEL_IDLE, arg=f"{lesson}.ipynb", timeout=SERVER_TIMEOUT_S * 1000)
    page.evaluate(RUN_ALL)
    page.wait_for_function(RUN_DONE, timeout=RUN_TIMEOUT_MS)
    # What Lab holds after the run, as nbformat: execution counts and outputs of every cell.
    notebook = page.evaluate(f"{NOTEBOOK}.model.toJSON()")

    errors = [
        f"cell {i}: {output['ename']}: {output['evalue']}"
        for i, cell in enumerate(notebook["cells"])
        for output in cell.get("outputs", [])
        if output["output_type"] == "error"
    ]
    assert not errors, "a cell raised:\n" + "\n".join(errors)
    not_run = [
        i
        for i, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and cell["execution_count"] is None
    ]
    assert not not_run, f"cells {not_run} did not run"
    assert page.evaluate("window.e2eRun") == {"ok": True}

    # Every figure cell rendered at least one image that the browser decoded (naturalWidth > 0).
    page.wait_for_function(f"() => !({IMAGES})().flat().includes(-1)", timeout=30_000)
    images = page.evaluate(IMAGES)
    assert len(images) == len(notebook["cells"]), "Lab did not attach every cell to the page"
    missing = [i for i in expected if not any(width > 0 for width in images[i])]
    assert not missing, f"cells {missing} draw a figure but show no image"
    assert not any(width == 0 for widths in images for width in widths), "a broken image"

    SHOTS.mkdir(parents=True, exist_ok=True)
    first_plot = page.locator(".jp-Notebook .jp-Cell").nth(expected[0])
    first_plot.locator(".jp-OutputArea-output img").first.screenshot(
        path=SHOTS / f"{lesson}_first_plot.png"
    )
    # The notebook scrolls inside Lab's window: make the window as tall as the lesson.
    height = page.evaluate(f"{NOTEBOOK}.node.querySelector('.jp-WindowedPanel-outer').scrollHeight")
    page.set_viewport_size({"width": 1280, "height": min(height + 200, MAX_SHOT_HEIGHT)})
    page.screenshot(path=SHOTS / f"{lesson}.png", full_page=True)
    page.close()

    # Lab saved nothing: the notebook on disk still has no outputs (other edits may happen meanwhile).
    on_disk = json.loads(path.read_text())["cells"]
    assert not any(c.get("outputs") for c in on_disk), "Lab saved the executed lesson to disk"


# The book's part: lesson 00 and its solutions page, so that the lesson has a next page.
BOOK_NOTEBOOKS = ["00_start_here.ipynb", "solutions/00_start_here_solutions.ipynb"]
BUILD_TIMEOUT_S = 300
# JavaScript run in the book's pages and the deck.
IMAGES_DONE = "() => [...document.images].every(img => img.complete)"
IMAGE_WIDTHS = "() => [...document.images].map(img => img.naturalWidth)"
SLIDE = """() => [...document.querySelectorAll(".reveal .slides > section")]
    .findIndex(section => section.classList.contains("present"))"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no line per request in the test's output
        pass


@pytest.fixture(scope="module")
def book_and_deck(tmp_path_factory):
    """`make slides` for lesson 00 alone: executed once in FAST mode, written as book pages and a
    deck, served on a free localhost port (the search page fetches the pages it quotes, which a
    browser allows over HTTP only). Yields the URL of the folder that holds html/ and slides/.

    The deck uses the local reveal.js, MathJax... of `make slides-offline` (fetched into
    build/slides/vendor with npm when missing), so that nothing comes from the web."""
    vendor = ROOT / "build" / "slides" / "vendor"
    if not all((vendor / name / "package.json").exists() for name in slides.VENDOR):
        npm = "`make slides-offline` unpacks them with npm, once, with a network"
        if shutil.which("npm") is None:
            unavailable("no npm to fetch reveal.js, MathJax... for the deck", npm)
        fetched = subprocess.run(
            [sys.executable, "tools/slides.py", "offline"], cwd=ROOT, capture_output=True, text=True
        )
        if fetched.returncode:
            unavailable(f"npm could not fetch what the deck loads: {fetched.stderr[-500:]}", npm)
    tmp = tmp_path_factory.mktemp("book")
    (tmp / "slides").mkdir()
    (tmp / "slides" / "vendor").symlink_to(vendor)
    env = os.environ | {"COURSE_OFFLINE": "1", "COURSE_CACHE": str(tmp / "cache")}
    notebooks = [str(ROOT / "notebooks" / name) for name in BOOK_NOTEBOOKS]
    build = subprocess.run(
        [
            sys.executable,
            "tools/book.py",
            "--out",
            str(tmp / "html"),
            "--slides",
            str(tmp / "slides"),
        ]
        + notebooks,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    assert build.returncode == 0, f"tools/book.py failed:\n{build.stdout}\n{build.stderr}"
    handler = functools.partial(QuietHandler, directory=str(tmp))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


def console_error(msg) -> bool:
    """An error in the browser's console; not the browser's own request for /favicon.ico, made
    when a page names no icon (the test's server has none at its root)."""
    return msg.type == "error" and not msg.location.get("url", "").endswith("/favicon.ico")


def open_page(chromium, errors: list[str]):
    """A new page whose console errors, uncaught exceptions and failed requests are collected in
    ``errors``."""
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda msg: errors.append(msg.text) if console_error(msg) else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "response", lambda r: errors.append(f"{r.status}: {r.url}") if r.status >= 400 else None
    )
    return page


def images_decoded(page) -> list[int]:
    """The naturalWidth of every image once all have loaded (0: a broken image)."""
    page.wait_for_function(IMAGES_DONE, timeout=30_000)
    return page.evaluate(IMAGE_WIDTHS)


@pytest.mark.slow
@pytest.mark.e2e
def test_book_and_deck_in_the_browser(chromium, book_and_deck):
    errors: list[str] = []
    page = open_page(chromium, errors)
    SHOTS.mkdir(parents=True, exist_ok=True)

    # The lesson's page: every figure of the run is there, decoded.
    lesson = f"{book_and_deck}/html/00_start_here.html"
    page.goto(lesson)
    widths = images_decoded(page)
    assert all(width > 0 for width in widths), f"broken images on the page: {widths}"
    figures = figure_cells(json.loads((ROOT / "notebooks" / "00_start_here.ipynb").read_text()))
    assert page.locator(".cell_output img").count() >= len(figures)
    page.screenshot(path=SHOTS / "book_00_start_here.png")

    # Previous/next: the next page of the lesson is its solutions page, and back.
    page.click("a.right-next")
    page.wait_for_url("**/solutions/00_start_here_solutions.html")
    assert "solutions" in page.locator("h1").first.inner_text()
    page.click("a.left-prev")
    page.wait_for_url(lesson)

    # Sphinx's search, from the files alone: a term of the lesson finds it.
    page.goto(f"{book_and_deck}/html/search.html?q=checkpoints")
    page.wait_for_selector("#search-results li a", timeout=30_000)
    found = page.locator("#search-results li a").evaluate_all("links => links.map(a => a.href)")
    assert any(link.split("#")[0] == lesson for link in found), found
    page.screenshot(path=SHOTS / "book_search.png")

    # The lesson's deck, from the link on its page: its images, then one slide to the right.
    page.goto(lesson)
    page.click("text=Slides for this lesson")
    page.wait_for_url(re.compile(r"/slides/00_start_here\.slides\.html(#.*)?$"))  # #/: reveal.js
    page.wait_for_selector(".reveal.ready", timeout=30_000)  # reveal.js has started
    widths = images_decoded(page)
    assert widths and all(width > 0 for width in widths), f"broken images in the deck: {widths}"
    assert page.evaluate(SLIDE) == 0
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => ({SLIDE})() === 1", timeout=10_000)
    page.wait_for_timeout(1000)  # the slide's transition (0.8 s) ends before the screenshot
    page.screenshot(path=SHOTS / "deck_00_start_here.png")
    page.keyboard.press("ArrowLeft")
    page.click("text=Read this lesson in the book")
    page.wait_for_url(lesson)
    page.close()

    assert not errors, "console errors:\n" + "\n".join(errors)
