# The README's two commands: `make book` (main job) and `make test` (CI). Each sets up what it needs.
PYTHON_FOR_VENV ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fgssl-installed
# One intra-op thread: on this 2-core machine a training run's DataLoader worker builds the views on the other core,
# and the CPU study runs one single-threaded process per core.
export OMP_NUM_THREADS ?= 1

.PHONY: venv chromium book test html dist clean

# Virtual environment with torch from local disk, then the package (editable) with its book and dev extras.
# Re-installs only when pyproject.toml changes.
venv: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON_FOR_VENV) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[book,dev]'
	touch $@

# Headless Chromium and ChromeDriver from Debian for the browser test (tests/test_browser.py).
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; }

# Build _build/html from the executed notebooks in $(EXECUTED), offline, warnings as errors.
EXECUTED ?= _build/executed
html: venv
	$(PY) -m fgssl_lib.reproduce --out $(EXECUTED) --stage _build/book_src
	$(VENV)/bin/jupyter-book build _build/book_src --path-output . -W --keep-going

# Main job: every run the notebooks ask for at the cpu preset, trained first (one single-threaded run per core; a
# killed job resumes), then every notebook, then the book, then the browser check of the built pages.
book: venv chromium
	$(PY) -m fgssl_lib.reproduce --preset cpu --out _build/executed
	$(MAKE) html EXECUTED=_build/executed
	$(PY) -m pytest -q -m browser tests/test_browser.py

# Tests: unit tests and every notebook at the smoke preset (executed copies kept in _build/smoke), then the book
# built from those copies and checked in the browser. pytest's exit code (5 when nothing ran) is never masked.
# Two pytest processes, one per core: the smoke notebooks stay together in one (they share their runs), the
# paper-preset notebook test runs beside them in the other.
test: venv chromium
	FGSSL_TEST_EXECUTED=_build/smoke $(PY) -m pytest -q -m "not browser" -n 2 --dist loadgroup
	$(MAKE) html EXECUTED=_build/smoke
	$(PY) -m pytest -q -m browser tests/test_browser.py

# Release files (the release workflow runs this on a tag): TAG must name fgssl_lib.__version__ (v<version>); the
# sdist and the wheel go to dist/, built offline with the venv's setuptools, then the wheel test runs on that wheel.
dist: venv
	$(PY) -m fgssl_lib.release --tag "$(TAG)"
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist .
	FGSSL_WHEEL="$$(ls dist/*.whl)" $(PY) -m pytest -q tests/test_wheel.py

clean:
	rm -rf _build dist
