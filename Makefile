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

.PHONY: install train pipeline test test-slow bench clean

install: $(VENV)/.installed

# torch first, from its exact pin (the only spec that takes the local CPU wheel);
# then the project and its run-time deps; then libero without its declared deps
# (they would replace the CPU torch with a CUDA build; see README, Install).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps libero==0.1.1
	touch $@

# --resume RUN_DIR: the first run starts fresh; running it again continues (or re-reports) the same run.
train: install
	$(BIN)/python cli.py train --agent diffusion-ppo --env LIBERO-Goal-v0 --task-id 0 --total-timesteps 2000 --resume runs/main

# The method end to end on one task: scripted demos -> BC warm start -> eval -> DPPO fine-tuning.
PIPELINE_DIR ?= runs/pipeline
DEMOS ?= 20
pipeline: install
	$(BIN)/python cli.py collect --policy scripted --env LIBERO-Goal-v0 --task-id 0 --episodes $(DEMOS) --until-successes --num-workers 2 --no-images --out $(PIPELINE_DIR)/demos --resume
	$(BIN)/python cli.py pretrain --dataset $(PIPELINE_DIR)/demos/*.hdf5 --run-dir $(PIPELINE_DIR)/bc --epochs 800
	$(BIN)/python cli.py eval --checkpoint $(PIPELINE_DIR)/bc/checkpoint --episodes 20 --json-out $(PIPELINE_DIR)/bc_eval.json
	$(BIN)/python cli.py train --agent diffusion-ppo --env LIBERO-Goal-v0 --task-id 0 --init-from $(PIPELINE_DIR)/bc/checkpoint --total-timesteps 20000 --resume $(PIPELINE_DIR)/rl

test: install
	$(BIN)/python -m pytest -n 2 --timeout 900 $(PYTEST_ARGS)

test-slow: install
	LIBERO_GYM_SLOW=1 $(BIN)/python -m pytest -n 2 --timeout 3600 $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/env_throughput.py
	$(BIN)/python benchmarks/agents.py
	$(BIN)/python benchmarks/data.py

clean:
	rm -rf $(VENV) .cache runs
