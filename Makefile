# `make demo` and `make test` work on a fresh Debian machine (as root for the network-namespace lab).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export PATH := $(PATH):/usr/sbin:/sbin

.PHONY: setup deps demo test lint unit bench clean

# pip -qq: errors only (a machine's pip.conf may name index directories it lacks: a warning per package).
# The venv's own pip (23.2 with Python 3.11) installs editable projects; it is not upgraded.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq -e '.[test]'
	touch $@

deps:
	bash scripts/install-deps.sh

setup: deps $(VENV)/.installed

demo: setup  ## the main job: a safe lab demo on a private virtual LAN
	$(PY) -m bootstrapd lab demo

lint: setup
	$(VENV)/bin/ruff check bootstrapd tests bench
	$(VENV)/bin/mypy bootstrapd

test: lint  ## every test: loader tables, cores, properties, real clients against the real daemon in netns
	$(PY) -m pytest -q -p no:cacheprovider

unit: setup
	$(PY) -m pytest -q tests/unit tests/property

bench: setup
	@echo "see bench/README.md: bench/dhcp/run.py, bench/dns/run.py, bench/bootstorm/run.py, bench/reload/run.py"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
