# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The shared test copy of emoDB when it is there; unset elsewhere, so `make demo` downloads it.
EMODB_DIR ?= $(wildcard ../shared/data/emodb)

.PHONY: setup browser lint test demo format clean lock

setup: $(STAMP)

# Exact versions from requirements.lock, then the project itself (its ranges are already met).
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

# Re-resolve the ranges in pyproject.toml in a fresh environment and write requirements.lock.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -e '.[test,serve,onnx,opensmile,vad,parquet]'
	{ sed -n '1,2p' requirements.lock; .lock-venv/bin/python -m pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

# Headless Chromium for the web page tests (tests/serve/test_page.py): Debian's package, as root.
browser:
	@command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks train_ser.py
	$(BIN)/ruff format --check src tests benchmarks train_ser.py

# The tests in two processes (one per core of the CI machine; each file's tests stay in one process,
# which keeps a module's fixtures built once).
test: lint browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

demo: $(STAMP)
	$(BIN)/emovision demo $(if $(EMODB_DIR),--emodb-dir $(EMODB_DIR),)

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks train_ser.py
	$(BIN)/ruff check --fix src tests benchmarks train_ser.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
