#!/usr/bin/env bash
# Installs the Debian packages a role needs; used by the Makefile on a bare machine and
# by both stages of the Dockerfile, so the same steps run everywhere.
#
#   scripts/install-system-deps.sh build    compilers and Python to build the library and wheel
#   scripts/install-system-deps.sh runtime  what the benchmark suite runs: Python, strace, valgrind,
#                                           the workloads' programs and the peer allocators
#   scripts/install-system-deps.sh peers    the peer allocators, strace and valgrind (bench/install-peers.sh)
#   scripts/install-system-deps.sh lint     nix-instantiate (Debian's nix-bin) for `make lint`
#
# As root it installs what is missing with apt-get; otherwise it only lists it.
set -euo pipefail

role="${1:?usage: $0 build|runtime|peers|lint}"
case "$role" in
  build)   pkgs=(ca-certificates gcc g++ make git python3 python3-pip python3-venv) ;;
  runtime) pkgs=(ca-certificates gcc g++ make git python3 python3-pip python3-venv
                 strace valgrind sqlite3 xz-utils perl coreutils grep
                 libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4) ;;
  peers)   pkgs=(libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4 strace valgrind) ;;
  lint)    pkgs=(nix-bin) ;;
  *) echo "unknown role: $role" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages (install them as root): ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
