# The two commands (see README): `make report` runs the main job, `make test` runs the tests.
# Both create .venv from requirements.txt (the lock) when it is missing or out of date.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
REQS := requirements.txt pyproject.toml
# What the lock is made from: the project's dependencies and its extras (the services, the dev tools)
LOCK_INPUTS := pyproject.toml services/api/requirements.txt services/mlflow/requirements.txt requirements-dev.in
# Terraform's AWS provider: the harness finds a filesystem mirror on disk by itself
# (harness/plan/terraform.py, find_mirror); set TF_PLUGIN_DIR to choose another.

.PHONY: test proof proof-extra shard fuzz report load verify up down lint lock schemas bench clean

# Every package from the lock, each checked against its hash; then the project itself (editable,
# no dependencies: the `harness` command). pip installs uv alone, by the lock's own pin and hashes;
# uv installs the rest (from a fresh clone: 11 s with its cache warm, 90 s through pip), compiled
# to bytecode as pip did: where PYTHONDONTWRITEBYTECODE is set, nothing else ever writes it, and
# every process (each xdist worker, each pytest a test starts) would compile its imports again.
$(VENV)/.installed: $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	awk '/^uv==/ { p = 1 } p { print } p && !/\\$$/ { exit }' requirements.txt > $(VENV)/uv-lock.txt
	$(PY) -m pip install --quiet --no-deps --require-hashes -r $(VENV)/uv-lock.txt
	$(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode --require-hashes -r requirements.txt
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	touch $@

## lock: requirements.txt again from pyproject.toml and the services' lists, and checkov's lock
## (pytest_harness/requirements-checkov.txt from its .in), after changing a pin
lock: $(VENV)/.installed
	$(VENV)/bin/uv pip compile pyproject.toml --all-extras --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --quiet --custom-compile-command "make lock" \
		--refresh-package ml-deploy-harness -o requirements.txt
	$(VENV)/bin/uv pip compile pytest_harness/requirements-checkov.in --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --quiet --custom-compile-command "make lock" \
		-o pytest_harness/requirements-checkov.txt

venv: $(VENV)/.installed

# The stages (harness/pipeline/stages.py, docs/pipeline.md): `make test` is the pull-request
# stage, `make proof` the full proof (the pull-request stage, then what only the full proof runs:
# tests marked `proof`). Each stage runs its tests in two phases: on pytest-xdist workers (the
# pull-request stage on three, the rest on two: docs/measured.md, "Workers per stage"), then
# the load suite and the nemesis (markers `load`, `alone`) by themselves: they saturate both cores,
# which stretched the time budgets of fault tests running beside them. Reports per phase:
# reports/<stage>.html, junit-<stage>.xml, durations-<stage>.json (-serial for the second phase).
RUN_STAGE := $(PY) -m harness stage
# The static checks run beside the pull-request stage's tests, not before them (their 20 s overlap
# the tests' first seconds, which wait on containers); a failure fails the stage, its output shown.
LINT_BESIDE := --beside "$(MAKE) --no-print-directory lint"

## test: the pull-request stage: static checks, rules, unit, integration, e2e, contract, Terraform,
## fault scenarios, one rolling rehearsal, a load smoke with its SLO gate (docker-only tests skip
## with a reason without an engine)
test: $(VENV)/.installed
	$(RUN_STAGE) pr $(LINT_BESIDE) -- $(PYTEST_ARGS)

## proof-extra: what the full proof adds to the pull-request stage (every rehearsal variant, the
## whole load suite, the nemesis)
proof-extra: $(VENV)/.installed
	$(RUN_STAGE) proof-extra -- $(PYTEST_ARGS)

## proof: the full proof before a deployment: the pull-request stage, then proof-extra
proof: $(VENV)/.installed
	$(RUN_STAGE) pr $(LINT_BESIDE) -- $(PYTEST_ARGS); s1=$$?; [ $$s1 -eq 130 ] && exit 130; \
	$(RUN_STAGE) proof-extra -- $(PYTEST_ARGS); s2=$$?; exit $$(( s1 ? s1 : s2 ))

## shard: one pipeline job's share of a stage (STAGE=pr|proof SHARDS=N SHARD=K), planned from
## the recorded durations (.ci/durations.json; `harness shards` prints the plan)
shard: $(VENV)/.installed
	$(RUN_STAGE) "$$STAGE" --shard "$$SHARD/$$SHARDS" -- $(PYTEST_ARGS)

## report: the main job: the full proof, then the smoke load profile on a fresh stack; reports under reports/
report: $(VENV)/.installed
	mkdir -p reports && touch reports/.run-started; \
	$(RUN_STAGE) pr $(LINT_BESIDE) -- $(PYTEST_ARGS); s1=$$?; [ $$s1 -eq 130 ] && exit 130; \
	$(RUN_STAGE) proof-extra -- $(PYTEST_ARGS); s2=$$?; [ $$s2 -eq 130 ] && exit 130; \
	$(PY) -m harness load --profile smoke; s3=$$?; \
	$(PY) -m harness archive-reports --reports-dir reports --since reports/.run-started >/dev/null; s4=$$?; \
	if [ $$s4 -ge 2 ]; then echo "report: the reports could not be filed (see above)" >&2; \
	else echo "reports: $$(pwd)/reports/index.html"; fi; \
	exit $$(( s1 ? s1 : s2 ? s2 : s3 ? s3 : s4 ))

## load: one load profile (PROFILE=smoke|steady|step|spike|soak, WORKERS=N, TARGET=url)
PROFILE ?= smoke
WORKERS ?= 0
load: $(VENV)/.installed
	$(PY) -m harness load --profile $(PROFILE) --workers $(WORKERS) $(if $(value TARGET),--target-url "$$TARGET")

## verify: the remote suite against a deployed stack (TARGET=url [MLFLOW=url] [WRITES=1]); starts no stack.
## A pipeline passes them in the environment, never on make's command line: make reads a
## command-line value as make code ($(shell ...) would run), an environment value as text.
verify: $(VENV)/.installed
	$(if $(value TARGET),,$(error set TARGET=<the deployed api URL>, e.g. make verify TARGET=https://api.staging.example.com))
	$(PY) -m pytest -m remote --target-url "$$TARGET" $(if $(value MLFLOW),--mlflow-url "$$MLFLOW") $(if $(value WRITES),--allow-writes) \
		--html=reports/verify.html --self-contained-html --junitxml=reports/junit-verify.xml $(PYTEST_ARGS)

## fuzz: the contract fuzzer alone against a fresh stack (FUZZ_SEED=N FUZZ_EXAMPLES=N; nightly: a
## random seed and 500 examples)
FUZZ_SEED ?= 1
FUZZ_EXAMPLES ?= 25
export FUZZ_SEED FUZZ_EXAMPLES
fuzz: $(VENV)/.installed
	HARNESS_FUZZ_SEED="$$FUZZ_SEED" HARNESS_FUZZ_EXAMPLES="$$FUZZ_EXAMPLES" $(PY) -m pytest -p no:xdist \
		suites/remote/test_contract.py --html=reports/fuzz.html --self-contained-html --junitxml=reports/junit-fuzz.xml $(PYTEST_ARGS)

## bench: the benchmarks the README's figures come from (several minutes; not tests)
bench: $(VENV)/.installed
	$(PY) bench/health_throughput.py
	$(PY) bench/startup.py
	$(PY) bench/simulator_speed.py
	$(PY) bench/store_pool.py
	$(PY) bench/write_path.py
	$(PY) bench/mlflow_capacity.py

up: $(VENV)/.installed
	$(PY) -m harness up

down: $(VENV)/.installed
	$(PY) -m harness down

## schemas: docs/schemas/ again from the code (the JSON Schemas editors read for scenario, SLO and profile files)
schemas: $(VENV)/.installed
	for n in scenario slo profile; do $(PY) -m harness schema $$n > docs/schemas/$$n.schema.json; done

## lint: the static checks (make test runs them beside its tests): Python (ruff lint and format, mypy), import
## contracts, Dockerfiles (hadolint), shell scripts (shellcheck), pipeline files (the GitHub workflow
## schema and actionlint), Terraform format
SHELL_SCRIPTS := .ci/run services/base/build.sh services/postgres/entrypoint.sh services/common/certs/update.sh
lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint services/*/Dockerfile
	$(VENV)/bin/shellcheck $(SHELL_SCRIPTS)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(VENV)/bin/actionlint -shellcheck $(VENV)/bin/shellcheck .github/workflows/*.yml
	$(VENV)/bin/check-jsonschema --schemafile docs/schemas/scenario.schema.json scenarios/faults/*.yaml scenarios/rollouts/*.yaml
	$(VENV)/bin/check-jsonschema --schemafile docs/schemas/slo.schema.json scenarios/slo.yaml
	@if command -v terraform >/dev/null; then env -u TF_CLI_CONFIG_FILE terraform fmt -check -recursive terraform && echo "terraform fmt: ok"; \
	else echo "lint: terraform is not installed: its format was not checked"; fi

clean:
	rm -rf reports .pytest_cache
