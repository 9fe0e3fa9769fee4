# cellplatform: two commands do everything on a fresh machine.
#   make render   set up the venv on first use, then render the reference cell into build/<cell>/
#   make test     set up the venv on first use, then run every check (offline, loopback only)
#   make schemas  download the pinned upstream schemas into .cache/schemas (needs HTTPS to GitHub)
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV))/bin
INVENTORY ?= inventories/production/hosts.yml
NETNS := scripts/netns-run
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)
export PATH := $(BIN):$(PATH)
export TF_CLI_CONFIG_FILE := $(CURDIR)/scripts/terraformrc
export CHECKPOINT_DISABLE := 1

.PHONY: help venv render validate test test-extended schemas units integration playbooks molecule sanity lint bench clean

help:
	@echo "make render     render the reference cell into build/ (sets up .venv first)"
	@echo "make test       run every check offline (sets up .venv first)"
	@echo "make test-extended  the pytest stage with the extended suites too (day 2, L3/L4/L5/L7 apply; longer)"
	@echo "make schemas    fetch the pinned upstream schemas into .cache/schemas (full schema checks)"
	@echo "make validate   run the inventory preflight alone"
	@echo "make bench      time render and simulated apply (writes docs/benchmarks.md figures)"

$(VENV)/.installed: requirements-dev.txt scripts/bootstrap.sh
	scripts/bootstrap.sh $(VENV)
	@touch $@

venv: $(VENV)/.installed

render: venv
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/site.yml -e cellplatform_mode=render

validate: venv
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/validate.yml

# Steps that exercise the collection run inside a loopback-only network namespace
# (scripts/netns-run); static checks (sanity, lint) run outside it.
test: venv
	scripts/run-tests.sh

# The extended suites too (pytest marker `extended`): the day-2 scenarios (upgrade, remove/replace
# nodes, etcd restore, renewal) on a cell built on the talosctl double, and the L3, L4, L5 and L7
# apply suites; about 25 minutes of CPU more.
test-extended: venv
	CELLPLATFORM_EXTENDED=1 scripts/run-tests.sh pytest

# The schema store of the tests (tests/support/schemas.lock.json: URLs + sha256). Not inside
# scripts/netns-run: this is the one target that downloads. Offline, set CELLPLATFORM_SCHEMAS.
schemas: venv
	$(PY) scripts/fetch-schemas.py

units: venv
	scripts/run-tests.sh pytest

molecule: venv
	scripts/run-tests.sh molecule

sanity: venv
	scripts/run-tests.sh sanity

lint: venv
	scripts/run-tests.sh lint

bench: venv
	$(NETNS) $(PY) scripts/benchmark.py

clean:
	rm -rf build .pytest_cache
