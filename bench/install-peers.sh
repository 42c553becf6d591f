#!/bin/sh
# Installs what the benchmark suite compares against and measures with: the peer
# allocators (jemalloc, mimalloc, tcmalloc) and strace. As root it apt-get installs the
# missing ones; as another user it lists them. The suite finds the libraries by globbing
# the multiarch library directory and skips a peer that is absent; strace is required
# for the exact peak-brk and mapped-memory figures.
exec bash "$(dirname "$0")/../scripts/install-system-deps.sh" peers
