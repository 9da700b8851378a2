# The VIB book. `make book` builds the site from the notebooks' stored outputs; `make test` runs every check.
# Both set up a virtual environment in .venv first (once). See README.md.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# MNIST: the shared copy beside the repository when it exists (CI, this team's machines), else vibtools' default.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/MNIST/raw),)
export VIBTOOLS_DATA ?= $(SHARED_DATA)
endif
TEST_CACHE ?= $(CURDIR)/_build/test-runs

.PHONY: setup book book-render assets test lint unit notebooks build-check site-test package-check execute bench clean

setup: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	# torchattacks (the adversarial chapter's independent check) needs only torch; its pin of requests==2.25.1
	# conflicts with Sphinx, so it is installed without its dependencies
	$(PY) -m pip install -q --no-deps "torchattacks==3.5.1"
	touch $@

assets: setup
	bash scripts/fetch_site_assets.sh

book: setup assets  ## build _build/html from the outputs stored in the notebooks (seconds)
	$(VENV)/bin/jupyter-book build . -W --keep-going

test: lint package-check unit notebooks build-check site-test  ## everything CI runs

lint: setup  ## the package at 120 columns; the notebooks' code cells at 88, so none scrolls sideways on the page
	$(VENV)/bin/ruff check vibtools tests benchmarks scripts
	$(VENV)/bin/ruff check --line-length 88 --extend-ignore E402 book/*.ipynb  # E402: the install cell imports after pip
	$(VENV)/bin/ruff format --check --line-length 88 book/*.ipynb

package-check: setup  ## wheel + sdist build and pass twine check; CITATION.cff is valid; the workflows pass actionlint
	bash scripts/check_package.sh

unit: setup
	$(PY) -m pytest -q --durations=15 tests --ignore=tests/test_site.py

# The notebooks' cell timeout is for hangs, not speed: a loaded machine took over 300 s for one quick-mode cell.
notebooks: setup  ## execute every chapter in reduced settings (VIBTOOLS_QUICK=1), outputs not written back
	rm -rf $(TEST_CACHE)
	VIBTOOLS_QUICK=1 VIBTOOLS_CACHE=$(TEST_CACHE) $(PY) -m pytest -q --durations=0 --nbmake --nbmake-timeout=1800 book

book-render:  ## the book from the stored outputs in a venv without torch (what the Pages workflow runs)
	test -x .venv-book/bin/python || python3 -m venv .venv-book
	.venv-book/bin/python -m pip install -q -r requirements-book.txt
	bash scripts/fetch_site_assets.sh
	.venv-book/bin/jupyter-book build . -W --keep-going

build-check: book  ## the book must build with warnings as errors

site-test: book
	$(PY) -m pytest -q -rs tests/test_site.py

execute: setup  ## re-run every chapter at full settings and write the outputs back into the notebooks
	$(PY) -m pytest -q --nbmake --overwrite --nbmake-timeout=14400 book
	$(PY) scripts/clean_notebooks.py  # drop the run's volatile metadata (timestamps, kernel version)

bench: setup
	$(PY) benchmarks/bench_train.py

clean:
	rm -rf _build
