# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
# Extra pip arguments, e.g. PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
# where the CPU build of torch 2.13.0 is not already available to pip.
PIP_ARGS ?=

.PHONY: venv demo demo-report demo-edge test bench lint clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(PIP_ARGS) -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	@touch $@

# The demo: learning-rate sensitivity with the theory overlay (a 10-D quadratic) and local-minimum behaviour
# (six-hump camel: 2 global and 4 local minima, 20 random starts), 7 optimizers x 11 learning rates.
DEMO := problem=quadratic,six_hump_camel optimizer=gd,momentum,nesterov,adagrad,rmsprop,adam,adamw grid=lr_decades "seed=range(20)" steps=1000
# The second demo: a log-uniform random search of lr (16 Sobol trials) crossed with four momenta on the same quadratic:
# the lr x momentum heatmap, each momentum's stability edge, and the tuning budget of 16 sampled trials.
DEMO_SEARCH := problem=quadratic optimizer=momentum search.trials=16 "seed=range(10)" steps=1000 "lr=tag(log, interval(1e-4, 0.1))" optimizer.momentum=0,0.5,0.9,0.99
# The edge-of-stability reproduction (Cohen et al., 2021): full-batch GD on a tanh MLP with MSE loss, three lrs
# in one batch, the sharpness measured every 25 steps; it rises to 2/lr and hovers there.
EDGE := problem=mlp problem.activation=tanh problem.loss=mse optimizer=gd instruments=curvature instruments.every=25 steps=3000 lr=0.4,0.5,0.6667

# Runs the demo into ./mlflow.db and writes its report to outputs/reports/demo/report.md (untracked).
demo: venv
	$(PY) -m harness $(DEMO) -m
	$(PY) -m harness.report --name demo --out outputs/reports
	$(PY) -m harness $(DEMO_SEARCH) -m
	$(PY) -m harness.report --name demo-search --out outputs/reports
	@echo "(mlflow is in $(VENV)/bin: run 'source $(VENV)/bin/activate' first)"

# Regenerates the committed example report reports/demo/ from a clean tree (it records the git commit),
# into a fresh store of its own; commit the result.
demo-report: venv
	@test -z "$$(git status --porcelain --untracked-files=no)" || { echo "error: the tree has uncommitted changes; commit them first (the report records the git commit)"; exit 1; }
	mkdir -p outputs && rm -f outputs/demo-report.db
	$(PY) -m harness tracking.uri=sqlite:///outputs/demo-report.db $(DEMO) -m
	$(PY) -m harness.report --uri sqlite:///outputs/demo-report.db --name demo --out reports --no-attach
	$(PY) -m harness tracking.uri=sqlite:///outputs/demo-report.db $(DEMO_SEARCH) -m
	$(PY) -m harness.report --uri sqlite:///outputs/demo-report.db --name demo-search --out reports --no-attach

# Regenerates the committed edge-of-stability report reports/edge-of-stability/ from a clean tree, into a fresh
# store of its own (one thread: about 40 s); commit the result.
demo-edge: venv
	@test -z "$$(git status --porcelain --untracked-files=no)" || { echo "error: the tree has uncommitted changes; commit them first (the report records the git commit)"; exit 1; }
	mkdir -p outputs && rm -f outputs/demo-edge.db
	OMP_NUM_THREADS=1 $(PY) -m harness tracking.uri=sqlite:///outputs/demo-edge.db $(EDGE) -m
	$(PY) -m harness.report --uri sqlite:///outputs/demo-edge.db --name edge-of-stability --out reports --no-attach

test: venv
	$(PY) -m pytest -q -n auto

# Benchmarks: each prints what it measured in one run and its ratios (the longest is bench/scale.py's
# 100,000-run sweep; the headline installs benchopt into a scratch venv under ~/.cache/optbench-harness
# the first time; bench/startup.py times the command line against `import torch`).
bench: venv
	$(PY) bench/headline.py
	$(PY) bench/startup.py
	$(PY) bench/scale.py
	$(PY) bench/cnn.py
	$(PY) bench/parallel.py
	$(PY) bench/torch_classes.py
	$(PY) bench/threads.py
	$(PY) bench/instruments.py
	$(PY) bench/gpu.py

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
