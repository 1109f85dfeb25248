"""The book (`make book`: tools/book.py with book_config/conf.py) as a learner navigates it.

The site is built once for the module from every committed notebook, lessons and solutions,
without executing any: `execute` is replaced by reading the notebook and giving one of its cells a
small figure (lesson 03 a progress bar too). Two lessons get their decks too (`make slides`), and
stand-in files take the place of what `make book-offline` unpacks (MathJax, the widget manager),
so the book is checked as it is offline.
"""

import base64
import io
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest
from nbformat.v4 import new_output
from PIL import Image

from course_utils import REPOSITORY

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import book  # noqa: E402
import nbtools  # noqa: E402

sys.path.insert(0, str(ROOT / "book_config"))
import conf  # noqa: E402  (book_config/conf.py)

NAMES = [p.relative_to(book.NOTEBOOKS).with_suffix("") for p in book.notebooks()]
LESSONS = [name for name in NAMES if name.parent == Path(".")]
DECKS = [Path("00_start_here"), Path("07_diffusion_ddpm")]


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


FIGURE = png()


# A progress bar (tqdm, in a lesson that trains) as an executed notebook stores it: a view in the
# cell's outputs, and the state of its widgets in the notebook's metadata.
BAR = {
    "version_major": 2,
    "version_minor": 0,
    "state": {
        "bar": {
            "model_module": "@jupyter-widgets/controls",
            "model_module_version": "2.0.0",
            "model_name": "FloatProgressModel",
            "state": {"max": 3, "value": 3},
        }
    },
}


def with_a_figure(path: Path) -> nbformat.NotebookNode:
    """The committed notebook, as if executed: its first code cell (after Colab's) shows FIGURE,
    and in lesson 03 a progress bar."""
    nb = nbformat.read(path, as_version=4)
    cell = next(
        c for c in nb.cells if c.cell_type == "code" and not c.source.startswith(nbtools.SETUP_MARK)
    )
    data = {"image/png": base64.b64encode(FIGURE).decode(), "text/plain": "<Figure>"}
    cell.outputs = [new_output("display_data", data=data)]
    if path.stem == "03_object_detection":
        view = {"model_id": "bar", "version_major": 2, "version_minor": 0}
        data = {"application/vnd.jupyter.widget-view+json": view, "text/plain": "0/3"}
        cell.outputs.append(new_output("display_data", data=data))
        nb.metadata.widgets = {"application/vnd.jupyter.widget-state+json": BAR}
    return nb


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("book")
    out, decks = tmp / "html", tmp / "slides"
    for local in [conf.LOCAL_MATHJAX, *conf.LOCAL_WIDGETS]:  # as after `make book-offline`
        (out / "_static" / local).parent.mkdir(parents=True, exist_ok=True)
        (out / "_static" / local).write_text("// stands in for the npm package's file\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_FAST", "1")  # build() sets it; the context restores it
        mp.setattr(book, "execute", with_a_figure)
        book.build(book.notebooks(), out, full=False, deck_dir=None, source=tmp / "executed")
        # `make slides` for two lessons (the decks' own tests are in test_slides.py)
        with_decks = [book.NOTEBOOKS / f"{name}.ipynb" for name in DECKS]
        book.build(with_decks, out, full=False, deck_dir=decks, source=tmp / "executed")
    book.write_site(tmp / "executed", out)
    return out, decks


class Page(HTMLParser):
    """A built page: its ids (link targets), links (href/src of a, link, script, img), the srcs
    of its scripts and images, its stylesheets, its prev/next links and its buttons."""

    def __init__(self, path: Path):
        super().__init__()
        self.path, self.ids, self.links = path, set(), []
        self.scripts, self.images, self.styles, self.nav, self.buttons = [], [], [], {}, {}
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        link = attrs.get("href") or attrs.get("src")
        if link and tag in {"a", "link", "script", "img"}:
            self.links.append(link)
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "link" and attrs.get("rel") == "stylesheet":
            self.styles.append(attrs["href"])
        if tag == "a" and attrs.get("class") in {"left-prev", "right-next"}:
            self.nav[attrs["class"]] = attrs["href"]
        if tag == "a" and attrs.get("title"):  # the theme's buttons: "Launch on Colab", ...
            self.buttons[attrs["title"]] = attrs["href"]


def page(out: Path, name: Path) -> Page:
    return Page(out / name.with_suffix(".html"))


def test_the_table_of_contents_lists_every_lesson_then_every_solution(site):
    out, _ = site
    index = (out / "index.html").read_text(encoding="utf-8")
    content = index[index.index('<div class="toctree-wrapper') :]
    listed = re.findall(r'class="reference internal" href="([^"#]+)\.html"', content)
    assert listed == [name.as_posix() for name in NAMES]
    assert len(LESSONS) == 14 and len(NAMES) == 28  # 00-13, each with its solutions
    assert "Solutions" in content and "07 · Diffusion models" in content
    sidebar = page(out, NAMES[-1])  # every page carries the whole table of contents
    for name in NAMES[:-1]:
        assert any(link.endswith(f"{name.name}.html") for link in sidebar.links), name


def test_previous_and_next_links_follow_the_course(site):
    out, _ = site
    order = [Path("index"), *NAMES]
    for before, name, after in zip(order, order[1:], [*order[2:], None]):
        nav = page(out, name).nav
        assert (out / name).parent.joinpath(nav["left-prev"]).resolve() == out / f"{before}.html"
        if after is None:
            assert "right-next" not in nav
        else:
            assert (out / name).parent.joinpath(
                nav["right-next"]
            ).resolve() == out / f"{after}.html"


