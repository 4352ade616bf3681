# mindhier — `make demo` runs the main job, `make test` runs the test suite; both install into .venv first.
# Prerequisite: Python 3.10+ with venv (3.11 preferred: the pinned torch wheels target it), and make.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed
PYTEST_FLAGS ?=
# e.g. make demo DEMO_FLAGS="--record results/demo.json" (how the README's demo figures are measured)
DEMO_FLAGS ?=

.PHONY: install browser demo demo-tiny test test-slow lint format bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "mindhier needs Python 3.10+ (found " + sys.version.split()[0] + ")")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,clip]"
	@touch $(STAMP)

install: $(STAMP)

# the live page's browser test drives the system's Chromium (Playwright, no downloaded browser): Debian's package,
# installed as root with apt-get; elsewhere install Chromium yourself (any `chromium` or `chromium-browser` on PATH)
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		echo "Chromium: $$(command -v chromium || command -v chromium-browser)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get install -y -q chromium >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null); \
	else \
		echo "make browser: no Chromium on PATH and no root apt-get here; install chromium, or the browser test skips"; \
	fi

demo: install
	$(BIN)/mindhier demo $(DEMO_FLAGS)

demo-tiny: install
	$(BIN)/mindhier demo --preset tiny --out runs/demo-tiny

test: install
	$(BIN)/python -m pytest -q -m "not slow and not gpu" $(PYTEST_FLAGS)

test-slow: install browser
	$(BIN)/python -m pytest -q -m "slow" $(PYTEST_FLAGS)

lint: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format src tests scripts
	$(BIN)/ruff check --fix src tests scripts

bench: install
	@mkdir -p bench-results
	$(BIN)/mindhier bench simulate --out bench-results/simulate.json
	$(BIN)/mindhier bench sampler --out bench-results/sampler.json
	$(BIN)/mindhier bench decoders --out bench-results/decoders.json

clean:
	rm -rf $(VENV) runs bench-results
