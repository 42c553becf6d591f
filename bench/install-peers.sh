#!/bin/sh
# Installs what the benchmark suite compares against and measures with: the peer
# allocators (jemalloc, mimalloc, tcmalloc), strace and valgrind. As root it apt-get installs the
# missing ones; as another user it lists them. The suite finds the libraries by globbing
# the multiarch library directory and skips a peer that is absent; strace is required
# for the exact peak-brk and mapped-memory figures, valgrind for the speed report's
# instruction counts.
exec bash "$(dirname "$0")/../scripts/install-system-deps.sh" peers
