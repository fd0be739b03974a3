# fleetcare: two commands on a fresh machine with Python 3.11 and make.
#   make demo   set up .venv and run the whole pipeline on this machine
#   make test   set up .venv, then lint, type-check, check layers and run the tests
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect

.PHONY: setup demo test lint broker-tools clean

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

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) demo-output .prefect .pytest_cache .mypy_cache .ruff_cache
