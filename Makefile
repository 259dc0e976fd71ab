VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench bench-quick bench-gpu lint clean

# Re-runs the install only when the project's dependency files change.
install: $(STAMP)
$(STAMP): pyproject.toml deploy/install.sh
	bash deploy/install.sh $(VENV) dev
	touch $(STAMP)

# The main job on the embedded default: SQLite file, in-process runner, no services.
demo: install
	$(BIN)/spectra demo --out demo-output

# Lint, type checks, migrations and the whole test suite (needs PostgreSQL and Redis).
test: install
	bash deploy/check.sh

# Every benchmark; each writes its JSON and a dated table to bench/results/.
bench: install
	$(BIN)/python bench/run_all.py

bench-quick: install
	$(BIN)/python bench/run_all.py --quick

# The GPU rows in one call, on a machine with a CUDA device (refuses elsewhere).
bench-gpu:
	bash bench/gpu.sh

clean:
	rm -rf $(VENV) demo-output spectra.db .pytest_cache .mypy_cache .ruff_cache
