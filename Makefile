# Two commands on a fresh machine: `make demo` (the main job on the embedded sandbox) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing provision-cv with its dev extras (about a minute and a half)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[dev]'
	@# Azurite (the Azure Blob emulator of the sandbox and the tests), from npm, beside the venv.
	@if command -v npm >/dev/null; then \
	  echo "==> installing Azurite (azurite@3.35) into $(VENV)/node with npm"; \
	  npm install --prefix $(VENV)/node --no-audit --no-fund azurite@3.35; \
	else echo "npm not found: the sandbox will run without Azure (install Node.js 20+ and re-run make install)"; fi
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh
	@echo
	@echo "provision is installed in $(VENV). Run it next with either:"
	@echo "  . $(VENV)/bin/activate && provision --help"
	@echo "  $(BIN)/provision --help"

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
