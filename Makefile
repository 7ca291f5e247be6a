# Set-up, tests and benchmarks. `make setup` is idempotent: a second run only checks stamps.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DEPS_STAMP := $(VENV)/.deps-installed
PKG_STAMP := $(VENV)/.cascades-installed
# pip's --target install of detectron2's cp310 wheel needs the venv's site-packages folder, asked in the
# recipe itself: make expands a recipe before running it, i.e. before the venv exists.
SITE_CMD = $(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"
# torch's extension builder needs the toolkit folder that holds lib64/libcudart.so, not nvcc's wrapper.
export CUDA_HOME ?= $(firstword $(wildcard /usr/local/cuda) $(wildcard /usr/local/cuda-*))
# detectron2's convention: datasets are found under $DETECTRON2_DATASETS, by default ./datasets.
export DETECTRON2_DATASETS ?= $(abspath datasets)

.PHONY: setup test test-all test-asan bench mutation clean

setup: $(PKG_STAMP)

$(DEPS_STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --only-binary=:all: --python-version 3.10 \
		--upgrade --target "$$($(SITE_CMD))" sal-detectron2==0.7.2
	touch $@

$(PKG_STAMP): $(DEPS_STAMP) setup.py pyproject.toml $(shell find csrc -type f)
	$(BIN)/pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

test: setup
	$(BIN)/python -m pytest -q -m "not slow" tests

test-all: setup
	$(BIN)/python -m pytest -q tests

# The op's CPU tests against an AddressSanitizer build of the extension (kept apart in build/asan).
ASAN_LIBS = $(shell gcc -print-file-name=libasan.so) $(shell gcc -print-file-name=libstdc++.so.6)
test-asan: setup
	CASCADES_SANITIZE=address $(BIN)/python setup.py -q build_ext --build-temp build/asan/tmp --build-lib build/asan/lib
	rm -rf build/asan/pkg && mkdir -p build/asan/pkg && cp -r projects/cascades build/asan/pkg/
	rm -f build/asan/pkg/cascades/_C*.so && cp build/asan/lib/cascades/_C*.so build/asan/pkg/cascades/
	LD_PRELOAD="$(ASAN_LIBS)" ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 PYTHONPATH=build/asan/pkg \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/layers -k "not compile"

bench: setup
	$(BIN)/python tools/benchmark_ops.py

# Each curated mutant (tests/mutants/) breaks one paper concept; the fast tests naming it must fail.
mutation: setup
	$(BIN)/python tools/mutation_check.py -j 2

clean:
	rm -rf build projects/cascades/*.so $(PKG_STAMP)

# The README's first command: generates the default shapes dataset, trains SCNet (MODEL=mnc, htc or cascade
# for the others, configs/DefaultShapes/) on it on the CPU, evaluates it, draws its predictions and a contact
# sheet, and prints mask / box AP, the time taken and where everything is (tools/run_demo.py).
MODEL ?= scnet
.PHONY: demo
demo: setup
	$(BIN)/python tools/run_demo.py $(MODEL)

# mmdetection's own code, for the parity tests and the side-by-side benchmark only (never a dependency
# of the package; docs/MMDET.md). mmcv 2.2.0 is published as source only: its setup.py imports
# pkg_resources (setuptools<81) and asks for C++14/17 where torch 2.14's headers need C++20, so it is
# built here with the flags replaced (about 10 minutes on 2 cores) and the wheel kept in $(REF_CACHE),
# which makes a second set-up take seconds. mmdet 3.3.0 refuses mmcv 2.2.0 by an exclusive upper bound
# in its __init__, relaxed after installing.
REF_VENV := .venv-mmdet
REF_BIN := $(REF_VENV)/bin
REF_STAMP := $(REF_VENV)/.reference-installed
REF_CACHE := .cache/reference
REF_SITE_CMD = $(REF_BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"
.PHONY: reference mmcv-wheel parity

reference: $(REF_STAMP)

$(REF_STAMP):
	test -x $(REF_BIN)/python || $(PYTHON) -m venv $(REF_VENV)
	$(REF_BIN)/pip install --quiet --upgrade pip
	$(REF_BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1 "setuptools<81" wheel ninja \
		mmengine==0.10.7
	ls $(REF_CACHE)/mmcv-2.2.0-*.whl >/dev/null 2>&1 || $(MAKE) mmcv-wheel
	$(REF_BIN)/pip install --quiet $(REF_CACHE)/mmcv-2.2.0-*.whl mmdet==3.3.0
	sed -i "s/^mmcv_maximum_version = '2.2.0'$$/mmcv_maximum_version = '2.3.0'/" \
		"$$($(REF_SITE_CMD))/mmdet/__init__.py"
	$(REF_BIN)/python -c "import mmdet, mmcv.ops; print('mmdet', mmdet.__version__, 'with mmcv ops')"
	touch $@

mmcv-wheel:
	rm -rf $(REF_CACHE)/src && mkdir -p $(REF_CACHE)/src
	$(REF_BIN)/pip download --quiet --no-deps --no-binary :all: --no-build-isolation mmcv==2.2.0 \
		-d $(REF_CACHE)/src
	tar -xzf $(REF_CACHE)/src/mmcv-2.2.0.tar.gz -C $(REF_CACHE)/src
	sed -i -e "s/-std=c++1[47]/-std=c++20/g" -e "s|/std:c++1[47]|/std:c++20|g" \
		$(REF_CACHE)/src/mmcv-2.2.0/setup.py
	cd $(REF_CACHE)/src/mmcv-2.2.0 && MMCV_WITH_OPS=1 MAX_JOBS=2 FORCE_CUDA=0 \
		$(abspath $(REF_BIN))/pip wheel --no-build-isolation --no-deps -w $(abspath $(REF_CACHE)) .
	rm -rf $(REF_CACHE)/src

# The parity suite against mmdetection (tests/parity skip with one line without the reference venv).
parity: setup reference
	$(BIN)/python -m pytest -q tests/parity

# Fetches balloon and coco128-seg into $(DETECTRON2_DATASETS) and converts them to COCO json (see
# docs/DATASETS.md); datasets already there are skipped. The warning filter hides a deprecation notice
# that importing detectron2 prints.
.PHONY: datasets
datasets: setup
	$(BIN)/python -W ignore::FutureWarning -m cascades.data.prepare
