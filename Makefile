# myalloc: build, test and benchmark from one place.
#   make build   - the preload library target/release/libmyalloc.so, and the Python
#                  package (pip install ./py, which ships its own copy of the library)
#   make test    - Rust unit/model tests, the C/C++/real-program suite under LD_PRELOAD,
#                  and the Python package's tests

CARGO  ?= cargo
PYTHON ?= python3
LIB    := target/release/libmyalloc.so
PYTEST_ARGS ?=

.PHONY: all build python test test-unit test-integration test-python test-deps clean

all: build

build: $(LIB) python

# The Python package (pyo3 + maturin), installed into $(PYTHON).
python: $(LIB)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check ./py

$(LIB): Cargo.toml Cargo.lock abi/Cargo.toml $(shell find src abi/src -name '*.rs')
	$(CARGO) build --release

# Python test dependencies (pytest), installed into the interpreter that runs the tests.
test-deps:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt

test: build test-deps test-unit test-integration test-python

test-unit:
	$(CARGO) test --release --lib

test-integration: build test-deps
	MYALLOC_LIB=$(CURDIR)/$(LIB) $(PYTHON) -m pytest tests -q -ra $(PYTEST_ARGS)

# Run from outside the source tree so that `import myalloc` is the installed package.
test-python: python test-deps
	cd /tmp && $(PYTHON) -m pytest $(CURDIR)/py/tests -q -ra -p no:cacheprovider

clean:
	$(CARGO) clean
