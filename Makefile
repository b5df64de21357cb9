# 100 Days of AI: the front door. `make help` lists everything.
#   make day 7                  run day 7, test it, record it in progress.yaml (outputs: results/day07/)
#   make day 7 ARGS="--quick"   smoke size into a scratch folder (records nothing)
#   make day 7 ARGS="max_iters=500 --device cpu"   a variant, kept beside your result (--record: replace it)
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
JOBS ?= 2

# `make day 7` / `make hours 7 read=1`: the words after the command are its arguments, not targets.
POSITIONAL := day hours reproduce snapshot data exercise solution read
ifneq ($(filter $(firstword $(MAKECMDGOALS)),$(POSITIONAL)),)
  CMD_ARGS := $(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS))
  ifneq ($(strip $(CMD_ARGS)),)
    $(eval $(CMD_ARGS):;@:)
  endif
endif
# every name=value given on the command line except make's own settings goes to `make hours`,
# so a misspelt category (`sleep=3`) is named and rejected instead of silently dropped
HOURS := $(filter-out PYTHON=% ARGS=% JOBS=% NANOGPT=% from=% to=% DATA_DIR=% only=% diff=% MODEL=% TASKS=% THRESHOLD=%,$(MAKEOVERRIDES))

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

.PHONY: help venv day reproduce snapshot data exercise solution read rate eval battery hardware gpu-extras vllm-env test test-all lint report progress progress-init hours tensorboard bench-nanogpt clean distclean

help: ## list the targets
	@echo "100 Days of AI. The two commands: 'make day 1' and 'make test'."
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  make %-14s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv and install requirements.txt (done automatically by the others)

day: $(STAMP) ## make day N [ARGS="--quick key=value --record"]: run day N, test it, record it (results/dayNN/)
	@$(PY) -m common.course.cli day $(CMD_ARGS) $(ARGS)

exercise: $(STAMP) ## make exercise N [only=dayNN.name]: turn day N's exercises into stubs for you to write
	@$(PY) -m common.course.exercises exercise $(CMD_ARGS) $(if $(only),only=$(only))

solution: $(STAMP) ## make solution N [only=..] [diff=1]: put the reference back (diff=1: show yours against it)
	@$(PY) -m common.course.exercises solution $(CMD_ARGS) $(if $(only),only=$(only)) $(if $(diff),diff=1)

reproduce: $(STAMP) ## make reproduce N | all | from=21 to=30: re-run the default, compare with reference.json
	@$(PY) -m common.course.reproduce $(CMD_ARGS) $(if $(from),--from $(from)) $(if $(to),--to $(to)) $(ARGS)

snapshot: $(STAMP) ## make snapshot N | all: rewrite the quick snapshots make test checks (on purpose only)
	@$(PY) -m common.course.reproduce $(or $(CMD_ARGS),all) --quick --write

test: $(STAMP) ## quick tests of common/ and every built day (< 10 min on 2 cores)
	$(PY) -m pytest -n $(JOBS) -m "not slow"

test-all: $(STAMP) ## every test, the slow ones included
	$(PY) -m pytest -n $(JOBS)

lint: $(STAMP) ## ruff over the code
	$(PY) -m ruff check common days

data: $(STAMP) ## download and verify every dataset into data/ (or DATA_DIR), sha256-checked
	@$(PY) -m common.data fetch $(CMD_ARGS)

read: $(STAMP) ## make read N [implemented] [summary]: record how far you got with day N's reading
	@$(PY) -m common.course.cli read $(CMD_ARGS)

MODEL ?= sft
TASKS ?= all
THRESHOLD ?= 0.01
eval: $(STAMP) ## make eval MODEL=sft TASKS=all: harness tasks -> results/eval/<model>/<time>.json, regression check vs the last run
	@$(PY) -m common.eval.suite --model $(MODEL) --tasks $(TASKS) --threshold $(THRESHOLD) $(ARGS)

battery: $(STAMP) ## eval battery v1 (day 48) over the sprint-5 models: exact match, length, latency per family
	@$(PY) -m common.eval.battery $(ARGS)

rate: $(STAMP) ## blind A/B ratings of day 44's SFT and DPO answers (saved in results/day44/ratings.csv)
	@$(PY) -m days.day44.rate $(ARGS)

report: $(STAMP) ## write sprints/sprintNN.md and this week's reflection file
	@$(PY) -m common.course.cli report

progress: $(STAMP) ## one-screen dashboard of progress.yaml
	@$(PY) -m common.course.cli progress

progress-init: $(STAMP) ## write a fresh progress.yaml if there is none
	@$(PY) -m common.course.cli progress-init

hours: $(STAMP) ## make hours N read=1.5 code=2 log=0.5 [math=..]: add time spent on day N
	@$(PY) -m common.course.cli hours $(CMD_ARGS) $(HOURS)

bench-nanogpt: $(STAMP) ## train nanoGPT's CPU baby config with our code (NANOGPT=path also runs nanoGPT)
	$(PY) -m days.day07.run --preset nanogpt --out logs/bench_nanogpt $(if $(NANOGPT),nanogpt_dir=$(NANOGPT)) $(ARGS)

hardware: $(STAMP) ## re-measure this machine's matmul peaks (float32, bfloat16) on a quiet machine; show what dtype=auto picks
	@$(PY) -m common.lab.hardware

gpu-extras: $(STAMP) ## on a CUDA machine: flash-attn and bitsandbytes into .venv (requirements-gpu.txt)
	$(PY) -m pip install --no-build-isolation -r requirements-gpu.txt

vllm-env: ## on a CUDA machine: vLLM in its own .venv-vllm (it pins its own torch); serve with .venv-vllm/bin/vllm
	@test -x .venv-vllm/bin/python || $(PYTHON) -m venv .venv-vllm
	.venv-vllm/bin/pip install -r requirements-vllm.txt

tensorboard: $(STAMP) ## TensorBoard over logs/ (http://localhost:6006)
	$(VENV)/bin/tensorboard --logdir logs

clean: ## remove caches, checkpoints, scratch output and run logs (keeps progress.yaml, results/, notes, references)
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
	rm -rf .pytest_cache .ruff_cache .cache checkpoints
	rm -rf $${TMPDIR:-/tmp}/day[0-9][0-9]_quick_* $${TMPDIR:-/tmp}/reproduce_*
	find logs -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +

distclean: clean ## clean, and remove .venv too
	rm -rf $(VENV) .venv-vllm
