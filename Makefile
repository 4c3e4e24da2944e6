# The two commands of the README:
#   make book   build the site into _build/html (strict: warnings are errors)
#   make test   lint, unit tests, nbval over every notebook, and the strict site build
#
# Both create the local virtual environment .venv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

NOTEBOOKS := $(wildcard chapters/*.ipynb)

.PHONY: help book test lint unit site-check notebooks notebooks-portable check-notebooks execute bench figures clean

help:
	@echo "make book    build the site into _build/html (warnings are errors)"
	@echo "make test    lint + unit tests + nbval over every notebook (twice: two numeric paths)"
	@echo "             + strict site build + every page checked in headless Chromium"
	@echo "make execute re-execute every chapter notebook in place (after editing one)"
	@echo "make bench   run the benchmarks against PyTorch (a few minutes)"
	@echo "make figures redraw the code-made figures in imgs/"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[book,test]"
	touch $(STAMP)

book: $(STAMP) check-notebooks
	$(BIN)/jupyter-book build . --all --warningiserror --nitpick --keep-going
	@echo
	@echo "The book is in _build/html. Open _build/html/index.html in a browser,"
	@echo "or serve it:  $(BIN)/python -m http.server -d _build/html 8000"

test: lint unit notebooks notebooks-portable book site-check

lint: $(STAMP)
	$(BIN)/ruff check transformer_lib tests chapters benchmarks imgs
	$(BIN)/ruff format --check transformer_lib tests chapters benchmarks imgs

unit: $(STAMP)
	$(BIN)/python -m pytest tests --ignore=tests/site

# The built site in headless Chromium, every page at 1280 and 390 px (tests/site/).
# Needs the system Chromium (Debian: apt-get install chromium) and npm for the local
# MathJax copy; without them it is skipped with one line saying so, unless
# SITE_CHECK_REQUIRED=1 (CI). Screenshots: _build/screenshots/.
site-check: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
	  test -f tests/site/node_modules/mathjax/package.json || npm ci --prefix tests/site --no-audit --no-fund --silent; \
	fi
	$(BIN)/python -m pytest -p no:cacheprovider tests/site

# nbval re-executes every notebook in a fresh kernel and compares with the committed outputs.
# sanitize.cfg masks only numbers printed as "≈number" (transformer_lib.measured): the
# README's rule for values that depend on the machine.
NBVAL := $(BIN)/python -m pytest --nbval --nbval-current-env --nbval-sanitize-with sanitize.cfg -p no:cacheprovider
notebooks: $(STAMP) check-notebooks
	$(NBVAL) $(NOTEBOOKS)

# The same comparison under another numeric path than the one that executed the
# notebooks: PyTorch's non-vectorised kernels, MKL's reproducible mode, one thread.
# Digits that depend on the machine differ here, so this proves the notebooks portable.
notebooks-portable: $(STAMP) check-notebooks
	ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	  $(NBVAL) $(NOTEBOOKS)

check-notebooks: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_notebooks.py

execute: $(STAMP)
	for nb in $(NOTEBOOKS); do \
	  $(BIN)/jupyter execute --inplace --timeout=600 $$nb || exit 1; \
	done

bench: $(STAMP)
	$(BIN)/python -m benchmarks

figures: $(STAMP)
	$(BIN)/python imgs/make_figures.py

clean:
	rm -rf _build
