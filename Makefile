# Two commands set everything up on a fresh machine:
#   make demo   create .venv, install, export the built-in MiniLM-L6 and rank sentences with it
#   make test   create .venv, install, run lint, type check and the test suite, then the
#               runtime suite in .venv-runtime (a plain `pip install .`: no torch)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_WORKERS ?= 2
# The runtime alone (`pip install .`, no extras: no torch), for runtime_tests/.
RUNTIME_VENV := .venv-runtime
RUNTIME_STAMP := $(RUNTIME_VENV)/.installed
FIXTURES := build/runtime-fixtures
# transformers.js for tests/test_transformers_js.py (pinned by tests/js/package-lock.json).
# --ignore-scripts: onnxruntime-node's install script only fetches GPU binaries (and fails
# offline); its CPU binary ships inside the package.
JS_STAMP := tests/js/node_modules/.installed

.PHONY: demo test test-runtime test-slow coverage lint typecheck docs lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	# torch first and exactly pinned: a looser requirement would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[exporters,dev,tflite,serve,genai]"
	touch $(STAMP)

# A second environment with the runtime only, as users deploy it: a plain `pip install .`.
$(RUNTIME_STAMP): pyproject.toml constraints.txt
	test -x $(RUNTIME_VENV)/bin/python || $(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(RUNTIME_VENV)/bin/python -m pip install --quiet -c constraints.txt . pytest
	touch $(RUNTIME_STAMP)

demo: $(STAMP)
	$(BIN)/onnxport demo demo-output/minilm

$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --ignore-scripts --no-audit --no-fund
	touch $(JS_STAMP)

tests/js/node_modules: $(JS_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests runtime_tests scripts benchmarks
	$(BIN)/ruff format --check src tests runtime_tests scripts benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# loadgroup: tests marked xdist_group("ray") share one worker and one Ray instance.
test: lint typecheck $(JS_STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow"
	$(MAKE) test-runtime

# The runtime without torch: folders and PyTorch references from the full environment, then
# runtime_tests/ in the runtime-only one (which must not be able to import torch).
test-runtime: $(STAMP) $(RUNTIME_STAMP)
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --no-deps --force-reinstall .
	! $(RUNTIME_VENV)/bin/python -c "import torch" 2>/dev/null
	rm -rf $(FIXTURES) && $(BIN)/python runtime_tests/make_fixtures.py $(FIXTURES)
	ONNXPORT_RUNTIME_FIXTURES=$(abspath $(FIXTURES)) ONNXPORT_TORCH_PYTHON=$(abspath $(BIN)/python) \
		$(RUNTIME_VENV)/bin/python -m pytest -p no:cacheprovider runtime_tests

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
	rm -rf $(VENV) $(RUNTIME_VENV) build demo-output .pytest_cache .mypy_cache .ruff_cache
