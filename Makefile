# The two commands (see README): `make report` runs the main job, `make test` runs the tests.
# Both create .venv from requirements.txt when it is missing or out of date.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
REQS := requirements.txt services/api/requirements.txt services/mlflow/requirements.txt
# Terraform's AWS provider from a filesystem mirror when one is on disk (no registry needed);
# set TF_PLUGIN_DIR yourself to choose another.
TF_PLUGIN_DIR ?= $(patsubst %/registry.terraform.io,%,$(firstword $(shell find /opt /usr/local/share /usr/share \
	$(HOME)/.terraform.d -maxdepth 4 -type d -name registry.terraform.io 2>/dev/null)))
export TF_PLUGIN_DIR

.PHONY: test report up down lint bench clean

$(VENV)/.installed: $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

## test: every suite that runs on this machine (docker-only tests skip with a reason)
test: $(VENV)/.installed
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

## report: the main job: every suite against a fresh stack, reports under reports/
report: $(VENV)/.installed
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS) || status=$$?; \
	echo "reports: $$(pwd)/reports/report.html  $$(pwd)/reports/junit.xml  $$(pwd)/reports/timings.json"; \
	exit $${status:-0}

up: $(VENV)/.installed
	$(PY) -m harness up

down: $(VENV)/.installed
	$(PY) -m harness down

lint: $(VENV)/.installed
	$(PY) -m ruff check .

clean:
	rm -rf reports .pytest_cache
