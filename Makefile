# The two commands of the README: `make book` and `make test`. Each installs what it needs into
# .venv (once, and again whenever pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Source models and rendered data are cached once per checkout, shared by the book and the tests.
export TRANSFERLAB_CACHE ?= $(CURDIR)/.cache/transferlab
# No progress bars in executed pages and test logs.
export TRANSFERLAB_QUIET ?= 1

.PHONY: book test labs install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[book,dev,grading]"
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build -n -W --keep-going .
	@echo "open _build/html/index.html"

test: $(STAMP)
	$(BIN)/python -m pytest

labs: $(STAMP)
	$(BIN)/transferlab labs --out _build/labs

clean:
	rm -rf _build .cache .pytest_cache
