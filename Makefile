# ecr-mirror: `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

# AWS SAM CLI pins its own boto3 (1.43.x; the project pins 1.44.x): it gets its own venv.
SAM_VERSION := 1.170.0
SAM_VENV    ?= .venv-sam
SAM_STAMP   := $(SAM_VENV)/.installed-$(SAM_VERSION)

# `sam build` builds the layer with the Lambda runtime's Python, 3.13, found on PATH.
# Take PY313_BIN from the environment, else pyenv's newest 3.13, else python3.13 on PATH.
PYENV_ROOT ?= $(HOME)/.pyenv
PY313_BIN  ?= $(or $(lastword $(wildcard $(PYENV_ROOT)/versions/3.13*/bin)),$(patsubst %/,%,$(dir $(shell command -v python3.13 2>/dev/null))))
export PY313_BIN
SAM := PATH="$(PY313_BIN):$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam

.PHONY: demo test test-fast registry bench bench-import python313 sam-validate sam-build clean

$(STAMP): pyproject.toml requirements-dev.txt layers/deps/requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "ecr-mirror needs Python 3.11+, got " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

$(SAM_STAMP):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q --upgrade pip
	$(SAM_VENV)/bin/python -m pip install -q aws-sam-cli==$(SAM_VERSION)
	@touch $@

python313:
	@test -x "$(PY313_BIN)/python3.13" || { \
	  echo "sam build needs Python 3.13 (the Lambda runtime) and found none: install it" >&2; \
	  echo "(pyenv install 3.13) or run make with PY313_BIN=/dir/containing/python3.13" >&2; exit 1; }

# The CNCF distribution registry is the source registry of the integration
# tests and the demo (Debian package docker-registry).
registry:
	@command -v docker-registry >/dev/null 2>&1 || { \
	  echo "installing the Debian package docker-registry"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq docker-registry; }

# The whole suite; tests/template runs `sam validate --lint` and `sam build` itself.
test: $(STAMP) $(SAM_STAMP) python313 registry
	$(PY) -m pytest

demo: $(STAMP) registry
	$(PY) tools/demo.py

bench: $(STAMP) registry
	$(PY) bench/copy_big_layer.py

bench-import: sam-build
	$(PY) bench/cold_import.py --precompiled

sam-validate: $(SAM_STAMP)
	$(SAM) validate --lint

sam-build: $(SAM_STAMP) python313
	$(SAM) build --build-dir .aws-sam/build

# `sam build` runs these in its scratch copy of src/ (template.yaml: CodeUri src/,
# ContextPath .): the function code is the ecr_mirror package and nothing else.
build-SchedulerFunction build-WorkerFunction:
	cp -R ecr_mirror "$(ARTIFACTS_DIR)/"
	find "$(ARTIFACTS_DIR)" -name __pycache__ -type d -prune -exec rm -rf {} +

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache
