# Two commands do all set-up on a fresh machine (Python 3.11):
#   make train   # install, then a short real training run on the default task
#   make test    # install, then the default test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The LIBERO asset folder (meshes, textures); override with `make test LIBERO_GYM_ASSETS=/path`.
export LIBERO_GYM_ASSETS ?= $(abspath ../shared/libero_assets)
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= $(MUJOCO_GL)
# Keep LIBERO's config inside the checkout: nothing outside it is written.
export LIBERO_GYM_HOME ?= $(abspath .cache/libero_gym)
PYTEST_ARGS ?=

.PHONY: install train experiment test test-slow bench clean

install: $(VENV)/.installed

# torch first, from its exact pin (the only spec that takes the local CPU wheel);
# then the project and its run-time deps; then libero
# without its declared deps (they would replace the CPU torch with a CUDA build; see README, Install).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps libero==0.1.1
	touch $@

# The method in miniature on LIBERO-Goal task 0 (scripts/method_experiment.py): a few scripted demos, BC of the
# diffusion policy, its stochastic success, DiffusionPPO fine-tuning, the success again. Resumable: rerun to continue.
TRAIN_DIR ?= runs/train
train: install
	$(BIN)/python scripts/method_experiment.py --task goal0 --out $(TRAIN_DIR) --agents diffusion --no-data \
		--demos 5 --bc-epochs 800 --rl-steps 40000 --eval-episodes 20 --eval-sampling stochastic

# The full experiment of docs/results.md for one task (TASK=goal0|spatial4|spatial6|long5|l90_23|goal3; hours on 2 cores).
TASK ?= goal0
experiment: install
	$(BIN)/python scripts/method_experiment.py --task $(TASK) --out runs/method

# worksteal: the long real-simulator tests do not all end up queued behind one worker;
# --durations: every CI log lists the slowest tests (keep the default run under 12 min; long end-to-end tests
# whose behaviour a faster default test also checks are marked slow and run by `make test-slow`).
# TensorFlow Datasets in an environment of its own: the tests read the RLDS export back with it as OpenVLA
# does (the export itself needs no TensorFlow). Not in .venv: TensorBoard imports TensorFlow whenever it is
# installed (~6 s in every training process), and TensorFlow and MuJoCo's EGL rendering crash in one process.
TFDS_VENV ?= .venv-tfds
export LIBERO_GYM_TFDS_PYTHON ?= $(abspath $(TFDS_VENV))/bin/python
$(TFDS_VENV)/.installed:
	$(PYTHON) -m venv $(TFDS_VENV)
	$(TFDS_VENV)/bin/python -m pip install -q --upgrade pip
	$(TFDS_VENV)/bin/python -m pip install -q tensorflow-cpu==2.21.0 tensorflow-datasets==4.9.10
	touch $@

test: install $(TFDS_VENV)/.installed
	$(BIN)/python -m pytest -n 2 --dist worksteal --durations 25 --timeout 900 $(PYTEST_ARGS)

test-slow: install $(TFDS_VENV)/.installed
	LIBERO_GYM_SLOW=1 $(BIN)/python -m pytest -n 2 --dist worksteal --durations 40 --timeout 3600 $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/env_throughput.py
	$(BIN)/python benchmarks/agents.py
	$(BIN)/python benchmarks/data.py

clean:
	rm -rf $(VENV) $(TFDS_VENV) .cache runs
