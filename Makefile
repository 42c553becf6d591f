# myalloc: build, test and (later) benchmark from one place.
#   make build   - the preload library target/release/libmyalloc.so
#   make test    - Rust unit/model tests, then the C/C++/real-program suite under LD_PRELOAD

CARGO  ?= cargo
PYTHON ?= python3
LIB    := target/release/libmyalloc.so
PYTEST_ARGS ?=

.PHONY: all build test test-unit test-integration test-deps clean

all: build

build: $(LIB)

$(LIB): Cargo.toml Cargo.lock $(shell find src -name '*.rs')
	$(CARGO) build --release

# Python test dependencies (pytest), installed into the interpreter that runs the tests.
test-deps:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt

test: build test-deps test-unit test-integration

test-unit:
	$(CARGO) test --release --lib

test-integration: build test-deps
	MYALLOC_LIB=$(CURDIR)/$(LIB) $(PYTHON) -m pytest tests -q -ra $(PYTEST_ARGS)

clean:
	$(CARGO) clean
