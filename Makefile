# Two commands do all the set-up on a fresh machine:
#   make run    install into .venv, fetch the corpus if needed, train the default experiment
#   make test   install into .venv, fetch the corpus if needed, lint and run every test
#               (PYTEST_WORKERS=0: in this process, no xdist workers)
#   make test-engines   as root: the scale-out tests on a real one-node SLURM cluster and a
#               PostgreSQL server it starts and stops (engines/run.sh; .ci/run runs it after test)
#   make review BASE=origin/main   a config change reviewed, preset by preset (src/review.py)
#   make mlflow-ui   the MLflow UI on the runs of logger=mlflow (http://127.0.0.1:5000)
# Pass overrides to a run with ARGS, e.g. make run ARGS="model=custom_head dropout=0.3".

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0 is a light CPU wheel where one is on disk, the CUDA build from PyPI elsewhere.
TORCH ?= torch==2.13.0
# The corpus: NLTK_DATA if set, else ../shared/nltk_data beside the checkout, else ~/nltk_data.
NLTK_DATA ?= $(abspath $(firstword $(wildcard ../shared/nltk_data) $(HOME)/nltk_data))
export NLTK_DATA
ARGS ?=
PYTEST_ARGS ?=
# pytest-xdist workers: one per core (tests/conftest.py gives each worker's torch one thread)
PYTEST_WORKERS ?= auto

.PHONY: setup data run test test-engines lint review mlflow-ui

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed data

data: $(VENV)/.installed
	@$(PY) -c "import nltk; nltk.data.find('corpora/movie_reviews.zip')" 2>/dev/null \
	  || $(PY) -m nltk.downloader -d "$(NLTK_DATA)" movie_reviews

run: setup
	$(PY) -m src.run $(ARGS)

lint: $(VENV)/.installed
	$(PY) -m ruff check src tests engines benchmarks hydra_plugins
	$(PY) -m ruff format --check src tests engines benchmarks hydra_plugins

test: setup lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-engines: setup
	PY=$(PY) bash engines/run.sh $(PYTEST_ARGS)

# make review BASE=origin/main [HEAD=HEAD]: every preset's resolved change, key by key, and
# whether HEAD validates (src/review.py; HEAD empty: the working tree). Markdown on stdout.
BASE ?= origin/main
HEAD ?=
REVIEW_ARGS ?=
review: $(VENV)/.installed
	@$(PY) -m src.review $(BASE) $(HEAD) $(REVIEW_ARGS)

# The MLflow UI on the runs of logger=mlflow (its store: MLFLOW_TRACKING_URI, else outputs/mlflow.db).
mlflow-ui: $(VENV)/.installed
	$(VENV)/bin/mlflow ui --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///outputs/mlflow.db}" $(ARGS)
