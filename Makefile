# Two commands set everything up on a fresh machine:
#   make demo   create .venv, install, export the built-in MiniLM-L6 and rank sentences with it
#   make test   create .venv, install, run lint, type check and the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: demo test test-slow coverage lint typecheck docs lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	# torch first and exactly pinned: a looser requirement would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[exporters,dev,tflite,serve]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/onnxport demo demo-output/minilm

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# loadgroup: tests marked xdist_group("ray") share one worker and one Ray instance.
test: lint typecheck
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m slow

# The whole coverage matrix (every model type x every supported task; long: about 1.5 h on
# 2 cores). The JSON ships in the package for `onnxport architectures`; regenerate the README
# section afterwards (make docs).
coverage: $(STAMP)
	mkdir -p docs src/onnxport/data
	$(BIN)/onnxport coverage --jobs $(PYTEST_WORKERS) --timeout 240 \
		--json src/onnxport/data/coverage.json --markdown docs/coverage.md
	$(BIN)/python scripts/gen_docs.py

docs: $(STAMP)
	$(BIN)/python scripts/gen_docs.py

lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu/torch==2.13.0/' \
		| grep -v '^onnxport' > constraints.body
	{ head -2 constraints.txt; cat constraints.body; } > constraints.new && rm constraints.body
	mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
