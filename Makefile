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

.PHONY: demo test test-fast lint registry skopeo bench bench-layer bench-referrers bench-plan bench-scale bench-import python313 python-venv apt-check \
        setup-check sam-validate sam-build deploy sandbox sandbox-stop clean \
        build-SchedulerFunction build-WorkerFunction build-DependenciesLayer

# ------------------------------------------------------------ prerequisites, checked first
# Each check runs before anything is installed and names what is missing and the command
# that installs it: a missing prerequisite costs seconds, not minutes of pip.
# `setup-check` is what every venv needs; targets that run `sam build` add python313.
SETUP_CHECKS := python-venv \
  $(if $(filter test sam-build bench-import deploy,$(MAKECMDGOALS)),python313) \
  $(if $(filter test demo sandbox bench bench-layer bench-referrers bench-plan bench-scale,$(MAKECMDGOALS)),apt-check)

python-venv:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "ecr-mirror needs Python 3.11 or newer as $(PYTHON); found: $$($(PYTHON) --version 2>&1)." >&2; \
	  echo "On Debian 12: sudo apt-get install python3 python3-venv (3.11), or run make with PYTHON=/path/to/python3.11+" >&2; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv; ensurepip.version()' >/dev/null 2>&1 || { \
	  echo "$(PYTHON) -m venv cannot work here: ensurepip is missing (Debian ships it in the package python3-venv)." >&2; \
	  echo "Install it: sudo apt-get install python3-venv   (as root: apt-get install python3-venv)" >&2; exit 1; }

