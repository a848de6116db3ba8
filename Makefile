# edge-gateway: `make run` (demo against the simulator) and `make test` (everything).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime
DEMO_EXTRAS := modbus,inference

.PHONY: run test lint typecheck unit bench broker docs install uninstall clean

# Two steps, so `make run` does not wait for the test tools: .runtime has what the demo
# uses (the core dependencies plus the modbus and inference extras config/simulator.yaml
# needs); .installed adds the test extra (pytest, ruff, mypy, hypothesis, ...) on top.
$(RUNTIME): pyproject.toml
	@# Debian/Ubuntu ship venv separately (python3-venv); as root, fetch it when missing.
	@test -x $(VENV)/bin/pip || { echo "creating $(VENV) (a Python virtual environment for this checkout)"; \
		$(PYTHON) -m venv $(VENV) 2>/dev/null; } || { \
		rm -rf $(VENV); \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing python3-venv (apt-get)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
			&& $(PYTHON) -m venv $(VENV); \
		else \
			echo "python3 -m venv failed: install the venv module (sudo apt-get install -y python3-venv)" >&2; \
			exit 1; \
		fi; }
	@echo "installing edge-gateway and its runtime dependencies into $(VENV) (about a minute the first time)"
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[$(DEMO_EXTRAS)]'
	@touch $(RUNTIME)
	@echo "ready: $(VENV)/bin/edge-gateway (e.g. $(VENV)/bin/edge-gateway --help)"

$(STAMP): $(RUNTIME)
	@echo "installing the test tools into $(VENV) (pytest, ruff, mypy, hypothesis, ...)"
	@$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

## A mosquitto broker for the tests (root: installed from Debian; otherwise it must exist).
broker:
	@if command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing mosquitto (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	else \
		echo "mosquitto is needed for the tests: sudo apt-get install -y mosquitto" >&2; exit 1; \
	fi
	@# Headless Chromium + chromedriver for the status page's browser test (tests/test_status_page.py).
	@if test -x /usr/bin/chromium && test -x /usr/bin/chromedriver; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and chromium-driver (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
		echo "chromium is needed for the tests: sudo apt-get install -y chromium chromium-driver" >&2; exit 1; \
	fi
	@# systemd-analyze checks the unit file (tests/test_systemd_unit.py); not PID 1 here.
	@if test -x /usr/bin/systemd-analyze; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing systemd-analyze (apt-get install systemd)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; \
	else \
		echo "systemd-analyze is needed for the tests: sudo apt-get install -y systemd" >&2; exit 1; \
	fi

## Install as a systemd service (run as root: sudo make install). See docs/deploy.md.
install:
	$(PYTHON) -m gateway install $(INSTALL_ARGS)

run: $(RUNTIME)
	@$(PY) tools/demo.py config/simulator.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP) broker
	$(VENV)/bin/pytest -q

test: $(STAMP) broker
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q

bench: $(STAMP) broker
	$(PY) -m pip install --quiet -e '.[test,bench]'
	@# The benchmarks count arrivals with mosquitto_sub (C), so the subscriber is never the limit.
	@command -v mosquitto_sub >/dev/null || { [ "$$(id -u)" = 0 ] && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto-clients >/dev/null; }
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache build *.egg-info

## Regenerate docs/config-reference.md from the config schema (a test checks it is current).
docs: $(STAMP)
	$(PY) tools/gen_config_reference.py

## Remove the service (keeps data and configuration): sudo make uninstall.
uninstall:
	$(PYTHON) -m gateway uninstall $(INSTALL_ARGS)
