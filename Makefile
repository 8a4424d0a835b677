# The two commands (see README): `make report` runs the main job, `make test` runs the tests.
# Both create .venv from requirements.txt when it is missing or out of date.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
REQS := requirements.txt services/api/requirements.txt services/mlflow/requirements.txt
# Terraform's AWS provider: the harness finds a filesystem mirror on disk by itself
# (harness/deploy/terraform.py, find_mirror); set TF_PLUGIN_DIR to choose another.

.PHONY: test report load verify up down lint bench clean

$(VENV)/.installed: $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

# The load suite runs alone, after the others: it saturates both cores, which would stretch the
# time budgets of fault tests running beside it. Its own report files; exit 5 (nothing selected) is fine.
LOAD_SUITE := $(PY) -m pytest -m load --html=reports/load-suite.html --self-contained-html \
	--junitxml=reports/junit-load.xml

## test: every suite that runs on this machine (docker-only tests skip with a reason)
test: lint
	$(PY) -m pytest -n 2 --dist loadfile -m "not load" $(PYTEST_ARGS); s1=$$?; \
	$(LOAD_SUITE) $(PYTEST_ARGS); s2=$$?; [ $$s2 -eq 5 ] && s2=0; \
	exit $$(( s1 ? s1 : s2 ))

## report: the main job: every suite, then the smoke load profile on a fresh stack; reports under reports/
report: $(VENV)/.installed
	$(PY) -m pytest -n 2 --dist loadfile -m "not load" $(PYTEST_ARGS); s1=$$?; \
	$(LOAD_SUITE) $(PYTEST_ARGS); s2=$$?; [ $$s2 -eq 5 ] && s2=0; \
	$(PY) -m harness load --profile smoke; s3=$$?; \
	echo "reports: $$(pwd)/reports/report.html  $$(pwd)/reports/junit.xml  $$(pwd)/reports/load-suite.html"; \
	echo "         $$(pwd)/reports/timings.json  $$(pwd)/reports/load/index.html"; \
	exit $$(( s1 ? s1 : s2 ? s2 : s3 ))

## load: one load profile (PROFILE=smoke|steady|step|spike|soak, WORKERS=N, TARGET=url)
PROFILE ?= smoke
WORKERS ?= 0
load: $(VENV)/.installed
	$(PY) -m harness load --profile $(PROFILE) --workers $(WORKERS) $(if $(TARGET),--target-url $(TARGET))

## verify: the remote suite against a deployed stack (TARGET=url [MLFLOW=url] [WRITES=1]); starts no stack
verify: $(VENV)/.installed
	$(if $(TARGET),,$(error set TARGET=<the deployed api URL>, e.g. make verify TARGET=https://api.staging.example.com))
	$(PY) -m pytest -m remote --target-url $(TARGET) $(if $(MLFLOW),--mlflow-url $(MLFLOW)) $(if $(WRITES),--allow-writes) \
		--html=reports/verify.html --self-contained-html --junitxml=reports/junit-verify.xml $(PYTEST_ARGS)

## bench: the benchmarks the README's figures come from (several minutes; not tests)
bench: $(VENV)/.installed
	$(PY) bench/health_throughput.py
	$(PY) bench/startup.py
	$(PY) bench/simulator_speed.py
	$(PY) bench/store_pool.py
	$(PY) bench/mlflow_capacity.py

up: $(VENV)/.installed
	$(PY) -m harness up

down: $(VENV)/.installed
	$(PY) -m harness down

## lint: the static checks, fast, before the tests: Python (ruff), import contracts, Dockerfiles
## (hadolint), shell scripts (shellcheck), pipeline files (the GitHub workflow schema), Terraform format
SHELL_SCRIPTS := .ci/run services/base/build.sh services/postgres/entrypoint.sh
lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint services/*/Dockerfile
	$(VENV)/bin/shellcheck $(SHELL_SCRIPTS)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	@if command -v terraform >/dev/null; then env -u TF_CLI_CONFIG_FILE terraform fmt -check -recursive terraform && echo "terraform fmt: ok"; \
	else echo "lint: terraform is not installed: its format was not checked"; fi

clean:
	rm -rf reports .pytest_cache