# docker-registry (and skopeo for bench) come from apt-get, which needs root or sudo when missing.
apt-check:
	@command -v docker-registry >/dev/null 2>&1 || [ "$$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1 || { \
	  echo "Missing: the Debian package docker-registry, and installing it needs root or sudo." >&2; \
	  echo "As root: apt-get install docker-registry   (then run make again as yourself)" >&2; exit 1; }
	@command -v docker-registry >/dev/null 2>&1 || command -v apt-get >/dev/null 2>&1 || { \
	  echo "Missing: docker-registry (the CNCF distribution registry, 2.8), and there is no apt-get here to" >&2; \
	  echo "install it: install it from your distribution, or put a docker-registry binary on PATH." >&2; exit 1; }
	@[ -z "$(filter bench,$(MAKECMDGOALS))" ] || command -v skopeo >/dev/null 2>&1 || [ "$$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1 || { \
	  echo "Missing: the Debian package skopeo (make bench compares with it), and installing it needs root or sudo." >&2; \
	  echo "As root: apt-get install skopeo   (then run make again as yourself)" >&2; exit 1; }

setup-check: $(SETUP_CHECKS)

$(STAMP): pyproject.toml testing/pyproject.toml requirements-dev.txt layers/deps/requirements.txt | setup-check
	@echo "installing the pinned test packages into $(VENV) (a minute or two)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install --progress-bar off -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e . -e testing
	@touch $@

$(SAM_STAMP): | setup-check
	@echo "installing the AWS SAM CLI $(SAM_VERSION) into $(SAM_VENV) (about 340 MB, a few minutes)"
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --progress-bar off aws-sam-cli==$(SAM_VERSION)
	@touch $@

# Debian 12 has no python3.13 package: pyenv (or any build of 3.13) provides it.
python313:
	@"$(PY313_BIN)/python3.13" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1 || { \
	  echo "Missing: Python 3.13. \`sam build\` (make test, make sam-build, make deploy) builds with the" >&2; \
	  echo "Lambda runtime's Python, 3.13, and found none (PY313_BIN='$(PY313_BIN)', pyenv root $(PYENV_ROOT))." >&2; \
	  echo "Debian 12 has no python3.13 package. Install it with pyenv:" >&2; \
	  echo "  sudo apt-get install build-essential libssl-dev zlib1g-dev libbz2-dev libreadline-dev libsqlite3-dev libffi-dev liblzma-dev" >&2; \
	  echo "  (pyenv itself: https://github.com/pyenv/pyenv#installation)" >&2; \
	  echo "  pyenv install 3.13" >&2; \
	  echo "or point make at one you have: make test PY313_BIN=/dir/containing/python3.13" >&2; exit 1; }

# The CNCF distribution registry is the source registry of the integration
# tests and the demo (Debian package docker-registry).
registry:
	@command -v docker-registry >/dev/null 2>&1 || { \
	  echo "installing the Debian package docker-registry"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq docker-registry; }

# Static checks, first in `make test` and `make test-fast`: a lint failure fails fast.
LINT_PATHS := src testing tests bench tools
lint: $(STAMP)
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m mypy

# The whole suite; tests/template runs `sam validate --lint` and `sam build` itself.
test: python313 $(STAMP) lint $(SAM_STAMP) registry
	$(PY) -m pytest

# What needs no server, no registry and no sam build: the unit and protocol tests and
# the template's checks (about 40 s on 2 cores).
test-fast: $(STAMP) lint
	$(PY) -m pytest -q tests/unit tests/protocol tests/template --ignore=tests/template/test_sam.py

demo: $(STAMP) registry
	$(PY) tools/demo.py

# skopeo (Debian package) is what bench/sync_bench.py compares ecr-mirror with.
skopeo:
	@command -v skopeo >/dev/null 2>&1 || { \
	  echo "installing the Debian package skopeo"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq skopeo; }

# The benchmarks' own packages (matplotlib for the chart), not the tests'.
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP) bench/requirements.txt
	$(PY) -m pip install -q -r bench/requirements.txt
	@touch $@

# ecr-mirror vs skopeo sync vs the floors on a ~2 GiB corpus (BENCH_ARGS: e.g. --publish).
bench: $(BENCH_STAMP) registry skopeo
	$(PY) bench/sync_bench.py $(BENCH_ARGS)
	$(PY) bench/referrers_warm.py

# The warm run with referrers on (every tag signed and with SBOMs): 0 counted pulls.
bench-referrers: $(STAMP) registry
	$(PY) bench/referrers_warm.py

# Memory and CPU of copying one big layer (1 and 2 GiB).
bench-layer: $(STAMP) registry
	$(PY) bench/copy_big_layer.py

# Wall and CPU of a warm plan: 1,000 tags in 1 repository and in 1,000, 30 ms per registry request.
bench-plan: $(STAMP) registry
	$(PY) bench/plan_scale.py

# A warm plan at scale through the scheduler handler: 10,000 tags in 500 repositories and
# 5,000 in one, 30 ms per registry request and 20 ms per ECR call (a few minutes).
bench-scale: $(STAMP) registry
	$(PY) bench/scale.py $(BENCH_ARGS)

bench-import: sam-build
	$(PY) bench/cold_import.py --without-bytecode

sam-validate: $(SAM_STAMP)
	$(SAM) validate --lint

# samconfig.toml has sam build reuse a layer built from the same layers/deps/, but its
# recipe is build-DependenciesLayer below: the layer is always built afresh here (a few
# seconds), which also refreshes the cache that a plain `sam build` reuses.
sam-build: python313 $(SAM_STAMP)
	rm -rf .aws-sam/cache
	$(SAM) build --build-dir .aws-sam/build

# Deploy with the project's own sam (in .venv-sam, not on PATH): sam build, then
# sam deploy --guided (it asks for the stack name, region and parameters, and can save
# them to samconfig.toml). DEPLOY_ARGS: more options, e.g. DEPLOY_ARGS=--no-confirm-changeset.
deploy: sam-build
	$(SAM) deploy --guided $(DEPLOY_ARGS)

# A local Docker Hub (the distribution registry, seeded with nginx, redis, alpine, ...) and
# a local AWS (ECR, SSM, Secrets Manager) in the background, for trying the README's
# commands: it prints the `export` lines to use. `make sandbox-stop` stops both.
sandbox: $(STAMP) registry
	$(PY) tools/sandbox.py start

sandbox-stop:
	@$(PYTHON) tools/sandbox.py stop

# ---------------------------------------------------------------- sam build targets
# `sam build` (Metadata: BuildMethod makefile) runs these in its scratch copy of the
# resource's CodeUri/ContentUri, with ARTIFACTS_DIR set to the artifact to fill.
PY313 = $(PY313_BIN)/python3.13

# Bytecode for the runtime's Python, in the normal __pycache__ layout. /var/task and
# /opt are read-only on Lambda, so whatever ships without .pyc is compiled again at
# every cold start. unchecked-hash: Python uses the .pyc without looking at the .py,
# so the timestamps the deployment zip gives the files cannot invalidate them. -f:
# recompile whatever is there; -s/-p: file names as on Lambda (/var/task, /opt), the
# same in every build.
COMPILE = $(PY313) -m compileall -q -f -j 0 --invalidation-mode unchecked-hash -s "$(ARTIFACTS_DIR)"

# The functions (template.yaml: CodeUri src/, ContextPath .): the ecr_mirror package
# and its bytecode, nothing else.
build-SchedulerFunction build-WorkerFunction: python313
	cp -R ecr_mirror "$(ARTIFACTS_DIR)/"
	find "$(ARTIFACTS_DIR)" -name __pycache__ -type d -prune -exec rm -rf {} +
	$(COMPILE) -p /var/task "$(ARTIFACTS_DIR)/ecr_mirror"

# The layer (ContentUri layers/deps/): the wheels pinned in requirements.txt, for
# CPython 3.13 on manylinux2014 of the template's Architecture, installed as they are
# (--no-deps: requirements.txt pins every package the layer needs). boto3, botocore,
# s3transfer, jmespath, python-dateutil and six are left to the python3.13 runtime,
# which has them: resolving the X-Ray SDK's dependencies would put a second botocore
# in the layer, shadowing the runtime's.
# SAM tells a makefile build nothing about the architecture: template.yaml points the
# layer's ContextPath at layers/deps/${Architecture}/, whose Makefile sets LAYER_ARCH
# and includes this one. So `sam build --parameter-overrides Architecture=x86_64`
# builds an x86_64 layer, and SAM's build cache keeps the two apart.
LAYER_PLATFORM_arm64  := manylinux2014_aarch64
LAYER_PLATFORM_x86_64 := manylinux2014_x86_64

build-DependenciesLayer: python313
	@test -n "$(LAYER_PLATFORM_$(LAYER_ARCH))" || { \
	  echo "build-DependenciesLayer: LAYER_ARCH is '$(LAYER_ARCH)', not arm64 or x86_64" >&2; \
	  echo "(sam build sets it through layers/deps/<Architecture>/Makefile)" >&2; exit 1; }
	rm -rf "$(ARTIFACTS_DIR)/python"
	$(PY313) -m pip install -q --no-compile --no-deps --only-binary=:all: \
	  --platform $(LAYER_PLATFORM_$(LAYER_ARCH)) --implementation cp --python-version 3.13 \
	  --target "$(ARTIFACTS_DIR)/python" -r requirements.txt
	rm -rf "$(ARTIFACTS_DIR)/python/bin"
	$(COMPILE) -p /opt "$(ARTIFACTS_DIR)/python"

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache
