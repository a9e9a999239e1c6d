# ecr-mirror: `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-fast registry bench clean

$(STAMP): pyproject.toml requirements-dev.txt layers/deps/requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "ecr-mirror needs Python 3.11+, got " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

# The CNCF distribution registry is the source registry of the integration
# tests and the demo (Debian package docker-registry).
registry:
	@command -v docker-registry >/dev/null 2>&1 || { \
	  echo "installing the Debian package docker-registry"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq docker-registry; }

test: $(STAMP) registry
	$(PY) -m pytest

demo: $(STAMP) registry
	$(PY) tools/demo.py

bench: $(STAMP) registry
	$(PY) bench/copy_big_layer.py

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache
