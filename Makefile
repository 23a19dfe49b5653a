# Two commands do all set-up on a fresh machine (Python 3.11):
#   make train   # install, then the method in miniature on LIBERO-Goal task 0 (`cli.py generate`)
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

# The method in miniature on LIBERO-Goal task 0 (`cli.py generate`, stopped after the fine-tuned policy's
# evaluation): 5 scripted demos, BC of the diffusion policy and its success, DiffusionPPO fine-tuning, the success
# again; it ends with the report's table (BC column: the BC start; RL columns: the fine-tuned policy).
# Resumable: rerun to continue.
TRAIN_DIR ?= runs/train
train: install
	$(BIN)/python cli.py generate --out $(TRAIN_DIR) --env LIBERO-Goal-v0 --task-id 0 --demos 5 --bc-epochs 800 \
		--eval-episodes 20 --rl-steps 40000 --stop-after rl_eval --no-images

# The full pipeline for one task (`make experiment ENV=LIBERO-Spatial-v0 TASK=4`; hours on 2 cores): demos, BC, RL,
# evaluations, 50 successful rollouts, the export and the report in runs/generate/<env>_<task>. AGENT=gaussian-ppo
# for the baseline; GENERATE_FLAGS for more (e.g. GENERATE_FLAGS="--demos 5 --agent.actor-lr 1e-5").
ENV ?= LIBERO-Goal-v0
TASK ?= 0
AGENT ?= diffusion-ppo
GENERATE_FLAGS ?=
experiment: install
	$(BIN)/python cli.py generate --out runs/generate/$(ENV)_$(TASK)_$(AGENT) --env $(ENV) --task-id $(TASK) \
		--agent $(AGENT) $(GENERATE_FLAGS)

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
