# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# ORT=gpu installs onnxruntime-gpu instead of onnxruntime.
ORT    ?= cpu
STAMP  := $(VENV)/.installed-$(ORT)

.PHONY: install demo lint test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[$(ORT),test,bench,cuda-build,serve]'
	# Triton's client and server: their own pins (numpy<2, ml-dtypes<=0.5.4) would downgrade ours; the serve extra has what they import.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt nvidia-pytriton tritonclient
	touch $@

demo: $(STAMP)
	$(BIN)/attn-deploy demo

# Lint and type-check first: they take a minute and fail fast.
lint: $(STAMP)
	$(BIN)/ruff check attn_deploy tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q --durations=25

bench: $(STAMP)
	$(BIN)/python benchmarks/memory_sagan.py
	$(BIN)/python benchmarks/attention_cpu.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
