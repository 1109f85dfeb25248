# The course's commands. Every target creates the virtual environment (.venv) itself when missing.
#   make lab    JupyterLab on notebooks/ (LAB_ARGS="--no-browser --port=8888" passes options)
#   make test   unit tests, then every notebook in FAST mode (TEST_WORKERS=2 in parallel), then a
#               timing summary
#   make test-e2e  `make lab` and the book in headless Chromium, screenshots in build/e2e
#   make book   every notebook executed once, as a book (Sphinx) in build/html (FAST unless FULL=1)
#   make slides one reveal.js deck per lesson into build/slides (and the book, from the same run)
#   make book-offline  the book with MathJax etc. inside it, so it needs no network (npm, once)
#   make slides-offline  reveal.js, MathJax etc. for the decks, into build/slides/vendor (npm, once)
#   make gpu-check  on a CUDA machine: notebooks, benchmarks and full lessons on the GPU (10 min)
#   make lint · make strip · make checkpoints · make bench · make clean
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.course-installed
# the pinned torch/torchvision pair is written only in this file
TORCH_PINS := requirements-torch.txt
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)  # containers often run as root
# Notebooks run by the tests and the book keep their exercise progress (solutions notebooks
# "pass" every exercise) away from the learner's own record in ~/.cache/course_utils.
TEST_CACHE := COURSE_CACHE=$(CURDIR)/build/test-cache
NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

.PHONY: setup lab test test-unit test-notebooks test-e2e book book-offline slides slides-offline lint strip checkpoints bench gpu-check clean distclean

# The venv is (re)built when missing or when pyproject.toml changes; a second run reuses it.
$(STAMP): pyproject.toml $(TORCH_PINS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r $(TORCH_PINS)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

lab: $(STAMP)
	@echo "Starting JupyterLab on notebooks/ -- open the http://localhost... URL printed below."
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(ROOT_FLAG) $(LAB_ARGS)

# make test uses every core: TEST_WORKERS pytest-xdist workers (all the tests of one file, and all
# the cells of one notebook, stay in one worker and one kernel), each worker and its kernels with an
# equal share of the cores as torch threads (more threads than cores makes torch far slower). The
# tests marked `serial` (they measure time) or `e2e` (a browser with timeouts) then run alone.
NPROC := $(shell nproc 2>/dev/null || echo 2)
TEST_WORKERS ?= 2
TEST_THREADS := $(shell echo $$(( $(NPROC) / $(TEST_WORKERS) > 1 ? $(NPROC) / $(TEST_WORKERS) : 1 )))
PARALLEL := -n $(TEST_WORKERS) --dist loadfile
SHARED := OMP_NUM_THREADS=$(TEST_THREADS)
ALONE := serial or e2e
test: $(STAMP)
	@rm -f build/notebook_times.json; status=0; \
	$(SHARED) COURSE_FAST=1 $(PY) -m pytest $(PARALLEL) -m "not ($(ALONE))" --durations=15 tests || status=$$?; \
	$(SHARED) $(TEST_CACHE) COURSE_FAST=1 $(PY) -m pytest $(PARALLEL) $(NBVAL) notebooks || status=$$?; \
	COURSE_FAST=1 $(PY) -m pytest -m "$(ALONE)" --durations=5 tests || status=$$?; \
	$(PY) tools/summary.py --workers $(TEST_WORKERS) build/notebook_times.json || status=$$?; \
	exit $$status

test-unit: $(STAMP)
	COURSE_FAST=1 $(PY) -m pytest tests

test-notebooks: $(STAMP)
	$(TEST_CACHE) COURSE_FAST=1 $(PY) -m pytest $(NBVAL) notebooks

# The browser test alone; COURSE_E2E_REQUIRED=1 turns "Chromium missing" from a skip into a failure.
test-e2e: $(STAMP)
	COURSE_E2E_REQUIRED=1 COURSE_FAST=1 $(PY) -m pytest -m e2e tests/test_e2e_lab.py

book: $(STAMP)
	$(TEST_CACHE) $(PY) tools/book.py --out build/html $(if $(FULL),--full,)

# `make book`, first unpacking MathJax and the widget manager into build/html/_static (npm,
# network once): the book then needs no network, and later `make book` runs keep these copies
# (`make clean` removes them with build/)
book-offline: $(STAMP)
	$(TEST_CACHE) $(PY) tools/book.py --offline --out build/html $(if $(FULL),--full,)

slides: $(STAMP)
	$(TEST_CACHE) $(PY) tools/book.py --out build/html --slides build/slides $(if $(FULL),--full,)

# reveal.js, require.js, jQuery, MathJax and the widget manager into build/slides/vendor (npm,
# network once): decks built afterwards need no network (`make clean` removes them with build/)
slides-offline: $(STAMP)
	$(PY) tools/slides.py offline --out build/slides

lint: $(STAMP)
	$(VENV)/bin/ruff check course_utils tests tools bench notebooks
	$(VENV)/bin/ruff format --check course_utils tests tools bench conftest.py
	$(PY) tools/nbtools.py check

strip: $(STAMP)
	$(PY) tools/nbtools.py strip

checkpoints: $(STAMP)
	$(PY) -m course_utils.zoo $(NAMES)

# On a CUDA machine: every notebook FAST on the GPU, the benchmarks, the full lessons that fit,
# times into the course map -- all within 10 minutes. Without CUDA it says so and exits 0.
gpu-check: $(STAMP)
	$(PY) tools/gpu_check.py

bench: $(STAMP)
	$(PY) bench/run.py --out build/bench.md

clean:
	rm -rf build .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
