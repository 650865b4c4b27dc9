# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
# Extra pip arguments, e.g. PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
# where the CPU build of torch 2.13.0 is not already available to pip.
PIP_ARGS ?=

.PHONY: venv demo test bench lint clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(PIP_ARGS) -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	@touch $@

# A representative sweep into ./mlflow.db (7 optimizers x 2 problems x 11 learning rates x 3 seeds),
# then its report in reports/demo/report.md (committed as the example report).
demo: venv
	$(PY) -m harness problem=rosenbrock,himmelblau optimizer=gd,momentum,nesterov,adagrad,rmsprop,adam,adamw grid=lr_decades seed=0,1,2 steps=1000 -m
	$(PY) -m harness.report --name demo
	@echo "(mlflow is in $(VENV)/bin: run 'source $(VENV)/bin/activate' first)"

test: venv
	$(PY) -m pytest -q

# Benchmarks: each prints times measured in one run and their ratios (about 15 minutes in all).
bench: venv
	$(PY) bench/sweep_vs_plain.py
	$(PY) bench/scale.py
	$(PY) bench/cnn.py
	$(PY) bench/report_scale.py

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
