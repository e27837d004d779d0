# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv and installs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the versions the suite last passed with (see its header); pyproject.toml keeps the ranges
CONSTRAINTS := .ci/constraints.txt
BROWSER_STAMP := $(VENV)/.installed-browser
CHROMIUM := /usr/bin/chromium
DOVECOT := /usr/sbin/dovecot

# `make lab` passes these on to JupyterLab, e.g. make lab LAB_ARGS='--port 8890 --no-browser'
LAB_ARGS ?=

.PHONY: demo lab test test-browser screenshots lint format bench browser-deps imap-deps constraints clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m bcartnb.demo
	@echo "ウィザード（JupyterLab）をデモのお店で開くには: make lab"

# The wizard in JupyterLab on the demo shop, demo-out/ (made by the demo when missing):
# installs JupyterLab (the browser extra), starts the demo's SMTP sink in the background on
# 127.0.0.1:8025, where the shop's [smtp] points, and opens a copy of the wizard notebook in
# the shop folder with `bcartnb wizard` (never the tracked notebook; --allow-root is added
# when run as root). Ctrl-C stops JupyterLab, and the sink with it.
lab: $(BROWSER_STAMP)
	test -f demo-out/bcartnb.toml || $(BIN)/python -m bcartnb.demo
	cd demo-out && { ../$(BIN)/bcartnb sink --maildir Maildir & sink=$$!; \
	  trap 'kill $$sink 2>/dev/null' EXIT INT TERM; \
	  ../$(BIN)/bcartnb wizard --members demo_members.csv --orders demo_orders.csv -- $(LAB_ARGS); }

# The browser tests (tests/test_browser.py) drive the wizard in JupyterLab with Debian's
# Chromium through Playwright; no browser is downloaded. As root, the apt packages are
# installed when missing; otherwise this says what to install and stops: `make test` runs
# every test, the browser ones included, and never skips them.
browser-deps: $(BROWSER_STAMP)
	@if ! test -x $(CHROMIUM) || ! fc-list :lang=ja 2>/dev/null | grep -q .; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium fonts-ipafont-gothic; \
	  else \
	    echo "make test needs Debian's chromium and a Japanese font:" \
	      "sudo apt-get install chromium fonts-ipafont-gothic" >&2; \
	    exit 1; \
	  fi; \
	fi

$(BROWSER_STAMP): pyproject.toml $(CONSTRAINTS) $(STAMP)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[test,browser]'
	touch $(BROWSER_STAMP)

# The bounce-scan tests (tests/test_hygiene_imap.py) read a real IMAP folder from Debian's
# Dovecot, which each test starts on 127.0.0.1 with its own configuration (the system's
# Dovecot, if any, is left alone). As root it is installed when missing, like Chromium.
imap-deps:
	@if ! test -x $(DOVECOT); then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      dovecot-imapd; \
	  else \
	    echo "make test needs Debian's Dovecot: sudo apt-get install dovecot-imapd" >&2; \
	    exit 1; \
	  fi; \
	fi

# BCARTNB_REQUIRE_ALL=1: a test whose tool is missing fails instead of skipping (tests/extras.py).
test: $(STAMP) browser-deps imap-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	BCARTNB_REQUIRE_ALL=1 $(BIN)/python -m pytest

test-browser: browser-deps
	BCARTNB_REQUIRE_ALL=1 $(BIN)/python -m pytest -m browser

# Re-takes the README's pictures of the wizard (docs/screenshots/*.png).
screenshots: browser-deps
	BCARTNB_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -m browser

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Every bench runs; one that misses its target exits 1, and make bench then fails at the end.
bench: $(STAMP) browser-deps
	status=0; for f in bench/bench_*.py; do $(BIN)/python $$f || status=1; done; exit $$status

# After upgrading on purpose (pip install -U ... in .venv) and a green make test: record the set.
constraints: $(BROWSER_STAMP)
	{ sed -n '/^#/p' $(CONSTRAINTS); $(BIN)/python -m pip freeze --exclude-editable; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache reports demo-out
