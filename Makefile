# fleetcare: two commands on a fresh machine with Python 3.11 and make.
#   make demo   set up .venv and run the whole pipeline on this machine
#   make test   set up .venv, then lint, type-check, check layers, build the docs and run the tests
#   make docs   build the docs site (mkdocs, --strict) into .site/
#   make audit  check the pinned dependencies for known vulnerabilities (pip-audit)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect
# Prefect's ephemeral API server gets 20 s to start by default; on a loaded 2-core host (CI, a
# gateway-class box) it can take longer, and the demo then fails before it has done anything.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: setup demo test lint docs audit broker-tools clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[backend,dev,replay]'
	rm -f $(VENV)/.installed-*
	touch $@

# mosquitto when it is installed or installable (root with apt-get); else the demo embeds amqtt.
broker-tools:
	@command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (apt-get update -qq && apt-get install -y -qq mosquitto) >/dev/null 2>&1 && \
	    echo "installed mosquitto"; } || echo "mosquitto not available: using the embedded amqtt broker"

demo: setup broker-tools
	$(BIN)/fleetcare demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# --strict: a broken link, a missing page or a docstring mkdocstrings cannot parse fails.
# Nothing is fetched (see mkdocs.yml); NO_MKDOCS_2_WARNING silences a notice about mkdocs 2.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir .site

# Two workers: most tests wait on brokers, subprocesses and servers rather than a core, so
# two halve the wall time on the two-core CI machine. Each worker has its own session broker
# and Prefect server; --dist loadfile keeps a module's tests (and fixtures) on one worker.
PYTEST_WORKERS ?= 2

test: lint docs
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --durations 15

# pip-audit lives in its own venv so its dependencies stay out of the application's lock;
# it audits requirements.lock (exactly what ships), not whatever happens to be installed.
# AUDIT_FLAGS=--allow-unchecked passes when the vulnerability service is unreachable
# (still fails on any known vulnerability); .ci/audit.py explains why pip-audit alone
# would report such a run as clean.
AUDIT_VENV := .venv-audit
AUDIT_STAMP := $(AUDIT_VENV)/.installed-$(shell cat requirements-audit.lock | cksum | cut -d' ' -f1)
AUDIT_FLAGS ?=

$(AUDIT_STAMP): requirements-audit.lock
	$(PYTHON) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/python -m pip install --quiet --upgrade "pip==26.3"
	$(AUDIT_VENV)/bin/python -m pip install --quiet -r requirements-audit.lock
	rm -f $(AUDIT_VENV)/.installed-*
	touch $@

audit: $(AUDIT_STAMP)
	$(AUDIT_VENV)/bin/python .ci/audit.py requirements.lock \
	  --pip-audit $(AUDIT_VENV)/bin/pip-audit $(AUDIT_FLAGS)

clean:
	rm -rf $(VENV) $(AUDIT_VENV) demo-output .site .prefect .pytest_cache .mypy_cache .ruff_cache
