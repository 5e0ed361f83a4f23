# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The shared test copy of emoDB when it is there; unset elsewhere, so `make demo` downloads it.
EMODB_DIR ?= $(wildcard ../shared/data/emodb)

.PHONY: setup browser lint test demo format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test,opensmile]'
	@touch $(STAMP)

# Headless Chromium for the web page tests (tests/serve/test_page.py): Debian's package, as root.
browser:
	@command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks train_ser.py
	$(BIN)/ruff format --check src tests benchmarks train_ser.py

test: lint browser
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/emovision demo $(if $(EMODB_DIR),--emodb-dir $(EMODB_DIR),)

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks train_ser.py
	$(BIN)/ruff check --fix src tests benchmarks train_ser.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