def test_every_page_has_colab_and_download_buttons(site):
    out, _ = site
    for name in NAMES:
        buttons = page(out, name).buttons
        colab = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks"
        assert buttons["Launch on Colab"] == f"{colab}/{name}.ipynb"  # the lesson on GitHub
        download = (out / name).parent / buttons["Download source file"]
        assert download.suffix == ".ipynb"
        notebook = nbformat.read(download, as_version=4)  # the executed notebook
        assert any(c.get("outputs") for c in notebook.cells), name
        html = (out / name.with_suffix(".html")).read_text(encoding="utf-8")
        # the page's own button replaces the notebook's badge, an image from the web
        assert "colab-badge.svg" not in html and "colab-setup" not in html, name


def test_every_page_shows_its_figure(site):
    out, _ = site
    for name in NAMES:
        shown = page(out, name)
        figures = [(out / name).parent / src for src in shown.images if "_images/" in src]
        assert [f.read_bytes() for f in figures] == [FIGURE], name  # a file of the book


def test_lessons_and_their_decks_link_each_other(site):
    out, decks = site
    assert sorted(p.name for p in decks.glob("*.html")) == [f"{n}.slides.html" for n in DECKS]
    for name in NAMES:
        html = (out / name.with_suffix(".html")).read_text(encoding="utf-8")
        if name in DECKS:
            assert f'<a href="../slides/{name}.slides.html">Slides for this lesson</a>' in html
            deck = (decks / f"{name}.slides.html").read_text(encoding="utf-8")
            assert f'href="../html/{name}.html"' in deck
        else:  # built without --slides, or a solutions page: no deck to link to
            assert "Slides for this lesson" not in html, name


def test_equations_are_typeset_by_the_local_mathjax(site):
    out, _ = site
    html = (out / "07_diffusion_ddpm.html").read_text(encoding="utf-8")
    assert html.count('class="math notranslate nohighlight"') > 50
    scripts = [urlsplit(src).path for src in page(out, Path("07_diffusion_ddpm")).scripts]
    assert "_static/mathjax/es5/tex-mml-chtml.js" in scripts


def test_offline_nothing_comes_from_the_network(site):
    """With MathJax and the widget manager inside the book, no page loads a script, a stylesheet
    or an image from the web."""
    out, _ = site
    bar = page(out, Path("03_object_detection"))
    assert [urlsplit(src).path for src in bar.scripts if "require" in src or "widgets" in src] == [
        "_static/requirejs/require.js",
        "_static/@jupyter-widgets/html-manager/dist/embed-amd.js",
    ]
    html = bar.path.read_text(encoding="utf-8")
    assert (
        'var require = {baseUrl: document.documentElement.dataset.content_root + "_static/"}'
        in html
    )
    remote = {
        f"{path.relative_to(out)}: {url}"
        for path in out.rglob("*.html")
        for url in (lambda p: p.scripts + p.styles + p.images)(Page(path))
        if urlsplit(url).scheme
    }
    assert not remote, "\n".join(sorted(remote))


def search_index(out: Path) -> dict:
    text = (out / "searchindex.js").read_text(encoding="utf-8")
    return json.loads(text[text.index("(") + 1 : text.rindex(")")])


@pytest.mark.parametrize(
    "term, lesson",
    [
        ("ddim", "07_diffusion_ddpm"),
        ("iou", "03_object_detection"),
        ("lenet", "02_cnn_architectures"),
        ("u-net", "04_image_segmentation"),
        ("vae", "09_latent_diffusion"),
    ],
)
def test_search_finds_terms_of_each_lesson(site, term, lesson):
    """Sphinx's search: searchindex.js maps each (stemmed) word to the pages that contain it; the
    search box splits "U-Net" into "u" and "net" and returns the pages that have both."""
    index = search_index(site[0])
    docs = None
    for word in term.split("-"):
        found = set()
        for kind in ("terms", "titleterms"):  # a word in a heading is only in titleterms
            pages = index[kind].get(word, [])
            found |= {pages} if isinstance(pages, int) else set(pages)
        docs = found if docs is None else docs & found
    assert lesson in {index["docnames"][i] for i in docs}


def test_every_internal_link_resolves(site):
    """Every local href and src of the book's pages and the decks: the file exists, and so does
    the #anchor in it (the theme's own pages, such as the search page, included)."""
    out, decks = site
    built = [p for p in out.rglob("*.html") if "_static" not in p.parts]  # not theme templates
    pages = {path.resolve(): Page(path) for path in [*built, *decks.glob("*.html")]}
    checked, broken = 0, []
    for path, parsed in pages.items():
        for link in parsed.links:
            url = urlsplit(link)
            if url.scheme or link.startswith(("mailto:", "javascript:")):
                continue
            target = (path.parent / url.path).resolve() if url.path else path
            checked += 1
            if not target.exists():
                broken.append(f"{path.relative_to(out.parent)}: {link}")
            elif url.fragment and target.suffix == ".html":
                if url.fragment not in pages[target].ids:
                    broken.append(f"{path.relative_to(out.parent)}: {link} (no such anchor)")
    assert not broken, "\n".join(broken)
    assert checked > 50 * len(NAMES)  # sidebars, tables of contents, sections, decks
