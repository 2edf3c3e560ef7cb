# Namaskah CI: `make up` starts the master, `make test` runs every test. See README.md.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export TZ := UTC
export PYTHONPATH := $(CURDIR)/master

.PHONY: up down restart status test test-fast lint venv deps images

$(VENV)/.installed: pyproject.toml requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]' -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

deps:
	@scripts/install_deps.sh

up: deps venv
	@scripts/master_ctl.sh up

down:
	@scripts/master_ctl.sh down

restart: deps venv
	@scripts/master_ctl.sh down
	@scripts/master_ctl.sh up

status:
	@scripts/master_ctl.sh status

# Every worker and service image for docker mode (docs/docker.md): starts a Docker engine when
# none answers, makes the Debian base images with debootstrap, reuses whatever already exists.
images:
	@scripts/start_docker.sh
	@workers/build_images.sh

# Tests run on TEST_WORKERS pytest-xdist workers, each module's tests on one worker, the longest
# modules first (tests/conftest.py; docs/development.md, "Tests", says why 4 on 2 cores).
TEST_WORKERS ?= 4
XDIST = -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=20

# The whole suite: unit, config, step, service integration, end-to-end and browser tests.
test: venv
	@scripts/install_deps.sh --with-browser
	$(PY) -m pytest $(XDIST)

# The fast tier: no real master, no browser, no Docker.
test-fast: venv
	$(PY) -m pytest $(XDIST) -m "not e2e and not docker and not browser"

# Lint, format, import layers and types of the CI package, its tests, benchmarks and scripts (what
# tests/test_code_quality.py checks in the fast tier). mypy: pyproject.toml, not the reference service's mypy.ini.
lint: venv
	$(VENV)/bin/ruff check master tests bench scripts
	$(VENV)/bin/ruff format --check master tests bench scripts
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy --config-file pyproject.toml master/namaskah_ci
	$(VENV)/bin/mypy --config-file pyproject.toml tests bench scripts
