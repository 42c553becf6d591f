# syntax=docker/dockerfile:1
#
# docker build -t myalloc .
# docker run --rm --cap-add=SYS_PTRACE -v "$PWD/results:/results" myalloc   # full suite -> ./results
# docker run --rm --cap-add=SYS_PTRACE myalloc make bench-quick
# docker run --rm -it myalloc bash
#
# Tracing the program break needs ptrace: without --cap-add=SYS_PTRACE every traced
# run fails and the report lists the failures with strace's message.

# ---- build: the preload library and the Python wheel ---------------------------------
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY scripts/install-system-deps.sh scripts/
RUN bash scripts/install-system-deps.sh build \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY . .
RUN cargo build --release \
 && pip install --no-cache-dir --quiet wheel==0.45.1 \
 && pip wheel --no-cache-dir --no-deps --wheel-dir /dist ./py

# ---- runtime: Python, strace, valgrind, the peers, the wheel and the suite ---------------
FROM debian:bookworm-slim AS runtime
WORKDIR /opt/myalloc
COPY scripts/install-system-deps.sh scripts/
RUN bash scripts/install-system-deps.sh runtime \
 && python3 -m venv .venv
ENV PATH=/opt/myalloc/.venv/bin:$PATH
COPY bench/requirements.txt bench/requirements.txt
RUN pip install --no-cache-dir --quiet -r bench/requirements.txt
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-cache-dir --quiet /tmp/dist/*.whl && rm -rf /tmp/dist
COPY --from=build /src/target/release/libmyalloc.so target/release/libmyalloc.so
COPY Makefile ./
COPY bench/ bench/
VOLUME ["/results"]
# The suite of real programs, then the speed benchmark (as `make bench` runs them).
CMD ["sh", "-c", "python bench/run.py --out /results; python bench/speed.py --out /results/speed"]
