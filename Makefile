# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# torch is installed first from its pinned CPU build: a loose requirement would pull multi-GB CUDA wheels. The
# project's machines hold that build locally; elsewhere pass an index, e.g.
# make test TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0 $(TORCH_PIP_ARGS)
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PYTHON) examples/demo.py --output_dir demo_output

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PYTHON) -m pytest -q -n 2 --durations=15

bench: $(STAMP)
	$(PYTHON) benchmarks/bench_inference.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo_output .pytest_cache
