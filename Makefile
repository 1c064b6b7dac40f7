# Two commands on a fresh machine: `make demo` (the main job on the embedded sandbox) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@# Azurite (the Azure Blob emulator of the sandbox and the tests), from npm, beside the venv.
	@if command -v npm >/dev/null; then \
	  npm install --prefix $(VENV)/node --no-audit --no-fund --silent azurite@3.35; \
	else echo "npm not found: the sandbox will run without Azure (install Node.js 20+ and re-run make install)"; fi
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check provision tests bench

# The quick benches; the data benches (loopback and a 30 ms / 100 Mbit/s WAN through bench/wan.py) with BENCH=full.
bench: $(STAMP)
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/api_calls.py
	$(BIN)/python bench/wan.py --self-check
	$(BIN)/python bench/verify_status.py
	@if [ "$(BENCH)" = full ]; then \
	  $(BIN)/python bench/links_memory.py && $(BIN)/python bench/manifest.py && \
	  $(BIN)/python bench/migrate.py --memory-files 50000; \
	else \
	  $(BIN)/python bench/links_memory.py --max 10000 && $(BIN)/python bench/manifest.py --images 100 --rounds 1 && \
	  $(BIN)/python bench/migrate.py --quick --rounds 1; \
	fi

clean:
	rm -rf demo-out .pytest_cache .ruff_cache
