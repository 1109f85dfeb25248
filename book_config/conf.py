"""Sphinx configuration of the course's book: `make book` (tools/book.py) runs sphinx-build with it
on the lessons it has just executed (build/executed/), writing build/html/.

The stack is the one Jupyter Book 1.x wraps: Sphinx, MyST-NB, which reads executed notebooks and
renders their saved outputs (every plot comes from tools/book.py's run: nothing is re-executed
here), and sphinx-book-theme, which adds what a learner navigates by: a table of contents,
previous/next links, Sphinx's own search (an index file, no server, no network) and, on every
lesson, buttons to open it in Colab or download the executed notebook.
"""

from pathlib import Path

from course_utils import REPOSITORY  # "owner/name" of the course on GitHub, defined once

project = "Computer vision and diffusion models with PyTorch"
author = "the course's authors"
html_title = project
extensions = ["myst_nb"]
exclude_patterns = [".doctrees", "**/.ipynb_checkpoints"]

# MyST-NB: show the outputs tools/book.py saved; `$x$` and `$$ ... $$` are equations (MathJax).
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath"]
# Equations: MathJax 3 from its CDN (pinned, so that it and the local copy render alike), and
# progress bars (ipywidgets) drawn from their saved state by the widget manager, from its CDN; once
# `make book-offline` has unpacked them into the book's _static/ folder, from there (see setup()).
mathjax_path = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
LOCAL_MATHJAX = "mathjax/es5/tex-mml-chtml.js"
LOCAL_WIDGETS = ["requirejs/require.js", "@jupyter-widgets/html-manager/dist/embed-amd.js"]

html_theme = "sphinx_book_theme"
html_context = {"default_mode": "light"}  # the lessons' figures are drawn on white
html_sourcelink_suffix = ""  # the download button gives the .ipynb itself, not a .ipynb.txt
html_theme_options = {
    # The pages are notebooks/ executed, folder for folder, so the Colab button opens the lesson
    # itself: colab.research.google.com/github/<REPOSITORY>/blob/main/notebooks/<page>.ipynb
    "repository_url": f"https://github.com/{REPOSITORY}",
    "repository_branch": "main",
    "path_to_docs": "notebooks",
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "use_download_button": True,
    "use_repository_button": True,
    "show_toc_level": 2,  # the page's sections in the right-hand column
}


def use_local_copies(app, config):
    """Load MathJax and the widget manager from the book itself once `make book-offline` has put
    them there (relative paths: Sphinx links them as _static/...)."""
    static = Path(app.outdir) / "_static"
    if (static / LOCAL_MATHJAX).exists():
        config.mathjax_path = LOCAL_MATHJAX
    if all((static / path).exists() for path in LOCAL_WIDGETS):
        config.nb_ipywidgets_js = {path: {} for path in LOCAL_WIDGETS}
        # RequireJS, which loads the widget manager, must look for its modules (and so for its
        # fonts) in _static/, not beside the page: "./_static/", or "../_static/" in solutions/
        root = "document.documentElement.dataset.content_root"
        app.add_js_file(None, body=f'var require = {{baseUrl: {root} + "_static/"}};')


def setup(app):
    app.connect("config-inited", use_local_copies)
