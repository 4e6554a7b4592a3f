# deployflow — two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: demo test lint format bench diagram expected-schema scenarios system-deps kafka-jars clean

# The package with its extras (pyproject.toml): `local` (the local stack) and `dev` (lint, tests), pinned by constraints.
$(STAMP): pyproject.toml functions/requirements.txt requirements-local.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[local,dev]'
	@# The wheel carries only the CLI's share of functions/; here all of it is importable, as in the Lambda runtime
	@# (the local stack runs its handlers and `python -m dbmigrate`).
	$(BIN)/python -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_path("purelib"), "deployflow-functions.pth").write_text("$(CURDIR)/functions\n")'
	touch $(STAMP)

$(SAM_STAMP): requirements-sam.txt constraints-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet -r requirements-sam.txt -c constraints-sam.txt
	touch $(SAM_STAMP)

system-deps:
	@scripts/install-system-deps.sh

kafka-jars: system-deps
	@scripts/fetch-kafka.sh

demo: system-deps kafka-jars $(STAMP) $(SAM_STAMP)
	$(BIN)/deployflow local run --scenario happy

# The SAM venv is a test dependency too: the local stack's Lambda runtime is the Runtime Interface Emulator binary
# shipped inside the pinned aws-sam-cli wheel (deployflow/local/lambda_runtime.py finds it there). So is the AWS CLI's
# (.venv-bench): tests/canary/test_sfn_redrive.py runs `aws stepfunctions redrive-execution` against the local server.
test: system-deps kafka-jars $(STAMP) $(SAM_STAMP) $(BENCH_STAMP)
	$(BIN)/pytest

lint: $(STAMP) $(SAM_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml pipeline/codepipeline-example.yaml
	SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 $(SAM_VENV)/bin/sam validate --lint --template template.yaml
	$(BIN)/python -m deployflow.diagram --check
# squawk (pinned in constraints.txt) on every file of sql/, with the files' waivers: the runner's own lint
	PYTHONPATH=functions $(BIN)/python -m dbmigrate lint --migrations-dir sql > /dev/null

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

diagram: system-deps $(STAMP)
	$(BIN)/python -m deployflow.diagram

expected-schema: system-deps $(STAMP)
	$(BIN)/python -m deployflow.local.expected_schema

scenarios: system-deps kafka-jars $(STAMP) $(SAM_STAMP)
	for s in happy image-missing migration-fails migration-timeout schema-drift kafka-down kafka-down-then-redrive step-timeout service-fails concurrent invalid-input dry-run unsafe-migration rerun; do \
		$(BIN)/deployflow local run --scenario $$s > /dev/null 2>&1 && echo "$$s: as expected" || { echo "$$s: NOT as expected"; exit 1; }; \
	done

$(BENCH_STAMP): requirements-bench.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet -r requirements-bench.txt
	touch $(BENCH_STAMP)

# Each benchmark prints its figures and leaves its headline in .cache/bench/; the summary ends with one line per
# target of issue 11, in a fixed form a script can read.
bench: system-deps kafka-jars $(STAMP) $(SAM_STAMP) $(BENCH_STAMP)
	$(BIN)/python benchmarks/migrations.py
	$(BIN)/python benchmarks/cold_start.py
	AWS_CLI=$(BENCH_VENV)/bin/aws $(BIN)/python benchmarks/workflow.py
	$(BIN)/python benchmarks/lambda_runtime.py
	$(BIN)/python benchmarks/summary.py

clean:
	rm -rf $(VENV) $(SAM_VENV) $(BENCH_VENV) .cache .pytest_cache .mypy_cache .ruff_cache
