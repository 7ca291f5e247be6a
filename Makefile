# Set-up, tests and benchmarks. `make setup` is idempotent: a second run only checks stamps.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DEPS_STAMP := $(VENV)/.deps-installed
PKG_STAMP := $(VENV)/.cascades-installed
# pip's --target install of detectron2's cp310 wheel needs the interpreter's site-packages folder.
SITE = $(shell $(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# torch's extension builder needs the toolkit folder that holds lib64/libcudart.so, not nvcc's wrapper.
export CUDA_HOME ?= $(firstword $(wildcard /usr/local/cuda) $(wildcard /usr/local/cuda-*))
export DETECTRON2_DATASETS ?= $(abspath ../shared/datasets)

.PHONY: setup test test-all bench clean

setup: $(PKG_STAMP)

$(DEPS_STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --only-binary=:all: --python-version 3.10 \
		--upgrade --target $(SITE) sal-detectron2==0.7.2
	touch $@

$(PKG_STAMP): $(DEPS_STAMP) setup.py pyproject.toml $(shell find csrc -type f)
	$(BIN)/pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

test: setup
	$(BIN)/python -m pytest -q -m "not slow" tests

test-all: setup
	$(BIN)/python -m pytest -q tests

bench: setup
	$(BIN)/python tools/benchmark_ops.py

clean:
	rm -rf build projects/cascades/*.so $(PKG_STAMP)
