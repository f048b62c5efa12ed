# `make test` and `make demo` do all set-up on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Fonts and data Pixglot reads at run time, plus what the tests and benchmarks drive.
APT_PACKAGES := fonts-noto-core fonts-noto-cjk fonts-noto-color-emoji fonts-unifont unifont \
	unicode-cldr-core postgresql chromium chromium-driver \
	python3-gi gir1.2-pango-1.0 python3-gi-cairo

.PHONY: setup system-packages venv test lint demo bench clean

setup: system-packages venv

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev,ray]'
	touch $@

venv: $(VENV)/.installed

test: setup
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

lint: venv
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

# Builds Emoji-36 if missing, indexes it with the shipped model, then serves the page on localhost.
demo: setup
	$(VENV)/bin/pixglot demo

bench: setup
	$(PY) bench/bench_render.py
	$(PY) bench/bench_encode.py
	$(PY) bench/bench_index.py
	$(PY) bench/bench_ui.py

clean:
	rm -rf $(VENV) out .pytest_cache
